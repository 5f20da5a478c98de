"""`cdc verify` against real servers, beside a streaming daemon and under a write load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness import (CdcProcess, CdcSetup, WriteLoad, both_sources, create_two_tables, index_rules, mysql_only,
                     wait_for, wait_until_equal)

# WriteLoad writes a.id 1..402 and b.k1 0..49; corruption stays above both, so the
# load cannot mend it by chance and the expected findings are exact.


def _verify(setup: CdcSetup, args: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cdc", "verify", "--config", str(setup.config_path), "--json",
                           "--log-format", "json", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **setup.env})


def verify(setup: CdcSetup, *args: str) -> tuple[int, dict, str]:
    """Run `cdc verify --json` where it is to report (exit 0 or 1): (exit code, the report, the log)."""
    proc = _verify(setup, args)
    try:
        report = json.loads(proc.stdout) if proc.returncode in (0, 1) else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        raise AssertionError(f"verify exited {proc.returncode} without a report:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc.returncode, report, proc.stderr


def verify_refused(setup: CdcSetup, *args: str) -> tuple[int, str]:
    """Run `cdc verify --json` where it is to refuse to run (exit 2, no report): (exit code, the log)."""
    proc = _verify(setup, args)
    return proc.returncode, proc.stderr


def _found(report: dict, table: str) -> dict[str, set[str]]:
    [t] = [t for t in report["tables"] if t["table"].endswith("." + table)]
    assert t["missing"] + t["differing"] + t["orphans"] <= 10, t  # all shown as examples
    return {kind: {e["id"] for e in t["examples"] if e["kind"] == kind} for kind in ("missing", "differ", "orphan")}


def _started(tmp_path, servers, db, database, index_prefix) -> tuple[CdcSetup, CdcProcess]:
    create_two_tables(db, 600)
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a", "b"), snapshot__chunk_size=100)
    cdc = setup.run()
    cdc.wait_for_event("snapshot_done", timeout=60)
    return setup, cdc


@both_sources
def test_verify_finds_exactly_the_corruption_and_repair_fixes_it_under_load(source_servers, db, database, es,
                                                                             index_prefix, tmp_path):
    setup, cdc = _started(tmp_path, source_servers, db, database, index_prefix)
    ia, ib = f"{index_prefix}-a", f"{index_prefix}-b"
    try:
        with WriteLoad(source_servers, database, rate=100) as load:
            for doc_id in ("501", "502", "503"):
                es.delete(index=ia, id=doc_id)
            es.update(index=ia, id="510", doc={"v": -1})
            es.update(index=ia, id="511", doc={"s": "changed", "extra": True})
            es.index(index=ia, id="9001", document={"id": 9001, "v": 1, "s": "orphan"})
            es.index(index=ia, id="9002", document={"id": 9002})
            es.delete(index=ib, id="55:1")
            es.update(index=ib, id="56:2", doc={"amount": "0.00"})
            es.index(index=ib, id="99:9", document={"k1": 99, "k2": 9, "amount": "1.00"})
            es.indices.refresh(index=f"{ia},{ib}")  # the orphan scan reads what search sees

            code, report, log = verify(setup)
            assert code == 1, log[-3000:]
            assert _found(report, "a") == {"missing": {"501", "502", "503"}, "differ": {"510", "511"},
                                           "orphan": {"9001", "9002"}}, report
            assert _found(report, "b") == {"missing": {"55:1"}, "differ": {"56:2"}, "orphan": {"99:9"}}, report
            [a] = [t for t in report["tables"] if t["table"].endswith(".a")]
            differ = {e["id"]: e["fields"] for e in a["examples"] if e["kind"] == "differ"}
            assert differ["510"] == [{"field": "v", "expected": 1020, "actual": -1}]
            assert differ["511"] == [{"field": "extra", "expected": "<absent>", "actual": True},
                                     {"field": "s", "expected": "s511", "actual": "changed"}]
            assert a["rows"] >= 500 and a["docs_scanned"] >= 500 and a["not_verified"] == []

            code, report, log = verify(setup, "--repair")
            assert code == 0, log[-3000:]
            summary = report["summary"]
            assert (summary["missing"], summary["differing"], summary["orphans"]) == (4, 3, 3), summary
            assert summary["repaired"] == 10 and summary["unrepaired"] == 0 and summary["ok"]

            es.indices.refresh(index=f"{ia},{ib}")
            code, report, log = verify(setup)
            assert code == 0 and report["summary"]["ok"], report
        assert load.ops > 100
        # The repairs and the daemon's writes converge to the tables.
        wait_until_equal(db, es, "a", ia, ["id"], timeout=60)
        wait_until_equal(db, es, "b", ib, ["k1", "k2"], timeout=60)
    finally:
        assert cdc.stop() == 0


def test_clean_index_under_load_has_no_differences(servers, db, database, es, index_prefix, tmp_path):
    setup, cdc = _started(tmp_path, servers, db, database, index_prefix)
    try:
        with WriteLoad(servers, database, rate=150) as load:
            code, report, log = verify(setup)
            assert code == 0, (report, log[-3000:])
            assert report["summary"]["missing"] == report["summary"]["differing"] == report["summary"]["orphans"] == 0
            assert all(t["rows"] > 400 for t in report["tables"])

            code, report, log = verify(setup, "--sample", "50", "--table", f"{database}.a")
            assert code == 0, (report, log[-3000:])
            [a] = report["tables"]
            assert a["rows"] == 50 and a["sample"] == 50 and a["docs_scanned"] is None
            assert a["not_verified"] == ["--sample checks rows only: documents without rows (orphans) NOT VERIFIED"]
        assert load.ops > 100
        code, log = verify_refused(setup, "--table", "nope.nope")
        assert code == 2 and "no rule maps these tables" in log
    finally:
        assert cdc.stop() == 0


def _parent_and_child(tmp_path, servers, db, database, index_prefix) -> CdcSetup:
    """Tables parent and child, whose foreign key cascades updates and deletes of parent.code, and their rules."""
    db.execute("CREATE TABLE parent (id INT PRIMARY KEY, code VARCHAR(10) NOT NULL UNIQUE)",
               "CREATE TABLE child (id INT PRIMARY KEY, parent_code VARCHAR(10), note VARCHAR(20), "
               "FOREIGN KEY (parent_code) REFERENCES parent (code) ON UPDATE CASCADE ON DELETE CASCADE)")
    db.execute("INSERT INTO parent VALUES (1, 'P1'), (2, 'P2'), (3, 'P3')")
    db.execute(f"INSERT INTO child SELECT seq, CONCAT('P', 1 + seq MOD 3), CONCAT('n', seq) FROM {db.seq(30)}")
    rules = [{"schema": database, "table": t, "index": f"{index_prefix}-{t}"} for t in ("parent", "child")]
    return CdcSetup(tmp_path, servers, rules)


def test_foreign_key_cascades_are_found_and_repaired(servers, db, database, es, index_prefix, tmp_path):
    setup = _parent_and_child(tmp_path, servers, db, database, index_prefix)
    code, out = setup.command("check")
    assert code == 0 and "foreign key child_ibfk_1 to parent has ON DELETE CASCADE and ON UPDATE CASCADE" in out, out
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=60)
        # The cascades change and delete child rows without any binlog event for them.
        db.execute("UPDATE parent SET code = 'P1x' WHERE id = 1", "DELETE FROM parent WHERE id = 2")
        wait_until_equal(db, es, "parent", f"{index_prefix}-parent", ["id"])
        es.indices.refresh(index=f"{index_prefix}-child")

        code, report, log = verify(setup)
        assert code == 1, log[-3000:]
        [parent] = [t for t in report["tables"] if t["table"].endswith(".parent")]
        [child] = [t for t in report["tables"] if t["table"].endswith(".child")]
        assert parent["missing"] == parent["differing"] == parent["orphans"] == 0
        # seq MOD 3 = 0 -> P1 (10 rows, now P1x), = 1 -> P2 (10 rows, deleted)
        assert (child["missing"], child["differing"], child["orphans"]) == (0, 10, 10), child
        changed = [e for e in child["examples"] if e["kind"] == "differ"]
        assert changed and all(e["fields"] == [{"field": "parent_code", "expected": "P1x", "actual": "P1"}]
                               for e in changed)

        code, report, log = verify(setup, "--repair")
        assert code == 0 and report["summary"]["repaired"] == 20, (report, log[-3000:])
        wait_until_equal(db, es, "child", f"{index_prefix}-child", ["id"], timeout=30)
        es.indices.refresh(index=f"{index_prefix}-child")
        code, report, _ = verify(setup)
        assert code == 0 and report["summary"]["ok"], report
    finally:
        assert cdc.stop() == 0


@mysql_only
def test_foreign_key_cascades_reach_the_index_on_mysql_9_6_and_later(source_servers, db, database, es, index_prefix,
                                                                    tmp_path):
    """MySQL 9.6 runs cascades in the SQL layer and logs the rows they change (innodb_native_foreign_keys,
    OFF by default, read-only): `cdc check` has nothing to warn about, and the stream keeps child equal."""
    setup = _parent_and_child(tmp_path, source_servers, db, database, index_prefix)
    code, out = setup.command("check")
    assert code == 0 and "foreign key" not in out, out
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=60)
        db.execute("UPDATE parent SET code = 'P1x' WHERE id = 1", "DELETE FROM parent WHERE id = 2")
        wait_until_equal(db, es, "parent", f"{index_prefix}-parent", ["id"])
        wait_until_equal(db, es, "child", f"{index_prefix}-child", ["id"])
        es.indices.refresh(index=f"{index_prefix}-child")
        code, report, log = verify(setup)
        assert code == 0 and report["summary"]["ok"], (report, log[-3000:])
    finally:
        assert cdc.stop() == 0


def test_an_id_that_is_not_a_unique_key_is_refused_and_when_accepted_is_not_verified(
        tmp_path, servers, db, database, index_prefix, es):
    """Issue 27 (1): `id: [a, b]` on a table with two equal rows made 3 rows 2 documents, and a
    DELETE of one row removed the document of the other, with nothing said; verify said identical."""
    db.execute("CREATE TABLE nopk (a INT, b VARCHAR(10))", "INSERT INTO nopk VALUES (1, 'x'), (1, 'x'), (2, 'y')")
    rule = {"schema": database, "table": "nopk", "index": f"{index_prefix}-nopk", "id": ["a", "b"]}
    (tmp_path / "refused").mkdir()
    (tmp_path / "accepted").mkdir()
    refused = CdcSetup(tmp_path / "refused", servers, [rule])
    for command in ("check", "run"):
        code, out = refused.command(command)
        assert code == 2, out
        assert "id column(s) a, b are not a unique key of" in out and "rules.yml:2: rules[0]" in out, out
        assert "allow_duplicate_ids: true" in out
    accepted = CdcSetup(tmp_path / "accepted", servers, [{**rule, "allow_duplicate_ids": True}])
    code, out = accepted.command("check")
    assert code == 0, out
    cdc = accepted.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=60)
        code, report, log = verify(accepted)
        assert code == 1, log[-3000:]
        assert report["summary"]["ok"] is False and report["summary"]["tables_not_verified"] == 1
        assert report["tables"][0]["verified"] is False
    finally:
        assert cdc.stop() == 0
    # A unique NOT NULL key over the id's columns is all it takes.
    db.execute("DELETE FROM nopk LIMIT 1", "ALTER TABLE nopk MODIFY a INT NOT NULL, MODIFY b VARCHAR(10) NOT NULL, "
               "ADD UNIQUE KEY ab (b, a)")
    code, out = refused.command("check")
    assert code == 0, out


def _source(es, index: str, doc_id: str) -> dict | None:
    found = es.options(ignore_status=404).get(index=index, id=doc_id)
    return found.get("_source")


def test_documents_written_before_add_column_are_identical_to_their_rows(
        tmp_path, servers, db, database, index_prefix, es):
    """Issue 27: after ALTER TABLE ... ADD COLUMN, every older document lacks the field while its
    row reads NULL; verify reported each as differing and --repair would rewrite them all."""
    create_two_tables(db, 50)
    setup = CdcSetup(tmp_path, servers, index_rules(database, index_prefix, "a"))
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=60)
        db.execute("ALTER TABLE a ADD COLUMN nickname VARCHAR(20)", "INSERT INTO a (id, v, s, nickname) "
                   "VALUES (1000, 1, 'n', 'nick')", "UPDATE a SET v = v + 1 WHERE id = 3")
        # (the harness's own comparison is strict about null and absent: wait for the writes instead)
        wait_for("the writes after the ALTER", lambda: _source(es, f"{index_prefix}-a", "1000") == {
            "id": 1000, "v": 1, "s": "n", "nickname": "nick"} and (_source(es, f"{index_prefix}-a", "3") or {}).get("v") == 7)
        code, report, log = verify(setup)
        assert code == 0, (report, log[-3000:])
        assert report["summary"]["differing"] == 0 and report["summary"]["rows"] == 51
        # A value that is really there is still compared: the field taken out of the document.
        db.execute("UPDATE a SET nickname = 'late' WHERE id = 7")
        wait_for("the late nickname", lambda: (_source(es, f"{index_prefix}-a", "7") or {}).get("nickname") == "late")
        stored = es.get(index=f"{index_prefix}-a", id="7")
        es.index(index=f"{index_prefix}-a", id="7", document={k: v for k, v in stored["_source"].items()
                                                            if k != "nickname"},
                 version=stored["_version"] + 1, version_type="external", refresh=True)
        code, report, log = verify(setup)
        assert code == 1 and _found(report, "a")["differ"] == {"7"}, (report, log[-3000:])
        [example] = report["tables"][0]["examples"]
        assert example["fields"] == [{"field": "nickname", "expected": "late", "actual": "<absent>"}]
    finally:
        assert cdc.stop() == 0
