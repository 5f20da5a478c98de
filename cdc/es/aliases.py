"""Every fixed index name behind an alias: the name a rule gives points at a versioned index.

A rule's `index: shop-orders` is, by default (`indices.aliases`), an alias onto
`shop-orders_v1`, which cdc creates at start-up with the alias as its write index.
Everything cdc does goes through the name the rule gives: writes, deletes,
updates (external versions work through an alias with one write index: tried on
Elasticsearch 8.19, 7.17 and OpenSearch 2 and 3, tests/integration/test_rebuild.py),
mget and verify. `cdc rebuild` (cdc/app/rebuild.py) fills `shop-orders_v2` and
moves the alias over in one `_aliases` request, so searches never see a half-full
index (docs/verify-and-rebuild.md "Rebuilding an index").

Why `_v<n>` and not `-v<n>`: a dash would give a one-dash name a second one, and
Elasticsearch's built-in templates `logs-*-*`, `metrics-*-*`, `synthetics-*-*`
make data streams of such names, refusing a plain index (`logs-app` is a plain
index; `logs-app-v1` would match). `_` adds no dash.

Index names made from column values (`orders-{at:%Y.%m}`) stay concrete: they are
created by their first document through an index template, and a new month must
not wait for cdc to make an alias for it.

The pure part (names, what a name is, the alias actions) is unit-tested with
literals; `find`, `versions` and `create` talk to the server only through the
sink's `admin`, as cdc/es/indices.py does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

from cdc.errors import SinkError
from cdc.es import jsonfields
from cdc.stream.protocols import SearchAdmin


def versioned_name(alias: str, version: int) -> str:
    """The concrete index of `alias`'s `version`: shop-orders -> shop-orders_v1."""
    return f"{alias}_v{version}"


def version_of(alias: str, index: str) -> int | None:
    """`index`'s version as one of `alias`'s concrete indices; None if it is not one."""
    match = re.fullmatch(re.escape(alias) + r"_v([1-9][0-9]*)", index)
    return int(match.group(1)) if match else None


def next_version(alias: str, indices: Iterable[str]) -> int:
    """One past the highest version among `indices` (those that exist: in the alias, kept or abandoned)."""
    return max((v for v in (version_of(alias, i) for i in indices) if v is not None), default=0) + 1


@dataclass(frozen=True)
class Placement:
    """What a name is on the server: an alias (onto `indices`, writes going to `write_index`), a concrete
    index (a deployment from before aliases, or a write that created it), or nothing yet."""

    name: str
    kind: Literal["alias", "index", "missing"]
    indices: tuple[str, ...] = ()
    write_index: str | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "is": self.kind}
        if self.kind == "alias":
            out["indices"] = list(self.indices)
            out["write_index"] = self.write_index
        return out


def placement_from(name: str, alias_answer: Mapping[str, Any] | None, index_exists: bool) -> Placement:
    """A `GET /_alias/<name>` answer (None for its 404) and whether `GET /<name>` found an index -> Placement.

    The answer is `{index: {"aliases": {name: {"is_write_index": true, ...}}}}`. An alias
    with one index writes to it without the flag; with several, only to the one flagged.
    """
    if alias_answer:
        indices = tuple(sorted(alias_answer))
        flagged = [i for i in indices
                   if ((alias_answer[i] or {}).get("aliases", {}).get(name) or {}).get("is_write_index")]
        write = flagged[0] if flagged else (indices[0] if len(indices) == 1 else None)
        return Placement(name, "alias", indices, write)
    return Placement(name, "index", (name,), name) if index_exists else Placement(name, "missing")


def swap_actions(alias: str, placement: Placement, new_index: str) -> list[dict]:
    """The one `_aliases` request that moves `alias` onto `new_index`, atomically.

    From an alias: remove it from every index it points to and add it to the new one as
    the write index. From a concrete index of that name (a deployment from before
    aliases): `remove_index` deletes it in the same request, since a name cannot be an
    index and an alias at once; its documents are in the new index, verified.
    """
    if placement.kind == "index":
        actions: list[dict] = [{"remove_index": {"index": alias}}]
    else:
        actions = [{"remove": {"index": index, "alias": alias}} for index in placement.indices if index != new_index]
    actions.append({"add": {"index": new_index, "alias": alias, "is_write_index": True}})
    return actions


def with_alias(body: Mapping[str, Any], alias: str) -> dict:
    """A create-index body that also makes `alias` point at the new index, as its write index."""
    return {**body, "aliases": {alias: {"is_write_index": True}}}


# ---------------------------------------------------------------------- asking the server
def find(sink: SearchAdmin, name: str) -> Placement:
    """What `name` is on the server (two small GETs)."""
    status, body = sink.admin("GET", f"/_alias/{name}")
    if status == 200 and isinstance(body, dict) and body:
        return placement_from(name, body, True)
    status, _ = sink.admin("GET", f"/{name}/_settings?filter_path=*.settings.index.uuid")
    return placement_from(name, None, status == 200)


def versions(sink: SearchAdmin, alias: str) -> list[str]:
    """Every concrete index named like one of `alias`'s versions, whatever points at it."""
    status, body = sink.admin("GET", f"/{alias}_v*/_alias?expand_wildcards=all")
    if status != 200 or not isinstance(body, dict):
        return []
    return sorted(index for index in body if version_of(alias, index) is not None)


def create(sink: SearchAdmin, alias: str, body: Mapping[str, Any]) -> str | None:
    """Create the first versioned index of `alias` with the alias on it; its name, or None when it was
    made meanwhile by another cdc process or a write (the caller looks again)."""
    index = versioned_name(alias, next_version(alias, versions(sink, alias)))
    try:
        jsonfields.put(sink, f"/{index}", with_alias(body, alias))
    except SinkError as exc:
        # Another cdc process made the same index, or a write made a concrete index of the alias's name.
        if exc.error_type in ("resource_already_exists_exception", "invalid_alias_name_exception"):
            return None
        raise
    return index
