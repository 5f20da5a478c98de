"""The client of the search cluster, one for every engine: cdc/es/destination.py hands it out.

`ElasticsearchSink.write(actions)` sends one `_bulk` request (cdc/es/bulk.py) and returns a
`BulkResult` with an `Outcome` per action, in order. It never raises for item failures (a 200
can carry failed items; the pipeline decides what to do) and raises `SinkUnavailableError`
when the request as a whole did not get through. Reads and index administration are
cdc/es/admin.py's. Which client library carries the requests is the `Transport`'s business
(cdc/es/transport.py): elasticsearch-py for Elasticsearch 7.17, 8 and 9, opensearch-py for
OpenSearch; this class and everything above it are the same for all of them.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from cdc.config import ElasticsearchConfig
from cdc.es import admin, transport
from cdc.es.admin import shortest_gc_deletes, stored_index
from cdc.es.bulk import BULK_RESPONSE_FIELDS, AcknowledgedItems, classify, encode_bulk, parse_bulk_response
from cdc.es.engine import Engine
from cdc.model import Action, BulkResult, StoredDoc

# The names of bulk.py and admin.py stay importable from here, where they were before issue 29
# (tests, bench/, branches in flight).
__all__ = ["ElasticsearchSink", "BULK_RESPONSE_FIELDS", "AcknowledgedItems", "classify", "encode_bulk",
           "parse_bulk_response", "shortest_gc_deletes", "stored_index"]


class ElasticsearchSink:
    """The Sink and SearchAdmin of cdc/stream/protocols.py, for Elasticsearch and OpenSearch alike.

    `engine` is what cdc/es/destination.py found; None before (the probe itself), when the
    transport is the configured engine's (`elasticsearch.engine`)."""

    def __init__(self, config: ElasticsearchConfig, engine: Engine | None = None):
        self.engine = engine
        self.transport = transport.connect(config, engine)

    def close(self) -> None:
        self.transport.close()

    def probe(self, path: str) -> tuple[int, Mapping[str, str], Any]:
        """(status, headers, body) of a GET, whatever the server (cdc/es/engine.py tells them apart)."""
        return self.transport.probe(path)

    def check(self) -> str:
        """Fail fast if the cluster is unreachable or refuses cdc; return its health status."""
        return admin.health(self.transport)

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        if not actions:
            return BulkResult(())
        # Only what parse_bulk_response reads: a fifth of the response to send and parse.
        # refresh=wait_for does not force a refresh: the answer waits for the next
        # scheduled one (index.refresh_interval), then the writes are searchable
        # (Elasticsearch reference, "?refresh").
        params = _REFRESH_PARAMS if refresh else _PARAMS
        _, body = self.transport.request("PUT", "/_bulk", params=params, body=encode_bulk(actions), ndjson=True)
        return parse_bulk_response(actions, body)

    def gc_deletes(self, index: str) -> float | None:
        return admin.gc_deletes(self.transport, index)

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        return admin.admin(self.transport, method, path, body)

    def mget(self, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
        return admin.mget(self.transport, refs)

    def scan_ids(self, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
        return admin.scan_ids(self.transport, index, fields, batch)

    def refresh(self, index: str) -> None:
        admin.refresh(self.transport, index)


_PARAMS = {"filter_path": BULK_RESPONSE_FIELDS}
_REFRESH_PARAMS = {**_PARAMS, "refresh": "wait_for"}
