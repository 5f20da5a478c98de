import ssl
from typing import Any, Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig, TlsError
from elasticsearch import ApiError, BadRequestError, ConnectionError, ConnectionTimeout, TransportError

from cdc.errors import RequestTooLargeError, SinkAccessError, SinkCertificateError, SinkError, SinkUnavailableError
from cdc.model import Action, ActionType, BinlogPosition, BulkResult, Outcome
from cdc.es.bulk import classify, encode_bulk, parse_bulk_response
from cdc.es.sink import ElasticsearchSink
from cdc.es.transport import ElasticsearchTransport

POS = BinlogPosition("binlog.000001", 300)


def index(doc_id="1", doc=None, version=10, routing=None, index="items"):
    return Action(ActionType.INDEX, index, doc_id, version, doc if doc is not None else {"id": doc_id},
                  routing=routing, schema="shop", table="items", position=POS)


def delete(doc_id="1", version=10, routing=None, index="items"):
    return Action(ActionType.DELETE, index, doc_id, version, routing=routing, schema="shop", table="items",
                  position=POS)


# ---------------------------------------------------------------- encode_bulk
def test_encode_bulk_index_and_delete():
    body = encode_bulk([index("1", {"id": 1, "name": "pen"}, version=5), delete("2", version=6)])
    assert body.endswith(b"\n")
    lines = body.split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == 3
    assert orjson.loads(lines[0]) == {"index": {"_index": "items", "_id": "1", "version": 5,
                                                "version_type": "external"}}
    assert orjson.loads(lines[1]) == {"id": 1, "name": "pen"}
    assert orjson.loads(lines[2]) == {"delete": {"_index": "items", "_id": "2", "version": 6,
                                                 "version_type": "external"}}


def test_encode_bulk_routing_only_when_set():
    body = encode_bulk([index("1", routing="r1"), delete("2", routing="r2"), index("3")])
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert lines[0]["index"]["routing"] == "r1"
    assert lines[2]["delete"]["routing"] == "r2"
    assert "routing" not in lines[3]["index"]


def test_encode_bulk_delete_only():
    body = encode_bulk([delete("a"), delete("b")])
    lines = body.splitlines()
    assert len(lines) == 2
    assert all("delete" in orjson.loads(line) for line in lines)
    assert body.count(b"\n") == 2


def _encode_bulk_with_dicts(actions) -> bytes:
    """encode_bulk as it was written before issue 19: a dict per action line, encoded by orjson."""
    lines = []
    for action in actions:
        meta = {"_index": action.index, "_id": action.doc_id}
        if action.versioned and action.type is not ActionType.UPDATE:
            meta.update(version=action.version, version_type="external")
        if action.routing is not None:
            meta["routing"] = action.routing
        doc = action.doc_json if action.doc_json is not None else b"null"
        if action.type is ActionType.INDEX:
            if action.pipeline:
                meta["pipeline"] = action.pipeline
            lines += [orjson.dumps({"index": meta}), doc]
        elif action.type is ActionType.UPDATE:
            meta["retry_on_conflict"] = 3
            lines += [orjson.dumps({"update": meta}), orjson.dumps({"doc": orjson.loads(doc), "doc_as_upsert": True})]
        else:
            lines.append(orjson.dumps({"delete": meta}))
    return b"\n".join([*lines, b""])


_names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12)


@given(st.lists(st.tuples(st.sampled_from(list(ActionType)), _names, _names, st.integers(0, 2**64 - 1),
                          st.none() | _names, st.none() | _names, st.booleans(),
                          st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3)),
                max_size=12))
@settings(max_examples=100, deadline=None)
def test_encode_bulk_gives_the_bytes_orjson_gives_for_the_metadata_dicts(specs):
    actions = [Action(kind, index_name, doc_id, version, None if kind is ActionType.DELETE else doc, routing=routing,
                      schema="shop", table="items", position=POS, pipeline=pipeline, versioned=versioned)
               for kind, index_name, doc_id, version, routing, pipeline, versioned, doc in specs]
    assert encode_bulk(actions) == _encode_bulk_with_dicts(actions)


def test_encode_bulk_large_version_and_unicode():
    body = encode_bulk([index("ü", {"t": "naïve"}, version=2**63 - 1)])
    meta, doc = (orjson.loads(line) for line in body.splitlines())
    assert meta["index"]["version"] == 2**63 - 1
    assert meta["index"]["_id"] == "ü"
    assert doc == {"t": "naïve"}


# ---------------------------------------------------------------- classify
def test_classify_created_ok():
    item = classify(index(), {"_index": "items", "_id": "1", "status": 201, "result": "created"})
    assert item.outcome is Outcome.OK
    assert item.status == 201


def test_classify_updated_ok():
    assert classify(index(), {"status": 200, "result": "updated"}).outcome is Outcome.OK


def test_classify_delete_not_found_ok():
    item = classify(delete(), {"_index": "items", "_id": "1", "status": 404, "result": "not_found"})
    assert item.outcome is Outcome.OK
    assert item.status == 404


def test_classify_index_404_is_rejected():
    item = classify(index(), {"status": 404, "error": {"type": "index_not_found_exception", "reason": "no such"}})
    assert item.outcome is Outcome.REJECTED


def test_classify_version_conflict_stale():
    item = classify(index(), {"status": 409, "error": {
        "type": "version_conflict_engine_exception",
        "reason": "[1]: version conflict, current version [20] is higher or equal to the one provided [10]"}})
    assert item.outcome is Outcome.STALE
    assert item.error_type == "version_conflict_engine_exception"
    assert item.reason is not None and "version conflict" in item.reason


def test_classify_other_409_is_rejected():
    item = classify(index(), {"status": 409, "error": {"type": "something_else", "reason": "x"}})
    assert item.outcome is Outcome.REJECTED


@pytest.mark.parametrize("status, error_type", [
    (429, "es_rejected_execution_exception"),
    (503, "unavailable_shards_exception"),
    (500, "internal"),
    (502, "bad_gateway"),
    (504, "timeout"),
])
def test_classify_retry(status, error_type):
    item = classify(index(), {"status": status, "error": {"type": error_type, "reason": "busy"}})
    assert item.outcome is Outcome.RETRY
    assert item.status == status
    assert item.error_type == error_type
    assert item.reason == "busy"


def test_classify_mapping_error_rejected():
    item = classify(index(), {"status": 400, "error": {
        "type": "mapper_parsing_exception", "reason": "failed to parse field [price] of type [long]"}})
    assert item.outcome is Outcome.REJECTED
    assert item.status == 400
    assert item.error_type == "mapper_parsing_exception"
    assert item.reason == "failed to parse field [price] of type [long]"


def test_classify_string_error():
    item = classify(index(), {"status": 400, "error": "bad thing"})
    assert item.outcome is Outcome.REJECTED
    assert item.error_type == "bad thing"
    assert item.reason is None


# ---------------------------------------------------------------- parse_bulk_response
def test_parse_bulk_response_mixed_in_order():
    actions = [index("1"), delete("2"), index("3"), index("4"), delete("5")]
    body = {
        "took": 3,
        "errors": True,
        "items": [
            {"index": {"_index": "items", "_id": "1", "_version": 10, "result": "created", "status": 201}},
            {"delete": {"_index": "items", "_id": "2", "_version": 10, "result": "not_found", "status": 404}},
            {"index": {"_index": "items", "_id": "3", "status": 409,
                       "error": {"type": "version_conflict_engine_exception", "reason": "conflict"}}},
            {"index": {"_index": "items", "_id": "4", "status": 429,
                       "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
            {"delete": {"_index": "items", "_id": "5", "status": 400,
                        "error": {"type": "illegal_argument_exception", "reason": "bad"}}},
        ],
    }
    result = parse_bulk_response(actions, body)
    assert isinstance(result, BulkResult)
    assert [i.action for i in result.items] == actions
    assert [i.outcome for i in result.items] == [Outcome.OK, Outcome.OK, Outcome.STALE, Outcome.RETRY,
                                                 Outcome.REJECTED]
    assert [i.action.doc_id for i in result.with_outcome(Outcome.RETRY, Outcome.REJECTED)] == ["4", "5"]


def test_parse_bulk_response_without_errors_makes_item_results_only_when_asked():
    actions = [index("1"), delete("2"), index("3")]
    body: dict[str, Any] = {"errors": False, "items": [{"index": {"status": 201}}, {"delete": {"status": 404}},
                                       {"index": {"status": 200}}]}
    result = parse_bulk_response(actions, body)
    # What BulkWriter asks for: nothing failed, so nothing to retry, count stale or reject.
    assert result.with_outcome(Outcome.REJECTED) == result.with_outcome(Outcome.STALE, Outcome.RETRY) == []
    # The items are the ones classify gives, when someone asks.
    assert result.items == tuple(classify(a, next(iter(i.values()))) for a, i in zip(actions, body["items"]))
    assert [(i.outcome, i.status) for i in result.items] == [(Outcome.OK, 201), (Outcome.OK, 404), (Outcome.OK, 200)]
    assert result.with_outcome(Outcome.OK, Outcome.STALE) == list(result.items)
    # Without the `errors` flag (or with it true) every item is classified at once, as before.
    assert parse_bulk_response(actions, {"items": body["items"]}).items == result.items


def test_bulk_requests_ask_for_the_errors_flag_and_each_items_status():
    from cdc.es.bulk import BULK_RESPONSE_FIELDS

    assert set(BULK_RESPONSE_FIELDS.split(",")) == {"errors", "items.*.status", "items.*.error"}


def test_acknowledged_bulk_responses_are_counted_not_parsed_and_give_the_same_results():
    from cdc.es.bulk import AcknowledgedItems
    from cdc.es.transport import _OrjsonSerializer

    loads = _OrjsonSerializer().json_loads
    actions = [index("1"), delete("2"), index("3")]
    items = [{"index": {"status": 201}}, {"delete": {"status": 404}}, {"index": {"status": 200}}]
    data = orjson.dumps({"errors": False, "items": items})
    body = loads(data)
    assert isinstance(body["items"], AcknowledgedItems) and len(body["items"]) == 3
    assert body["items"]._parsed is None  # counted, not parsed
    result = parse_bulk_response(actions, body)
    assert result.with_outcome(Outcome.REJECTED) == result.with_outcome(Outcome.STALE, Outcome.RETRY) == []
    assert result.items == parse_bulk_response(actions, orjson.loads(data)).items
    assert [(i.outcome, i.status) for i in result.items] == [(Outcome.OK, 201), (Outcome.OK, 404), (Outcome.OK, 200)]
    # The count is still checked against the actions sent.
    with pytest.raises(SinkError, match="3 items for 2 actions"):
        parse_bulk_response(actions[:2], loads(data))


@pytest.mark.parametrize("body", [
    {"errors": True, "items": [{"index": {"status": 201}}, {"index": {"status": 429, "error": {"type": "x"}}}]},
    {"items": [{"index": {"status": 201}}], "errors": False},  # another order: parsed as before
    {"errors": False, "items": [{"index": {"status": 201, "error": "odd"}}]},
    {"error": {"type": "x"}, "status": 400},
    {"cluster_name": "c", "status": "green"},
])
def test_other_responses_are_parsed_whole(body):
    from cdc.es.transport import _OrjsonSerializer

    assert _OrjsonSerializer().json_loads(orjson.dumps(body)) == body


def test_parse_bulk_response_item_count_mismatch():
    with pytest.raises(SinkError, match="1 items for 2 actions"):
        parse_bulk_response([index("1"), index("2")], {"items": [{"index": {"status": 201}}]})


def test_parse_bulk_response_missing_items():
    with pytest.raises(SinkError, match="0 items for 1 actions"):
        parse_bulk_response([index("1")], {"errors": False})


# ---------------------------------------------------------------- _translate
def meta(status):
    return ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.01,
                           node=NodeConfig("http", "localhost", 9200))


def test_translate_connection_error():
    exc = ConnectionError("Connection error", errors=(OSError("refused"),))
    out = ElasticsearchTransport.translate(exc)
    assert isinstance(out, SinkUnavailableError)
    assert out.retriable
    assert "unreachable" in str(out)


def test_translate_connection_timeout():
    out = ElasticsearchTransport.translate(ConnectionTimeout("Connection timed out"))
    assert isinstance(out, SinkUnavailableError)


def test_translate_generic_transport_error():
    assert isinstance(ElasticsearchTransport.translate(TransportError("boom")), SinkUnavailableError)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_translate_api_error_retry_statuses(status):
    exc = ApiError("unavailable", meta(status), {"error": "busy", "status": status})
    out = ElasticsearchTransport.translate(exc)
    assert isinstance(out, SinkUnavailableError)
    assert str(status) in str(out)


def test_translate_api_error_400_is_not_retriable():
    body = {"error": {"root_cause": [{"type": "parse_exception", "reason": "bad"}], "type": "parse_exception",
                      "reason": "request body is required"}, "status": 400}
    out = ElasticsearchTransport.translate(BadRequestError("parse_exception", meta(400), body))
    assert isinstance(out, SinkError)
    assert not isinstance(out, SinkUnavailableError)
    assert not out.retriable
    assert "400" in str(out)
    assert "request body is required" in str(out)


def test_translate_401_names_the_settings_to_check():
    body = {"error": {"type": "security_exception", "reason": "unable to authenticate user [cdc] for REST request [/_bulk]"},
            "status": 401}
    out = ElasticsearchTransport.translate(ApiError("security_exception", meta(401), body))
    assert type(out) is SinkAccessError and not out.retriable
    assert "401" in str(out) and "elasticsearch.username" in str(out) and "api_key" in str(out)


def test_translate_403_gives_the_servers_reason():
    reason = ("action [cluster:monitor/health] is unauthorized for user [cdc] with effective roles [writer], "
              "this action is granted by the cluster privileges [monitor,manage,all]")
    out = ElasticsearchTransport.translate(ApiError("security_exception", meta(403),
                                                {"error": {"type": "security_exception", "reason": reason}}))
    assert type(out) is SinkAccessError
    assert reason in str(out) and "Minimal Elasticsearch role" in str(out)


def _tls_error(cause: Exception) -> TlsError:
    try:
        try:
            raise cause
        except Exception as inner:
            raise TlsError(str(inner)) from inner
    except TlsError as outer:
        return outer


def test_translate_unknown_ca_is_not_retried():
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                                            "unable to get local issuer certificate (_ssl.c:1006)")
    out = ElasticsearchTransport.translate(_tls_error(cause))
    assert type(out) is SinkCertificateError and not out.retriable
    assert "unable to get local issuer certificate" in str(out) and "elasticsearch.ca_certs" in str(out)


def test_translate_fingerprint_mismatch_is_not_retried():
    # As urllib3 reports a pinned fingerprint that does not match (seen against a real node).
    cause = ssl.SSLError('Fingerprints did not match. Expected "00", got "d2ed"')
    out = ElasticsearchTransport.translate(_tls_error(cause))
    assert type(out) is SinkCertificateError and "ssl_assert_fingerprint" in str(out)


def test_translate_handshake_cut_short_is_retried():
    # A node restarting mid-handshake is an outage, not a refused certificate.
    cause = ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:992)")
    assert type(ElasticsearchTransport.translate(_tls_error(cause))) is SinkUnavailableError


def test_translate_413():
    out = ElasticsearchTransport.translate(ApiError("too large", meta(413), None))
    assert type(out) is RequestTooLargeError  # the writer splits the bulk on this one
    assert "batch.max_bytes" in str(out)


def test_translate_unknown_exception():
    out = ElasticsearchTransport.translate(RuntimeError("oops"))
    assert type(out) is SinkError
    assert "RuntimeError: oops" in str(out)


# ---------------------------------------------------------------- rules' write modes (issue 4)
def test_encode_bulk_update_is_partial_upsert_without_version():
    update = Action(ActionType.UPDATE, "items", "1", 10, {"qty": 5}, routing="r", schema="shop", table="stock",
                    position=POS, versioned=False)
    meta, body = (orjson.loads(line) for line in encode_bulk([update]).splitlines())
    assert meta == {"update": {"_index": "items", "_id": "1", "routing": "r", "retry_on_conflict": 3}}
    assert body == {"doc": {"qty": 5}, "doc_as_upsert": True}


def test_encode_bulk_unversioned_delete_and_pipeline():
    unversioned = Action(ActionType.DELETE, "items", "1", 10, schema="shop", table="items", position=POS,
                         versioned=False)
    piped = Action(ActionType.INDEX, "items", "2", 11, {"a": 1}, schema="shop", table="items", position=POS,
                   pipeline="enrich")
    lines = [orjson.loads(line) for line in encode_bulk([unversioned, piped]).splitlines()]
    assert lines[0] == {"delete": {"_index": "items", "_id": "1"}}
    assert lines[1] == {"index": {"_index": "items", "_id": "2", "version": 11, "version_type": "external",
                                  "pipeline": "enrich"}}


def test_classify_update_conflict_is_retried_not_stale():
    update = Action(ActionType.UPDATE, "items", "1", 10, {"qty": 5}, schema="shop", table="stock", position=POS,
                    versioned=False)
    conflict = {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "busy"}}
    assert classify(update, conflict).outcome is Outcome.RETRY
    assert classify(index(), conflict).outcome is Outcome.STALE


def test_action_keys_keep_routing_moves_and_partial_updates_apart():
    assert index("1", routing="a").key != delete("1", routing="b").key
    assert index("1").key == delete("1").key
    one = Action(ActionType.UPDATE, "items", "1", 10, {"a": 1}, schema="shop", table="a", versioned=False)
    two = Action(ActionType.UPDATE, "items", "1", 10, {"b": 1}, schema="shop", table="b", versioned=False)
    assert one.key != two.key


# ---------------------------------------------------------------- documents encoded once
def test_encode_bulk_bytes_are_unchanged_by_encoding_documents_once():
    # The body as encode_bulk made it when it serialised every document itself
    # (orjson.dumps(doc), and {"doc": doc, "doc_as_upsert": true} for updates).
    actions = [
        Action(ActionType.INDEX, "items", "1", 5, {"id": 1, "name": "pen", "tags": ["a", "b"], "attrs": {"k": None},
                                                   "price": "1.50", "ok": True, "f": 0.1}, routing="r1",
               schema="shop", table="items", position=POS),
        Action(ActionType.INDEX, "items", "ü", 2**63 - 1, {"t": "naïve \u2028 \"q\" \\"}, pipeline="enrich"),
        Action(ActionType.DELETE, "items", "2", 6, routing="r2"),
        Action(ActionType.DELETE, "items", "3", 7, versioned=False),
        Action(ActionType.UPDATE, "items", "4", 8, {"qty": 5, "nested": {"a": [1, {}]}}, routing="r", versioned=False),
        Action(ActionType.UPDATE, "items", "5", 9, {}),
        Action(ActionType.INDEX, "items", "6", 10, {}),
    ]
    assert encode_bulk(actions) == (
        b'{"index":{"_index":"items","_id":"1","version":5,"version_type":"external","routing":"r1"}}\n'
        b'{"id":1,"name":"pen","tags":["a","b"],"attrs":{"k":null},"price":"1.50","ok":true,"f":0.1}\n'
        b'{"index":{"_index":"items","_id":"\xc3\xbc","version":9223372036854775807,"version_type":"external",'
        b'"pipeline":"enrich"}}\n'
        b'{"t":"na\xc3\xafve \xe2\x80\xa8 \\"q\\" \\\\"}\n'
        b'{"delete":{"_index":"items","_id":"2","version":6,"version_type":"external","routing":"r2"}}\n'
        b'{"delete":{"_index":"items","_id":"3"}}\n'
        b'{"update":{"_index":"items","_id":"4","routing":"r","retry_on_conflict":3}}\n'
        b'{"doc":{"qty":5,"nested":{"a":[1,{}]}},"doc_as_upsert":true}\n'
        b'{"update":{"_index":"items","_id":"5","retry_on_conflict":3}}\n'
        b'{"doc":{},"doc_as_upsert":true}\n'
        b'{"index":{"_index":"items","_id":"6","version":10,"version_type":"external"}}\n'
        b'{}\n'
    )
    update = actions[4]
    assert encode_bulk([update]).splitlines()[1] == orjson.dumps({"doc": update.doc, "doc_as_upsert": True})


def test_each_document_is_serialised_once_through_batching_splits_and_retries(monkeypatch):
    import cdc.model
    from cdc.config import BatchConfig, RetryConfig
    from cdc.stream.delivery import BulkWriter
    from cdc.model import ItemResult
    from cdc.stream.pipeline import Batch

    docs = [{"n": i, "pad": "x" * 50} for i in range(6)]
    encoded = []
    real_dumps = orjson.dumps

    def dumps(value, *args, **kwargs):
        if any(value is doc for doc in docs):
            encoded.append(value)
        return real_dumps(value, *args, **kwargs)

    monkeypatch.setattr(cdc.model.orjson, "dumps", dumps)  # the orjson module: every caller

    class Sink:
        """413 for more than two actions; a 429 for document 1 the first time it is sent."""

        def __init__(self) -> None:
            self.bodies: list[bytes] = []
            self.busy = {"1"}

        def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
            body = encode_bulk(actions)
            if len(actions) > 2:
                raise RequestTooLargeError("too large")
            self.bodies.append(body)
            items: list[ItemResult] = []
            for a in actions:
                if a.doc_id in self.busy:
                    self.busy.discard(a.doc_id)
                    items.append(ItemResult(a, Outcome.RETRY, 429, "es_rejected_execution_exception", "busy"))
                else:
                    items.append(ItemResult(a, Outcome.OK, 201))
            return BulkResult(tuple(items))

    batch = Batch()
    for i, doc in enumerate(docs):
        batch.add(index(str(i), doc))
    sink = Sink()
    writer = BulkWriter(sink, BatchConfig(max_actions=4), RetryConfig(initial_backoff=0.001, max_backoff=0.001))
    writer.write(list(batch.actions.values()))
    assert encoded == docs  # sizing, chunking, three 413 splits, a retry: one encoding each
    sent = b"".join(sink.bodies)
    assert all(sent.count(orjson.dumps(doc)) == (2 if doc["n"] == 1 else 1) for doc in docs)
    assert batch.bytes == sum(100 + len(orjson.dumps(doc)) for doc in docs)


def test_write_asks_only_for_the_fields_it_reads():
    from cdc.config import ElasticsearchConfig

    sink = ElasticsearchSink(ElasticsearchConfig(hosts=["http://127.0.0.1:9"]))
    seen: dict[str, Any] = {}

    class Response:
        # What Elasticsearch answers with that filter_path.
        body = {"errors": True,
                "items": [{"index": {"status": 201}},
                          {"delete": {"status": 404}},
                          {"index": {"status": 409, "error": {"type": "version_conflict_engine_exception",
                                                              "reason": "newer"}}}]}

        meta = ApiResponseMeta(status=200, http_version="1.1", headers=HttpHeaders(), duration=0.01,
                               node=NodeConfig("http", "127.0.0.1", 9))

    def perform_request(method, path, **kwargs):
        seen.update(kwargs, method=method, path=path)
        return Response()

    sink.transport.client.perform_request = perform_request
    result = sink.write([index("1"), delete("2"), index("3")])
    assert (seen["method"], seen["path"]) == ("PUT", "/_bulk")
    assert seen["params"]["filter_path"] == "errors,items.*.status,items.*.error"
    assert seen["body"] == encode_bulk([index("1"), delete("2"), index("3")])
    assert [i.outcome for i in result.items] == [Outcome.OK, Outcome.OK, Outcome.STALE]
    assert result.items[2].reason == "newer"


def test_kept_document_bytes_cost_their_length_not_orjsons_buffer():
    import linecache
    import tracemalloc

    actions = [index(str(i), {"id": i, "note": "a" * 300}) for i in range(500)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [a.doc_json for a in actions]
        # Counted on the line that makes the bytes (cdc/model.py `doc_json`), where orjson's buffer would be
        # too: not the instance dicts the cached bytes go into, whose size depends on the attribute order of
        # the Actions earlier tests in this process made (CPython's key-sharing dicts), nor other threads.
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "lineno")
                    if s.traceback[0].filename.endswith("cdc/model.py")
                    and "orjson.dumps" in linecache.getline(s.traceback[0].filename, s.traceback[0].lineno))
    finally:
        tracemalloc.stop()
    assert kept[0] == orjson.dumps({"id": 0, "note": "a" * 300})
    # About 320 bytes of JSON and a bytes header; orjson's own buffer is 4 KB.
    assert 300 < grown / len(actions) < 1000


def test_refresh_wait_for_reaches_the_bulk_query_string_only_when_asked():
    """Through the real client's request building: `refresh=wait_for` in the query, never a forced refresh."""
    from cdc.config import ElasticsearchConfig

    sink = ElasticsearchSink(ElasticsearchConfig(hosts=["http://127.0.0.1:9"]))
    requests = []

    class Response:
        body = {"items": [{"index": {"status": 201}}]}
        meta = ApiResponseMeta(status=200, http_version="1.1", headers=HttpHeaders(), duration=0.01,
                               node=NodeConfig("http", "127.0.0.1", 9))

    def perform_request(method, path, **kwargs):
        requests.append((method, path, dict(kwargs.get("params") or {})))
        return Response()

    sink.transport.client.perform_request = perform_request
    sink.write([index("1")])
    sink.write([index("1")], refresh=True)
    assert [path for _, path, _ in requests] == ["/_bulk", "/_bulk"]
    assert "refresh" not in requests[0][2]
    assert requests[1][2]["refresh"] == "wait_for"


@pytest.mark.parametrize("legacy", [False, True])
def test_a_bulk_body_goes_to_the_transport_as_it_is(legacy):
    """Bodies are encoded whole (encode_bulk, or Rust): the client's NDJSON serializer sends them as they are."""
    from cdc.config import ElasticsearchConfig
    from cdc.es.engine import Engine

    engine = Engine("elasticsearch", "7.17.29" if legacy else "8.19.0")
    sink = ElasticsearchSink(ElasticsearchConfig(hosts=["http://127.0.0.1:9"]), engine)
    serializers = sink.transport.client.transport.serializers
    body = encode_bulk([index("1", {"a": 1})])
    for mimetype in ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson"):
        assert serializers.dumps(body, mimetype=mimetype) is body
        # Anything else still as the library makes it: a body without its last newline gets one.
        assert serializers.dumps(body[:-1], mimetype=mimetype) == body
        assert serializers.dumps([{"index": {}}, {"a": 1}], mimetype=mimetype) == b'{"index":{}}\n{"a":1}\n'
    assert serializers.dumps({"a": 1}, mimetype="application/json") == b'{"a":1}'
