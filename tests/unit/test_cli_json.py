"""`--json` on every reporting command (issue 30): each command's shape as docs/cli.md documents it.

The commands run through click (CliRunner) with the part that would reach a server replaced by a fake
that returns what the real one returns, so the CLI's own work (flags, shapes, exit codes) is what runs.
The servers' side of these reports is covered by the integration tests (test_verify, test_rebuild,
test_operator, test_operations).
"""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.model import Action, ActionType, BinlogPosition, ItemResult, Outcome
from cdc.stream.deadletter import DeadLetterStore

CONFIG = "mysql:\n  user: cdc\n  server_id: 99\ncheckpoint:\n  path: state/cp.json\nlogging:\n  format: text\n"
RULES = "rules:\n  - {schema: shop, table: items, index: items}\n"


@pytest.fixture(autouse=True)
def restore_logging():
    root, cdc = logging.getLogger(), logging.getLogger("cdc")
    saved = root.handlers[:], root.level, cdc.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    cdc.setLevel(saved[2])
    logging.captureWarnings(False)


@pytest.fixture
def config_path(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "shop.yml").write_text(RULES)
    path = tmp_path / "cdc.yml"
    path.write_text(CONFIG)
    return path


def run(config_path, *args):
    result = CliRunner().invoke(main, [*map(str, args), "--config", str(config_path)])
    return result


def one_json(result) -> dict:
    """stdout holds exactly one JSON object (logs and warnings go to stderr)."""
    return json.loads(result.stdout)


def test_check_offline_json(config_path):
    result = run(config_path, "check", "--offline", "--json")
    assert result.exit_code == 0, result.output
    report = one_json(result)
    assert report == {
        "command": "check", "ok": True, "offline": True, "config": str(config_path), "rules": 1,
        "writes": {"checkpoint.path": str(config_path.parent / "state" / "cp.json")}, "state_dir": None,
        "problems": [], "warnings": [], "not_checked": report["not_checked"]}
    assert report["not_checked"].endswith("`cdc check` checks them")


def test_check_json_has_the_texts_sections_problems_and_warnings(config_path, monkeypatch):
    from cdc.app import check as check_app

    report = check_app.CheckReport(sections=[("config: ok", ["1 rule(s)"]), ("rules:", ["shop.items -> items"])],
                                   problems=["shop.items: no such table"], warnings=["w"])
    monkeypatch.setattr(check_app, "run_check", lambda config, rules: report)
    result = run(config_path, "check", "--json")
    assert result.exit_code == 2
    assert one_json(result) == {
        "command": "check", "ok": False, "offline": False,
        "sections": [{"title": "config: ok", "lines": ["1 rule(s)"]}, {"title": "rules", "lines": ["shop.items -> items"]}],
        "problems": ["shop.items: no such table"], "warnings": ["w"]}
    report.problems.clear()
    result = run(config_path, "check", "--json")
    assert result.exit_code == 0 and one_json(result)["ok"] is True
    # The text form is unchanged and stays the default.
    assert run(config_path, "check").stdout == report.text() + "\n"


def test_check_json_when_the_check_itself_fails(config_path, monkeypatch):
    from cdc.app import check as check_app
    from cdc.errors import SinkAccessError

    def fail(config, rules):
        raise SinkAccessError("403 from Elasticsearch")

    monkeypatch.setattr(check_app, "run_check", fail)
    result = run(config_path, "check", "--json")
    assert result.exit_code == 2
    assert "check failed: 403 from Elasticsearch" in result.stderr
    assert one_json(result) == {"command": "check", "ok": False, "offline": False, "sections": [],
                                "problems": ["check failed: 403 from Elasticsearch"], "warnings": []}


def test_status_json_adds_command_and_ok_to_its_keys(config_path):
    result = run(config_path, "status", "--json")
    assert result.exit_code == 0, result.output
    report = one_json(result)
    assert set(report) == {"checkpoint", "daemon_running", "lag", "snapshot", "rebuilds", "dead_letters", "row_path",
                           "kafka", "writer", "problems", "command", "ok"}
    assert report["command"] == "status" and report["ok"] is True and report["checkpoint"] is None
    assert report["rebuilds"] == []


def test_status_json_ok_is_false_with_a_problem_and_the_exit_code_stays_0(config_path):
    from cdc.stream.checkpoint import FileCheckpointStore

    config_path.write_text(CONFIG.replace("user: cdc", "user: cdc\n  port: 1"))  # nothing listens on port 1
    (config_path.parent / "state").mkdir()
    FileCheckpointStore(config_path.parent / "state" / "cp.json").save(BinlogPosition("binlog.000002", 120), None)
    result = run(config_path, "status", "--json")
    assert result.exit_code == 0
    report = one_json(result)
    assert report["ok"] is False and len(report["problems"]) == 1 and "cannot measure lag" in report["problems"][0]


def test_verify_json(config_path, monkeypatch):
    from cdc.app import copy as copy_app
    from cdc.copy.verify import TableResult, VerifyReport

    report = VerifyReport([TableResult("shop.items", "items", rows=3, docs_found=3, docs_scanned=3)])
    monkeypatch.setattr(copy_app, "verify", lambda session, tables, sample, repair: report)
    result = run(config_path, "verify", "--json")
    assert result.exit_code == 0, result.output
    out = one_json(result)
    assert out == {**json.loads(json.dumps(report.to_json(), default=str)), "command": "verify", "ok": True}
    assert list(out)[:2] == ["tables", "summary"]  # the keys scripts read come first, as before
    report.tables[0].missing = 1
    result = run(config_path, "verify", "--json")
    assert result.exit_code == 1 and one_json(result)["ok"] is False and one_json(result)["summary"]["missing"] == 1
    assert not run(config_path, "verify").stdout.startswith("{")  # text stays the default


def test_snapshot_json(config_path, monkeypatch):
    from cdc.app import copy as copy_app
    from cdc.copy.snapshot import SnapshotState, TableProgress

    state = SnapshotState({"shop.items": TableProgress([3], 3, True)})
    monkeypatch.setattr(copy_app, "snapshot", lambda session, tables, where: state)
    for args in ([], ["--json"]):  # JSON with or without the flag, as before it
        result = run(config_path, "snapshot", *args)
        assert result.exit_code == 0, result.output
        assert one_json(result) == {"tables": {"shop.items": {"last_key": [3], "rows": 3, "done": True}},
                                    "finished": True, "command": "snapshot", "ok": True}


def test_rebuild_json(config_path, monkeypatch):
    from cdc.app import rebuild as rebuild_app

    outcome = rebuild_app.Outcome("items", "items_v2", "swapped", ("items_v1",), 3)
    monkeypatch.setattr(rebuild_app, "rebuild", lambda session, names, tables, everything: [outcome])
    monkeypatch.setattr(rebuild_app, "cleanup", lambda session, now: ["items_v1"])
    monkeypatch.setattr(rebuild_app, "abandon", lambda session, names: ["items_v3"])
    result = run(config_path, "rebuild", "--index", "items", "--json")
    assert result.exit_code == 0, result.output
    assert one_json(result) == {"rebuilds": [{"alias": "items", "index": "items_v2", "result": "swapped",
                                              "replaces": ["items_v1"], "rows_copied": 3}],
                                "command": "rebuild", "ok": True}
    # Scripts find the object by its first key (tests/integration/test_rebuild.py): it stays first.
    assert result.stdout.startswith('{"rebuilds"')
    assert one_json(run(config_path, "rebuild", "--cleanup")) == {"deleted": ["items_v1"], "command": "rebuild",
                                                                   "ok": True}
    assert one_json(run(config_path, "rebuild", "--abandon", "--index", "items")) == {
        "abandoned": ["items_v3"], "command": "rebuild", "ok": True}
    monkeypatch.setattr(rebuild_app, "rebuild", lambda session, names, tables, everything: [
        rebuild_app.Outcome("items", "items_v2", "differs")])
    result = run(config_path, "rebuild", "--index", "items")
    assert result.exit_code == 1 and one_json(result)["ok"] is False


def test_replay_dry_run_json(config_path, monkeypatch):
    from cdc.app import replay as replay_app  # `cdc replay` imports it when it runs

    def replay(session, span, dry_run, move_checkpoint, server_id, show, limit):
        show({"action": "index", "index": "items", "id": "1"})
        return {"rows": 1, "transactions": 1, "actions": 0, "already_newer": 0, "last_commit": "binlog.000001:900",
                "would_write": {"index items": 1}}

    monkeypatch.setattr(replay_app, "replay", replay)
    result = run(config_path, "replay", "--from-position", "binlog.000001:4", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    action, summary = map(json.loads, result.stdout.splitlines())
    assert action == {"action": "index", "index": "items", "id": "1"}  # action lines: unchanged
    assert summary == {"rows": 1, "transactions": 1, "actions": 0, "already_newer": 0,
                       "last_commit": "binlog.000001:900", "would_write": {"index items": 1},
                       "command": "replay", "ok": True}


def letter_store(config_path) -> DeadLetterStore:
    store = DeadLetterStore(config_path.parent / "dead-letters.jsonl")
    action = Action(ActionType.INDEX, "items", "7", 107, {"n": 7}, None, "shop", "items",
                    BinlogPosition("binlog.000003", 1234))
    store.add([ItemResult(action, Outcome.REJECTED, 400, "mapper_parsing_exception", "bad n")])
    return store


def test_dlq_json(config_path, monkeypatch):
    from cdc.app import deadletters

    [letter] = letter_store(config_path).list()
    result = run(config_path, "dlq", "list", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    entry = json.loads(result.stdout)
    assert entry["id"] == letter.id and entry["doc_id"] == "7" and "action" not in entry
    for args in ([], ["--json"]):
        shown = run(config_path, "dlq", "show", letter.id, *args)
        assert shown.exit_code == 0 and one_json(shown) == json.loads(json.dumps(letter.to_json(), default=str))
    monkeypatch.setattr(deadletters, "retry", lambda config, ids: ([], [letter]))
    result = run(config_path, "dlq", "retry", "--json")
    assert result.exit_code == 1
    assert one_json(result) == {"done": [], "still_failing": [{"id": letter.id, "status": 400,
                                                               "error_type": "mapper_parsing_exception",
                                                               "reason": "bad n"}],
                                "command": "dlq retry", "ok": False}
    result = run(config_path, "dlq", "purge", "--all", "--json")
    assert result.exit_code == 0 and one_json(result) == {"removed": 1, "command": "dlq purge", "ok": True}


@pytest.mark.parametrize("sub", ["plan", "create"])
def test_indices_json(config_path, monkeypatch, sub):
    from cdc.app import indices as indices_app

    class State:  # what cdc.es.indices.PlanState gives the CLI
        def __init__(self, state):
            self.state = state

        def to_json(self):
            return {"kind": "index", "name": "items", "state": self.state, "rules": ["shop.items"]}

    seen: list[bool] = []

    def index_states(config, rules, create):
        seen.append(create)
        return [State("exists")]
    monkeypatch.setattr(indices_app, "index_states", index_states)
    result = run(config_path, "indices", sub, "--json")
    assert result.exit_code == 0, result.output
    assert seen == [sub == "create"]
    assert one_json(result) == {"indices": [{"kind": "index", "name": "items", "state": "exists",
                                             "rules": ["shop.items"]}], "command": f"indices {sub}", "ok": True}
    monkeypatch.setattr(indices_app, "index_states", lambda config, rules, create: [State("failed")])
    result = run(config_path, "indices", sub)
    assert result.exit_code == 1 and one_json(result)["ok"] is False


# ---------------------------------------------------------------- cdc init (the parts that need no server)
def test_init_needs_tables_chosen_and_leaves_an_existing_config_alone(tmp_path):
    path = tmp_path / "cdc.yml"
    result = CliRunner().invoke(main, ["init", "--config", str(path), "--user", "cdc", "--port", "1"])
    assert result.exit_code == 2 and "choose what to map: --schema SCHEMA" in result.stderr
    assert not path.exists()
    path.write_text("# mine\n")
    result = CliRunner().invoke(main, ["init", "--config", str(path), "--user", "cdc", "--schema", "shop"])
    assert result.exit_code == 2 and f"{path} exists; --force overwrites it" in result.output
    assert path.read_text() == "# mine\n"


@pytest.mark.parametrize("schema, table, index", [
    ("shop", "Orders", "shop-orders"), ("my shop", "a,b#c", "my_shop-a_b_c"), ("_x", "t", "x-t"),
    ("s", "a:b*c?", "s-a_b_c_")])
def test_init_index_names_are_ones_elasticsearch_takes(schema, table, index):
    from cdc.app.init import index_name

    assert index_name(schema, table) == index


def test_init_files_load_as_the_config_and_rules_they_describe(tmp_path, monkeypatch):
    """What init writes is read back by cdc's own loaders as the tables chosen, names quoted where YAML
    would read them as something else; a table without a primary key is no rule."""
    from cdc.app.init import InitPlan, Table, config_text
    from cdc.config import load_config
    from cdc.rules import load_rules

    plan = InitPlan(tmp_path / "cdc.yml", tmp_path / "rules", "MariaDB 10.11 at db:3306", 1002, [
        Table("shop", "orders", ["id"]), Table("shop", "on", ["k"]), Table("shop", "logs", []),
        Table("123", "it's", ["a", "b"])])
    files = {plan.config_path: config_text(plan, "db.example", 3307, "no", "MY_PW", "http://es:9200"), **plan.files()}
    assert sorted(p.name for p in files) == ["123.yml", "cdc.yml", "shop.yml"]
    for path, text in files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    monkeypatch.setenv("MY_PW", "s3cret")
    config = load_config(str(plan.config_path))
    assert (config.mysql.host, config.mysql.port, config.mysql.user, config.mysql.password, config.mysql.server_id) \
        == ("db.example", 3307, "no", "s3cret", 1002)
    assert config.elasticsearch.hosts == ["http://es:9200"] and "s3cret" not in files[plan.config_path]
    rules = load_rules(config.resolve(config.rules))
    assert sorted((r.schema, r.table, r.index) for r in rules.rules) == [
        ("123", "it's", "123-it's"), ("shop", "on", "shop-on"), ("shop", "orders", "shop-orders")]
    assert "#   table: logs" in files[tmp_path / "rules" / "shop.yml"]
