"""The sink commands use: finds which engine is at `elasticsearch.hosts` and writes through its transport.

`Destination(config)` makes no request. The first `check()` (which the
commands retry while the cluster is unreachable) asks the server what it is
(cdc/es/engine.py), refuses a mismatch with `elasticsearch.engine` or an
unsupported version (exit code 2), and from then on every call goes to one
`ElasticsearchSink` (cdc/es/sink.py) over that engine's transport
(cdc/es/transport.py: elasticsearch-py for Elasticsearch 8 and 9, the same with
Elasticsearch 7's media type for 7.17, opensearch-py for OpenSearch). Only
cdc/es/transport.py knows which client library it talks through; the rest of cdc
sees the Protocols of cdc/stream/protocols.py.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

from cdc.config import ElasticsearchConfig
from cdc.es.engine import (NODES_VERSION_PATH, PRODUCT_NAMES, Engine, UnknownServer, check_supported, from_nodes,
                           from_root, refuse)
from cdc.es.sink import ElasticsearchSink
from cdc.es.statuses import ELASTICSEARCH_ROLE, error_reason, status_error
from cdc.model import Action, BulkResult, StoredDoc

log = logging.getLogger("cdc.sink")


def detect(sink: ElasticsearchSink) -> Engine:
    """Ask the server what it is: `GET /`, else the nodes info API (cdc/es/engine.py says why)."""
    status, headers, body = _answer(sink, "/")
    engine = from_root(status, headers, body)
    if engine is None:
        status, headers, body = _answer(sink, NODES_VERSION_PATH)
        if status != 200:
            raise UnknownServer(f"the server at elasticsearch.hosts answered GET / and GET {NODES_VERSION_PATH} "
                                f"with {status}: {str(body)[:300]}")
        engine = from_nodes(headers, body)
    return engine


def _answer(sink: ElasticsearchSink, path: str) -> tuple[int, Any, Any]:
    status, headers, body = sink.probe(path)
    # Which product answered is what this asks; 401 carries no message worth repeating here.
    known = status_error("the search cluster", status, f" to GET {path}" if status not in (401, 403) else "",
                         error_reason(body, str(body)[:300]),
                         role=f"cdc reads the server's version with the cluster privilege `monitor`; {ELASTICSEARCH_ROLE}")
    if known is not None and status != 413:
        raise known
    return status, headers, body


class Destination:
    def __init__(self, config: ElasticsearchConfig):
        self.config = config
        self.engine: Engine | None = None
        self._sink: ElasticsearchSink | None = None
        if config.engine != "auto":
            refuse(config.engine, bool(config.api_key))  # before any request

    def connect(self) -> ElasticsearchSink:
        """The engine's sink, after finding the engine (once)."""
        if self._sink is not None:
            return self._sink
        config = self.config
        probe = ElasticsearchSink(config)  # through the configured engine's library (auto: Elasticsearch's)
        try:
            engine = detect(probe)
        finally:
            probe.close()
        check_supported(engine, config.engine)
        refuse(engine, bool(config.api_key))
        self.engine = engine
        self._sink = ElasticsearchSink(config, engine)
        log.info("destination: %s at %s", engine.name, config.addresses)
        return self._sink

    @property
    def product(self) -> str:
        """"Elasticsearch" or "OpenSearch": the one that answered, before any answer the one configured."""
        if self.engine is not None:
            return PRODUCT_NAMES[self.engine.product]
        return PRODUCT_NAMES["opensearch" if self.config.engine == "opensearch" else "elasticsearch"]

    # The Sink and SearchAdmin of cdc/stream/protocols.py.
    def check(self) -> str:
        return self.connect().check()

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        return (self._sink or self.connect()).write(actions, refresh)

    def gc_deletes(self, index: str) -> float | None:
        return self.connect().gc_deletes(index)

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        return self.connect().admin(method, path, body)

    def mget(self, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
        return self.connect().mget(refs)

    def scan_ids(self, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
        return self.connect().scan_ids(index, fields, batch)

    def refresh(self, index: str) -> None:
        self.connect().refresh(index)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
