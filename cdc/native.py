"""The one place cdc loads its native module, `cdc._native` (Rust, native/; its types: cdc/_native.pyi).

The module is optional: `pip install` without a Rust toolchain gives a cdc without it,
which runs the Python path (cdc/rules/rowpath.py `check_mode` says so at start). Every
user (the row path, the snapshot's row path, the snapshot's row framing, `cdc status`)
imports it from here and checks `AVAILABLE` first (tests/unit/test_structure.py keeps
it so).
"""

from __future__ import annotations

LOAD_ERROR: str | None = None  # why the module did not load (tests/conftest.py `_require_native` says it)
try:
    from cdc import _native as native
except ImportError as exc:  # installed without a Rust toolchain: the Python path only
    LOAD_ERROR = str(exc)
    # Typed as the module all the same, so that every use is checked against cdc/_native.pyi;
    # each user looks at AVAILABLE before it calls anything.
    native = None  # type: ignore[assignment]

AVAILABLE: bool = native is not None
