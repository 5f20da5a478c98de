import json
import logging

import click
import pytest
from click.testing import CliRunner

from cdc import __version__
from cdc.stream.checkpoint import FileCheckpointStore
from cdc.cli import main
from cdc.model import BinlogPosition

CONFIG = (
    "mysql:\n"
    "  user: cdc\n"
    "  server_id: 99\n"
    "checkpoint:\n"
    "  path: state/cp.json\n"
    "logging:\n"
    "  format: text\n"
)
RULES = "rules:\n  - {schema: shop, table: items, index: items}\n"


@pytest.fixture(autouse=True)
def restore_logging():
    """`replay` calls setup_logging, which replaces the root handlers with one bound
    to the runner's (soon closed) stderr; put everything back afterwards."""
    root, cdc = logging.getLogger(), logging.getLogger("cdc")
    saved = root.handlers[:], root.level, cdc.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    cdc.setLevel(saved[2])
    logging.captureWarnings(False)


def test_library_warnings_become_json_log_lines(capsys):
    import warnings

    from cdc.log import setup_logging

    setup_logging("INFO", "json")
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # the suite turns warnings into errors
        warnings.warn("this privilege will not permit mapping updates in the next major release", UserWarning)
    [line] = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "py.warnings"
    assert "will not permit mapping updates" in record["msg"]


@pytest.fixture
def config_path(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "shop.yml").write_text(RULES)
    path = tmp_path / "cdc.yml"
    path.write_text(CONFIG)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.output
    assert "cdc" in result.output


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    # The deprecated aliases work (below) but are not offered any more.
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert {"run", "replay", "check", "status"} <= listed
    assert not listed & {"check-config", "position"}


def test_check_config_ok(config_path):
    result = invoke("check", "--offline", "--config", config_path)
    assert result.exit_code == 0, result.output
    ok, writes, not_checked = result.output.strip().splitlines()
    assert ok == f"ok: {config_path}; 1 rule(s)"
    assert writes == (f"writes: checkpoint.path {config_path.parent / 'state' / 'cp.json'} (beside the config: "
                      "no state_dir and no $STATE_DIRECTORY)")
    # Offline, so the rules' columns are not checked: it says so, and which command does.
    assert not_checked.startswith("not checked: tables, columns") and not_checked.endswith("`cdc check` checks them")


def test_the_config_comes_from_cdc_config_when_not_given(config_path):
    result = CliRunner().invoke(main, ["check", "--offline"], env={"CDC_CONFIG": str(config_path)})
    assert result.exit_code == 0, result.output
    assert f"ok: {config_path}; 1 rule(s)" in result.output
    missing = CliRunner().invoke(main, ["check", "--offline"], env={"CDC_CONFIG": ""})
    assert missing.exit_code == 2 and "--config" in missing.output
    assert "CDC_CONFIG" in invoke("run", "--help").output


def test_check_config_bad_key(config_path):
    config_path.write_text(CONFIG.replace("server_id: 99", "server_id: 99\n  sever_id: 98"))
    result = invoke("check", "--offline", "--config", config_path)
    assert result.exit_code == 2
    assert "configuration error" in result.output
    assert f"{config_path}:4: mysql.sever_id: unknown key (did you mean 'server_id'?)" in result.output


def test_check_config_bad_rules(config_path):
    (config_path.parent / "rules" / "bad.yml").write_text("rules:\n  - {schema: s, table: t, index: Upper}\n")
    result = invoke("check", "--offline", "--config", config_path)
    assert result.exit_code == 2
    assert "bad.yml" in result.output
    assert "must be lowercase" in result.output


def test_check_config_missing_rules_dir(tmp_path):
    path = tmp_path / "cdc.yml"
    path.write_text(CONFIG)
    result = invoke("check", "--offline", "--config", path)
    assert result.exit_code == 2
    assert "rules path does not exist" in result.output


def test_check_config_missing_file(tmp_path):
    result = invoke("check", "--offline", "--config", tmp_path / "nope.yml")
    assert result.exit_code == 2
    assert "cannot read config" in result.output


def test_check_config_requires_option():
    result = invoke("check", "--offline")
    assert result.exit_code == 2
    assert "--config" in result.output


def test_replay_without_start_is_usage_error(config_path):
    result = invoke("replay", "--config", config_path)
    assert result.exit_code == 2
    assert "exactly one of --from-position or --from-gtid" in result.output


def test_replay_with_both_starts_is_usage_error(config_path):
    result = invoke("replay", "--config", config_path, "--from-position", "binlog.000001:4", "--from-gtid", "0-1-1")
    assert result.exit_code == 2
    assert "exactly one of" in result.output


def test_replay_bad_position_is_usage_error(config_path):
    result = invoke("replay", "--config", config_path, "--from-position", "binlog.000001")
    assert result.exit_code == 2
    assert "FILE:POS" in result.output


def test_replay_dry_run_and_move_checkpoint_conflict(config_path):
    result = invoke("replay", "--config", config_path, "--from-position", "binlog.000001:4", "--dry-run",
                    "--move-checkpoint")
    assert result.exit_code == 2
    assert "cannot be combined" in result.output


def test_replay_bad_config_exits_2(config_path):
    config_path.write_text("mysql: {user: cdc}\n")
    result = invoke("replay", "--config", config_path, "--from-position", "binlog.000001:4")
    assert result.exit_code == 2
    assert "mysql.server_id: Field required" in result.output


def test_position_without_checkpoint(config_path):
    result = invoke("status", "--position", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"checkpoint": None, "locked": False}


def test_position_after_save(config_path):
    store = FileCheckpointStore(config_path.parent / "state" / "cp.json")
    (config_path.parent / "state").mkdir()
    store.save(BinlogPosition("binlog.000004", 1234), "0-1-77")
    result = invoke("status", "--position", "--config", config_path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["file"] == "binlog.000004"
    assert data["pos"] == 1234
    assert data["gtid"] == "0-1-77"
    assert data["position"] == "binlog.000004:1234"
    assert data["locked"] is False
    assert data["saved_at"] > 0


def test_position_shows_lock(config_path):
    holder = FileCheckpointStore(config_path.parent / "state" / "cp.json")
    holder.lock()
    try:
        result = invoke("status", "--position", "--config", config_path)
    finally:
        holder.unlock()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"checkpoint": None, "locked": True}


def test_position_corrupt_checkpoint(config_path):
    (config_path.parent / "state").mkdir()
    (config_path.parent / "state" / "cp.json").write_text("{")
    result = invoke("status", "--position", "--config", config_path)
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_every_error_carries_its_exit_code():
    from cdc import errors

    expected = {
        errors.ConfigError: 2, errors.PreflightError: 2, errors.CheckpointError: 2, errors.SinkAccessError: 2,
        errors.SinkCertificateError: 2, errors.StartPositionError: 2, errors.PurgedPositionError: 3,
        errors.CdcError: 1, errors.SourceError: 1, errors.SourceConnectionError: 1, errors.SinkError: 1,
        errors.SinkUnavailableError: 1, errors.RejectedActionsError: 1, errors.UnsupportedEventError: 1,
        errors.DeadLetterError: 1, errors.SchemaChanged: 1, errors.RowError: 1, errors.ConversionError: 1,
        errors.RequestTooLargeError: 1, errors.RetryAbandoned: 1, errors.Stopped: 0,
    }
    classes = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CdcError)}
    assert classes == set(expected), "a new error class needs its exit code decided here"
    assert {c: c.exit_code for c in classes} == expected


@pytest.mark.parametrize("error, code", [
    ("Stopped('stopped while connecting to Elasticsearch at http://127.0.0.1:9')", 0),
    ("PurgedPositionError('gone')", 3), ("StartPositionError('not an event start')", 2),
    ("CheckpointError('in use')", 2), ("SinkAccessError('403')", 2), ("RowError('bad row')", 1),
])
def test_the_cli_exits_with_the_errors_own_code(config_path, monkeypatch, error, code):
    """No isinstance chain: whatever error stops a command, its exit_code is the exit status."""
    from cdc import errors
    from cdc.app import daemon

    def fail(session, resnapshot=False):
        raise eval(error, vars(errors))

    monkeypatch.setattr(daemon, "run", fail)
    result = invoke("run", "--config", config_path)
    assert result.exit_code == code, result.output
    message = eval(error, vars(errors)).args[0]
    assert message in result.output
    assert ("fatal: " in result.output) == (code == 1)


def test_a_bug_exits_1_with_its_traceback(config_path, monkeypatch):
    from cdc.app import daemon

    monkeypatch.setattr(daemon, "run", lambda session, resnapshot=False: 1 / 0)
    result = invoke("run", "--config", config_path)
    assert result.exit_code == 1
    assert "unexpected error: division by zero" in result.output and "Traceback" in result.output


def test_config_option_is_defined_once():
    """Every command takes `--config` from one decorator; the CLI builds no sink or database itself."""
    from pathlib import Path

    import cdc.cli

    source = Path(cdc.cli.__file__).read_text()
    assert source.count('"--config"') == 1
    for built_elsewhere in ("ElasticsearchSink(", "Database(", "DeadLetterStore(", "FileCheckpointStore("):
        assert built_elsewhere not in source
    dlq, indices = main.commands["dlq"], main.commands["indices"]
    assert isinstance(dlq, click.Group) and isinstance(indices, click.Group)
    commands = [cmd for group in (main, dlq, indices)
                for cmd in group.commands.values() if not hasattr(cmd, "commands")]
    assert len(commands) >= 15  # run, snapshot, verify, replay, check-config, position, status, check, sink, 4 dlq,
    # 2 indices
    for command in commands:
        assert any(p.name == "config_path" and p.required for p in command.params), command.name


def test_check_config_names_the_writable_paths_and_warns_when_they_are_not(config_path, monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var"))
    result = invoke("check", "--offline", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert f"writes: checkpoint.path {tmp_path / 'var' / 'state' / 'cp.json'} (state_dir {tmp_path / 'var'})" \
        in result.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("STATE_DIRECTORY", str(blocker))  # a file: no directory can be made under it
    result = invoke("check", "--offline", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert "warning: checkpoint.path: cannot write" in result.output


def test_looking_at_dead_letters_and_the_checkpoint_creates_no_file(tmp_path):
    """With on_rejected: stop there is no dead-letter store: commands that read, and retry/purge with
    nothing to do, leave the directory as it was (no store file, no lock file, no state directory)."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "shop.yml").write_text(RULES)
    path = tmp_path / "cdc.yml"
    path.write_text(CONFIG + "dead_letter:\n  on_rejected: stop\n")
    before = sorted(tmp_path.rglob("*"))
    result = invoke("dlq", "list", "--config", path)
    assert result.exit_code == 0, result.output
    assert f"no dead letters ({tmp_path / 'dead-letters.jsonl'} does not exist; dead_letter.on_rejected is stop)" \
        in result.output
    for args in (["dlq", "list", "--json"], ["dlq", "purge", "--all"], ["dlq", "purge", "abc"], ["dlq", "retry"],
                 ["position"], ["status", "--json"], ["status", "--position"], ["check-config"],
                 ["check", "--offline"], ["check", "--offline", "--json"]):
        result = invoke(*args, "--config", path)
        assert result.exit_code == 0, (args, result.output)
        assert sorted(tmp_path.rglob("*")) == before, args
    assert invoke("dlq", "show", "abc", "--config", path).exit_code == 1
    assert sorted(tmp_path.rglob("*")) == before


# ---------------------------------------------------------------- deprecated aliases (issue 30)
DEPRECATED = "is deprecated and will be removed in the next release"


def _same_as(old: list, new: list, config_path) -> None:
    """The alias prints what the new form prints on stdout, exits as it does, and adds one stderr line."""
    before, after = invoke(*old, "--config", config_path), invoke(*new, "--config", config_path)
    assert before.exit_code == after.exit_code
    assert before.stdout == after.stdout
    assert before.stderr.splitlines() == [f"warning: `cdc {old[0]}` {DEPRECATED}; use `cdc {' '.join(new)}`"] + \
        after.stderr.splitlines()


def test_check_config_is_check_offline_with_a_deprecation_on_stderr(config_path):
    _same_as(["check-config"], ["check", "--offline"], config_path)
    assert invoke("check-config", "--config", config_path).stdout.startswith(f"ok: {config_path}; 1 rule(s)\n")


def test_check_config_keeps_its_exit_code_on_a_bad_config(config_path):
    (config_path.parent / "rules" / "bad.yml").write_text("rules:\n  - {schema: s, table: t, index: Upper}\n")
    _same_as(["check-config"], ["check", "--offline"], config_path)
    result = invoke("check-config", "--config", config_path)
    assert result.exit_code == 2 and "must be lowercase" in result.stderr


def test_check_config_keeps_the_security_warning(config_path):
    """A world-readable config with a literal password: check-config warned on stderr, check --offline still does."""
    config_path.write_text(CONFIG.replace("user: cdc", "user: cdc\n  password: secret"))
    config_path.chmod(0o644)
    result = invoke("check", "--offline", "--config", config_path)
    assert result.exit_code == 0 and "warning:" in result.stderr and "password" in result.stderr
    assert "warning" not in result.stdout
    report = json.loads(invoke("check", "--offline", "--json", "--config", config_path).stdout)
    assert any("password" in w for w in report["warnings"])
    _same_as(["check-config"], ["check", "--offline"], config_path)


def test_position_is_status_position_with_a_deprecation_on_stderr(config_path):
    _same_as(["position"], ["status", "--position"], config_path)
    (config_path.parent / "state").mkdir()
    FileCheckpointStore(config_path.parent / "state" / "cp.json").save(BinlogPosition("binlog.000004", 1234), "0-1-7")
    _same_as(["position"], ["status", "--position"], config_path)
    # The shape scripts read: the checkpoint file's keys, "position" and "locked", nothing added.
    data = json.loads(invoke("position", "--config", config_path).stdout)
    assert set(data) == {"format", "file", "pos", "gtid", "saved_at", "snapshotted", "snapshot", "server", "epoch",
                         "by_gtid", "position", "locked"}


def test_position_keeps_its_exit_code_on_a_corrupt_checkpoint(config_path):
    (config_path.parent / "state").mkdir()
    (config_path.parent / "state" / "cp.json").write_text("{")
    _same_as(["position"], ["status", "--position"], config_path)
    assert invoke("position", "--config", config_path).exit_code == 2


def test_every_field_cdc_logs_with_a_line_reaches_the_json_log():
    """A key given in `extra=` that JsonFormatter does not list is dropped from JSON logs, silently:
    `rebuild_dual_write`'s documented `targets` and the row path's `row_path` were."""
    import ast
    from pathlib import Path

    from cdc.log import FIELDS

    given: set[object] = set()  # the constant keys: a key that is not a str fails too
    for path in (Path(__file__).resolve().parents[2] / "cdc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("debug", "info", "warning", "error", "exception", "critical", "log")):
                continue  # other functions take an `extra` of their own
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    given.update(k.value for k in keyword.value.keys if isinstance(k, ast.Constant))
    assert given and given <= set(FIELDS), sorted(str(field) for field in given - set(FIELDS))
