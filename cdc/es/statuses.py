"""What an HTTP status from the search cluster means to cdc: the one table, for every engine.

Elasticsearch and OpenSearch answer alike (the same REST API); only the words differ: the
product's name, whether API keys exist, and where the docs describe the role to grant.
`cdc/es/transport.py` turns both client libraries' error answers into these (`http_error`),
and the version probe in `cdc/es/destination.py` its answers (`status_error`).
"""

from __future__ import annotations

from typing import Any

from cdc.errors import RequestTooLargeError, SinkAccessError, SinkError, SinkUnavailableError

# Overload (429) and server-side trouble (5xx) pass: the same request is worth sending again.
# Anything else (400 mapping errors, 413 too large, ...) will fail the same way again.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

ELASTICSEARCH_ROLE = "docs/security.md, Minimal Elasticsearch role"
OPENSEARCH_ROLE = "docs/destinations.md, Security on OpenSearch"


def error_reason(body: Any, fallback: str) -> str:
    """The `error.reason` of an error answer (it names the action, the user and the missing privilege)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("reason"):
        return str(error["reason"])
    return fallback


def status_error(product: str, status: int, detail: str, reason: str, *, api_key: bool = True,
                 role: str = ELASTICSEARCH_ROLE) -> SinkError | None:
    """The error a whole-request `status` means, or None where the caller's generic error fits.

    `detail` follows the status in the message (": <the server's message>"); `reason` is the
    403's `error.reason`; `api_key`: the product has API keys (OpenSearch has none)."""
    if status in RETRY_STATUSES:
        return SinkUnavailableError(f"{product} answered {status}{detail}")
    if status == 401:
        return SinkAccessError(f"{product} refused the credentials (401){detail}; check elasticsearch.username "
                               "and password (or password_file)" + (", or api_key" if api_key else ""))
    if status == 403:
        return SinkAccessError(f"{product} denied access (403): {reason} ({role})")
    if status == 413:
        return RequestTooLargeError(f"bulk request too large for {product} (413): lower batch.max_bytes or raise "
                                    "http.max_content_length")
    return None


def error_type(body: Any) -> str | None:
    """The `error.type` of an error answer ("resource_already_exists_exception", ...), if it has one."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return str(kind) if kind else None


def http_error(product: str, status: int, message: str, body: Any, *, api_key: bool = True,
               role: str = ELASTICSEARCH_ROLE) -> SinkError:
    """The error of a whole request the server answered with `status` (not 2xx), with the status and the
    answer's `error.type` on it (`SinkError.status`, `error_type`).

    `message` is what the client library makes of the answer: the `error.type` of an error
    body, else the body (both libraries alike); `body` the answer, decoded."""
    error = status_error(product, status, f": {message}", error_reason(body, str(message)), api_key=api_key,
                         role=role) or SinkError(f"{product} answered {status}: {message} {body if body else ''}")
    error.status, error.error_type = status, error_type(body)
    return error
