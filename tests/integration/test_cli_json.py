"""`--json` of the reporting commands against the real servers (issue 30; docs/cli.md "JSON output").

tests/unit/test_cli_json.py checks each shape with the servers faked; here the same commands run as an
operator runs them, on one small table: stdout is exactly one JSON report (logs go to stderr), its keys
are the documented ones, and `ok` agrees with the exit code.
"""

from __future__ import annotations

import json

from harness import CdcSetup, binlog_position


def report(setup: CdcSetup, *args: str, code: int = 0) -> dict:
    proc = setup.output(*args)
    assert proc.returncode == code, (args, proc.stdout, proc.stderr[-3000:])
    out = json.loads(proc.stdout)  # one object, nothing else on stdout
    assert out["ok"] is (code == 0), (args, out)
    return out


def test_the_reporting_commands_print_their_documented_json(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(20))",
               "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    index = f"{index_prefix}-t"
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "t", "index": index}])
    start = binlog_position(db)  # after the inserts: the replay below reads only the update

    check = report(setup, "check", "--json")
    assert check["command"] == "check" and check["offline"] is False and check["problems"] == []
    assert [s["title"].split(":")[0] for s in check["sections"]] == [
        "config", "server", "rules", "row path (row_path", "elasticsearch"]
    offline = report(setup, "check", "--offline", "--json")
    assert offline["offline"] is True and offline["rules"] == 1
    assert offline["writes"] == {"checkpoint.path": str(tmp_path / "state" / "checkpoint.json")}

    plan = report(setup, "indices", "plan", "--json")
    assert plan["command"] == "indices plan" and [(i["name"], i["state"]) for i in plan["indices"]] == [
        (index, "create")]

    snapshot = report(setup, "snapshot", "--json")
    assert snapshot["command"] == "snapshot" and snapshot["finished"] is True
    assert snapshot["tables"][f"{database}.t"]["rows"] == 2

    verify = report(setup, "verify", "--json")
    assert verify["command"] == "verify" and verify["summary"]["rows"] == 2 and verify["summary"]["ok"] is True
    es.delete(index=index, id="2", refresh=True)
    differs = report(setup, "verify", "--json", code=1)
    assert differs["summary"]["missing"] == 1 and differs["tables"][0]["examples"][0]["id"] == "2"

    db.execute("UPDATE t SET s = 'c' WHERE id = 1")
    replay = setup.output("replay", "--from-position", f"{start[0]}:{start[1]}", "--dry-run", "--json")
    assert replay.returncode == 0, replay.stderr[-3000:]
    *actions, summary = map(json.loads, replay.stdout.splitlines())
    assert [(a["action"], a["id"], a["doc"]["s"]) for a in actions] == [("index", "1", "c")]
    assert summary["command"] == "replay" and summary["ok"] is True
    assert summary["would_write"] == {f"index {index}": 1}

    status = report(setup, "status", "--json")
    assert status["command"] == "status" and status["checkpoint"] is None and status["problems"] == []
    assert report(setup, "rebuild", "--cleanup", "--json") == {"deleted": [], "command": "rebuild", "ok": True}
    assert report(setup, "dlq", "purge", "--all", "--json") == {"removed": 0, "command": "dlq purge", "ok": True}


def test_init_writes_a_config_and_rules_that_cdc_check_passes(servers, db, database, es, index_prefix, tmp_path):
    """`cdc init` on a real schema: a table with a composite primary key and one without any. The
    files it writes pass `cdc check` as they are, the keyless table's rule is commented out, and
    the password is only in the environment."""
    import os
    import subprocess
    import sys

    db.execute("CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2))",
               "CREATE TABLE order_lines (order_id INT, n INT, PRIMARY KEY (order_id, n))",
               "CREATE TABLE logs (msg TEXT)")
    path = tmp_path / "cdc.yml"
    env = {**os.environ, "CDC_TEST_PW": servers.cdc_password}

    def cdc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cdc", *args, "--config", str(path)], capture_output=True,
                              text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)

    made = cdc("init", "--host", servers.mariadb_host, "--port", str(servers.mariadb_port), "--user",
               servers.cdc_user, "--password-env", "CDC_TEST_PW", "--schema", database, "--es", servers.es_url,
               "--json")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["command"] == "init" and out["ok"] is True and out["rules"] == [str(tmp_path / "rules" /
                                                                                  f"{database}.yml")]
    assert [(t["table"], t["primary_key"], t["rule"]) for t in out["tables"]] == [
        (f"{database}.logs", [], "commented out"), (f"{database}.order_lines", ["order_id", "n"], "written"),
        (f"{database}.orders", ["id"], "written")]
    passwords = [line.split("#")[0].strip() for line in path.read_text().splitlines() if "password:" in line
                 and not line.strip().startswith("#")]
    assert passwords == ["password: ${CDC_TEST_PW}"]  # the test's password is "cdc": a substring test cannot tell
    # Running it again leaves the files alone.
    again = cdc("init", "--user", servers.cdc_user, "--schema", database)
    assert again.returncode == 2 and "--force" in again.stderr

    check = cdc("check", "--json")
    assert check.returncode == 0, (check.stdout, check.stderr)
    report = json.loads(check.stdout)
    assert report["ok"] is True and report["problems"] == []
    [rules] = [s["lines"] for s in report["sections"] if s["title"] == "rules"]
    assert [line.split(": ")[-1] for line in rules] == [
        f"{database}.order_lines -> {database}-order_lines", f"{database}.orders -> {database}-orders"]
