"""Writing to OpenSearch: the only module that imports opensearch-py.

`OpenSearchSink` is `ElasticsearchSink` (cdc/es/sink.py) for OpenSearch 2.x and
3.x: the same methods, the same bulk body (`encode_bulk`), the same outcome per
item (`parse_bulk_response`), the same error classes. The elasticsearch client
cannot be used: it refuses any server without Elasticsearch's product header
("The client noticed that the server is not Elasticsearch and we do not support
this unknown product", seen against OpenSearch 2.19.1).

What OpenSearch does the same way, so nothing here differs from sink.py:
external versions (`version_type=external`) with 409 for a stale write,
`retry_on_conflict` on updates, routing, ingest pipelines, `filter_path`,
realtime `mget`, scroll, `index.gc_deletes`, composable index templates, 429
for a full write queue. What it lacks is refused where the config is read
(cdc/es/engine.py: API keys).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator, Mapping, Sequence

from opensearchpy import OpenSearch
from opensearchpy import exceptions as ose
from opensearchpy import helpers

from cdc.config import ElasticsearchConfig
from cdc.errors import SinkAccessError, SinkCertificateError, SinkError, SinkUnavailableError
from cdc.es.engine import Engine
from cdc.es.sink import (BULK_RESPONSE_FIELDS, _certificate_refused, encode_bulk,
                         parse_bulk_response, shortest_gc_deletes, stored_index)
from cdc.es.statuses import OPENSEARCH_ROLE, error_reason, status_error
from cdc.model import Action, BulkResult, StoredDoc

log = logging.getLogger("cdc.sink")


class _PoolWarningsOnly(logging.Filter):
    """opensearch-py logs every failed request at WARNING with a traceback; cdc translates
    each failure into one message of its own (and retries or stops), so of its warnings only
    the connection pool's are worth showing: which of several hosts failed and for how long it
    is set aside ("Connection <...: http://host:9200> has failed for 2 times in a row, putting
    on 2 second timeout."), which cdc's own message does not name. The Elasticsearch client's
    pool says the same (elastic_transport.node_pool, cdc/es/sink.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.module == "connection_pool"


logging.getLogger("opensearch").setLevel(logging.WARNING)
logging.getLogger("opensearch").addFilter(_PoolWarningsOnly())


class OpenSearchSink:
    def __init__(self, config: ElasticsearchConfig, engine: Engine | None = None):
        self.engine = engine
        kwargs: dict = dict(
            hosts=config.hosts,
            timeout=config.request_timeout,
            # As in sink.py: retries are the pipeline's job.
            max_retries=0,
            retry_on_timeout=False,
            # A failed host is set aside for 1 s, doubling at each failure in a row up to 32 s, as the
            # Elasticsearch client does (elastic_transport: 1 s up to 30 s). With opensearch-py's own 60 s,
            # doubling up to 32 min, a killed node of a three-node cluster, started again about a minute
            # after the kill, took cdc's writes again only 180 s after it (with these: 33 s; measured in
            # tests/integration/test_es_cluster.py).
            dead_timeout=1,
            timeout_cutoff=5,
        )
        if config.username:
            kwargs["http_auth"] = (config.username, config.password or "")
        if config.ca_certs:
            kwargs["ca_certs"] = config.ca_certs
        if config.ssl_assert_fingerprint:
            # The pin replaces the CA check, as elastic_transport does for Elasticsearch: urllib3
            # compares the fingerprint itself, also with verification off (its assert_fingerprint).
            kwargs.update(ssl_assert_fingerprint=config.ssl_assert_fingerprint.replace(":", "").lower(),
                          verify_certs=False, ssl_show_warn=False)
        if config.insecure:
            # Logged once at start-up (config.security_warnings), not per connection.
            kwargs.update(verify_certs=False, ssl_show_warn=False)
        self.client = OpenSearch(**kwargs)

    def close(self) -> None:
        self.client.close()

    def probe(self, path: str) -> tuple[int, Mapping[str, str], Any]:
        """(status, headers, body) of a GET, any status (cdc/es/engine.py reads them)."""
        try:
            connection = self.client.transport.get_connection()
            status, headers, raw = connection.perform_request("GET", path, ignore=range(300, 600),
                                                              headers={"accept": "application/json"})
        except Exception as exc:
            raise self._translate(exc) from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        return status, dict(headers), body

    def check(self) -> str:
        try:
            # No `timeout` here: opensearch-py takes it as the request's own timeout, not the API's.
            return str(self.client.cluster.health()["status"])
        except Exception as exc:
            raise self._translate(exc) from None

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        if not actions:
            return BulkResult(())
        params = {"filter_path": BULK_RESPONSE_FIELDS, **({"refresh": "wait_for"} if refresh else {})}
        try:
            resp = self.client.bulk(body=encode_bulk(actions), params=params)
        except Exception as exc:
            raise self._translate(exc) from None
        return parse_bulk_response(actions, resp)

    def gc_deletes(self, index: str) -> float | None:
        try:
            body = self.client.indices.get_settings(
                index=index, name="index.gc_deletes",
                params={"include_defaults": "true", "flat_settings": "true", "ignore": 404})
        except Exception as exc:
            raise self._translate(exc) from None
        if not isinstance(body, dict) or "error" in body:
            return None  # no such index (the 404 body)
        return shortest_gc_deletes(body)

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """As ElasticsearchSink.admin: (status, body); a 404 is an answer."""
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            resp = self.client.transport.perform_request(method, path, headers=headers, body=body)
        except ose.NotFoundError as exc:
            return 404, exc.info
        except Exception as exc:
            raise self._translate(exc) from None
        return 200, resp

    def mget(self, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
        if not refs:
            return []
        docs = [{"_index": index, "_id": doc_id, **({"routing": routing} if routing is not None else {})}
                for index, doc_id, routing in refs]
        try:
            resp = self.client.mget(body={"docs": docs})
        except Exception as exc:
            raise self._translate(exc) from None
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
                    raise SinkAccessError(f"OpenSearch denied access (403): {error.get('reason')} ({OPENSEARCH_ROLE})")
                raise SinkUnavailableError(f"OpenSearch could not get {index}/{doc_id}: {error}")
            out.append(StoredDoc(index, doc["_id"], int(doc["_version"]), doc.get("_source") or {},
                                 doc.get("_routing", routing)) if doc.get("found") else None)
        return out

    def scan_ids(self, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
        body = {"query": {"match_all": {}}, "version": True, "_source": list(fields) if fields else False}
        try:
            for hit in helpers.scan(self.client, query=body, index=index, size=batch, ignore_unavailable=True):
                yield StoredDoc(stored_index(index, hit["_index"]), hit["_id"], int(hit["_version"]),
                                hit.get("_source") or {}, hit.get("_routing"))
        except Exception as exc:
            raise self._translate(exc) from None

    def refresh(self, index: str) -> None:
        try:
            self.client.indices.refresh(index=index)
        except Exception as exc:
            raise self._translate(exc) from None

    @staticmethod
    def _translate(exc: Exception) -> SinkError:
        if isinstance(exc, ose.SSLError) and _certificate_refused(exc):
            return SinkCertificateError(
                f"OpenSearch's TLS certificate was refused: {exc.error}; check elasticsearch.ca_certs "
                "or ssl_assert_fingerprint, and that the host name in elasticsearch.hosts is in the certificate")
        if isinstance(exc, (ose.ConnectionError, ose.ConnectionTimeout)):
            return SinkUnavailableError(f"OpenSearch unreachable: {exc}")
        if isinstance(exc, ose.TransportError):
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            known = status_error("OpenSearch", status, f": {exc.error}", error_reason(exc.info, str(exc.error)),
                                 api_key=False, role=OPENSEARCH_ROLE)
            if known is not None:
                return known
            return SinkError(f"OpenSearch answered {status}: {exc.error} {exc.info if exc.info else ''}")
        if isinstance(exc, ose.OpenSearchException):
            return SinkError(f"OpenSearch client error: {type(exc).__name__}: {exc}")
        return SinkError(f"OpenSearch client error: {type(exc).__name__}: {exc}")
