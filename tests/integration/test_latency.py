"""Latency features on real servers: per-rule `refresh: wait_for`, and the live latency histograms."""

from __future__ import annotations

import time
import urllib.request

from harness import CdcSetup, binlog_position


def _seq(position: tuple[str, int]) -> tuple[int, int]:
    file, pos = position
    return int(file.rsplit(".", 1)[1]), pos


def _wait_checkpoint(setup: CdcSetup, cdc, at_least: tuple[str, int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        saved = setup.position()
        if saved is not None and _seq(saved) >= _seq(at_least):
            return
        assert time.monotonic() < deadline and cdc.popen.poll() is None, cdc.text()[-3000:]
        time.sleep(0.005)


def test_refresh_wait_for_makes_each_write_searchable_by_the_time_it_is_checkpointed(
        servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE waits (id INT PRIMARY KEY, v INT)", "CREATE TABLE plain (id INT PRIMARY KEY, v INT)")
    waits, plain = f"{index_prefix}-waits", f"{index_prefix}-plain"
    # An explicit interval: refreshes run on schedule (no search-idle shortcut), 2 s apart.
    for index in (waits, plain):
        es.indices.create(index=index, settings={"index": {"refresh_interval": "2s"}})
    setup = CdcSetup(tmp_path, servers, [
        {"schema": database, "table": "waits", "index": waits, "refresh": "wait_for"},
        {"schema": database, "table": "plain", "index": plain}],
        snapshot__mode="never")  # snapshot writes do not wait for refreshes: stream only
    cdc = setup.run()
    unseen_plain = 0
    try:
        for i in range(1, 6):
            db.execute(f"INSERT INTO waits VALUES ({i}, {i})")
            _wait_checkpoint(setup, cdc, binlog_position(db))
            # No refresh asked for here: the write must already be searchable.
            assert es.count(index=waits, query={"term": {"id": i}})["count"] == 1, f"row {i} not searchable"
            db.execute(f"INSERT INTO plain VALUES ({i}, {i})")
            _wait_checkpoint(setup, cdc, binlog_position(db))
            unseen_plain += es.count(index=plain, query={"term": {"id": i}})["count"] == 0
    finally:
        assert cdc.stop() == 0
    # The control: without wait_for, a write acknowledged moments ago is usually not searchable
    # yet (2 s between refreshes), so the check above could fail.
    assert unseen_plain >= 3


def test_live_latency_histograms_count_acknowledged_batches(servers, db, database, es, index_prefix, tmp_path):
    from harness import free_port

    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    port = free_port()
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}],
                     metrics__enabled=True, metrics__port=port)
    cdc = setup.run()
    try:
        for i in range(1, 21):
            db.execute(f"INSERT INTO t VALUES ({i}, {i})")
        _wait_checkpoint(setup, cdc, binlog_position(db))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        assert cdc.stop() == 0
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith(("cdc_read_to_acknowledged_seconds_", "cdc_commit_to_acknowledged_seconds_"))
              and "bucket" not in line}
    assert counts["cdc_read_to_acknowledged_seconds_count"] >= 1
    assert counts["cdc_commit_to_acknowledged_seconds_count"] >= 1
    assert counts["cdc_read_to_acknowledged_seconds_sum"] > 0  # how long is for bench/, not for a test
