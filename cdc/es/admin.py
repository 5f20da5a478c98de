"""Reads and index administration, the same for every engine: health, raw admin requests, mget,
scan (a scroll), refresh and `index.gc_deletes`, each written once over a `Transport`
(cdc/es/transport.py), which alone knows the client library.

The requests are the ones the client libraries' own methods make (method, path, query and
body; Elasticsearch and OpenSearch REST references), so every engine sees what it saw when
each library's methods sent them.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import quote

from cdc.es.statuses import status_error
from cdc.es.transport import Transport
from cdc.errors import SinkError, SinkUnavailableError
from cdc.model import StoredDoc

log = logging.getLogger("cdc.sink")

# How long a scroll's context lives between two pages (the client libraries' scan default).
SCROLL = "5m"


def health(transport: Transport) -> str:
    """Fail fast if the cluster is unreachable or refuses cdc; return its health status."""
    _, body = transport.request("GET", "/_cluster/health", params=transport.health_params)
    return str(body["status"])


def admin(transport: Transport, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    """One index-administration request (cdc/es/indices.py): (status, body); a 404 is an answer, not an error."""
    return transport.request(method, path, body=body, missing_ok=True)


def gc_deletes(transport: Transport, index: str) -> float | None:
    """The index's `index.gc_deletes` in seconds (how long delete tombstones are kept), if it exists."""
    status, body = transport.request("GET", f"/{_path(index)}/_settings/index.gc_deletes",
                                     params={"include_defaults": "true", "flat_settings": "true"}, missing_ok=True)
    if status == 404 or not isinstance(body, dict) or "error" in body:
        return None  # no such index (the 404 body)
    return shortest_gc_deletes(body)


def mget(transport: Transport, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
    """(index, id, routing) -> the stored document or None, in order (`cdc verify`).

    mget is realtime (it reads the translog), so no refresh is needed to see
    what the daemon has just written. A missing index is a missing document:
    indices named from column values exist only once a row needs them. A
    document's index is the name asked for: an alias stays the alias (cdc/es/aliases.py).
    """
    if not refs:
        return []
    docs = [{"_index": index, "_id": doc_id, **({"routing": routing} if routing is not None else {})}
            for index, doc_id, routing in refs]
    _, resp = transport.request("POST", "/_mget", body={"docs": docs})
    out: list[StoredDoc | None] = []
    for (index, doc_id, routing), doc in zip(refs, resp["docs"]):
        error = doc.get("error")
        if error:
            if isinstance(error, dict) and error.get("type") == "index_not_found_exception":
                out.append(None)
                continue
            if isinstance(error, dict) and error.get("type") == "security_exception":
                # OpenSearch's security plugin refuses mget per document, not per request
                # (Elasticsearch answers 403 for the whole request): the same set-up error.
                raise status_error(transport.product, 403, "", str(error.get("reason")), role=transport.role) \
                    or SinkError(str(error))
            raise SinkUnavailableError(f"{transport.product} could not get {index}/{doc_id}: {error}")
        out.append(StoredDoc(index, doc["_id"], int(doc["_version"]), doc.get("_source") or {},
                             doc.get("_routing", routing)) if doc.get("found") else None)
    return out


def scan_ids(transport: Transport, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
    """Every document of an index (or pattern) with its version and only `fields` of its source.

    A scroll, in no particular order (sorted by `_doc`: Elasticsearch 8 cannot sort by _id),
    as the libraries' `helpers.scan` makes it. A missing index is an empty one. Documents
    are named by `stored_index`.
    """
    for hit in _scroll(transport, index, {"query": {"match_all": {}}, "version": True,
                                          "_source": list(fields) if fields else False}, batch):
        yield StoredDoc(stored_index(index, hit["_index"]), hit["_id"], int(hit["_version"]),
                        hit.get("_source") or {}, hit.get("_routing"))


def _scroll(transport: Transport, index: str, query: dict, size: int) -> Iterator[dict]:
    _, resp = transport.request("POST", f"/{_path(index)}/_search", body={**query, "sort": "_doc"},
                                params={"scroll": SCROLL, "size": str(size), "ignore_unavailable": "true"})
    scroll_id = resp.get("_scroll_id")
    try:
        while scroll_id and resp.get("hits", {}).get("hits"):
            yield from resp["hits"]["hits"]
            shards = resp.get("_shards") or {}
            successful, skipped, total = (shards.get(k, 0) for k in ("successful", "skipped", "total"))
            if successful + skipped < total:
                # A page without some shards' documents: a scan that went on would miss them.
                message = (f"Scroll request has only succeeded on {successful} (+{skipped} skipped) shards "
                           f"out of {total}.")
                log.warning(message)
                raise SinkError(f"{transport.product} client error: ScanError: {message}")
            _, resp = transport.request("POST", "/_search/scroll", body={"scroll_id": scroll_id, "scroll": SCROLL})
            scroll_id = resp.get("_scroll_id")
    finally:
        if scroll_id:
            transport.request("DELETE", "/_search/scroll", body={"scroll_id": [scroll_id]}, missing_ok=True)


def refresh(transport: Transport, index: str) -> None:
    transport.request("POST", f"/{_path(index)}/_refresh")


def _path(index: str) -> str:
    """An index name (or pattern, or list) in a path, quoted as both libraries quote it."""
    return quote(index, safe=",*")


def stored_index(asked: str, found: str) -> str:
    """The index a read document is reported in: the name asked for, unless that was a pattern.

    Through an alias (cdc/es/aliases.py) Elasticsearch answers with the concrete index
    (`shop-orders_v2`); the actions cdc compares documents with (`cdc verify`) name the
    alias, as the rules do. A pattern (`orders-*`) names many indices, each its own.
    """
    return found if "*" in asked or "," in asked else asked


def shortest_gc_deletes(settings_by_index: Mapping[str, Any]) -> float | None:
    """`index.gc_deletes` in seconds from a get-settings answer (flat, defaults included), or None.

    A pattern can match several indices: the shortest window is the one to respect.
    """
    found = []
    for body in settings_by_index.values():
        if not isinstance(body, dict):
            continue
        for section in ("settings", "defaults"):
            value = (body.get(section) or {}).get("index.gc_deletes")
            if value:
                found.append(_seconds(value))
                break
    return min(found) if found else None


def _seconds(value: str) -> float:
    """An Elasticsearch time value ("60s", "500ms", "1m") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in ("ms", "s", "m", "h", "d"):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * units[unit]
    return float(value) / 1000  # a bare number is milliseconds
