"""Operations against the real servers: /metrics, /healthz, /readyz, sd_notify and `cdc status`.

Outages are made with a small TCP proxy between cdc and a server (on loopback),
so the shared servers themselves are never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest
from harness import CdcSetup, binlog_position, free_port, wait_until_equal
from proxy import FaultProxy

from cdc.ops.metrics import parse_metrics


@pytest.fixture
def proxies(servers):
    made: list[FaultProxy] = []

    def make(host: str, port: int) -> FaultProxy:
        made.append(FaultProxy(host, port))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_http(url: str, status: int, timeout: float = 30, check=lambda body: True) -> str:
    deadline = time.monotonic() + timeout
    last: object = None  # the last answer, or why there was none
    while time.monotonic() < deadline:
        try:
            last = answer = http_get(url)
            if answer[0] == status and check(answer[1]):
                return answer[1]
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s; last: {last}")


def metric(body: str, name: str, **labels) -> float | None:
    for sample_labels, value in parse_metrics(body).get(name, []):
        if sample_labels == {k: str(v) for k, v in labels.items()}:
            return value
    return None


def exported(body: str, name: str, **labels) -> float:
    """The value of a series the test knows cdc exports."""
    value = metric(body, name, **labels)
    assert value is not None, f"{name} {labels} is not exported"
    return value


def items_table(db) -> None:
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50))")


def rules(database: str, index_prefix: str) -> list[dict]:
    return [{"schema": database, "table": "items", "index": f"{index_prefix}-items"}]


# ---------------------------------------------------------------- metrics and health
@pytest.mark.serial
def test_metrics_and_health_follow_the_stream_and_its_outages(servers, db, database, es, index_prefix, tmp_path,
                                                              proxies):
    items_table(db)
    es_proxy = proxies("127.0.0.1", int(servers.es_url.rsplit(":", 1)[1]))
    mysql_proxy = proxies(servers.mariadb_host, servers.mariadb_port)
    port = free_port()
    setup = CdcSetup(tmp_path, servers, rules(database, index_prefix),
                     mysql__port=mysql_proxy.port, mysql__read_timeout=5,
                     elasticsearch__hosts=[f"http://127.0.0.1:{es_proxy.port}"],
                     metrics__enabled=True, metrics__port=port, metrics__max_lag_seconds=30)
    base = f"http://127.0.0.1:{port}"
    proc = setup.run()
    try:
        assert json.loads(wait_http(f"{base}/healthz", 200))["status"] in ("ok", "starting")
        ready = json.loads(wait_http(f"{base}/readyz", 200))  # after the first heartbeat (1 s)
        assert all(check["ok"] for check in ready["checks"].values())
        # Nothing written yet (the table is empty): ready on the start-up check's word, and saying so.
        assert ready["checks"]["elasticsearch"]["detail"] == "no bulk request yet; the cluster check at start-up passed"

        db.execute("INSERT INTO items VALUES (1,'a'),(2,'b'),(3,'c')")
        db.execute("UPDATE items SET name='B' WHERE id=2")
        db.execute("DELETE FROM items WHERE id=3")
        wait_until_equal(db, es, "items", f"{index_prefix}-items", ["id"])
        table = f"{database}.items"

        def caught_up(body: str) -> bool:
            checkpoint = setup.saved()
            return (metric(body, "cdc_binlog_offset_bytes", stage="checkpoint") == checkpoint["pos"]
                    and metric(body, "cdc_rows_total", table=table, op="delete") == 1)

        body = wait_http(f"{base}/metrics", 200, check=caught_up)
        assert json.loads(http_get(f"{base}/readyz")[1])["checks"]["elasticsearch"]["detail"] == \
            "last bulk request succeeded"
        assert metric(body, "cdc_rows_total", table=table, op="insert") == 3
        assert metric(body, "cdc_binlog_events_total", table=table, op="insert") == 1
        assert metric(body, "cdc_rows_total", table=table, op="update") == 1
        assert exported(body, "cdc_transactions_total") >= 3
        # One action per document and batch: how many depends on how the three commits were batched.
        assert 3 <= exported(body, "cdc_actions_written_total", outcome="ok") <= 5
        assert metric(body, "cdc_actions_failed_total", outcome="retry") == 0
        assert exported(body, "cdc_bulk_duration_seconds_count") >= 1
        assert exported(body, "cdc_commit_to_acknowledged_seconds_count") >= 1
        assert exported(body, "cdc_checkpoints_total") >= 1
        checkpoint = setup.saved()
        file_index = int(checkpoint["file"].rsplit(".", 1)[1])
        assert metric(body, "cdc_binlog_file_index", stage="checkpoint") == file_index
        assert metric(body, "cdc_binlog_file_index", stage="read") == file_index
        assert metric(body, "cdc_binlog_offset_bytes", stage="read") >= checkpoint["pos"]
        assert 0 <= exported(body, "cdc_checkpoint_age_seconds") < 10
        assert 0 <= exported(body, "cdc_seconds_behind_source") < 5

        # Elasticsearch goes away: not ready (the bulk fails), but alive (waiting is not stuck).
        es_proxy.cut()
        db.execute("INSERT INTO items VALUES (4,'d')")
        ready = json.loads(wait_http(f"{base}/readyz", 503, check=lambda b: not json.loads(b)["checks"]
                                     ["elasticsearch"]["ok"]))
        assert ready["checks"]["source"]["ok"]
        time.sleep(2)
        assert http_get(f"{base}/healthz")[0] == 200
        assert exported(http_get(f"{base}/metrics")[1], "cdc_retries_total", kind="request") >= 1
        # And why it waits, as /readyz has it: one cdc_sink_waiting series, at 1, with the failure.
        [(waiting, value)] = parse_metrics(http_get(f"{base}/metrics")[1])["cdc_sink_waiting"]
        assert value == 1 and waiting["reason"].startswith("bulk request failed: "), waiting
        es_proxy.restore()
        wait_http(f"{base}/readyz", 200, timeout=30)
        wait_until_equal(db, es, "items", f"{index_prefix}-items", ["id"])

        # MySQL goes away: no heartbeat for 3 periods, so not ready; the lag grows; still alive.
        mysql_proxy.cut()
        ready = json.loads(wait_http(f"{base}/readyz", 503, check=lambda b: not json.loads(b)["checks"]
                                     ["source"]["ok"]))
        assert ready["checks"]["elasticsearch"]["ok"]
        assert http_get(f"{base}/healthz")[0] == 200
        assert exported(http_get(f"{base}/metrics")[1], "cdc_seconds_behind_source") > 1
        mysql_proxy.restore()
        wait_http(f"{base}/readyz", 200, timeout=30)
        db.execute("INSERT INTO items VALUES (5,'e')")
        wait_until_equal(db, es, "items", f"{index_prefix}-items", ["id"])
    finally:
        code = proc.stop()
    assert code == 0, proc.text()[-3000:]
    with pytest.raises(OSError):  # the port is closed with the daemon
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_metrics_port_in_use_is_a_set_up_error(servers, db, database, index_prefix, tmp_path):
    items_table(db)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        setup = CdcSetup(tmp_path, servers, rules(database, index_prefix), metrics__enabled=True,
                         metrics__port=port)
        code, log = setup.command("run", timeout=60)
    assert code == 2, log[-3000:]
    assert f"metrics: cannot listen on 127.0.0.1:{port}" in log


# ---------------------------------------------------------------- a signal while waiting at start-up
@pytest.mark.parametrize("command", ["run", "sink"])
def test_a_signal_while_elasticsearch_is_unreachable_at_start_up_is_a_normal_stop(servers, db, database, index_prefix,
                                                                                 tmp_path, command):
    """SIGINT while cdc waits for an Elasticsearch it cannot reach: exit 0 with an info line, as a signal
    is everywhere else (docs/troubleshooting.md "Exit codes"; systemd counts 1 as a failure). The retry line names the
    host, without the credentials its URL carries. `cdc sink` reaches Elasticsearch before Kafka."""
    items_table(db)
    closed = free_port()
    setup = CdcSetup(tmp_path, servers, rules(database, index_prefix),
                     elasticsearch__hosts=[f"http://cdc:s3cret-pw@127.0.0.1:{closed}"])
    proc = setup.process(command).start()
    try:
        proc.wait_for_log(f"connecting to Elasticsearch at http://127.0.0.1:{closed}: ")
    finally:  # also when the line never comes: cdc would retry the closed port for ever
        code = proc.stop(signal.SIGINT)
    assert code == 0, proc.text()[-3000:]
    [stopped] = [r for r in proc.logs() if r.get("msg", "").startswith(
        f"stopped while connecting to Elasticsearch at http://127.0.0.1:{closed} (last attempt: ")]
    assert stopped["level"] == "info"
    assert not [r for r in proc.logs() if r.get("level") == "error"], proc.text()[-3000:]
    assert "s3cret-pw" not in proc.text()


# ---------------------------------------------------------------- systemd notify
@pytest.mark.serial  # compares positions with the end of the binlog
def test_systemd_notify_ready_watchdog_status_stopping(servers, db, database, es, index_prefix, tmp_path):
    items_table(db)
    directory = tempfile.mkdtemp(prefix="cdcn")  # unix socket paths are limited to 107 bytes
    address = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.1)
    messages: list[tuple[float, str]] = []
    done = threading.Event()

    def collect():
        while not done.is_set():
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                continue
            except OSError:
                return

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    setup = CdcSetup(tmp_path, servers, rules(database, index_prefix))
    # The harness passes its env on top of os.environ; systemd would set these two.
    setup.env.update({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
    proc = setup.run()
    try:
        deadline = time.monotonic() + 30
        while not any(m.startswith("READY=1") for _, m in messages) and time.monotonic() < deadline:
            time.sleep(0.1)
        db.execute("INSERT INTO items VALUES (1,'a'),(2,'b')")
        wait_until_equal(db, es, "items", f"{index_prefix}-items", ["id"])
        file, pos = binlog_position(db)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the STATUS line catches up with the checkpoint
            if any(f"checkpoint {file}:{pos}" in m for _, m in messages if m.startswith("STATUS=")):
                break
            time.sleep(0.2)
        watchdogs_before_stop = sum(1 for _, m in messages if m == "WATCHDOG=1")
        ready_at = next(t for t, m in messages if m.startswith("READY=1"))
        # SIGHUP is not a reload, and must not end the daemon either (its default action would).
        proc.popen.send_signal(signal.SIGHUP)
        proc.wait_for_log("SIGHUP ignored")
        db.execute("INSERT INTO items VALUES (3,'c')")
        wait_until_equal(db, es, "items", f"{index_prefix}-items", ["id"])
        assert proc.popen.poll() is None
    finally:
        code = proc.stop(signal.SIGTERM)
        done.set()
        collector.join(2)
        assert not collector.is_alive()
        # cdc has exited: all it sent is in the socket's buffer. Read what the collector left there.
        sock.setblocking(False)
        while True:
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except BlockingIOError:
                break
        sock.close()
        os.unlink(address)
        os.rmdir(directory)
    assert code == 0, proc.text()[-3000:]
    texts = [m for _, m in messages]
    ready = [m for m in texts if m.startswith("READY=1")]
    assert len(ready) == 1 and "\nSTATUS=running: read " in ready[0]
    # Half of 0.4 s: several pings per second while running.
    pings_after_ready = [t for t, m in messages if m == "WATCHDOG=1" and t > ready_at]
    assert watchdogs_before_stop >= 5 and len(pings_after_ready) >= 3, texts
    status = [m for m in texts if m.startswith("STATUS=running")]
    assert any(f"checkpoint {file}:{pos}" in m and "lag " in m for m in status), status
    stopping = [i for i, m in enumerate(texts) if m.startswith("STOPPING=1")]
    assert len(stopping) == 1, texts
    assert texts.index(ready[0]) < stopping[0]
    assert not any(m.startswith(("READY=1", "STATUS=running")) for m in texts[stopping[0]:])


# ---------------------------------------------------------------- cdc status
def cdc_status(setup: CdcSetup, *args: str) -> str:
    result = setup.output("status", *args, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def status(setup: CdcSetup) -> dict:
    return json.loads(cdc_status(setup, "--json"))


@pytest.mark.serial  # measures against the end of the binlog
def test_status_reads_a_running_daemons_metrics_then_measures_from_mysql(servers, db, database, es, index_prefix,
                                                                        tmp_path):
    items_table(db)
    port = free_port()
    setup = CdcSetup(tmp_path, servers, rules(database, index_prefix), metrics__enabled=True, metrics__port=port)
    proc = setup.run()
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 200)
        db.execute("INSERT INTO items VALUES (1,'a')")
        wait_until_equal(db, es, "items", f"{index_prefix}-items", ["id"])
        report = status(setup)
        assert report["daemon_running"] is True
        assert report["lag"]["source"] == f"http://127.0.0.1:{port}/metrics"
        assert 0 <= report["lag"]["seconds_behind_source"] < 5
        assert report["lag"]["read_position"].startswith(setup.saved()["file"] + ":")
        assert report["checkpoint"]["position"] == f"{setup.saved()['file']}:{setup.saved()['pos']}"
        assert report["snapshot"] is None and report["dead_letters"] is None
    finally:
        assert proc.stop() == 0
    saved = setup.saved()
    # Stopped: status measures what the server wrote since the checkpoint.
    report = status(setup)
    assert report["daemon_running"] is False and report["lag"]["source"] == "mysql"
    assert report["checkpoint"]["gtid"] == saved["gtid"]
    caught_up_bytes = report["lag"]["bytes_behind"]
    db.execute("INSERT INTO items VALUES (2,'%s')" % ("x" * 40))
    file, pos = binlog_position(db)
    report = status(setup)
    assert report["lag"]["server_position"] == f"{file}:{pos}"
    if file == saved["file"]:
        assert report["lag"]["files_behind"] == 0
        assert report["lag"]["bytes_behind"] == pos - saved["pos"] > caught_up_bytes
    text = cdc_status(setup)
    assert "daemon        not running" in text and f"behind the server at {file}:{pos}" in text
