"""The one status-to-error table (cdc/es/statuses.py), as both client stacks and the version probe use it."""

from __future__ import annotations

import pytest

from cdc.errors import RequestTooLargeError, SinkAccessError, SinkUnavailableError
from cdc.es.statuses import OPENSEARCH_ROLE, RETRY_STATUSES, error_reason, http_error, status_error


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_overload_and_server_trouble_are_waited_out(status):
    error = status_error("Elasticsearch", status, ": busy", "")
    assert isinstance(error, SinkUnavailableError) and error.retriable
    assert str(error) == f"Elasticsearch answered {status}: busy"


def test_credentials_name_the_settings_and_api_keys_only_where_they_exist():
    es = status_error("Elasticsearch", 401, ": unable to authenticate", "")
    assert isinstance(es, SinkAccessError) and not es.retriable
    assert str(es) == ("Elasticsearch refused the credentials (401): unable to authenticate; check "
                       "elasticsearch.username and password (or password_file), or api_key")
    assert str(status_error("OpenSearch", 401, ": Unauthorized", "", api_key=False)).endswith("(or password_file)")


def test_a_denied_action_gives_the_server_s_reason_and_the_role_to_grant():
    reason = "action [indices:data/write/bulk] is unauthorized for user [cdc]"
    error = status_error("OpenSearch", 403, ": forbidden", reason, api_key=False, role=OPENSEARCH_ROLE)
    assert isinstance(error, SinkAccessError)
    assert str(error) == f"OpenSearch denied access (403): {reason} (docs/destinations.md, Security on OpenSearch)"


def test_too_large_is_split_and_others_are_left_to_the_caller():
    assert isinstance(status_error("Elasticsearch", 413, "", ""), RequestTooLargeError)
    assert status_error("Elasticsearch", 400, ": mapper_parsing_exception", "") is None
    assert status_error("Elasticsearch", 404, "", "") is None


def test_the_reason_is_error_reason_else_the_fallback():
    assert error_reason({"error": {"type": "security_exception", "reason": "no"}}, "x") == "no"
    assert error_reason({"error": "a string"}, "fallback") == "fallback"
    assert error_reason(None, "fallback") == "fallback"


def test_an_error_answer_carries_its_status_and_error_type_for_callers_that_expect_one():
    """Callers act on `error_type` (an index created meanwhile), never on the message's words."""
    body = {"error": {"type": "resource_already_exists_exception", "reason": "index [o_v1/abc] already exists"},
            "status": 400}
    error = http_error("Elasticsearch", 400, "resource_already_exists_exception", body)
    assert (error.status, error.error_type) == (400, "resource_already_exists_exception")
    overloaded = http_error("OpenSearch", 429, "es_rejected_execution_exception",
                            {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"}})
    assert isinstance(overloaded, SinkUnavailableError) and overloaded.error_type == "es_rejected_execution_exception"
    assert http_error("Elasticsearch", 502, "Bad Gateway", "<html>bad gateway</html>").error_type is None
