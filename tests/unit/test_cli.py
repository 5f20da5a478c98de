import json
import logging

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
    for command in ("run", "replay", "check-config", "position"):
        assert command in result.output


def test_check_config_ok(config_path):
    result = invoke("check-config", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"ok: {config_path}; 1 rule(s)"


def test_check_config_bad_key(config_path):
    config_path.write_text(CONFIG.replace("server_id: 99", "server_id: 99\n  sever_id: 98"))
    result = invoke("check-config", "--config", config_path)
    assert result.exit_code == 2
    assert "configuration error" in result.output
    assert f"{config_path}: mysql.sever_id: unknown key" in result.output


def test_check_config_bad_rules(config_path):
    (config_path.parent / "rules" / "bad.yml").write_text("rules:\n  - {schema: s, table: t, index: Upper}\n")
    result = invoke("check-config", "--config", config_path)
    assert result.exit_code == 2
    assert "bad.yml" in result.output
    assert "must be lowercase" in result.output


def test_check_config_missing_rules_dir(tmp_path):
    path = tmp_path / "cdc.yml"
    path.write_text(CONFIG)
    result = invoke("check-config", "--config", path)
    assert result.exit_code == 2
    assert "rules path does not exist" in result.output


def test_check_config_missing_file(tmp_path):
    result = invoke("check-config", "--config", tmp_path / "nope.yml")
    assert result.exit_code == 2
    assert "cannot read config" in result.output


def test_check_config_requires_option():
    result = invoke("check-config")
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
    result = invoke("position", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"checkpoint": None, "locked": False}


def test_position_after_save(config_path):
    store = FileCheckpointStore(config_path.parent / "state" / "cp.json")
    (config_path.parent / "state").mkdir()
    store.save(BinlogPosition("binlog.000004", 1234), "0-1-77")
    result = invoke("position", "--config", config_path)
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
        result = invoke("position", "--config", config_path)
    finally:
        holder.unlock()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"checkpoint": None, "locked": True}


def test_position_corrupt_checkpoint(config_path):
    (config_path.parent / "state").mkdir()
    (config_path.parent / "state" / "cp.json").write_text("{")
    result = invoke("position", "--config", config_path)
    assert result.exit_code == 2
    assert "not valid JSON" in result.output
