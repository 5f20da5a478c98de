"""A MySQL user's defaults and settings, each tried on the real MySQL 9.7 (issue 28): what cdc cannot
index is refused at start-up with the statement and the my.cnf line that fix it (exit 2), or stops the
stream at the first such event (exit 1) with the same fix and the way past it; nothing is skipped.
What MySQL does differently and cdc handles (invisible columns, strict sql_mode) ends equal."""

from __future__ import annotations

import re
import subprocess

import pytest
from harness import CdcSetup, es_docs, matched, mysql_only, wait_for

pytestmark = mysql_only

_FIX = re.compile(r"add this line to my\.cnf under \[mysqld\], so a restart keeps it: (\w+ = (?:\w+|''))")


def _mysqld_takes(line: str) -> subprocess.CompletedProcess:
    """`mysqld --validate-config` on the test server's my.cnf with `line` added: does mysqld take the line?"""
    import servers as dev

    cnf = dev.MYSQL.host / "validate.cnf"
    cnf.write_text((dev.MYSQL.host / "my.cnf").read_text() + f"\n{line}\n")
    try:
        return subprocess.run(["chroot", str(dev.SID_ROOT), "/usr/sbin/mysqld", f"--defaults-file={dev.MYSQL.inner}/"
                               "validate.cnf", "--validate-config", "--user=root"], capture_output=True, text=True)
    finally:
        cnf.unlink()


@pytest.mark.serial  # SET GLOBAL on the shared MySQL
@pytest.mark.parametrize("variable, bad, line", [
    ("binlog_row_metadata", "MINIMAL", "binlog_row_metadata = FULL"),  # MySQL's default
    ("binlog_row_image", "MINIMAL", "binlog_row_image = FULL"),
    ("binlog_row_image", "NOBLOB", "binlog_row_image = FULL"),
    ("binlog_transaction_compression", "ON", "binlog_transaction_compression = OFF"),
    ("binlog_row_value_options", "PARTIAL_JSON", "binlog_row_value_options = ''"),
])
def test_a_setting_cdc_cannot_read_is_refused_at_start_up_with_its_my_cnf_line(source_servers, db, database,
                                                                              index_prefix, tmp_path, variable,
                                                                              bad, line):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    setup = CdcSetup(tmp_path, source_servers, [{"schema": database, "table": "t", "index": f"{index_prefix}-t"}])
    good = db.execute(f"SELECT @@GLOBAL.{variable}")[0][0]
    db.execute(f"SET GLOBAL {variable} = %s", args=(bad,))
    try:
        run = setup.command("run")
        check = setup.command("check")
    finally:
        db.execute(f"SET GLOBAL {variable} = %s", args=(good,))
    for code, out in (run, check):
        assert code == 2, out
        assert f"{variable}={bad}: set {variable}=" in out and f"SET GLOBAL {variable} = '" in out, out
        assert _FIX.findall(out) == [line], out
    assert "server: MySQL 9.7" in check[1] and "NOT ready" in check[1]
    assert setup.checkpoint() is None
    taken = _mysqld_takes(line)
    assert taken.returncode == 0, taken.stderr


@pytest.mark.serial  # one case is SET GLOBAL
@pytest.mark.parametrize("setting, restore, change, says", [
    ("SET SESSION binlog_row_image = 'MINIMAL'", "SET SESSION binlog_row_image = 'FULL'",
     "UPDATE t SET v = 2 WHERE id = 1", "lacks column 'v'"),  # the before image: the key only
    ("SET SESSION binlog_row_image = 'NOBLOB'", "SET SESSION binlog_row_image = 'FULL'",
     "UPDATE t SET v = 2 WHERE id = 1", "lacks column 'b'"),  # the BLOB the update leaves alone
    ("SET SESSION binlog_transaction_compression = ON", "SET SESSION binlog_transaction_compression = OFF",
     "UPDATE t SET v = 2 WHERE id = 1", "is a compressed transaction (TRANSACTION_PAYLOAD"),
    ("SET SESSION binlog_row_value_options = 'PARTIAL_JSON'", "SET SESSION binlog_row_value_options = ''",
     "UPDATE t SET v = 2, j = JSON_SET(j, '$.a', 2) WHERE id = 1", "partial JSON update at"),
    # MIXED logs a deterministic UPDATE as a statement, whose status variables end with one
    # mysql-replication 1.0.17 does not know (0x15): cdc names the change instead of failing on it.
    ("SET SESSION binlog_format = 'MIXED'", "SET SESSION binlog_format = 'ROW'",
     "UPDATE t SET v = 2 WHERE id = 1", "statement-format change at"),
    ("SET GLOBAL binlog_row_metadata = 'MINIMAL'", "SET GLOBAL binlog_row_metadata = 'FULL'",
     "UPDATE t SET v = 2 WHERE id = 1", "has no column names"),
])
def test_an_event_cdc_cannot_index_stops_the_stream_and_resnapshot_gets_past_it(
        source_servers, db, database, es, index_prefix, tmp_path, setting, restore, change, says):
    """A session (or, for binlog_row_metadata, the server) changed while cdc streams: cdc stops at the
    event, indexes none of it and keeps the checkpoint before it; a restart stops there again, and
    `cdc run --resnapshot`, which the message names, gets past it."""
    pad = "x" * 200  # a JSON value big enough that MySQL logs a diff of it
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, b BLOB, j JSON)",
               "CREATE TABLE other (id INT PRIMARY KEY, j JSON)",
               f"INSERT INTO t VALUES (1, 1, 'blob', JSON_OBJECT('a', 1, 'pad', '{pad}'))",
               f"INSERT INTO other VALUES (1, JSON_OBJECT('a', 1, 'pad', '{pad}'))")
    index = f"{index_prefix}-t"
    setup = CdcSetup(tmp_path, source_servers, [{"schema": database, "table": "t", "index": index}])
    first = {"id": 1, "v": 1, "b": "YmxvYg==", "j": {"a": 1, "pad": pad}}
    cdc = setup.run()
    try:
        wait_for("the snapshot", lambda: es_docs(es, index) == {"1": first})
        good = setup.saved()
        db.execute(setting)
        try:
            if "PARTIAL_JSON" in setting:  # a partial update of a table cdc does not index passes
                db.execute("UPDATE other SET j = JSON_SET(j, '$.a', 2) WHERE id = 1")
            db.execute(change)
        finally:
            db.execute(restore)
        code = cdc.wait(60)
    finally:
        if cdc.popen.poll() is None:
            cdc.stop()
    text = cdc.text()
    assert code == 1, text
    assert says in text and "so a restart keeps it:" in text and "`cdc run --resnapshot`" in text, text
    assert es_docs(es, index) == {"1": first}  # nothing of it indexed
    file, pos = matched(r'"fatal: [^"]*? at (binlog\.\d+):(\d+)', text).groups()  # the event's position
    assert (good["file"], good["pos"]) <= (setup.saved()["file"], setup.saved()["pos"]) < (file, int(pos))

    code, out = setup.command("run")  # the event is still there
    assert code == 1 and says in out, out
    again = setup.process("run", "--resnapshot").start()
    try:
        again.wait_for_event("snapshot_done")
        db.execute("UPDATE t SET v = 3 WHERE id = 1")
        wait_for("the row after the resnapshot", lambda: es_docs(es, index)["1"]["v"] == 3)
    finally:
        assert again.stop() == 0


def test_invisible_columns_and_primary_keys_are_indexed_by_snapshot_stream_and_verify_alike(
        source_servers, db, database, es, index_prefix, tmp_path):
    """MySQL's INVISIBLE columns, which `SELECT *` leaves out and the binlog carries, and the invisible
    primary key `my_row_id` MySQL generates for a table without one (sql_generate_invisible_primary_key)."""
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, secret VARCHAR(10) INVISIBLE)",
               "INSERT INTO t (id, v, secret) VALUES (1, 1, 's1')",
               "SET SESSION sql_generate_invisible_primary_key = ON", "CREATE TABLE g (a INT, b VARCHAR(10))",
               "SET SESSION sql_generate_invisible_primary_key = OFF", "INSERT INTO g VALUES (1, 'x')")
    rules = [{"schema": database, "table": name, "index": f"{index_prefix}-{name}"} for name in ("t", "g")]
    setup = CdcSetup(tmp_path, source_servers, rules)
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done")
        db.execute("INSERT INTO t (id, v, secret) VALUES (2, 2, 's2')", "UPDATE t SET secret = 's1b' WHERE id = 1",
                   "INSERT INTO g VALUES (2, 'y')", "UPDATE g SET b = 'z' WHERE a = 1")
        wait_for("the stream", lambda: es_docs(es, f"{index_prefix}-t") == {
            "1": {"id": 1, "v": 1, "secret": "s1b"}, "2": {"id": 2, "v": 2, "secret": "s2"}}
            and es_docs(es, f"{index_prefix}-g") == {"1": {"my_row_id": 1, "a": 1, "b": "z"},
                                                    "2": {"my_row_id": 2, "a": 2, "b": "y"}})
        code, out = setup.command("verify")
        assert code == 0 and "identical" in out, out
    finally:
        assert cdc.stop() == 0
    # A snapshot gives the same documents as the stream, the invisible columns in them.
    for name in ("t", "g"):
        es.indices.delete(index=",".join(es.indices.get(index=f"{index_prefix}-{name}")))  # behind the alias
    code, out = setup.command("snapshot")
    assert code == 0, out
    assert es_docs(es, f"{index_prefix}-t")["1"] == {"id": 1, "v": 1, "secret": "s1b"}
    assert es_docs(es, f"{index_prefix}-g")["1"] == {"my_row_id": 1, "a": 1, "b": "z"}
