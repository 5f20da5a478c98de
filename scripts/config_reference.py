"""Write the configuration reference table of docs/configuration.md from the models in cdc/config.py.

    .venv/bin/python scripts/config_reference.py           # rewrite the table between the markers
    .venv/bin/python scripts/config_reference.py --check   # exit 1 if the table is stale (tests/unit/test_docs.py)

One row per key (`mysql.host`: `host:` under `mysql:`): its type, its default and its description,
which is the docstring under the field in cdc/config.py (read here from the models' source, as
pydantic's use_attribute_docstrings would, which cdc does not turn on: it would parse the source at
every start). The table is generated so that it cannot drift from what cdc accepts.
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import json
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
_HIDDEN = {"base_dir"}  # set by load_config, not a key of the file

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the string literal right under its annotated assignment in the class body (and
    its bases'), cleaned as pydantic's use_attribute_docstrings cleans it (inspect.cleandoc)."""
    found: dict[str, str] = {}
    for cls in reversed([c for c in model.__mro__ if _is_model(c) and c is not BaseModel]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError):  # no source (a class made at run time): no docstrings
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                found[node.target.id] = inspect.cleandoc(after.value.value)
    return found


def fields(model: type[BaseModel] | None = None, prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """Every key of the config file, sections included, as (dotted key, field), in the models' order;
    each field's `description` is its docstring (`docstrings`) unless the field has one of its own."""
    if model is None:
        from cdc.config import Config
        model = Config
    found = []
    described = docstrings(model)
    for name, info in model.model_fields.items():
        if name in _HIDDEN:
            continue
        if not info.description and name in described:
            info = copy.copy(info)
            info.description = described[name]
        found.append((prefix + name, info))
        if _is_model(info.annotation):
            found += fields(info.annotation, f"{prefix}{name}.")
    return found


def undocumented() -> list[str]:
    """Keys whose field has no description (no docstring under it in cdc/config.py)."""
    return [key for key, info in fields() if not (info.description or "").strip()]


def _bounds(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or `null`" if type(None) in args else "")
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is list:
        return "list of strings" if args[0] is str else f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if _is_model(annotation):
        return "section"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def type_text(info: FieldInfo) -> str:
    bounds = _bounds(info)
    return _type_name(info.annotation) + (f" ({bounds})" if bounds else "")


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if _is_model(info.annotation):
        return ""
    value = info.default
    if value is PydanticUndefined:
        value = info.default_factory() if info.default_factory else None  # type: ignore[call-arg]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value:
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table() -> str:
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key, info in fields():
        name = f"**`{key}`**" if _is_model(info.annotation) else f"`{key}`"
        rows.append(f"| {name} | {_cell(type_text(info))} | {_cell(default_text(info))} | "
                    f"{_cell(info.description or '')} |")
    return "\n".join(rows)


def render(text: str) -> str:
    """`text` (docs/configuration.md) with the table between the markers replaced by the current one."""
    try:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"{DOC}: the markers {START} and {END} are missing") from None
    return f"{head}{START}\n\n{table()}\n\n{END}{tail}"  # blank lines: a table must be its own block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is stale")
    args = parser.parse_args()
    missing = undocumented()
    if missing:
        print("config fields without a description (a docstring under the field in cdc/config.py): "
              + ", ".join(missing), file=sys.stderr)
        return 1
    text = DOC.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{DOC} is stale: run .venv/bin/python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
