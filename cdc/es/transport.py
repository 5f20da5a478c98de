"""HTTP to the search cluster: the only module that sees the client libraries (elasticsearch-py,
elastic_transport, opensearch-py).

A `Transport` is one engine's client behind one interface: `request(method, path, ...)` sends
one request and answers (status, decoded body), `probe(path)` asks whatever server answers.
Everything a request means (the bulk body and its answer: cdc/es/bulk.py; reads and index
administration: cdc/es/admin.py) is written once, above this, for every engine. What differs
between the engines lives here and nowhere else:

* the library: elasticsearch-py for Elasticsearch 7.17, 8 and 9 (for 7.17 with 7's media type,
  `Elasticsearch7`), opensearch-py for OpenSearch 2 and 3. The elasticsearch client refuses any
  server without Elasticsearch's product header ("The client noticed that the server is not
  Elasticsearch and we do not support this unknown product", seen against OpenSearch 2.19.1);
  why opensearch-py stays rather than elastic_transport alone: docs/internals.md, "One
  destination layer";
* its configuration: authentication, TLS, timeouts, how long a failed node is set aside;
* its exceptions, turned into cdc's (cdc/errors.py): an error status through the one table
  (cdc/es/statuses.py `http_error`), a refused certificate, an unreachable node.

opensearch-py is imported only when the destination is OpenSearch: it is a second client
stack, and importing it took about 22 ms of every cdc command's ~0.4 s start-up
(`python -X importtime`), also for the users who never talk to OpenSearch.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from typing import Any, Mapping

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch import ConnectionTimeout, TransportError, UnsupportedProductError
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from cdc.config import ElasticsearchConfig
from cdc.es.bulk import decode_response
from cdc.es.engine import Engine
from cdc.es.statuses import ELASTICSEARCH_ROLE, OPENSEARCH_ROLE, http_error
from cdc.errors import SinkCertificateError, SinkError, SinkUnavailableError

log = logging.getLogger("cdc.sink")

_JSON = {"accept": "application/json"}
_JSON_BODY = {"accept": "application/json", "content-type": "application/json"}
_NDJSON_BODY = {"accept": "application/json", "content-type": "application/x-ndjson"}


class Transport:
    """One engine's client library, as cdc uses it: requests in, (status, body) or a SinkError out."""

    product: str  # "Elasticsearch" or "OpenSearch", as messages name it
    role: str  # where the docs say which privileges cdc needs
    # The cluster health request's parameters (cdc/es/admin.py `health`).
    health_params: Mapping[str, str] = {}
    client: Any

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None,
                ndjson: bool = False, missing_ok: bool = False) -> tuple[int, Any]:
        """One request: (status, decoded body). Raises the SinkError of a failure (cdc/errors.py),
        also of an error status, except a 404 when `missing_ok` (then its body is the answer).

        `body`: a dict (sent as JSON), or with `ndjson` the bytes of a `_bulk` body, sent as they are.
        """
        try:
            return self._send(method, path, params, body, ndjson, missing_ok)
        except Exception as exc:
            raise self.translate(exc) from None

    def probe(self, path: str) -> tuple[int, Mapping[str, str], Any]:
        """(status, headers, body) of a GET, whatever the status and the server (cdc/es/engine.py reads them)."""
        raise NotImplementedError

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, params: Mapping[str, str] | None, body: Any, ndjson: bool,
              missing_ok: bool) -> tuple[int, Any]:
        raise NotImplementedError

    @staticmethod
    def translate(exc: Exception) -> SinkError:
        raise NotImplementedError


def connect(config: ElasticsearchConfig, engine: Engine | None = None) -> Transport:
    """The transport of `engine` (what cdc/es/destination.py found), or before it is known (the probe)
    of the engine configured (`elasticsearch.engine`, Elasticsearch's for `auto`)."""
    if (engine.product if engine is not None else config.engine) == "opensearch":
        return OpenSearchTransport(config, engine)
    return ElasticsearchTransport(config, engine)


# ---------------------------------------------------------------------- Elasticsearch: elasticsearch-py
class _OrjsonSerializer(JsonSerializer):
    """Documents are already JSON-safe (values.py), so orjson can encode them quickly; answers
    are read by cdc/es/bulk.py `decode_response` (orjson, and a fast path for bulk answers)."""

    def dumps(self, data) -> bytes:
        if isinstance(data, str):
            return data.encode()
        return orjson.dumps(data)

    def json_loads(self, data: bytes):
        # orjson's errors are ValueErrors, which JsonSerializer.loads turns into SerializationError.
        return decode_response(data)


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


class ElasticsearchTransport(Transport):
    product = "Elasticsearch"
    role = ELASTICSEARCH_ROLE
    health_params = {"timeout": "5s"}

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
        if engine is None:
            kwargs["node_pool_class"] = _ProbeNodePool
        self.client = (Elasticsearch7 if engine is not None and engine.legacy_media_type else Elasticsearch)(**kwargs)

    def _send(self, method, path, params, body, ndjson, missing_ok):
        headers = _NDJSON_BODY if ndjson else _JSON if body is None else _JSON_BODY
        try:
            # The client's own request method: what its API methods (bulk, mget, ...) call with
            # the same method, path, query and headers; it turns the media types into 7's or 8's.
            resp = self.client.perform_request(method, path, params=params, headers=headers, body=body)
        except ApiError as exc:
            if missing_ok and exc.meta is not None and exc.meta.status == 404:
                return 404, exc.body
            raise
        return resp.meta.status, resp.body

    def probe(self, path: str) -> tuple[int, Mapping[str, str], Any]:
        """An error status is an answer here, and so is a server without Elasticsearch's product
        header: the client refuses it (UnsupportedProductError) but keeps what it said, which is
        how OpenSearch is recognised."""
        try:
            resp = self.client.perform_request("GET", path, headers=_JSON)
        except (ApiError, UnsupportedProductError) as exc:
            return exc.meta.status, exc.meta.headers, exc.body
        except Exception as exc:
            raise self.translate(exc) from None
        return resp.meta.status, resp.meta.headers, resp.body

    @staticmethod
    def translate(exc: Exception) -> SinkError:
        if isinstance(exc, elastic_transport.TlsError) and certificate_refused(exc):
            return certificate_error("Elasticsearch", exc.message)
        if isinstance(exc, (EsConnectionError, ConnectionTimeout, elastic_transport.TransportError)) and not isinstance(exc, ApiError):
            return SinkUnavailableError(f"Elasticsearch unreachable: {exc}")
        if isinstance(exc, ApiError):
            return http_error("Elasticsearch", exc.meta.status if exc.meta else 0, exc.message, exc.body)
        if isinstance(exc, TransportError):
            return SinkUnavailableError(f"Elasticsearch transport error: {exc}")
        return SinkError(f"Elasticsearch client error: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------- OpenSearch: opensearch-py
class _PoolWarningsOnly(logging.Filter):
    """opensearch-py logs every failed request at WARNING with a traceback; cdc translates
    each failure into one message of its own (and retries or stops), so of its warnings only
    the connection pool's are worth showing: which of several hosts failed and for how long it
    is set aside ("Connection <...: http://host:9200> has failed for 2 times in a row, putting
    on 2 second timeout."), which cdc's own message does not name. The Elasticsearch client's
    pool says the same (elastic_transport.node_pool)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.module == "connection_pool"


_POOL_WARNINGS_ONLY = _PoolWarningsOnly()


def _opensearch_serializer():
    """opensearch-py's JSON serializer, reading answers with cdc/es/bulk.py `decode_response` as the
    Elasticsearch client does: with the library's own (the standard library's json), a 2,000-document
    bulk request took 2.48 ms of client CPU, with this 0.95 ms (bench/clients.py, issue 29)."""
    from opensearchpy.exceptions import SerializationError
    from opensearchpy.serializer import JSONSerializer

    class OrjsonSerializer(JSONSerializer):
        def loads(self, s):
            try:
                # The connection hands over the answer decoded (str); the fast path reads bytes.
                return decode_response(s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s)
            except (ValueError, TypeError) as e:
                raise SerializationError(s, e)

    return OrjsonSerializer()


class OpenSearchTransport(Transport):
    product = "OpenSearch"
    role = OPENSEARCH_ROLE
    # No `timeout`: opensearch-py takes it as the request's own timeout, not the API's.
    health_params = {}

    def __init__(self, config: ElasticsearchConfig, engine: Engine | None = None):
        from opensearchpy import OpenSearch

        logging.getLogger("opensearch").setLevel(logging.WARNING)
        logging.getLogger("opensearch").addFilter(_POOL_WARNINGS_ONLY)  # once: a filter is added once
        kwargs: dict = dict(
            hosts=config.hosts,
            timeout=config.request_timeout,
            # As for Elasticsearch: retries are the pipeline's job.
            max_retries=0,
            retry_on_timeout=False,
            # A failed host is set aside for 1 s, doubling at each failure in a row up to 32 s, as the
            # Elasticsearch client does (elastic_transport: 1 s up to 30 s). With opensearch-py's own 60 s,
            # doubling up to 32 min, a killed node of a three-node cluster, started again about a minute
            # after the kill, took cdc's writes again only 180 s after it (with these: 33 s; measured in
            # tests/integration/test_es_cluster.py).
            dead_timeout=1,
            timeout_cutoff=5,
            serializer=_opensearch_serializer(),
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

    def _send(self, method, path, params, body, ndjson, missing_ok):
        from opensearchpy import NotFoundError

        # A bulk body goes with the connection's default content type (application/json), as
        # opensearch-py's own bulk() sends it; bytes pass its serializer as they are.
        headers = None if ndjson else _JSON if body is None else _JSON_BODY
        try:
            # The library's Transport: its API methods (bulk, mget, ...) call it with the same method,
            # path and query, and it sets a failed node aside (opensearch-py's connection pool).
            # A copy of the query: the library takes `timeout` and `ignore` out of it.
            return 200, self.client.transport.perform_request(method, path, params=dict(params) if params else None,
                                                              body=body, headers=headers)
        except NotFoundError as exc:
            if missing_ok:
                return 404, exc.info
            raise

    def probe(self, path: str) -> tuple[int, Mapping[str, str], Any]:
        try:
            connection = self.client.transport.get_connection()
            status, headers, raw = connection.perform_request("GET", path, ignore=range(300, 600), headers=_JSON)
        except Exception as exc:
            raise self.translate(exc) from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        return status, dict(headers), body

    @staticmethod
    def translate(exc: Exception) -> SinkError:
        from opensearchpy import exceptions as ose

        if isinstance(exc, ose.SSLError) and certificate_refused(exc):
            return certificate_error("OpenSearch", exc.error)
        if isinstance(exc, (ose.ConnectionError, ose.ConnectionTimeout)):
            return SinkUnavailableError(f"OpenSearch unreachable: {exc}")
        if isinstance(exc, ose.TransportError):
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            return http_error("OpenSearch", status, exc.error, exc.info, api_key=False, role=OPENSEARCH_ROLE)
        return SinkError(f"OpenSearch client error: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------- both
def certificate_error(product: str, detail: object) -> SinkCertificateError:
    return SinkCertificateError(
        f"{product}'s TLS certificate was refused: {detail}; check elasticsearch.ca_certs "
        "or ssl_assert_fingerprint, and that the host name in elasticsearch.hosts is in the certificate")


def certificate_refused(exc: BaseException) -> bool:
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
