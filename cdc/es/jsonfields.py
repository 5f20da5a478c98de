"""The field a JSON column gets, per rule (`json_mapping`), and the type each engine has for it.

A MySQL JSON value mapped as `object` is mapped key by key, dynamically: `{"k": [1, 2.5, "x"]}`
is refused (`mapper [doc.k] cannot be changed from type [long] to [float]`), and so is a key
that holds a number in one row and an object in the next, and every new key adds a field
(a mapping explosion). `flattened` maps the whole value as one field whose leaves are
keywords: nothing to conflict, nothing to explode. `disabled` keeps the value in `_source`
only. The plan says `flattened`; the server decides what it is: Elasticsearch has
`flattened` (x-pack, basic licence), OpenSearch >= 2.7 `flat_object`, anything else (the
integ-test-zips, older OpenSearch) `{"type": "object", "enabled": false}`, which takes any
value but is not searchable. `put` tries them in that order, so every caller that PUTs a
body with planned fields goes through it.
"""

from __future__ import annotations

from typing import Any, Mapping

from cdc.errors import SinkError
from cdc.stream.protocols import SearchAdmin

DISABLED = {"type": "object", "enabled": False}
# What a planned `flattened` field becomes where the server lacks the type before it.
_FALLBACKS: tuple[tuple[str, dict], ...] = (("flattened", {"type": "flat_object"}), ("flat_object", DISABLED))


def json_field(mode: str) -> dict:
    """The planned field of a JSON value under `json_mapping: mode`."""
    if mode == "flattened":
        return {"type": "flattened"}
    if mode == "disabled":
        return dict(DISABLED)
    return {"type": "object"}


def same_json_field(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """`have` is what a server made of a planned `flattened` field."""
    return want.get("type") == "flattened" and (have.get("type") == "flat_object" or
                                                 have.get("type", "object") == "object" and have.get("enabled") is False)


def substitute(body: Any, old: str, new: Mapping[str, Any]) -> Any:
    """`body` with every field of type `old` (at any depth) replaced by `new`."""
    if isinstance(body, Mapping):
        if body.get("type") == old:
            return dict(new)
        return {k: substitute(v, old, new) for k, v in body.items()}
    if isinstance(body, list):
        return [substitute(v, old, new) for v in body]
    return body


def _uses(body: Any, field_type: str) -> bool:
    if isinstance(body, Mapping):
        return body.get("type") == field_type or any(_uses(v, field_type) for v in body.values())
    return isinstance(body, list) and any(_uses(v, field_type) for v in body)


def put(sink: SearchAdmin, path: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """PUT `body` (an index, template or mapping with planned fields); where the server has no handler for
    `flattened` (then `flat_object`), again with the next type. Returns the body that was accepted."""
    while True:
        try:
            sink.admin("PUT", path, dict(body))
            return body
        except SinkError as exc:
            # "No handler for type [flattened] declared on field [j]": only the answer's reason names the
            # type, and the error type differs between an index and a template, so the reason is read.
            lacking = next((old for old, _ in _FALLBACKS if f"[{old}]" in str(exc) and _uses(body, old)), None)
            if lacking is None:
                raise
            body = substitute(body, lacking, dict(_FALLBACKS)[lacking])
