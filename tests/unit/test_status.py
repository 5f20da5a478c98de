"""`cdc status` without servers: byte arithmetic, the text form, and lag read from a /metrics endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdc.stream.checkpoint import FileCheckpointStore
from cdc.config import parse_config
from cdc.ops.health import Health, HealthServer
from cdc.ops.metrics import PrometheusObserver
from cdc.model import BinlogPosition, Commit
from cdc.ops.progress import Progress
from cdc.ops.status import bytes_behind, format_text, gather, metrics_url

LOGS = [("binlog.000001", 1000), ("binlog.000002", 5000), ("binlog.000003", 700)]


def P(text: str) -> BinlogPosition:
    return BinlogPosition.parse(text)


@pytest.mark.parametrize("checkpoint, server, expected", [
    ("binlog.000003:500", "binlog.000003:700", (0, 200)),
    ("binlog.000003:700", "binlog.000003:700", (0, 0)),
    ("binlog.000001:400", "binlog.000003:700", (2, 600 + 5000 + 700)),
    ("binlog.000002:5000", "binlog.000003:700", (1, 700)),
    ("binlog.000000:4", "binlog.000003:700", (None, None)),  # purged
    ("binlog.000003:4", "binlog.000002:9", (None, None)),  # checkpoint ahead of this server
])
def test_bytes_behind(checkpoint, server, expected):
    assert bytes_behind(P(checkpoint), P(server), LOGS) == expected


@pytest.mark.parametrize("host, url", [
    ("127.0.0.1", "http://127.0.0.1:9108/metrics"),
    ("0.0.0.0", "http://127.0.0.1:9108/metrics"),
    ("::1", "http://[::1]:9108/metrics"),
])
def test_metrics_url(host, url):
    config = parse_config({"mysql": {"user": "u", "server_id": 1}, "metrics": {"enabled": True, "host": host}})
    assert metrics_url(config) == url


def test_text_form_from_mysql_lag():
    report = {
        "checkpoint": {"position": "binlog.000001:400", "file": "binlog.000001", "pos": 400, "gtid": "0-1-9",
                       "saved_at": 1.0, "age_seconds": 3.25},
        "daemon_running": False,
        "lag": {"source": "mysql", "seconds_behind_source": None, "read_position": None,
                "server_position": "binlog.000003:700", "files_behind": 2, "bytes_behind": 6300},
        "snapshot": None, "dead_letters": None, "problems": [],
    }
    assert format_text(report).splitlines() == [
        "checkpoint    binlog.000001:400  (saved 3.2 s ago)",
        "gtid          0-1-9",
        "daemon        not running",
        "lag           6,300 bytes of binlog behind the server at binlog.000003:700, 2 binlog file(s) on",
        "snapshot      none in progress",
        "dead letters  none (dead_letter.on_rejected is stop)",
    ]
    report["dead_letters"] = 3
    assert format_text(report).splitlines()[-1] == "dead letters  3 (cdc dlq lists them)"


def test_dead_letter_count(tmp_path):
    from cdc.stream.deadletter import DeadLetterStore
    from cdc.model import Action, ActionType, ItemResult, Outcome

    base = {"mysql": {"user": "u", "server_id": 1}}
    config = parse_config(base, base_dir=str(tmp_path))
    assert gather(config)["dead_letters"] is None  # not in use
    config = parse_config({**base, "dead_letter": {"on_rejected": "dead_letter", "path": "dl.jsonl"}},
                          base_dir=str(tmp_path))
    assert gather(config)["dead_letters"] == 0
    action = Action(ActionType.INDEX, "items", "1", 5, {"id": 1}, schema="s", table="t", position=P("binlog.000001:9"))
    DeadLetterStore(tmp_path / "dl.jsonl").add([ItemResult(action, Outcome.REJECTED, 400, "mapper", "bad")] * 2)
    assert gather(config)["dead_letters"] == 2


def write_config(tmp_path: Path, **sections) -> Path:
    config = {"mysql": {"user": "u", "server_id": 1, "host": "127.0.0.1", "port": 1, "connect_timeout": 1},
              "checkpoint": {"path": "state/cp.json"}, **sections}
    path = tmp_path / "cdc.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_no_checkpoint_yet(tmp_path):
    config = parse_config(yaml.safe_load(write_config(tmp_path).read_text()), base_dir=str(tmp_path))
    report = gather(config)
    assert report["checkpoint"] is None and report["daemon_running"] is False
    assert report["lag"]["source"] is None
    assert "none (cdc has not started" in format_text(report)


def test_lag_from_a_running_daemons_metrics(tmp_path):
    """A daemon holds the lock and serves /metrics: status reads lag and position from there."""
    progress = Progress(heartbeat=1)
    progress.on_start(P("binlog.000012:4"), None, None)
    progress.on_commit(Commit(P("binlog.000013:777"), None, 0))
    progress.on_event(0)
    server = HealthServer("127.0.0.1", 0, Health(progress, lambda: None, heartbeat=1, max_lag=60, stuck_after=30),
                          PrometheusObserver(progress).exposition)
    path = write_config(tmp_path, metrics={"enabled": True, "port": server.port})
    config = parse_config(yaml.safe_load(path.read_text()), base_dir=str(tmp_path))
    store = FileCheckpointStore(config.resolve(config.checkpoint.path))
    store.lock()  # stands in for the daemon
    store.save(P("binlog.000012:4"), "0-1-3")
    try:
        report = gather(config)
    finally:
        store.unlock()
        server.close()
    assert report["daemon_running"] is True
    assert report["checkpoint"]["position"] == "binlog.000012:4" and report["checkpoint"]["gtid"] == "0-1-3"
    assert 0 <= report["checkpoint"]["age_seconds"] < 5
    assert report["lag"]["source"] == f"http://127.0.0.1:{server.port}/metrics"
    assert report["lag"]["seconds_behind_source"] == 0
    assert report["lag"]["read_position"] == "binlog.000013:777"
    assert report["problems"] == []
    assert "0.0 s behind the source, read up to binlog.000013:777" in format_text(report)


def test_cli_reports_an_unreachable_mysql_as_a_note(tmp_path):
    """Metrics off, daemon stopped: lag must come from MySQL, which is not there (port 1)."""
    path = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    FileCheckpointStore(tmp_path / "state" / "cp.json").save(P("binlog.000002:120"), None)
    result = subprocess.run([sys.executable, "-m", "cdc", "status", "--config", str(path), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["checkpoint"]["position"] == "binlog.000002:120"
    assert report["daemon_running"] is False and report["lag"]["source"] is None
    assert report["snapshot"] is None and report["dead_letters"] is None
    assert len(report["problems"]) == 1 and "cannot measure lag" in report["problems"][0]
    text = subprocess.run([sys.executable, "-m", "cdc", "status", "--config", str(path)],
                          capture_output=True, text=True, timeout=60).stdout
    assert "daemon        not running" in text and "note: cannot measure lag" in text


def test_cli_bad_config_exits_2(tmp_path):
    path = tmp_path / "cdc.yml"
    path.write_text("mysql: {user: u}\n")
    result = subprocess.run([sys.executable, "-m", "cdc", "status", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "server_id" in result.stderr


def test_a_sink_writers_stalled_partitions_from_its_metrics(tmp_path):
    """A `cdc sink` writer holds no checkpoint lock; status finds it by its partition metrics (issue 27)."""
    progress = Progress(heartbeat=1)
    metrics = PrometheusObserver(progress)
    metrics.on_partitions({("cdc.actions", 0): 2500, ("cdc.actions", 1): 0, ("cdc.actions", 10): 3},
                          {("cdc.actions", 0)})
    server = HealthServer("127.0.0.1", 0, Health(progress, lambda: None, heartbeat=1, max_lag=60, stuck_after=30),
                          metrics.exposition)
    path = write_config(tmp_path, metrics={"enabled": True, "port": server.port})
    config = parse_config(yaml.safe_load(path.read_text()), base_dir=str(tmp_path))
    try:
        report = gather(config)
    finally:
        server.close()
    assert report["daemon_running"] is False
    assert report["kafka"]["partitions"] == [
        {"topic": "cdc.actions", "partition": 0, "lag": 2500, "stalled": True},
        {"topic": "cdc.actions", "partition": 1, "lag": 0, "stalled": False},
        {"topic": "cdc.actions", "partition": 10, "lag": 3, "stalled": False}]
    text = format_text(report)
    assert "kafka         writer of 3 partition(s), 2,503 message(s) behind" in text
    assert "STALLED: cdc.actions[0] (2,500 waiting) assigned to this writer but not read" in text


def test_no_sink_writer_listening_leaves_no_kafka_section(tmp_path):
    path = write_config(tmp_path, metrics={"enabled": True, "port": 9})  # nothing listens on the discard port
    config = parse_config(yaml.safe_load(path.read_text()), base_dir=str(tmp_path))
    report = gather(config, timeout=0.5)
    assert report["kafka"] is None and "kafka " not in format_text(report)
