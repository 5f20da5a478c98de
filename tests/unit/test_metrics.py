"""Progress, PrometheusObserver, Health and the HTTP endpoints, without servers.

Clocks are injected, so lag and ages are exact; the pipeline tests run a real
`Pipeline` with a fake sink, so the hooks are checked where they are called.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from cdc.config import BatchConfig, Config, RetryConfig, parse_config
from cdc.errors import ConfigError, SinkUnavailableError
from cdc.ops.health import Health, HealthServer, stuck_after
from cdc.ops.metrics import PrometheusObserver, parse_metrics, read_metrics
from cdc.model import (
    Action,
    ActionType,
    BinlogPosition,
    Column,
    ColumnKind,
    Commit,
    Heartbeat,
    Op,
    Outcome,
    RowChange,
)
from cdc.stream.observe import Observers
from cdc.stream.pipeline import Pipeline
from cdc.ops.progress import Progress
from cdc.rules import Rule, RuleSet

from .fakes import START, FakeSink, ListSource, MemoryStore

FILE = "binlog.000007"
COLUMNS = (Column("id", ColumnKind.INTEGER),)
RULES = RuleSet([Rule("shop", "items", "items", ("id",), source="test")])


def P(pos: int, file: str = FILE) -> BinlogPosition:
    return BinlogPosition(file, pos)


class Clock:
    """Wall and monotonic time that only move when told to."""

    def __init__(self, wall: float = 1_700_000_000.0):
        self.wall = wall
        self.mono = 100.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


def progress_with(clock: Clock, heartbeat: float = 5.0) -> Progress:
    return Progress(heartbeat, clock=clock.time, monotonic=clock.monotonic)


def samples(observer: PrometheusObserver) -> dict[str, list[tuple[dict, float]]]:
    body, content_type = observer.exposition()
    assert content_type.startswith("text/plain")
    return parse_metrics(body.decode())


def value(parsed, name: str, **labels) -> float | None:
    for sample_labels, sample_value in parsed.get(name, []):
        if sample_labels == {k: str(v) for k, v in labels.items()}:
            return sample_value
    return None


def row(id: int, pos: int, op: Op = Op.INSERT, row_index: int = 0, table: str = "items", ts: int = 0) -> RowChange:
    values = {"id": id}
    before, after = (values, None) if op is Op.DELETE else (None, values)
    return RowChange(op, "shop", table, COLUMNS, before, after, P(pos), ts, row_index)


# ---------------------------------------------------------------- Progress: lag
def test_lag_is_unknown_before_anything_arrives():
    clock = Clock()
    progress = progress_with(clock)
    assert progress.seconds_behind() is None
    assert progress.silence() is None


def test_lag_is_event_age_when_read_and_zero_after_a_heartbeat():
    clock = Clock()
    progress = progress_with(clock, heartbeat=5)
    progress.on_event(clock.wall - 42)  # an event written 42 s ago is read now
    assert progress.seconds_behind() == pytest.approx(42)
    clock.advance(3)  # quiet, but within one heartbeat period: no heartbeat was due yet
    assert progress.seconds_behind() == pytest.approx(42)
    progress.on_event(0)  # heartbeat: the server had nothing more to send
    assert progress.seconds_behind() == 0
    clock.advance(4.9)
    assert progress.seconds_behind() == 0  # idle and caught up stays 0


def test_lag_grows_with_silence_beyond_one_heartbeat_period():
    # A dead connection (or a loop blocked behind Elasticsearch) must not freeze the lag at 0.
    clock = Clock()
    progress = progress_with(clock, heartbeat=2)
    progress.on_event(0)
    clock.advance(12)
    assert progress.seconds_behind() == pytest.approx(10)
    assert progress.silence() == pytest.approx(12)


def test_lag_ignores_events_from_a_clock_ahead_of_ours():
    clock = Clock()
    progress = progress_with(clock)
    progress.on_event(clock.wall + 3)
    assert progress.seconds_behind() == 0


def test_checkpoint_age_and_positions_from_hooks():
    clock = Clock()
    progress = progress_with(clock)
    assert progress.checkpoint_age() is None
    progress.on_start(P(100), "0-1-5", clock.wall - 30)
    assert progress.checkpoint_age() == pytest.approx(30)
    assert progress.read_position == P(100) and progress.checkpoint_position == P(100)
    progress.on_commit(Commit(P(200), "0-1-6", int(clock.wall)))
    assert progress.read_position == P(200) and progress.read_gtid == "0-1-6"
    progress.on_checkpoint(Commit(P(200), "0-1-6", int(clock.wall)))
    assert progress.checkpoint_age() == 0
    clock.advance(7)
    assert progress.checkpoint_age() == pytest.approx(7)
    assert progress.checkpoint_position == P(200) and progress.checkpoint_gtid == "0-1-6"


def test_start_without_a_saved_checkpoint_has_no_age():
    progress = progress_with(Clock())
    progress.on_start(P(4), None, None)
    assert progress.checkpoint_age() is None and progress.checkpoint_position is None
    assert progress.read_position == P(4)


def test_sink_state_follows_bulk_outcomes_and_request_failures():
    progress = progress_with(Clock())
    assert not progress.sink_ok  # nothing checked yet
    progress.on_start(P(4), None, None)
    assert progress.sink_ok  # the stages start only after a successful cluster check
    progress.on_bulk(10, 0.1, 8, 0, 2, 0)
    assert not progress.sink_ok and "2 of 10" in progress.sink_problem
    progress.on_bulk(2, 0.1, 1, 1, 0, 0)
    assert progress.sink_ok and progress.sink_problem is None
    progress.on_bulk(2, 0.1, 1, 0, 0, 1)  # a rejected document is a data problem, not an outage
    assert progress.sink_ok
    progress.on_retry("request", 5, 0.5)
    assert not progress.sink_ok
    progress.on_retry("items", 5, 0.5)  # not a request failure: keeps the state on_bulk set
    progress.on_bulk(5, 0.1, 5, 0, 0, 0)
    assert progress.sink_ok


def test_why_cdc_waits_is_the_servers_reason_in_readyz_metrics_and_status():
    from cdc.ops.status import Report, format_text

    why = ("1 of 3 items failed with 429 (cluster_block_exception: index [shop] blocked by: "
           "[TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block])")
    progress = progress_with(Clock())
    metrics = PrometheusObserver(progress)
    assert "cdc_sink_waiting" not in samples(metrics)  # not known before start-up's cluster check
    progress.on_start(P(4), None, None)
    assert value(samples(metrics), "cdc_sink_waiting", reason="") == 0
    progress.on_bulk(3, 0.1, 2, 0, 1, 0)
    progress.on_retry("items", 1, 0.5, why)
    assert progress.sink_detail() == why  # /readyz
    assert value(samples(metrics), "cdc_sink_waiting", reason=why) == 1
    assert value(samples(metrics), "cdc_sink_waiting", reason="") is None  # one reason at a time
    report: Report = {"checkpoint": None, "daemon_running": True, "snapshot": None, "dead_letters": None,
                      "problems": [], "lag": {"source": None}, "row_path": None,
                      "writer": {"waiting": True, "reason": why}}
    assert f"writer        WAITING to retry: {why}" in format_text(report)
    progress.on_bulk(1, 0.1, 1, 0, 0, 0)  # the block lifted: the item went in
    assert value(samples(metrics), "cdc_sink_waiting", reason="") == 0
    report["writer"] = {"waiting": False, "reason": None}
    assert "writer        not waiting" in format_text(report)
    progress.on_retry("request", 5, 0.5, "bulk request failed: Elasticsearch unreachable: Connection error")
    assert value(samples(metrics), "cdc_sink_waiting",
                 reason="bulk request failed: Elasticsearch unreachable: Connection error") == 1


def test_summary_names_position_checkpoint_and_lag():
    clock = Clock()
    progress = progress_with(clock)
    assert progress.summary() == "starting"
    progress.on_start(P(100), None, clock.wall)
    assert "no binlog event read yet" in progress.summary()
    progress.on_commit(Commit(P(300), None, int(clock.wall) - 2))
    progress.on_event(clock.wall - 2)
    assert progress.summary() == f"running: read {FILE}:300, checkpoint {FILE}:100, lag 2.0s"
    progress.on_retry("request", 1, 1)
    assert progress.summary().endswith("Elasticsearch failing")
    progress.on_stopping()
    assert progress.summary() == "stopping"


# ---------------------------------------------------------------- PrometheusObserver
def test_counts_events_rows_and_transactions_per_table_and_op():
    clock = Clock()
    metrics = PrometheusObserver(progress_with(clock), clock=clock.time)
    # One insert event with 3 rows, one delete event with 1 row, one update on another table.
    for i in range(3):
        metrics.on_row(row(i, 100, row_index=i))
    metrics.on_row(row(9, 200, Op.DELETE))
    metrics.on_row(row(5, 300, Op.UPDATE, table="orders"))
    metrics.on_commit(Commit(P(400), None, 0))
    s = samples(metrics)
    assert value(s, "cdc_rows_total", table="shop.items", op="insert") == 3
    assert value(s, "cdc_binlog_events_total", table="shop.items", op="insert") == 1
    assert value(s, "cdc_rows_total", table="shop.items", op="delete") == 1
    assert value(s, "cdc_binlog_events_total", table="shop.items", op="delete") == 1
    assert value(s, "cdc_rows_total", table="shop.orders", op="update") == 1
    assert value(s, "cdc_transactions_total") == 1


def test_bulk_outcomes_retries_latency_and_checkpoints():
    clock = Clock()
    metrics = PrometheusObserver(progress_with(clock), clock=clock.time, monotonic=clock.monotonic)
    s = samples(metrics)
    for outcome in ("ok", "stale"):  # present at 0 from the start
        assert value(s, "cdc_actions_written_total", outcome=outcome) == 0
    assert value(s, "cdc_retries_total", kind="request") == 0
    metrics.on_bulk(10, 0.03, 6, 1, 3, 0)
    metrics.on_retry("items", 3, 0.5)
    metrics.on_bulk(3, 0.2, 3, 0, 0, 0)
    metrics.on_retry("request", 3, 1.0)
    action = Action(ActionType.INDEX, "items", "1", 1, {"id": 1})
    metrics.on_acknowledged([action], Commit(P(500), None, int(clock.wall) - 4))
    # The batch's oldest commit, stamped 4 s ago in the binlog, read by cdc 30 ms ago.
    metrics.on_latency(Commit(P(450), None, int(clock.wall) - 4), clock.mono - 0.03)
    metrics.on_latency(Commit(P(460), None, 0), clock.mono - 0.002)  # no binlog time: only cdc's part
    metrics.on_checkpoint(Commit(P(500), None, 0))
    metrics.on_dead_letter(2)
    s = samples(metrics)
    assert value(s, "cdc_dead_letters_total") == 2
    assert value(s, "cdc_actions_written_total", outcome="ok") == 9
    assert value(s, "cdc_actions_written_total", outcome="stale") == 1
    assert value(s, "cdc_actions_failed_total", outcome="retry") == 3
    assert value(s, "cdc_actions_failed_total", outcome="rejected") == 0
    assert value(s, "cdc_retries_total", kind="items") == 1
    assert value(s, "cdc_retries_total", kind="request") == 1
    assert value(s, "cdc_bulk_duration_seconds_count") == 2
    assert value(s, "cdc_bulk_duration_seconds_sum") == pytest.approx(0.23)
    assert value(s, "cdc_bulk_duration_seconds_bucket", le="0.05") == 1
    assert value(s, "cdc_commit_to_acknowledged_seconds_count") == 1
    assert value(s, "cdc_commit_to_acknowledged_seconds_sum") == pytest.approx(4)
    assert value(s, "cdc_read_to_acknowledged_seconds_count") == 2
    assert value(s, "cdc_read_to_acknowledged_seconds_sum") == pytest.approx(0.032)
    # Buckets fine enough to tell 2 ms from 30 ms, and to check a 100 ms objective.
    assert value(s, "cdc_read_to_acknowledged_seconds_bucket", le="0.005") == 1
    assert value(s, "cdc_read_to_acknowledged_seconds_bucket", le="0.025") == 1
    assert value(s, "cdc_read_to_acknowledged_seconds_bucket", le="0.05") == 2
    assert value(s, "cdc_commit_to_acknowledged_seconds_bucket", le="0.1") == 0
    assert value(s, "cdc_checkpoints_total") == 1


def test_lag_checkpoint_age_and_positions_are_computed_when_scraped():
    clock = Clock()
    progress = progress_with(clock, heartbeat=5)
    metrics = PrometheusObserver(progress, clock=clock.time)
    s = samples(metrics)
    # Unknown values are absent, not 0: an alert must not read "no data" as "all fine".
    assert "cdc_seconds_behind_source" not in s and "cdc_checkpoint_age_seconds" not in s
    assert "cdc_binlog_file_index" not in s
    progress.on_start(P(120), None, clock.wall - 10)
    progress.on_commit(Commit(BinlogPosition("binlog.000009", 4567), None, int(clock.wall)))
    progress.on_event(clock.wall - 3)
    s = samples(metrics)
    assert value(s, "cdc_seconds_behind_source") == pytest.approx(3)
    assert value(s, "cdc_checkpoint_age_seconds") == pytest.approx(10)
    assert value(s, "cdc_binlog_file_index", stage="read") == 9
    assert value(s, "cdc_binlog_offset_bytes", stage="read") == 4567
    assert value(s, "cdc_binlog_file_index", stage="checkpoint") == 7
    assert value(s, "cdc_binlog_offset_bytes", stage="checkpoint") == 120
    clock.advance(20)  # no heartbeat for 20 s with heartbeat=5: 15 s more behind
    s = samples(metrics)
    assert value(s, "cdc_seconds_behind_source") == pytest.approx(18)
    assert value(s, "cdc_checkpoint_age_seconds") == pytest.approx(30)


def test_registries_are_separate():
    a = PrometheusObserver(progress_with(Clock()))
    b = PrometheusObserver(progress_with(Clock()))
    a.on_commit(Commit(P(1), None, 0))
    assert value(samples(a), "cdc_transactions_total") == 1
    assert value(samples(b), "cdc_transactions_total") == 0


def test_file_without_a_number_has_no_position_gauge():
    progress = progress_with(Clock())
    progress.on_start(BinlogPosition("weird", 44), None, None)
    s = samples(PrometheusObserver(progress))
    assert "cdc_binlog_file_index" not in s


# ---------------------------------------------------------------- through a real Pipeline
def run(pipeline: Pipeline, events, timeout: float = 5.0) -> None:
    done = threading.Event()
    errors = []

    def target():
        try:
            pipeline.run(ListSource(events), START)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(timeout), "pipeline did not finish"
    if errors:
        raise errors[0]


def test_pipeline_hooks_reach_the_metrics():
    now = int(time.time())
    progress = Progress(heartbeat=1)
    metrics = PrometheusObserver(progress)
    store = MemoryStore()
    sink = FakeSink(script=[SinkUnavailableError("down"), Outcome.RETRY])
    pipeline = Pipeline(RULES, sink, store, BatchConfig(max_interval=0.01),
                        RetryConfig(initial_backoff=0.001, max_backoff=0.01), checkpoint_interval=0,
                        observer=Observers([progress, metrics]))
    before = pipeline.last_loop
    run(pipeline, [row(1, 100, ts=now), row(2, 100, row_index=1, ts=now), Commit(P(200), "0-1-1", now),
                   Heartbeat(0.0)])
    assert pipeline.last_loop > before
    s = samples(metrics)
    assert value(s, "cdc_rows_total", table="shop.items", op="insert") == 2
    assert value(s, "cdc_binlog_events_total", table="shop.items", op="insert") == 1
    assert value(s, "cdc_transactions_total") == 1
    assert value(s, "cdc_retries_total", kind="request") == 1
    assert value(s, "cdc_retries_total", kind="items") == 1
    assert value(s, "cdc_actions_failed_total", outcome="retry") == 2
    assert value(s, "cdc_actions_written_total", outcome="ok") == 2
    assert value(s, "cdc_commit_to_acknowledged_seconds_count") == 1
    assert value(s, "cdc_read_to_acknowledged_seconds_count") == 1
    read_to_acknowledged = value(s, "cdc_read_to_acknowledged_seconds_sum")
    assert read_to_acknowledged is not None and 0 < read_to_acknowledged < 5
    assert value(s, "cdc_checkpoints_total") == 1
    assert value(s, "cdc_binlog_offset_bytes", stage="checkpoint") == 200
    assert value(s, "cdc_binlog_offset_bytes", stage="read") == 200
    assert value(s, "cdc_seconds_behind_source") == 0  # the heartbeat came last
    assert progress.sink_ok


# ---------------------------------------------------------------- Health
def health_with(clock: Clock, progress: Progress, last_loop=None, **kw) -> Health:
    kw = {"heartbeat": 1.0, "max_lag": 60.0, "stuck_after": 30.0, **kw}
    return Health(progress, (lambda: last_loop) if not callable(last_loop) else last_loop,
                  monotonic=clock.monotonic, **kw)


def test_alive_while_starting_and_until_the_loop_stalls():
    clock = Clock()
    progress = progress_with(clock, heartbeat=1)
    assert health_with(clock, progress, None).alive()[0]  # no pipeline yet: start-up or snapshot
    loop = {"t": clock.mono}
    health = health_with(clock, progress, lambda: loop["t"])
    progress.on_start(P(4), None, None)
    clock.advance(29)
    assert health.alive() == (True, {"status": "ok", "loop_age_seconds": 29.0, "stuck_after_seconds": 30.0})
    clock.advance(2)
    ok, body = health.alive()
    assert not ok and body["status"] == "stuck"
    loop["t"] = clock.mono
    assert health.alive()[0]
    clock.advance(100)
    progress.on_stopping()  # the final flush may take a while; do not call that stuck
    assert health.alive()[0]


def test_ready_needs_streaming_a_recent_event_a_good_bulk_and_small_lag():
    clock = Clock()
    progress = progress_with(clock, heartbeat=1)
    health = health_with(clock, progress, lambda: clock.mono, max_lag=60)
    ok, body = health.ready()
    assert not ok and not body["checks"]["streaming"]["ok"]
    progress.on_start(P(4), None, clock.wall)
    ok, body = health.ready()
    assert not ok and not body["checks"]["source"]["ok"]  # no heartbeat yet
    progress.on_event(0)
    ok, body = health.ready()
    assert ok, body
    clock.advance(3.5)  # more than 3 heartbeat periods of silence: the source is gone
    ok, body = health.ready()
    assert not ok and not body["checks"]["source"]["ok"] and body["checks"]["lag"]["ok"]
    progress.on_event(clock.wall - 61)  # reading old events: connected, but behind
    ok, body = health.ready()
    assert not ok and body["checks"]["source"]["ok"] and not body["checks"]["lag"]["ok"]
    progress.on_event(clock.wall - 1)
    assert health.ready()[0]
    progress.on_retry("request", 1, 1)
    ok, body = health.ready()
    assert not ok and not body["checks"]["elasticsearch"]["ok"]
    progress.on_bulk(1, 0.01, 1, 0, 0, 0)
    assert health.ready()[0]
    progress.on_stopping()
    assert not health.ready()[0]


def test_ready_says_what_the_elasticsearch_check_rests_on_before_the_first_bulk_request():
    """Before any bulk request, /readyz must not claim one succeeded: before start-up's cluster check
    nothing is known (not ok); after it, ok on the check's word, and the detail says so (an idle
    stream may send no bulk request for hours, and is ready all the same)."""
    clock = Clock()
    progress = progress_with(clock, heartbeat=1)
    health = health_with(clock, progress, lambda: clock.mono)
    assert health.ready()[1]["checks"]["elasticsearch"] == {"ok": False, "detail": "not checked yet (starting)"}
    progress.on_start(P(4), None, clock.wall)
    progress.on_event(0)
    ok, body = health.ready()
    assert ok and body["checks"]["elasticsearch"] == {
        "ok": True, "detail": "no bulk request yet; the cluster check at start-up passed"}
    progress.on_bulk(1, 0.01, 1, 0, 0, 0)
    assert health.ready()[1]["checks"]["elasticsearch"] == {"ok": True, "detail": "last bulk request succeeded"}


def test_stuck_after_allows_for_a_long_batch_interval():
    config = parse_config({"mysql": {"user": "u", "server_id": 1}})
    assert stuck_after(config) == 30
    config = parse_config({"mysql": {"user": "u", "server_id": 1}, "batch": {"max_interval": 40}})
    assert stuck_after(config) == 80


# ---------------------------------------------------------------- the HTTP server
@pytest.fixture
def served():
    clock = Clock()
    progress = progress_with(clock, heartbeat=1)
    loop = {"t": clock.mono}
    health = health_with(clock, progress, lambda: loop["t"])
    metrics = PrometheusObserver(progress)
    server = HealthServer("127.0.0.1", 0, health, metrics.exposition)
    yield server, clock, progress, loop, metrics
    server.close()


def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_http_endpoints(served):
    server, clock, progress, loop, metrics = served
    progress.on_start(P(4), None, clock.wall)
    progress.on_event(0)
    status, content_type, body = get(server, "/healthz")
    assert (status, content_type, json.loads(body)["status"]) == (200, "application/json", "ok")
    status, _, body = get(server, "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    metrics.on_commit(Commit(P(10), None, 0))
    status, content_type, body = get(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=")
    assert value(parse_metrics(body), "cdc_transactions_total") == 1
    assert value(read_metrics(f"http://127.0.0.1:{server.port}/metrics"), "cdc_transactions_total") == 1
    assert get(server, "/nope")[0] == 404

    clock.advance(40)  # the loop has not turned for 40 s
    status, _, body = get(server, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "stuck"
    status, _, body = get(server, "/readyz")
    checks = json.loads(body)["checks"]
    assert status == 503 and not checks["streaming"]["ok"] and not checks["source"]["ok"]


def test_http_port_in_use_is_a_config_error(served):
    server = served[0]
    with pytest.raises(ConfigError, match=f"metrics: cannot listen on 127.0.0.1:{server.port}"):
        HealthServer("127.0.0.1", server.port, server._httpd.health)


def test_http_server_closes_its_port(served):
    server = served[0]
    port = server.port
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    served[0].close = lambda: None  # the fixture's close is done


# ---------------------------------------------------------------- config
def test_metrics_config_defaults_and_validation():
    config = parse_config({"mysql": {"user": "u", "server_id": 1}})
    assert isinstance(config, Config)
    m = config.metrics
    assert (m.enabled, m.host, m.port, m.max_lag_seconds) == (False, "127.0.0.1", 9108, 60.0)
    config = parse_config({"mysql": {"user": "u", "server_id": 1},
                           "metrics": {"enabled": True, "host": "0.0.0.0", "port": 9200, "max_lag_seconds": 5}})
    assert (config.metrics.enabled, config.metrics.port, config.metrics.max_lag_seconds) == (True, 9200, 5)
    with pytest.raises(ConfigError) as err:
        parse_config({"mysql": {"user": "u", "server_id": 1},
                      "metrics": {"port": 0, "max_lag_seconds": 0, "path": "/m"}})
    text = str(err.value)
    assert "metrics.port" in text and "metrics.max_lag_seconds" in text and "metrics.path: unknown key" in text
