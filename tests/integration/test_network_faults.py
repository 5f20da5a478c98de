"""Network faults between cdc and its servers, injected with a TCP proxy; Elasticsearch ends equal to MariaDB."""

from __future__ import annotations

import json
import threading
import time

import pytest
from harness import (CdcSetup, WriteLoad, create_two_tables, es_docs, free_port, index_rules, matched, wait_for,
                     wait_until_equal)
from proxy import FaultProxy


@pytest.fixture
def proxy_to_mariadb(servers):
    proxy = FaultProxy(servers.mariadb_host, servers.mariadb_port)
    yield proxy
    proxy.close()


@pytest.fixture
def proxy_to_es(servers):
    host, port = servers.es_url.removeprefix("http://").split(":")
    proxy = FaultProxy(host, int(port))
    yield proxy
    proxy.close()


def test_blackholed_binlog_connection_is_detected_and_resumed(servers, db, database, es, index_prefix, tmp_path,
                                                             proxy_to_mariadb):
    create_two_tables(db)
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a", "b"),
                     mysql__port=proxy_to_mariadb.port, mysql__read_timeout=3, mysql__heartbeat=1,
                     mysql__connect_timeout=2)
    cdc = setup.run()
    try:
        # Streaming before the cut: the connection blackholed is the binlog's, not the snapshot's.
        cdc.wait_for_event("snapshot_done", timeout=60)
        db.execute("INSERT INTO a VALUES (1, 1, 'x')")
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])
        cut = time.monotonic()
        proxy_to_mariadb.set_mode("blackhole")  # packets vanish; no reset, no close
        with WriteLoad(servers, database, rate=50):
            cdc.wait_for_log("binlog connection lost", timeout=30)
            detected = time.monotonic() - cut
            time.sleep(1.5)  # writes pile up behind the dead connection (50/s), then flow again
            proxy_to_mariadb.set_mode("forward")
            time.sleep(1)
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=60)
        wait_until_equal(db, es, "b", f"{index_prefix}-b", ["k1", "k2"], timeout=60)
    finally:
        assert cdc.stop() == 0
    assert detected < 3 + 5  # read_timeout plus slack: a silent network is noticed in seconds
    assert cdc.events("reconnect")


def test_bulk_response_that_never_arrives_is_resent_idempotently(servers, db, database, es, index_prefix, tmp_path,
                                                                proxy_to_es):
    create_two_tables(db)
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a", "b"),
                     elasticsearch__hosts=[f"http://127.0.0.1:{proxy_to_es.port}"], elasticsearch__request_timeout=2)
    cdc = setup.run()
    try:
        # Streaming first: a row written while the tables are copied is copied and streamed, and the stream's
        # copy of it could be the batch held below, with the test's transaction queued behind it.
        cdc.wait_for_event("snapshot_done", timeout=60)
        db.execute("INSERT INTO a VALUES (1, 1, 'x')")
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])
        proxy_to_es.set_mode("hold")  # requests reach Elasticsearch; their answers do not come back
        db.execute("BEGIN", "INSERT INTO a VALUES (2, 2, 'y'), (3, 3, 'z')", "UPDATE a SET v = 10 WHERE id = 1",
                   "COMMIT")  # one transaction, so one batch
        cdc.wait_for_log("retrying", timeout=30)
        # The writes were applied although cdc never heard so: all three, the update of id 1 too, before the
        # answers are let through (else the re-sent writes would not all find their own earlier copies).
        def applied() -> bool:
            docs = es_docs(es, f"{index_prefix}-a")
            return {"1", "2", "3"} <= docs.keys() and docs["1"]["v"] == 10

        wait_for("the held writes applied in Elasticsearch", applied, timeout=30)
        assert setup.saved()["pos"] < db.execute("SHOW MASTER STATUS")[0][1]  # not acknowledged, not saved
        proxy_to_es.set_mode("forward")
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=60)
    finally:
        assert cdc.stop() == 0
    stale = int(matched(r"\((\d+) already newer\)", cdc.text()).group(1))
    assert stale >= 3  # the re-sent writes found their own earlier copies: counted done, nothing overwritten


def test_items_rejected_with_429_are_retried_alone(servers, db, database, es, index_prefix, tmp_path):
    """A flood-stage block (`index.blocks.read_only_allow_delete`, which answers 429
    cluster_block_exception) is waited out as a retry: nothing dead-lettered even where rejected
    documents would be, the checkpoint holds, `cdc status` and the metrics say why, and cdc goes on
    by itself once the block is lifted."""
    create_two_tables(db)
    for t in ("a", "b"):
        es.indices.create(index=f"{index_prefix}-{t}")
    # The flood-stage block makes Elasticsearch answer 429 for every item of index b only.
    es.indices.put_settings(index=f"{index_prefix}-b", settings={"index.blocks.read_only_allow_delete": True})
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a", "b"), snapshot__mode="never",
                     metrics__enabled=True, metrics__port=free_port(), dead_letter__on_rejected="dead_letter")

    def writer() -> dict:
        report = setup.output("status", "--json", timeout=60)
        assert report.returncode == 0, report.stderr
        return json.loads(report.stdout)["writer"]

    cdc = setup.run()
    try:
        db.execute("BEGIN", "INSERT INTO a VALUES (1, 1, 'x'), (2, 2, 'y')", "INSERT INTO b VALUES (1, 1, 1.5)",
                   "COMMIT")
        cdc.wait_for_log("items failed with 429", timeout=30)
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])  # the good part of the bulk is in
        before = setup.position()
        waiting = writer()
        assert waiting["waiting"] and "429 (cluster_block_exception" in waiting["reason"], waiting
        assert "read-only-allow-delete" in setup.output("status", timeout=60).stdout
        time.sleep(1)
        assert setup.position() == before  # but the transaction is not done, so no checkpoint past it

        def unblock():
            es.indices.put_settings(index=f"{index_prefix}-b", settings={"index.blocks.read_only_allow_delete": None})

        threading.Timer(2, unblock).start()
        wait_until_equal(db, es, "b", f"{index_prefix}-b", ["k1", "k2"], timeout=60)
        deadline = time.monotonic() + 10
        while setup.position() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert setup.position() != before
        assert writer() == {"waiting": False, "reason": None}
    finally:
        assert cdc.stop() == 0
    assert "retrying 1 actions" in cdc.text()  # only the failed item went again
    assert not cdc.events("dead_letter")


_WATERMARKS = ("cluster.routing.allocation.disk.watermark.low", "cluster.routing.allocation.disk.watermark.high",
               "cluster.routing.allocation.disk.watermark.flood_stage")


@pytest.fixture
def past_flood_stage(es):
    """A callable that puts the node past its flood-stage watermark as a full disk would: every watermark raised
    to more free space than any disk has (a byte value is the free space below which it trips), and disk usage
    checked every 10 s (the least Elasticsearch takes) instead of every 30. Puts the watermarks back at the end, whatever happened: the
    block would stop every later test's writes (the test is serial for the same reason)."""
    def trip() -> None:
        # The test servers start with the disk checks off (scripts/servers.py: shared development disks);
        # a persistent cluster setting overrides that node setting for the test.
        es.cluster.put_settings(persistent={"cluster.routing.allocation.disk.threshold_enabled": True,
                                            "cluster.info.update.interval": "10s",  # its minimum
                                            **{key: "100pb" for key in _WATERMARKS}})

    yield trip
    es.cluster.put_settings(persistent={key: None for key in _WATERMARKS})
    # Elasticsearch lifts the flood-stage block itself at its next disk check once usage is under the high
    # watermark (with the checks still on); wait for that before the checks go back off.
    wait_for("the flood-stage blocks lifted", lambda: not _blocked(es, "*"), timeout=120)
    es.cluster.put_settings(persistent={"cluster.routing.allocation.disk.threshold_enabled": None,
                                        "cluster.info.update.interval": None})


def _blocked(es, index: str) -> list[str]:
    """The indices matching `index` that carry the read-only-allow-delete block."""
    answer = es.indices.get_settings(index=index, name="index.blocks.read_only_allow_delete",
                                     expand_wildcards="all", flat_settings=True)
    return [name for name, body in answer.body.items()
            if body.get("settings", {}).get("index.blocks.read_only_allow_delete") == "true"]


@pytest.mark.serial
def test_a_node_past_its_flood_stage_is_waited_out_until_elasticsearch_lifts_its_own_block(
        servers, db, database, es, index_prefix, tmp_path, past_flood_stage):
    """The node's disk past the flood-stage watermark (the watermarks lowered under its free space, issue 33
    item 2): Elasticsearch itself puts `read_only_allow_delete` on the index, cdc waits (429 retried, nothing
    dead-lettered, the checkpoint held, `cdc status` says why), and when the disk is back under the high
    watermark Elasticsearch lifts the block by itself and cdc goes on with nothing lost."""
    create_two_tables(db)
    index = f"{index_prefix}-a"
    # metrics on: `cdc status` asks the running daemon why it waits
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a"), snapshot__mode="never",
                     dead_letter__on_rejected="dead_letter", metrics__enabled=True, metrics__port=free_port())
    cdc = setup.run()
    try:
        db.execute("INSERT INTO a VALUES (1, 1, 'x')")
        wait_until_equal(db, es, "a", index, ["id"])
        past_flood_stage()
        wait_for("Elasticsearch's own flood-stage block", lambda: _blocked(es, index), timeout=60)
        before = setup.position()
        db.execute("INSERT INTO a VALUES (2, 2, 'y')", "UPDATE a SET v = 10 WHERE id = 1")
        cdc.wait_for_log("items failed with 429", timeout=60)
        report = setup.output("status", "--json", timeout=60)
        writer = json.loads(report.stdout)["writer"]
        assert writer["waiting"] and "cluster_block_exception" in writer["reason"], writer
        assert setup.position() == before  # the transactions are not done: no checkpoint past them
        # The disk "frees up": the watermarks back to their defaults. Elasticsearch lifts the block at its next
        # disk check, and cdc's retries get through.
        es.cluster.put_settings(persistent={key: None for key in _WATERMARKS})
        wait_for("Elasticsearch to lift its block", lambda: not _blocked(es, index), timeout=120)
        wait_until_equal(db, es, "a", index, ["id"], timeout=120)
        wait_for("the checkpoint to move on", lambda: setup.position() != before, timeout=60)
    finally:
        assert cdc.stop() == 0, cdc.text()[-3000:]
    assert not cdc.events("dead_letter")

