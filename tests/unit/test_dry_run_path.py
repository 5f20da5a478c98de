"""What issue 28's faster `cdc replay --dry-run` changed must say and do what it did before: the dry
run's report, the batch's bookkeeping, and the TLS of connections without TLS settings."""

import ssl
from typing import Any

import pymysql
import pytest

from cdc.app.replay import DryRunReport, action_json
from cdc.model import Action, ActionType, BinlogPosition
from cdc.mysql import pymysql_hooks
from cdc.stream.delivery import action_weight
from cdc.stream.pipeline import Batch


def _action(kind: ActionType, index: str, doc_id: str, n: int, routing: str | None = None) -> Action:
    return Action(kind, index, doc_id, n, None if kind is ActionType.DELETE else {"n": n, "pad": "x" * n},
                  routing, "shop", "orders", BinlogPosition("binlog.000001", 100 + n))


def _batches() -> list[list[Action]]:
    kinds = [ActionType.INDEX, ActionType.DELETE, ActionType.UPDATE]
    return [[_action(kinds[(b + i) % 3], f"ix-{(b * i) % 4}", str(i % 5), b * 10 + i) for i in range(b + 1)]
            for b in range(7)]


def _reference(batches: list[list[Action]], limit: int | None) -> tuple[list[dict], dict[str, int], int]:
    """The dry run's report as `replay` made it before, one action at a time."""
    shown: list[dict] = []
    counts: dict[str, int] = {}
    for actions in batches:
        for action in actions:
            key = f"{action.type.value} {action.index}"
            counts[key] = counts.get(key, 0) + 1
            if limit is None or len(shown) < limit:
                shown.append(action_json(action))
    return shown, counts, len(shown)


@pytest.mark.parametrize("limit", [None, 0, 1, 3, 6, 100])
def test_the_dry_run_report_shows_and_counts_as_before(limit):
    batches = _batches()
    lines: list[dict] = []
    report = DryRunReport(lines.append, limit)
    for actions in batches:
        report.add(actions)
    shown, counts, n = _reference(batches, limit)
    assert lines == shown and report.shown == n
    assert report.counts() == counts
    assert list(report.counts()) == list(counts)  # the summary's keys in the order first seen
    assert sum(counts.values()) == sum(map(len, batches))


def test_the_dry_run_report_counts_without_showing():
    report = DryRunReport(None, None)
    for actions in _batches():
        report.add(actions)
    assert report.shown == 0 and report.counts() == _reference(_batches(), None)[1]


def test_a_batch_takes_a_transaction_as_it_took_each_action():
    """`Batch.add_all`: the last write of a document wins and moves to the end; the size counts every write."""
    actions = [a for batch in _batches() for a in batch]
    actions += [_action(ActionType.INDEX, "ix-1", "3", 99, routing="r"), _action(ActionType.DELETE, "ix-0", "0", 98)]
    one_by_one, together = Batch(), Batch()
    for action in actions:
        one_by_one.add(action)
    together.add_all(actions[:5])
    together.add_all(actions[5:])
    assert list(together.actions.items()) == list(one_by_one.actions.items())
    assert together.bytes == one_by_one.bytes == sum(map(action_weight, actions))
    assert len(together) < len(actions)  # some documents were written more than once


@pytest.fixture
def fresh_tls(monkeypatch):
    """The hook installed as a command installs it, with a context not yet made by an earlier test."""
    made: list[ssl.SSLContext] = []
    original = pymysql_hooks._original_create_ssl_ctx

    def counting(conn, sslp):
        made.append(original(conn, sslp))
        return made[-1]

    monkeypatch.setattr(pymysql_hooks, "_original_create_ssl_ctx", counting)
    monkeypatch.setattr(pymysql_hooks, "_preferred_tls", None)
    monkeypatch.setattr(pymysql.connections.Connection, "_create_ssl_ctx",
                        getattr(pymysql.connections.Connection, "_create_ssl_ctx"))
    pymysql_hooks.install_pymysql_hooks()
    return made


def test_connections_without_tls_settings_share_one_context_made_when_first_used(fresh_tls):
    """PyMySQL's PREFERRED mode made a context (and loaded the system's CAs) for every connection."""
    first: Any = pymysql.connections.Connection(host="127.0.0.1", port=1, defer_connect=True)
    second: Any = pymysql.connections.Connection(host="127.0.0.1", port=1, defer_connect=True)
    assert first.ssl and not first._ssl_required  # still PREFERRED: TLS when the server offers it
    assert first.ctx is second.ctx
    assert fresh_tls == []  # nothing made until a server offers TLS
    # The context PyMySQL itself makes for PREFERRED mode: no certificate or host name check.
    assert first.ctx.verify_mode == ssl.CERT_NONE and first.ctx.check_hostname is False
    assert second.ctx.context() is first.ctx.context()
    assert len(fresh_tls) == 1


def test_connections_with_tls_settings_keep_their_own_context(fresh_tls):
    """cdc's mysql.ssl_ca / ssl_cert come as an SSLContext (MysqlConfig.ssl_context): used as given, required."""
    mine = ssl.create_default_context()
    conn: Any = pymysql.connections.Connection(host="127.0.0.1", port=1, defer_connect=True, ssl=mine)
    assert conn.ctx is mine and conn._ssl_required
    verified: Any = pymysql.connections.Connection(host="127.0.0.1", port=1, defer_connect=True, ssl_verify_cert=True)
    assert isinstance(verified.ctx, ssl.SSLContext) and verified.ctx.verify_mode == ssl.CERT_REQUIRED
    assert fresh_tls == [mine, verified.ctx]  # both through PyMySQL's own method, for that connection alone
