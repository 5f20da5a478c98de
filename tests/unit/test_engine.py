"""Telling engines apart and talking to each (cdc/es/engine.py, destination.py, the 7.17 media type, transport.py).

The server answers here are the ones seen from the real servers (Elasticsearch
8.19.21 and 7.17.29 integ-test-zips, OpenSearch 2.19.1); a tiny local HTTP
server stands in for them where a request has to leave the process.
"""

from __future__ import annotations

import http.server
import json
import re
import threading

import pytest
from opensearchpy import exceptions as ose

from cdc.config import ElasticsearchConfig, parse_config
from cdc.errors import (ConfigError, PreflightError, RequestTooLargeError, SinkAccessError, SinkCertificateError,
                        SinkError, SinkUnavailableError)
from cdc.es.destination import Destination
from cdc.es.engine import Engine, UnknownServer, check_supported, from_nodes, from_root, refused_settings
from cdc.es.transport import Elasticsearch7, OpenSearchTransport

ES_PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
OPENSEARCH_ROOT = {"name": "vm", "version": {"distribution": "opensearch", "number": "2.19.1"},
                   "tagline": "The OpenSearch Project: https://opensearch.org/"}
ES7_ROOT = {"name": "vm", "version": {"number": "7.17.29", "build_flavor": "oss"}, "tagline": "You Know, for Search"}


# ------------------------------------------------------------------ engine.py (pure)
def found(status: int, headers: dict, root: dict) -> Engine:
    """`from_root` of an answer the test knows names an engine."""
    engine = from_root(status, headers, root)
    assert engine is not None
    return engine


def test_opensearch_is_known_by_its_distribution_also_when_it_claims_7_10():
    assert from_root(200, {}, OPENSEARCH_ROOT) == Engine("opensearch", "2.19.1")
    # compatibility.override_main_response_version: the number lies, the distribution does not
    claimed = {"version": {"distribution": "opensearch", "number": "7.10.2"}}
    assert found(200, {}, claimed).product == "opensearch"


def test_elasticsearch_is_known_by_its_product_header_or_tagline():
    assert from_root(200, ES_PRODUCT, ES7_ROOT) == Engine("elasticsearch", "7.17.29")
    assert found(200, {"x-elastic-product": "Elasticsearch"}, {"version": {"number": "8.19.21"}}).major == 8
    assert found(200, {}, ES7_ROOT).product == "elasticsearch"


def test_something_else_is_refused_by_name():
    with pytest.raises(UnknownServer, match="neither Elasticsearch nor OpenSearch"):
        from_root(200, {}, {"version": {"number": "1.0"}, "tagline": "Some other search"})


def test_no_root_endpoint_means_ask_the_nodes_api():
    # Elasticsearch >= 8.9 without the rest-root module (the integ-test-zip) answers GET / with 405.
    assert from_root(405, ES_PRODUCT, {"error": "Incorrect HTTP method for uri [/]", "status": 405}) is None
    nodes = {"nodes": {"abc": {"version": "8.19.21"}}}
    assert from_nodes(ES_PRODUCT, nodes) == Engine("elasticsearch", "8.19.21")
    assert from_nodes({}, {"nodes": {"x": {"version": "2.19.1"}}}) == Engine("opensearch", "2.19.1")
    with pytest.raises(UnknownServer):
        from_nodes(ES_PRODUCT, {})


def test_versions_and_the_configured_engine_are_checked():
    check_supported(Engine("elasticsearch", "7.17.29"), "auto")
    check_supported(Engine("elasticsearch", "9.1.0"), "elasticsearch")
    check_supported(Engine("opensearch", "3.0.0"), "opensearch")
    with pytest.raises(PreflightError, match="Elasticsearch 7.10.2 is not supported: cdc needs Elasticsearch 7.17"):
        check_supported(Engine("elasticsearch", "7.10.2"), "auto")
    with pytest.raises(PreflightError, match="OpenSearch 1.3.20 is not supported"):
        check_supported(Engine("opensearch", "1.3.20"), "auto")
    with pytest.raises(ConfigError, match="elasticsearch.engine is elasticsearch, but the server at "
                                          "elasticsearch.hosts is OpenSearch 2.19.1"):
        check_supported(Engine("opensearch", "2.19.1"), "elasticsearch")


def test_legacy_media_type_only_for_elasticsearch_7():
    assert Engine("elasticsearch", "7.17.29").legacy_media_type
    assert not Engine("elasticsearch", "8.19.21").legacy_media_type
    assert not Engine("opensearch", "2.19.1").legacy_media_type


def test_api_keys_are_refused_on_opensearch(stub):
    assert refused_settings(Engine("opensearch", "2.19.1"), api_key=True)
    assert refused_settings(Engine("elasticsearch", "7.17.29"), api_key=True) == []
    with pytest.raises(ConfigError, match="engine opensearch: OpenSearch has no API keys"):
        parse_config({"mysql": {"user": "u", "server_id": 1},
                      "elasticsearch": {"engine": "opensearch", "api_key": "abc"}})
    # auto: found out at start-up, before anything is written
    handler, url = stub
    handler.answers[:] = [(200, {}, OPENSEARCH_ROOT)]
    with pytest.raises(ConfigError, match="OpenSearch 2.19.1: elasticsearch.api_key: OpenSearch has no API keys"):
        Destination(ElasticsearchConfig(hosts=[url], api_key="abc")).check()
    assert [path for _, path, _, _ in handler.seen] == ["/"]


def test_unknown_engine_is_a_config_error():
    with pytest.raises(ConfigError, match="elasticsearch.engine"):
        parse_config({"mysql": {"user": "u", "server_id": 1}, "elasticsearch": {"engine": "solr"}})


# ------------------------------------------------------------------ against a stub server
class _Stub(http.server.BaseHTTPRequestHandler):
    answers: list = []
    seen: list = []

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append((self.command, self.path, dict(self.headers), body))
        status, headers, payload = type(self).answers.pop(0) if type(self).answers else (200, ES_PRODUCT, {})
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {"content-type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    handler = type("Handler", (_Stub,), {"answers": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_destination_picks_the_sink_of_the_engine_it_finds(stub):
    handler, url = stub
    # Elasticsearch 7.17: GET / answers; the sink sends 7's media type from then on.
    handler.answers[:] = [(200, ES_PRODUCT, ES7_ROOT), (200, ES_PRODUCT, {"status": "green"})]
    dest = Destination(ElasticsearchConfig(hosts=[url]))
    assert dest.check() == "green"
    assert dest.engine == Engine("elasticsearch", "7.17.29") and dest._sink is not None
    assert isinstance(dest._sink.transport.client, Elasticsearch7)
    method, path, headers, _ = handler.seen[-1]
    assert path.startswith("/_cluster/health")
    assert headers["accept"] == "application/vnd.elasticsearch+json; compatible-with=7"
    dest.close()

    # Elasticsearch 8 without rest-root: 405, then the nodes API; the 8.x media type.
    handler.answers[:] = [(405, ES_PRODUCT, {"status": 405}), (200, ES_PRODUCT, {"nodes": {"n": {"version": "8.19.21"}}}),
                          (200, ES_PRODUCT, {"status": "yellow"})]
    dest = Destination(ElasticsearchConfig(hosts=[url]))
    assert dest.check() == "yellow" and dest.engine == Engine("elasticsearch", "8.19.21")
    assert handler.seen[-2][1] == "/_nodes/_local?filter_path=nodes.*.version"
    assert handler.seen[-1][2]["accept"] == "application/vnd.elasticsearch+json; compatible-with=8"
    dest.close()

    # OpenSearch: opensearch-py, plain JSON.
    handler.answers[:] = [(200, {}, OPENSEARCH_ROOT), (200, {}, {"status": "green"})]
    dest = Destination(ElasticsearchConfig(hosts=[url]))
    assert dest.check() == "green" and dest._sink is not None and isinstance(dest._sink.transport, OpenSearchTransport)
    assert handler.seen[-1][2].get("accept", "application/json") == "application/json"
    dest.close()


def test_elasticsearch7_bulk_is_ndjson_of_version_7(stub):
    from cdc.es.sink import ElasticsearchSink
    from cdc.model import Action, ActionType

    handler, url = stub
    handler.answers[:] = [(200, ES_PRODUCT, {"items": [{"index": {"status": 201}}]})]
    sink = ElasticsearchSink(ElasticsearchConfig(hosts=[url]), Engine("elasticsearch", "7.17.29"))
    result = sink.write([Action(ActionType.INDEX, "i", "1", 5, {"a": 1})])
    assert [i.status for i in result.items] == [201]
    method, path, headers, body = handler.seen[-1]
    assert path.split("?")[0] == "/_bulk" and method in ("PUT", "POST")
    assert headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=7"
    assert body == b'{"index":{"_index":"i","_id":"1","version":5,"version_type":"external"}}\n{"a":1}\n'


def test_access_refused_while_finding_the_engine_stops_with_exit_2(stub):
    handler, url = stub
    handler.answers[:] = [(401, {}, {"error": "unauthorized"})]
    with pytest.raises(SinkAccessError, match="refused the credentials"):
        Destination(ElasticsearchConfig(hosts=[url])).check()
    handler.answers[:] = [(403, ES_PRODUCT, {"error": "no monitor"})]
    with pytest.raises(SinkAccessError, match=r"denied access \(403\).*`monitor`"):
        Destination(ElasticsearchConfig(hosts=[url])).check()
    handler.answers[:] = [(503, ES_PRODUCT, {})]
    with pytest.raises(SinkUnavailableError):  # retried by the commands (patiently)
        Destination(ElasticsearchConfig(hosts=[url])).check()


def test_unreachable_is_retriable_for_both_clients():
    for engine in ("elasticsearch", "opensearch"):
        with pytest.raises(SinkUnavailableError) as caught:
            Destination(ElasticsearchConfig(hosts=["http://127.0.0.1:9"], engine=engine)).check()
        assert caught.value.retriable


# ------------------------------------------------------------------ transport.py: opensearch-py's errors
@pytest.mark.parametrize("exc, kind, text", [
    (ose.ConnectionError("N/A", "refused", None), SinkUnavailableError, "OpenSearch unreachable"),
    (ose.ConnectionTimeout("TIMEOUT", "read timed out", None), SinkUnavailableError, "OpenSearch unreachable"),
    (ose.TransportError(429, "es_rejected_execution_exception", {}), SinkUnavailableError, "answered 429"),
    (ose.TransportError(503, "unavailable", {}), SinkUnavailableError, "answered 503"),
    (ose.AuthenticationException(401, "Unauthorized", {}), SinkAccessError, "refused the credentials \\(401\\)"),
    (ose.AuthorizationException(403, "security_exception",
                                {"error": {"reason": "no permissions for [indices:data/write/bulk]"}}),
     SinkAccessError, "no permissions for \\[indices:data/write/bulk\\]"),
    (ose.TransportError(413, "too large", {}), RequestTooLargeError, "lower batch.max_bytes"),
    (ose.RequestError(400, "mapper_parsing_exception", {}), SinkError, "OpenSearch answered 400"),
    (ose.SSLError("N/A", "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", None), SinkCertificateError,
     "OpenSearch's TLS certificate was refused"),
])
def test_opensearch_errors_become_cdcs(exc, kind, text):
    out = OpenSearchTransport.translate(exc)
    assert type(out) is kind and out.exit_code == kind.exit_code
    assert re.search(text, str(out)), str(out)


def test_opensearch_pins_the_certificate_instead_of_checking_the_ca():
    pin = ":".join(["AB"] * 32)
    sink = OpenSearchTransport(ElasticsearchConfig(hosts=["https://127.0.0.1:9"], ssl_assert_fingerprint=pin))
    pool = sink.client.transport.get_connection().pool
    # urllib3 compares the pin itself (the integration test also sees another pin refused)
    assert pool.assert_fingerprint == "ab" * 32
    sink.close()


def test_opensearch_answers_are_read_as_elasticsearch_ones():
    """opensearch-py's deserializer is cdc's (cdc/es/bulk.py decode_response): an acknowledged bulk answer
    is counted, not parsed, as on Elasticsearch; anything else parses to the same value; garbage is still
    the library's SerializationError."""
    from cdc.es.bulk import AcknowledgedItems

    transport = OpenSearchTransport(ElasticsearchConfig(hosts=["http://127.0.0.1:9"]))
    loads = transport.client.transport.deserializer.loads
    acknowledged = loads('{"errors":false,"items":[{"index":{"status":201}},{"delete":{"status":404}}]}',
                         "application/json; charset=UTF-8")
    assert isinstance(acknowledged["items"], AcknowledgedItems) and len(acknowledged["items"]) == 2
    assert loads('{"cluster_name":"c","status":"green","n":18446744073709551615}', "application/json") == \
        {"cluster_name": "c", "status": "green", "n": 18446744073709551615}
    with pytest.raises(ose.SerializationError):
        loads('{"status":', "application/json")
    transport.close()
