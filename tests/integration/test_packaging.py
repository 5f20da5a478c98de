"""`python -m build --wheel` (docs/install.md "Install") gives the wheel deploy/ installs, with and without Rust.

No servers: a build from a copy of the source (PyPI for the build's own requirements, as pip
does), then the wheel installed into a new venv. With cargo the crate is compiled in the
checkout's native/target (CARGO_TARGET_DIR), so a warm cache makes that a few seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.tags import cpython_tags
from packaging.utils import parse_wheel_filename

import cdc

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")  # linux_x86_64
NAME = f"cdc-{cdc.__version__}-cp311-abi3-{PLATFORM}.whl"  # what README and deploy/systemd install


def _source(tmp_path: Path) -> Path:
    """What the build reads, without the checkout's build output and installed native module."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("target", "__pycache__", "*.so", "*.egg-info")
    for name in ("cdc", "native"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    return src


def _build(tmp_path: Path, env: dict[str, str]) -> Path:
    out = tmp_path / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(_source(tmp_path))],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [wheel] = out.glob("*.whl")
    return wheel


def _without_cargo() -> dict[str, str]:
    path = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "cargo").exists()]
    return {**os.environ, "PATH": os.pathsep.join(path)}


def test_the_wheel_is_abi3_and_installs_with_its_native_module(tmp_path):
    if shutil.which("cargo") is None:
        pytest.skip("no cargo: the native module cannot be built here")
    wheel = _build(tmp_path, {**os.environ, "CARGO_TARGET_DIR": str(ROOT / "native" / "target")})
    assert wheel.name == NAME
    with zipfile.ZipFile(wheel) as archive:
        assert "cdc/_native.abi3.so" in archive.namelist()
        assert "cdc/_native.pyi" in archive.namelist()  # its types (setup.cfg package_data)
        assert f"Tag: cp311-abi3-{PLATFORM}" in archive.read(f"cdc-{cdc.__version__}.dist-info/WHEEL").decode()
    # pip on CPython 3.11, 3.12 and 3.13 takes it (it refused the cp311-cp311 wheel on 3.12).
    _, _, _, [tag] = parse_wheel_filename(wheel.name)
    for minor in (11, 12, 13):
        assert tag in set(cpython_tags((3, minor), platforms=[PLATFORM]))
    # ... and this Python imports its native module from a new venv (no dependencies needed for that).
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    imported = subprocess.run([python, "-c", "import cdc._native as n; print(n.__file__)"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().endswith("site-packages/cdc/_native.abi3.so")


def test_the_wheel_builds_without_rust(tmp_path):
    """No cargo: the build skips the optional module, and the wheel (the same name) holds the Python path."""
    wheel = _build(tmp_path, _without_cargo())
    assert wheel.name == NAME
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "cdc/cli.py" in names and not [n for n in names if n.endswith(".so")]
    assert "cdc/mysql/charsets.bin" in names  # the Python path's charset tables (cdc/mysql/charsets.py)
