"""Writing to Elasticsearch: the only module that imports the elasticsearch client.

`ElasticsearchSink.write(actions)` sends one `_bulk` request and returns a
`BulkResult` with an `Outcome` per action, in order. It never raises for item
failures (a 200 can carry failed items; the pipeline decides what to do) and
raises `SinkUnavailableError` when the request as a whole did not get through.

Every write is versioned (`version_type=external`, the version from the binlog
position), so a replay or a retry can never overwrite a newer document: a 409
means "a newer write is already there" and counts as done (`Outcome.STALE`),
and a delete of a missing document (404) is done as well.
"""

from __future__ import annotations

import logging
import re
import ssl
from typing import Any, Iterator, Mapping, Sequence

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch import ConnectionTimeout, TransportError, UnsupportedProductError, helpers
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from cdc.config import ElasticsearchConfig
from cdc.es.engine import Engine
from cdc.es.statuses import RETRY_STATUSES, error_reason, status_error
from cdc.errors import SinkCertificateError, SinkError, SinkUnavailableError
from cdc.model import (UPDATE_RETRY_ON_CONFLICT, Action, ActionType, BulkResult, EncodedActions, ItemResult, Outcome,
                       StoredDoc)

log = logging.getLogger("cdc.sink")

# Every item has a status, so none is filtered out and items still pair with actions in order;
# `errors` says whether any failed (parse_bulk_response).
BULK_RESPONSE_FIELDS = "errors,items.*.status,items.*.error"


class _OrjsonSerializer(JsonSerializer):
    """Documents are already JSON-safe (values.py), so orjson can encode them quickly."""

    def dumps(self, data) -> bytes:
        if isinstance(data, str):
            return data.encode()
        return orjson.dumps(data)

    def json_loads(self, data: bytes):
        # Responses too: a bulk response holds an item per action, and the standard
        # library's json took 10% of a native catch-up's GIL time (issue 19, py-spy).
        # orjson's errors are ValueErrors, which JsonSerializer.loads turns into
        # SerializationError as before.
        if data[:_ACKNOWLEDGED_LEN] == _ACKNOWLEDGED and b'"error"' not in data:
            # A bulk response in which every item succeeded: its items are counted
            # here and parsed only if asked for (orjson still took 9% of a native
            # catch-up's GIL time making a dict per item that nothing reads).
            return {"errors": False, "items": AcknowledgedItems(data)}
        return orjson.loads(data)


class _BulkBodySerializer(NdjsonSerializer):
    """`_bulk` bodies come encoded whole (`encode_bulk`, or Rust for snapshot chunks): sent as they are.

    The library's NDJSON serializer copies every body into a new bytearray to make sure
    it ends with a newline: a tenth of a 2,000-document request's CPU on the client
    (issue 13, `bench/costs.py request`: 1.19 -> 1.06 ms per request through the sink,
    0.79 ms through urllib3 alone). A body of ours always ends with one.
    """

    def dumps(self, data) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


# How a filtered bulk response in which no item failed begins (filter_path=BULK_RESPONSE_FIELDS:
# Elasticsearch writes `errors` before `items`, BulkResponse.toXContent; `took` is filtered out).
_ACKNOWLEDGED = b'{"errors":false,"items":['
_ACKNOWLEDGED_LEN = len(_ACKNOWLEDGED)


class AcknowledgedItems(Sequence):
    """The items of a bulk response with `"errors": false`, from its bytes: counted at once, parsed on demand.

    With `filter_path=errors,items.*.status,items.*.error` and no failed item, every
    item is `{"<op>":{"status":N}}` and nothing else in the body says `"status"`,
    so counting that key counts the items (the count is still checked against the
    actions sent, `parse_bulk_response`). Any `"error"` in the body, or another
    beginning, and the serializer parses the whole body as before.
    """

    def __init__(self, data: bytes):
        self._data = data
        self._count = data.count(b'"status"')
        self._parsed: list | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if self._parsed is None:
            self._parsed = orjson.loads(self._data)["items"]
        return self._parsed[index]


def encode_bulk(actions: Sequence[Action]) -> bytes:
    """The NDJSON body of a `_bulk` request.

    Documents go in as the bytes each action already encoded once (`Action.doc_json`,
    also used to size batches), so they are not serialised again here or on a re-send.
    Action lines are put together from pieces, each index name encoded once per body:
    the same bytes orjson makes of the metadata dict (tests/unit/test_sink.py compares
    them), at about half the cost (issue 19: encode_bulk was a tenth of a native
    catch-up's interpreter time). Actions of the native row path bring their action
    line along (`Action.bulk_meta`).
    """
    if actions.__class__ is EncodedActions:
        return actions.body  # encoded with the actions (a snapshot chunk)
    lines: list[bytes] = []
    append = lines.append
    dumps = orjson.dumps
    names: dict[str, bytes] = {}
    for action in actions:
        line = action.bulk_meta
        if line is not None:  # made with the action from the same fields (native/src/actions.rs)
            append(line)
            kind = action.type
            if kind is ActionType.INDEX:
                append(_doc_json(action))
            elif kind is ActionType.UPDATE:
                append(b'{"doc":' + _doc_json(action) + b',"doc_as_upsert":true}')
            continue
        index = action.index
        name = names.get(index)
        if name is None:
            name = names[index] = dumps(index)
        meta = b'{"_index":' + name + b',"_id":' + dumps(action.doc_id)
        kind = action.type
        # Updates cannot carry an external version (Elasticsearch refuses it), so
        # rules in mode: update write unversioned, deletes included.
        if action.versioned and kind is not ActionType.UPDATE:
            meta += b',"version":%d,"version_type":"external"' % action.version
        if action.routing is not None:
            meta += b',"routing":' + dumps(action.routing)
        if kind is ActionType.INDEX:
            if action.pipeline:
                meta += b',"pipeline":' + dumps(action.pipeline)
            append(b'{"index":' + meta + b'}}')
            append(_doc_json(action))
        elif kind is ActionType.UPDATE:
            # Concurrent updates of one document (several tables building it)
            # conflict on its internal version; Elasticsearch re-applies them itself.
            append(b'{"update":' + meta + b',"retry_on_conflict":%d}}' % UPDATE_RETRY_ON_CONFLICT)
            # The same bytes orjson makes of {"doc": doc, "doc_as_upsert": True}.
            append(b'{"doc":' + _doc_json(action) + b',"doc_as_upsert":true}')
        else:
            append(b'{"delete":' + meta + b'}}')
    append(b"")
    return b"\n".join(lines)


def _doc_json(action: Action) -> bytes:
    doc = action.doc_json
    return doc if doc is not None else b"null"


def classify(action: Action, item: dict) -> ItemResult:
    """One item of a bulk response -> its outcome."""
    status = int(item.get("status", 0))
    error = item.get("error")
    if 200 <= status < 300:
        return ItemResult(action, Outcome.OK, status)
    if status == 404 and action.type is ActionType.DELETE and not error:
        return ItemResult(action, Outcome.OK, status)  # already gone
    error_type = error.get("type") if isinstance(error, dict) else str(error or "")
    reason = error.get("reason") if isinstance(error, dict) else None
    if status == 409 and error_type == "version_conflict_engine_exception":
        if action.type is ActionType.UPDATE or not action.versioned:
            # Unversioned: a conflict means another write got in between, not that
            # a newer one is there. Sending it again is right; counting it done would lose it.
            return ItemResult(action, Outcome.RETRY, status, error_type, reason)
        return ItemResult(action, Outcome.STALE, status, error_type, reason)
    if status in RETRY_STATUSES:
        return ItemResult(action, Outcome.RETRY, status, error_type, reason)
    return ItemResult(action, Outcome.REJECTED, status, error_type, reason)


def parse_bulk_response(actions: Sequence[Action], body: dict) -> BulkResult:
    items = body.get("items") or []
    if len(items) != len(actions):
        raise SinkError(f"bulk response has {len(items)} items for {len(actions)} actions")
    if body.get("errors") is False:
        return _Acknowledged(actions, items)
    # Items come back in request order (Elasticsearch bulk API reference).
    return BulkResult(_classified(actions, items))


def _classified(actions: Sequence[Action], items: list) -> tuple[ItemResult, ...]:
    return tuple(classify(a, next(iter(i.values()))) for a, i in zip(actions, items))


class _Acknowledged(BulkResult):
    """A bulk response with `"errors": false`: every item succeeded, and its results are made only if asked for.

    `errors` is true if any item failed (Elasticsearch and OpenSearch bulk API
    reference, response body); a delete of a missing document is not a failure
    (its 404 comes with `errors: false`, checked on 8.19), and `classify` counts
    it done too. So no item is STALE, RETRY or REJECTED, and `BulkWriter` asks for
    nothing else: a writer no longer makes an `ItemResult` per acknowledged action
    (issue 19: about 0.6 of the 0.9 us per action that parsing a response cost).
    """

    _response: tuple[Sequence[Action], list]

    def __init__(self, actions: Sequence[Action], items: list):
        object.__setattr__(self, "_response", (actions, items))

    @property
    def items(self) -> tuple[ItemResult, ...]:
        actions, items = self._response
        return _classified(actions, items)

    def with_outcome(self, *outcomes: Outcome) -> list[ItemResult]:
        return list(self.items) if Outcome.OK in outcomes else []


_JSON_MEDIA_TYPE = re.compile(r"^application/(json|x-ndjson)$")


class Elasticsearch7(Elasticsearch):
    """The 8.x client for Elasticsearch 7.17: the same API, with 7's media type.

    Why not the elasticsearch7 package beside this one: it would be a second client
    with its own exceptions, response objects and TLS options, for a server whose
    wire protocol for every API cdc uses (bulk, mget, scroll, settings, health,
    index and template admin) is the same. What differs is the media type: the
    8.x client asks for `application/vnd.elasticsearch+json; compatible-with=8`,
    which 7.17 accepts only because it does not check the version (tried on
    7.17.29); `compatible-with=7` is what 7.x clients send in compatibility mode
    (elasticsearch-py 7.x, ELASTIC_CLIENT_APIVERSIONING) and what 7.17 documents.
    Every request goes through `perform_request` (namespaced clients and
    `options()` call it on this class too), so rewriting the headers here covers all.
    """

    def perform_request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                        headers: Mapping[str, str] | None = None, body: Any | None = None,
                        endpoint_id: str | None = None, path_parts: Mapping[str, Any] | None = None):
        if headers:
            headers = {key: _JSON_MEDIA_TYPE.sub(r"application/vnd.elasticsearch+\1; compatible-with=7", value)
                       if key.lower() in ("accept", "content-type") else value for key, value in headers.items()}
        return super().perform_request(method, path, params=params, headers=headers, body=body,
                                       endpoint_id=endpoint_id, path_parts=path_parts)


class _ProbeNodePool(elastic_transport.NodePool):
    """The node pool of the client that only asks what the server is (`probe`, cdc/es/destination.py).

    The transport marks a node dead for any answer outside 2xx and 400-404
    (elastic_transport's NOT_DEAD_NODE_HTTP_STATUSES) and logs a warning that it "has
    failed", then another when the next request succeeds. The integ-test build answers
    `GET /` with 405 (cdc/es/engine.py), so every start against it warned twice about
    a healthy node. The probe client makes one or two requests and is thrown away, so
    which of its nodes the pool takes for dead never matters: it marks none. A node that
    cannot be reached is reported by cdc's own retry line (cdc/app/session.py patiently).
    """

    def mark_dead(self, node, _now=None) -> None:
        pass

    def mark_live(self, node) -> None:
        pass


class ElasticsearchSink:
    def __init__(self, config: ElasticsearchConfig, engine: Engine | None = None):
        kwargs: dict = dict(
            hosts=config.hosts,
            request_timeout=config.request_timeout,
            # Retries are the pipeline's job (one place decides); the transport
            # must not resend a whole bulk behind our back.
            max_retries=0,
            retry_on_timeout=False,
            # The compatibility mimetypes ("application/vnd.elasticsearch+...") take the same ones.
            serializers={"application/json": _OrjsonSerializer(), "application/x-ndjson": _BulkBodySerializer()},
        )
        if config.api_key:
            kwargs["api_key"] = config.api_key
        elif config.username:
            kwargs["basic_auth"] = (config.username, config.password or "")
        if config.ca_certs:
            kwargs["ca_certs"] = config.ca_certs
        if config.ssl_assert_fingerprint:
            kwargs["ssl_assert_fingerprint"] = config.ssl_assert_fingerprint
        if config.insecure:
            # Explicit in the config and logged at start-up (config.security_warnings);
            # the client's own warning on every connection would only repeat it.
            kwargs.update(verify_certs=False, ssl_show_warn=False)
        # `engine` is what cdc/es/destination.py found; None before (the probe itself).
        self.engine = engine
        if engine is None:
            kwargs["node_pool_class"] = _ProbeNodePool
        self.client = (Elasticsearch7 if engine is not None and engine.legacy_media_type else Elasticsearch)(**kwargs)

    def close(self) -> None:
        self.client.close()

    def probe(self, path: str) -> tuple[int, Mapping[str, str], Any]:
        """(status, headers, body) of a GET, whatever the server (cdc/es/engine.py tells them apart).

        An error status is an answer here, and so is a server without Elasticsearch's
        product header: the client refuses it (UnsupportedProductError) but keeps
        what it said, which is how OpenSearch is recognised.
        """
        try:
            resp = self.client.perform_request("GET", path, headers={"accept": "application/json"})
        except (ApiError, UnsupportedProductError) as exc:
            return exc.meta.status, exc.meta.headers, exc.body
        except Exception as exc:
            raise self._translate(exc) from None
        return resp.meta.status, resp.meta.headers, resp.body

    def check(self) -> str:
        """Fail fast if the cluster is unreachable or not Elasticsearch; return its health status."""
        try:
            return str(self.client.cluster.health(timeout="5s")["status"])
        except Exception as exc:
            raise self._translate(exc) from None

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        if not actions:
            return BulkResult(())
        # refresh=wait_for does not force a refresh: the answer waits for the next
        # scheduled one (index.refresh_interval), then the writes are searchable
        # (Elasticsearch reference, "?refresh").
        try:
            # Only what parse_bulk_response reads: a fifth of the response to send and parse.
            resp = self.client.bulk(body=encode_bulk(actions), filter_path=BULK_RESPONSE_FIELDS,  # type: ignore[arg-type]
                                    refresh="wait_for" if refresh else None)
        except Exception as exc:
            raise self._translate(exc) from None
        return parse_bulk_response(actions, resp.body)

    def gc_deletes(self, index: str) -> float | None:
        """The index's `index.gc_deletes` in seconds (how long delete tombstones are kept), if it exists."""
        try:
            resp = self.client.options(ignore_status=404).indices.get_settings(
                index=index, name="index.gc_deletes", include_defaults=True, flat_settings=True)
        except Exception as exc:
            raise self._translate(exc) from None
        return shortest_gc_deletes(resp.body or {})

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """One index-administration request (cdc/es/indices.py): (status, body); a 404 is an answer, not an error."""
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            resp = self.client.perform_request(method, path, headers=headers, body=body)
        except ApiError as exc:
            if exc.meta is not None and exc.meta.status == 404:
                return 404, exc.body
            raise self._translate(exc) from None
        except Exception as exc:
            raise self._translate(exc) from None
        return resp.meta.status, resp.body

    def mget(self, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
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
        try:
            resp = self.client.mget(docs=docs)
        except Exception as exc:
            raise self._translate(exc) from None
        out: list[StoredDoc | None] = []
        for (index, doc_id, routing), doc in zip(refs, resp.body["docs"]):
            error = doc.get("error")
            if error:
                if isinstance(error, dict) and error.get("type") == "index_not_found_exception":
                    out.append(None)
                    continue
                raise SinkUnavailableError(f"Elasticsearch could not get {index}/{doc_id}: {error}")
            out.append(StoredDoc(index, doc["_id"], int(doc["_version"]), doc.get("_source") or {},
                                 doc.get("_routing", routing)) if doc.get("found") else None)
        return out

    def scan_ids(self, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
        """Every document of an index (or pattern) with its version and only `fields` of its source.

        A scroll, in no particular order: Elasticsearch 8 cannot sort by _id. A
        missing index is an empty one. Documents are named by `stored_index`.
        """
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
        if isinstance(exc, elastic_transport.TlsError) and _certificate_refused(exc):
            return SinkCertificateError(
                f"Elasticsearch's TLS certificate was refused: {exc.message}; check elasticsearch.ca_certs "
                "or ssl_assert_fingerprint, and that the host name in elasticsearch.hosts is in the certificate")
        if isinstance(exc, (EsConnectionError, ConnectionTimeout, elastic_transport.TransportError)) and not isinstance(exc, ApiError):
            return SinkUnavailableError(f"Elasticsearch unreachable: {exc}")
        if isinstance(exc, ApiError):
            status = exc.meta.status if exc.meta else 0
            known = status_error("Elasticsearch", status, f": {exc.message}", error_reason(exc.body, str(exc.message)))
            if known is not None:
                return known
            return SinkError(f"Elasticsearch answered {status}: {exc.message} {exc.body if exc.body else ''}")
        if isinstance(exc, TransportError):
            return SinkUnavailableError(f"Elasticsearch transport error: {exc}")
        return SinkError(f"Elasticsearch client error: {type(exc).__name__}: {exc}")


def stored_index(asked: str, found: str) -> str:
    """The index a read document is reported in: the name asked for, unless that was a pattern.

    Through an alias (cdc/es/aliases.py) Elasticsearch answers with the concrete index
    (`shop-orders_v2`); the actions cdc compares documents with (`cdc verify`) name the
    alias, as the rules do. A pattern (`orders-*`) names many indices, each its own.
    """
    return found if "*" in asked or "," in asked else asked


def _certificate_refused(exc: BaseException) -> bool:
    """Did verification fail (as opposed to a handshake cut short by a restarting server)?"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        # urllib3 checks a pinned fingerprint itself and says so in a plain SSLError.
        if "Fingerprints did not match" in str(seen) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
