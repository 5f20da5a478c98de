"""The daemon against real MariaDB (and MySQL 9.7, `both_sources`) and Elasticsearch: changes,
transactions, schema changes, rotation."""

from __future__ import annotations

import json
import re
import signal
import time
from typing import Any

import pytest
from harness import (Admin, CdcSetup, binlog_position, binlog_position_and_gtid, both_sources, es_docs, wait_for,
                     wait_until_equal)


def rules_for(database: str, index_prefix: str, **tables: list[str] | None) -> list[dict]:
    rules = []
    for table, id_columns in tables.items():
        rule: dict[str, Any] = {"schema": database, "table": table, "index": f"{index_prefix}-{table}"}
        if id_columns:
            rule["id"] = id_columns
        rules.append(rule)
    return rules


@both_sources
def test_inserts_updates_deletes_keys_and_transactions(source_servers, db, database, es, index_prefix, tmp_path):
    # MySQL with enforce_gtid_consistency (GTIDs on) refuses a transaction that writes MyISAM
    # and InnoDB tables (error 1785): there `audit` is InnoDB, and the rollback takes both rows.
    db.execute(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(12,2), qty INT)",
        "CREATE TABLE lines_ (order_id INT, line INT, sku VARCHAR(20), PRIMARY KEY (order_id, line))",
        f"CREATE TABLE audit (id INT PRIMARY KEY, note VARCHAR(40)) ENGINE={'InnoDB' if db.mysql else 'MyISAM'}",
    )
    setup = CdcSetup(tmp_path, source_servers, rules_for(database, index_prefix, items=None, lines_=None,
                                                         audit=None))
    cdc = setup.run()
    try:
        # multi-row statements
        db.execute("INSERT INTO items VALUES (1,'apple',1.50,10),(2,'pear',2.00,5),(3,'fig',3.25,1),(4,'kiwi',0.10,0)")
        db.execute("INSERT INTO lines_ VALUES (1,1,'a'),(1,2,'b'),(2,1,'c')")
        # a multi-statement transaction that touches the same row several times
        db.execute("BEGIN", "UPDATE items SET qty=qty+1 WHERE id=1", "UPDATE items SET qty=qty+1 WHERE id=1",
                   "DELETE FROM items WHERE id=4", "INSERT INTO items VALUES (4,'kiwi2',0.20,7)",
                   "UPDATE items SET price=price*2 WHERE id IN (2,3)", "COMMIT")
        # primary key changes: simple, composite, and a shift chain inside one
        # statement (2->3 then 1->2: "delete 2" and "index 2" meet in one event)
        db.execute("UPDATE items SET id=10 WHERE id=3")
        db.execute("UPDATE lines_ SET line=3 WHERE order_id=1 AND line=2")
        db.execute("UPDATE items SET id = id + 1 WHERE id IN (1,2) ORDER BY id DESC")
        db.execute("DELETE FROM items WHERE id=10")
        # A rolled-back transaction mixing InnoDB and MyISAM: MariaDB (ROW format)
        # logs the MyISAM row as its own committed transaction (it did persist)
        # and never logs the InnoDB row (observed with SHOW BINLOG EVENTS).
        db.execute("BEGIN", "INSERT INTO items VALUES (99,'ghost',9,9)", "INSERT INTO audit VALUES (1,'x')", "ROLLBACK")
        assert db.query("SELECT COUNT(*) AS n FROM items WHERE id=99")[0]["n"] == 0
        db.execute("INSERT INTO items VALUES (5,'late',5.55,5)")

        # The start-up snapshot races these writes, and the stream then replays them from
        # where it started: until it has caught up, a row the snapshot already saw deleted
        # can be indexed again by its older insert and removed by its delete (README
        # "Limitations"). So compare once the checkpoint is at the binlog's end, not at the
        # first moment the index happens to match.
        end = binlog_position(db)
        wait_for("the checkpoint at the binlog's end", lambda: (setup.position() or ("", 0)) >= end)
        wait_until_equal(db, es, "items", f"{index_prefix}-items", ["id"])
        wait_until_equal(db, es, "lines_", f"{index_prefix}-lines_", ["order_id", "line"])
        wait_until_equal(db, es, "audit", f"{index_prefix}-audit", ["id"])
        docs = es_docs(es, f"{index_prefix}-items")
        assert "1" not in docs and docs["2"]["name"] == "apple" and docs["3"]["name"] == "pear"
        assert "99" not in docs
        assert docs["4"] == {"id": 4, "name": "kiwi2", "price": "0.20", "qty": 7}
    finally:
        assert cdc.stop() == 0


@both_sources
def test_alter_table_mid_stream_uses_event_time_columns(source_servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10), b INT)")
    # Streaming only: a snapshot racing these writes would (rightly) copy rows with
    # the columns of its read, and this test is about the columns of each event.
    setup = CdcSetup(tmp_path, source_servers, rules_for(database, index_prefix, t=None), snapshot__mode="never")
    file, pos = binlog_position(db)
    cdc = setup.run()
    index = f"{index_prefix}-t"
    try:
        db.execute("INSERT INTO t VALUES (1,'one',1)")
        db.execute("ALTER TABLE t ADD COLUMN c VARCHAR(10) DEFAULT 'dflt' AFTER a")
        db.execute("INSERT INTO t VALUES (2,'two','c2',2)")
        db.execute("ALTER TABLE t DROP COLUMN b")
        db.execute("INSERT INTO t VALUES (3,'three','c3')")
        db.execute("ALTER TABLE t CHANGE COLUMN a alpha VARCHAR(10)")
        db.execute("INSERT INTO t VALUES (4,'four','c4')")
        db.execute("ALTER TABLE t MODIFY COLUMN c VARCHAR(10) FIRST")
        db.execute("INSERT INTO t (id, alpha, c) VALUES (5,'five','c5')")
        expected = {
            "1": {"id": 1, "a": "one", "b": 1},
            "2": {"id": 2, "a": "two", "c": "c2", "b": 2},
            "3": {"id": 3, "a": "three", "c": "c3"},
            "4": {"id": 4, "alpha": "four", "c": "c4"},
            "5": {"c": "c5", "id": 5, "alpha": "five"},
        }
        deadline = time.monotonic() + 30
        while es_docs(es, index) != expected and time.monotonic() < deadline:
            time.sleep(0.3)
        assert es_docs(es, index) == expected
    finally:
        assert cdc.stop() == 0

    # Replaying those events later, after the table changed again, still decodes
    # each row with the columns it had when it was written.
    es.indices.delete(index=list(es.indices.get(index=index)))  # the index behind the alias (and the alias)
    code, out = setup.command("replay", "--from-position", f"{file}:{pos}")
    assert code == 0, out
    assert es_docs(es, index) == expected


@both_sources
@pytest.mark.serial  # restarts the shared server
def test_rotation_and_mariadb_restart(source_servers, db, database, es, index_prefix, tmp_path):
    """Also on MySQL: its restart empties caching_sha2_password's cache, so the reconnect logs in in full."""
    import servers as dev

    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    setup = CdcSetup(tmp_path, source_servers, rules_for(database, index_prefix, t=None))
    cdc = setup.run()
    index = f"{index_prefix}-t"
    try:
        db.execute("INSERT INTO t VALUES (1,1),(2,2)")
        db.execute("FLUSH BINARY LOGS")
        db.execute("INSERT INTO t VALUES (3,3)", "UPDATE t SET v=10 WHERE id=1")
        wait_until_equal(db, es, "t", index, ["id"])
        before = setup.saved()["file"]

        db.close()
        # table ids are reused after a restart; names must still line up
        down, up = (dev.mysql_down, dev.mysql_up) if db.mysql else (dev.mariadb_down, dev.mariadb_up)
        down()
        up()
        admin = Admin(source_servers, database)
        admin.execute("INSERT INTO t VALUES (4,4)", "DELETE FROM t WHERE id=2", "UPDATE t SET v=30 WHERE id=3")
        wait_until_equal(admin, es, "t", index, ["id"], timeout=90)
        assert setup.saved()["file"] != before  # the checkpoint followed the rotation
        admin.close()
    finally:
        assert cdc.stop() == 0
    assert cdc.events("reconnect")


@both_sources
@pytest.mark.serial  # compares positions with the end of the binlog
def test_graceful_stop_saves_position_and_restart_reprocesses_nothing(source_servers, db, database, es, index_prefix,
                                                                      tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    setup = CdcSetup(tmp_path, source_servers, rules_for(database, index_prefix, t=None))
    cdc = setup.run()
    # After the copy of the (empty) table: rows written during it can reach Elasticsearch by the copy
    # before the stream has read their commits, and the position below would then be rightly behind.
    cdc.wait_for_event("snapshot_done")
    db.execute("INSERT INTO t VALUES (1,1),(2,2),(3,3)", "UPDATE t SET v=5 WHERE id=2")
    wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    assert cdc.stop(signal.SIGTERM) == 0
    file, pos, gtid = binlog_position_and_gtid(db)
    saved = setup.saved()
    assert (saved["file"], saved["pos"]) == (file, pos)  # nothing else was written since
    assert saved["gtid"] == gtid  # MariaDB's 0-1-N, MySQL's uuid:1-N

    again = setup.run()
    again.wait_for_event("start", how="resume")
    # One new row, waited for in Elasticsearch: once it is there the stream has read
    # past everything before it, so the counts below tell what was reprocessed (none).
    db.execute("INSERT INTO t VALUES (4,4)")
    wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    assert again.stop(signal.SIGINT) == 0
    stopped = again.stopped()
    assert (stopped["rows"], stopped["transactions"], stopped["actions"]) == (1, 1, 1)


@both_sources
def test_a_restart_by_gtid_resumes_after_the_saved_gtid_set(source_servers, db, database, es, index_prefix,
                                                            tmp_path):
    """A checkpoint to resume by GTID (`by_gtid`: what cdc saves when it moves to a new server at a
    failover, until its first commit there): the server sends only the transactions the saved set
    lacks, MySQL's uuid:1-N set as MariaDB's domain-server-seq state, and the set grows on."""
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    setup = CdcSetup(tmp_path, source_servers, rules_for(database, index_prefix, t=None))
    cdc = setup.run()
    # After the copy of the empty table, so that the saved set has these two transactions: rows written
    # during the copy can reach the index by the copy before the stream has read their commits.
    cdc.wait_for_event("snapshot_done")
    db.execute("INSERT INTO t VALUES (1,1),(2,2)", "UPDATE t SET v=20 WHERE id=2")
    wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    assert cdc.stop() == 0
    saved = setup.saved()
    assert saved["gtid"] and not saved["by_gtid"]
    setup.checkpoint_path.write_text(json.dumps({**saved, "by_gtid": True}))

    db.execute("INSERT INTO t VALUES (3,3)", "DELETE FROM t WHERE id=1")  # while cdc is stopped
    again = setup.run()
    try:
        again.wait_for_event("start", how="failover")
        db.execute("UPDATE t SET v=30 WHERE id=3")
        wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    finally:
        assert again.stop() == 0
    assert f"resuming from GTID {saved['gtid']} after a failover" in again.text()
    stopped = again.stopped()
    assert (stopped["rows"], stopped["transactions"]) == (3, 3)  # the three since, nothing before them
    resumed = setup.saved()
    _, _, gtid = binlog_position_and_gtid(db)
    assert resumed["gtid"] == gtid and resumed["gtid"] != saved["gtid"]
    if db.mysql:  # one server's uuid, its transactions 1..N
        assert re.fullmatch(r"[0-9a-f-]{36}:1-\d+", resumed["gtid"]), resumed["gtid"]


def test_first_start_at_configured_position(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    file, pos = binlog_position(db)
    db.execute("INSERT INTO t VALUES (1,1)", "INSERT INTO t VALUES (2,2)")
    setup = CdcSetup(tmp_path, servers, rules_for(database, index_prefix, t=None), start__position=f"{file}:{pos}")
    cdc = setup.run()
    try:
        wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    finally:
        assert cdc.stop() == 0
