"""Crashes, outages, replays and refusals: Elasticsearch ends equal to MariaDB, or cdc stops and says why."""

from __future__ import annotations

import json
import random
import re
import signal
import time

import pytest
from harness import (Admin, CdcSetup, WriteLoad, binlog_position, binlog_position_and_gtid, both_sources,
                     create_two_tables, es_docs, index_rules, wait_for, wait_until_equal)


@both_sources
def test_sigkill_at_random_moments_under_load_loses_nothing(source_servers, db, database, es, index_prefix,
                                                             tmp_path):
    create_two_tables(db)
    # Small batches and eager checkpoints put kills between flush and checkpoint often.
    setup = CdcSetup(tmp_path, source_servers, index_rules(database, index_prefix, "a", "b"),
                     batch__max_actions=50, batch__max_interval=0.1)
    rng = random.Random(42)
    kills = 0  # SIGKILLs that found cdc running (its exit status says the signal ended it)
    with WriteLoad(source_servers, database) as load:
        for _ in range(12):
            cdc = setup.run()
            # Up to 1.2 s streaming: 12 batch intervals (max_interval 0.1), each a flush then a
            # checkpoint, so a kill lands anywhere in that cycle; longer adds time, not cases.
            time.sleep(rng.uniform(0.2, 1.2))
            if cdc.stop(signal.SIGKILL) == -signal.SIGKILL:
                kills += 1
        cdc = setup.run()
        time.sleep(1)
    assert load.ops > 300
    try:
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=90)
        wait_until_equal(db, es, "b", f"{index_prefix}-b", ["k1", "k2"], timeout=90)
    finally:
        assert cdc.stop() == 0
    # Every kill landed in a running cdc: none of the 12 had exited by itself (which the load
    # should never make it do, and which would leave fewer crashes tested than it seems).
    assert kills == 12, f"{kills} of the 12 SIGKILLs found cdc running; its logs: {setup.dir}"


@pytest.mark.serial  # stops the shared Elasticsearch
def test_elasticsearch_down_during_writes(servers, db, database, es, index_prefix, tmp_path):
    """Elasticsearch stopped under a write load until cdc has retried 7 times, the last 4 at its
    longest backoff (retry.max_backoff), with no attempt limit: the checkpoint stays put, nothing
    gives up, and everything arrives once Elasticsearch is back (its shards recovering)."""
    import servers as dev

    create_two_tables(db)
    # Backoff ceilings 0.2, 0.4, 0.8, then 1 s (cdc/retry.py): attempts 4 to 7 wait the longest.
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a", "b"),
                     retry__initial_backoff=0.2, retry__max_backoff=1)

    def attempts() -> int:
        return max((int(n) for r in cdc.events("retry") for n in re.findall(r"\(attempt (\d+)\)", r["msg"])),
                   default=0)

    cdc = setup.run()
    try:
        db.execute("INSERT INTO a VALUES (1, 1, 'before')")
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])
        # The checkpoint is saved just after the acknowledgement that made the row searchable:
        # wait for it to reach the insert's commit, so a late save is not taken for a move.
        end = binlog_position(db)
        saved_before = wait_for("the checkpoint at the insert's commit", lambda: setup.position() == end and end)
        dev.es_down()
        try:
            with WriteLoad(servers, database, rate=50) as load:
                # The outage lasts until the log shows it (not a clock): a long outage is one
                # that backs off to the longest wait and keeps trying there.
                deadline = time.monotonic() + 120
                while attempts() < 7 or load.ops < 300:
                    assert cdc.popen.poll() is None, cdc.text()[-3000:]
                    assert time.monotonic() < deadline, f"{load.ops} writes; {cdc.text()[-3000:]}"
                    time.sleep(0.2)
            # Nothing was acknowledged, so the checkpoint must not have moved.
            assert setup.position() == saved_before
        finally:
            dev.es_up()
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=120)
        wait_until_equal(db, es, "b", f"{index_prefix}-b", ["k1", "k2"], timeout=120)
    finally:
        assert cdc.stop() == 0
    assert "retrying" in cdc.text()


@both_sources
def test_replay_over_current_index_changes_nothing_and_rebuilds_a_deleted_one(source_servers, db, database, es,
                                                                            index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    setup = CdcSetup(tmp_path, source_servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
    file, pos, gtid_start = binlog_position_and_gtid(db)
    cdc = setup.run()
    db.execute("INSERT INTO t VALUES (1,1),(2,2),(3,3)", "UPDATE t SET v=20 WHERE id=2", "DELETE FROM t WHERE id=3")
    middle = binlog_position(db)
    db.execute("INSERT INTO t VALUES (4,4)", "UPDATE t SET v=40 WHERE id=4")
    wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    assert cdc.stop() == 0
    index = f"{index_prefix}-t"
    checkpoint = setup.checkpoint()

    def seq_nos():
        es.indices.refresh(index=index)
        hits = es.search(index=index, seq_no_primary_term=True, size=100)["hits"]["hits"]
        return {h["_id"]: h["_seq_no"] for h in hits}

    before = seq_nos()
    code, out = setup.command("replay", "--from-position", f"{file}:{pos}")
    assert code == 0, out
    assert seq_nos() == before  # every write was older than what is there: no document touched
    assert '"already_newer": ' in out and '"already_newer": 0' not in out
    assert setup.checkpoint() == checkpoint  # replay leaves the daemon's checkpoint alone

    # dry run: reports, writes nothing
    es.indices.delete(index=list(es.indices.get(index=index)))  # the index behind the alias (and the alias)
    code, out = setup.command("replay", "--from-position", f"{file}:{pos}", "--dry-run")
    assert code == 0, out
    assert '"would_write": {"index ' in out
    assert not es.indices.exists(index=index)

    # up to a position: only the first transactions
    code, out = setup.command("replay", "--from-position", f"{file}:{pos}", "--to-position", f"{middle[0]}:{middle[1]}")
    assert code == 0, out
    assert es_docs(es, index) == {"1": {"id": 1, "v": 1}, "2": {"id": 2, "v": 20}}

    # and all of it rebuilds the index exactly
    code, out = setup.command("replay", "--from-position", f"{file}:{pos}")
    assert code == 0, out
    wait_until_equal(db, es, "t", index, ["id"], timeout=10)

    # by GTID (MariaDB domain-server-seq form, MySQL's uuid:1-N set): from the state at the start
    es.indices.delete(index=list(es.indices.get(index=index)))
    code, out = setup.command("replay", "--from-gtid", gtid_start)
    assert code == 0, out
    wait_until_equal(db, es, "t", index, ["id"], timeout=10)


def test_replay_refuses_a_position_inside_a_transaction(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
    file, pos = binlog_position(db)
    db.execute("INSERT INTO t VALUES (1,1),(2,2)")
    events = db.query(f"SHOW BINLOG EVENTS IN '{file}' FROM {pos}")
    rows_event = next(e for e in events if e["Event_type"].startswith(("Write_rows", "Table_map")))
    code, out = setup.command("replay", "--from-position", f"{file}:{rows_event['Pos']}")
    assert code == 1, out
    assert "inside a transaction" in out


def test_refuses_to_start_on_bad_rules_or_clashes(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)", "CREATE TABLE nokey (a INT, b INT)")
    prefix = index_prefix

    def start(sub, rules, **overrides):
        (tmp_path / sub).mkdir()
        return CdcSetup(tmp_path / sub, servers, rules, **overrides)

    missing = start("missing", [{"schema": database, "table": "nope", "index": f"{prefix}-x"}])
    code, out = missing.command("run")
    assert code == 2 and f"table {database}.nope does not exist" in out

    nokey = start("nokey", [{"schema": database, "table": "nokey", "index": f"{prefix}-x"}])
    code, out = nokey.command("run")
    assert code == 2 and "has no primary key" in out

    badcol = start("badcol", [{"schema": database, "table": "t", "index": f"{prefix}-x", "id": ["id", "zz"]}])
    code, out = badcol.command("run")
    assert code == 2 and "id column(s) zz not in" in out

    good = start("good", [{"schema": database, "table": "t", "index": f"{prefix}-t"}])
    first = good.run()
    try:
        # same checkpoint: refused by the lock
        code, out = good.command("run")
        assert code == 2 and "in use by another cdc process" in out
        # another checkpoint, same server_id: refused by the server_id check
        clash = start("clash", [{"schema": database, "table": "t", "index": f"{prefix}-t"}],
                      mysql__server_id=good.server_id)
        code, out = clash.command("run")
        assert code == 2 and f"server_id {good.server_id} is already used" in out
    finally:
        assert first.stop() == 0


@both_sources
@pytest.mark.parametrize("session_setting, default_database, expected", [
    ("SET SESSION binlog_row_image = 'MINIMAL'", True, "lacks column"),
    ("SET SESSION binlog_format = 'STATEMENT'", True, "statement-format change"),
    # A session without a default database logs `UPDATE db.t` with an empty schema: it went by unseen.
    ("SET SESSION binlog_format = 'STATEMENT'", False, "statement-format change"),
])
def test_stops_on_a_session_that_writes_partial_or_statement_events(source_servers, db, database, es, index_prefix,
                                                                   tmp_path, session_setting, default_database,
                                                                   expected):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, w INT)")
    setup = CdcSetup(tmp_path, source_servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
    cdc = setup.run()
    db.execute("INSERT INTO t VALUES (1,1,1)")
    wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    good = setup.saved()
    writer = db if default_database else Admin(source_servers)
    writer.execute(session_setting, f"UPDATE `{database}`.t SET v = 2 WHERE id = 1")
    if writer is not db:
        writer.close()
    code = cdc.wait(60)
    assert code == 1, cdc.text()
    assert expected in cdc.text()
    # The partial change was not indexed and the checkpoint did not pass it.
    assert es_docs(es, f"{index_prefix}-t")["1"] == {"id": 1, "v": 1, "w": 1}
    assert setup.saved()["pos"] <= binlog_position(db)[1] and setup.saved()["file"] == good["file"]


@pytest.mark.serial  # purges the shared binlog
def test_purged_binlog_is_a_clear_fatal_error(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
    cdc = setup.run()
    db.execute("INSERT INTO t VALUES (1)")
    wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    assert cdc.stop() == 0
    old = setup.saved()["file"]
    db.execute("FLUSH BINARY LOGS", "FLUSH BINARY LOGS")
    current = binlog_position(db)[0]
    # MariaDB silently keeps a file that a dump thread still reads; the stopped
    # daemon's thread goes away at its next heartbeat, so retry for a while.
    deadline = time.monotonic() + 20
    while old in [r["Log_name"] for r in db.query("SHOW BINARY LOGS")]:
        assert time.monotonic() < deadline, "could not purge the old binlog"
        db.execute(f"PURGE BINARY LOGS TO '{current}'")
        time.sleep(0.5)
    code, out = setup.command("run")
    assert code == 3, out
    assert old in out and "no longer on the server" in out

    # The way out: copy everything again and stream from now.
    db.execute("INSERT INTO t VALUES (2)")
    es.indices.delete(index=list(es.indices.get(index=f"{index_prefix}-t")))  # behind the alias
    proc = setup.process("run", "--resnapshot").start()
    try:
        proc.wait_for_event("snapshot_done")
        db.execute("INSERT INTO t VALUES (3)")
        wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"])
    finally:
        assert proc.stop() == 0
    assert setup.saved()["file"] != old


@pytest.mark.serial  # kills the shared MariaDB
def test_mariadb_killed_under_load_and_restarted(servers, db, database, es, index_prefix, tmp_path):
    import servers as dev

    create_two_tables(db)
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a", "b"), mysql__read_timeout=5)
    cdc = setup.run()
    try:
        load = WriteLoad(servers, database, rate=100).__enter__()
        time.sleep(1.5)  # ~150 writes streaming when the server dies
        load.stop_event.set()
        load.thread.join(10)  # the load dies with the server; stop it first so it does not count as a failure
        load.admin.close()
        dev.mariadb_down(kill=True)
        time.sleep(1)  # down: cdc's reconnects fail (and back off) until mariadb_up, which itself takes seconds
        dev.mariadb_up()
        with WriteLoad(servers, database, rate=100):
            time.sleep(2)
        admin = Admin(servers, database)
        wait_until_equal(admin, es, "a", f"{index_prefix}-a", ["id"], timeout=90)
        wait_until_equal(admin, es, "b", f"{index_prefix}-b", ["k1", "k2"], timeout=90)
        admin.close()
    finally:
        assert cdc.stop() == 0
    assert cdc.events("reconnect")


@pytest.mark.parametrize("variable, bad, message", [
    ("binlog_row_image", "MINIMAL", "binlog_row_image=MINIMAL: set binlog_row_image=FULL"),
    ("binlog_row_metadata", "MINIMAL", "binlog_row_metadata=MINIMAL: set binlog_row_metadata=FULL"),
    ("binlog_format", "MIXED", "binlog_format=MIXED: set binlog_format=ROW"),
    ("log_bin_compress", "ON", "log_bin_compress=ON: set log_bin_compress=OFF"),
])
@pytest.mark.serial  # SET GLOBAL on the shared MariaDB
def test_refuses_a_server_not_set_up_for_cdc(servers, db, database, index_prefix, tmp_path, variable, bad, message):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
    good = db.execute(f"SELECT @@GLOBAL.{variable}")[0][0]  # keep its type: booleans come back as 0/1
    db.execute(f"SET GLOBAL {variable} = %s", args=(bad,))
    try:
        code, out = setup.command("run")
    finally:
        db.execute(f"SET GLOBAL {variable} = %s", args=(good,))
        assert db.execute(f"SELECT @@GLOBAL.{variable}")[0][0] == good
    assert code == 2, out
    assert message in out


def test_refuses_a_user_without_replication_grants(servers, db, database, index_prefix, tmp_path, unique_name):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    user = unique_name[:32]
    db.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'", f"GRANT SELECT ON *.* TO '{user}'@'127.0.0.1'")
    try:
        setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}],
                         mysql__user=user)
        setup.env["CDC_TEST_PASSWORD"] = "pw"
        code, out = setup.command("run")
    finally:
        db.execute(f"DROP USER '{user}'@'127.0.0.1'")
    assert code == 2, out
    assert "REPLICATION SLAVE" in out and "GRANT" in out


def test_a_wrong_mysql_password_is_refused_with_the_servers_whole_reason(servers, database, index_prefix, tmp_path):
    """The log's secret redaction must not eat MySQL's "(using password: YES)" (it says a password was
    sent and refused); a real secret in a message is still hidden."""
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}],
                     elasticsearch__hosts=["http://127.0.0.1:9"])  # never reached
    setup.env["CDC_TEST_PASSWORD"] = "not-the-password"
    code, out = setup.command("run")
    assert code == 2, out
    [error] = [r for r in map(json.loads, out.splitlines()) if r["level"] == "error"]
    assert f"Access denied for user '{servers.cdc_user}'@" in error["msg"], error
    assert error["msg"].endswith("(using password: YES)"), error
    assert "not-the-password" not in out


@pytest.mark.serial
def test_kill_in_the_middle_of_a_200k_row_transaction(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, s VARCHAR(30))")
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
    cdc = setup.run()
    before = setup.saved_position()
    db.execute("INSERT INTO t SELECT seq, seq MOD 97, CONCAT('row ', seq) FROM seq_1_to_200000")  # one transaction
    domain, _, seq = db.execute("SELECT @@last_gtid")[0][0].split("-")  # this session's: the big transaction's
    index = f"{index_prefix}-t"

    def count() -> int:
        if not es.indices.exists(index=index):
            return 0
        es.indices.refresh(index=index)
        return es.count(index=index)["count"]

    # Kill while the transaction is half in Elasticsearch: its commit has been read,
    # some of its actions are acknowledged, not all. Waiting for that (and not for a
    # fixed time) keeps the kill inside the window however fast cdc gets.
    deadline = time.monotonic() + 240
    while not 0 < (seen := count()) < 200_000:
        assert seen < 200_000, "all 200k rows arrived before the kill: poll faster or use a bigger transaction"
        assert time.monotonic() < deadline and cdc.popen.poll() is None, cdc.text()[-4000:]
        time.sleep(0.05)
    cdc.stop(signal.SIGKILL)
    # Nothing of it can have been checkpointed: only whole, acknowledged transactions move the position.
    # (Small commits of other sessions on the shared server before it may have been saved meanwhile.)
    saved = setup.checkpoint()
    assert saved is not None and (saved["file"], saved["pos"]) >= before
    saved_seq = {g.split("-")[0]: int(g.split("-")[2]) for g in (saved.get("gtid") or "").split(",") if g}
    assert saved_seq.get(domain, 0) < int(seq), (saved, seq)
    cdc = setup.run()
    try:
        deadline = time.monotonic() + 240
        while count() < 200_000:
            assert time.monotonic() < deadline, "the transaction did not arrive after the restart"
            time.sleep(1)
        db.execute("UPDATE t SET v = -1 WHERE id IN (1, 200000)")
        wait_until_equal(db, es, "t", f"{index_prefix}-t", ["id"], timeout=120)
    finally:
        assert cdc.stop() == 0


@pytest.mark.parametrize("on_rejected", ["dead_letter", "stop"])
@pytest.mark.serial
def test_mapping_conflict_in_a_busy_batch(servers, db, database, es, index_prefix, tmp_path, on_rejected):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, s VARCHAR(20))")
    index = f"{index_prefix}-t"
    es.indices.create(index=index, mappings={"properties": {"s": {"type": "long"}}})  # 's' must be numeric
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": index}],
                     dead_letter__on_rejected=on_rejected)
    cdc = setup.run()
    before = setup.saved_position()
    db.execute("BEGIN", *[f"INSERT INTO t VALUES ({i}, {i}, '{i}')" for i in range(1, 50)],
               "INSERT INTO t VALUES (50, 50, 'not a number')",
               *[f"INSERT INTO t VALUES ({i}, {i}, '{i}')" for i in range(51, 100)], "COMMIT")
    domain, _, seq = db.execute("SELECT @@last_gtid")[0][0].split("-")  # this session's: the transaction's
    if on_rejected == "stop":
        assert cdc.wait(60) == 1
        assert f"index {index}/50 from {database}.t at binlog." in cdc.text() and "document_parsing_exception" in cdc.text()
        # Closing the binlog stream on the way out is not a lost connection.
        assert "binlog connection lost" not in cdc.text() and not cdc.events("reconnect"), cdc.text()[-3000:]
        # Not past the transaction (small commits of other sessions before it may have been saved).
        saved = setup.checkpoint()
        assert saved is not None and (saved["file"], saved["pos"]) >= before
        saved_seq = {g.split("-")[0]: int(g.split("-")[2]) for g in (saved.get("gtid") or "").split(",") if g}
        assert saved_seq.get(domain, 0) < int(seq), (saved, seq)
        return
    try:
        deadline = time.monotonic() + 30
        while len(es_docs(es, index)) < 98 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sorted(map(int, es_docs(es, index))) == [i for i in range(1, 100) if i != 50]  # the rest is in
        code, out = setup.command("dlq", "list", "--json")
        [entry] = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"doc_id"' in line]
        assert entry["doc_id"] == "50" and entry["table"] == "t" and entry["position"].startswith("binlog.")
        assert entry["error_type"] == "document_parsing_exception"
        db.execute("UPDATE t SET v = 1000 WHERE id = 1")  # and streaming goes on
        deadline = time.monotonic() + 30
        while es_docs(es, index)["1"]["v"] != 1000:
            assert time.monotonic() < deadline, "streaming stopped after a dead letter"
            time.sleep(0.2)
        # Fix the mapping, then re-send: the document completes the index.
        es.indices.put_mapping(index=index, properties={"s": {"type": "long", "ignore_malformed": True}})
        code, out = setup.command("dlq", "retry")
        assert code == 0, out
        assert json.loads(out.strip().splitlines()[-1])["done"] == [entry["id"]]
        assert "50" in es_docs(es, index)
        code, out = setup.command("dlq", "list", "--json")
        assert '"doc_id"' not in out
    finally:
        assert cdc.stop() == 0
