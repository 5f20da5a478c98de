from pathlib import Path

import pytest
from pydantic import ValidationError

from cdc.config import Config, load_config, parse_config
from cdc.errors import ConfigError

MINIMAL = {"mysql": {"user": "cdc", "server_id": 4242}}


def test_minimal_config_gets_documented_defaults():
    config = parse_config(MINIMAL)
    assert isinstance(config, Config)
    assert config.mysql.user == "cdc"
    assert config.mysql.server_id == 4242
    assert config.mysql.host == "127.0.0.1"
    assert config.mysql.port == 3306
    assert config.mysql.password == ""
    assert config.mysql.flavor == "auto"
    assert config.mysql.connect_timeout == 10.0
    assert config.mysql.read_timeout == 30.0
    assert config.mysql.heartbeat == 5.0
    assert config.mysql.ssl_ca is None
    assert config.elasticsearch.hosts == ["http://127.0.0.1:9200"]
    assert config.elasticsearch.verify_certs is True
    assert config.elasticsearch.request_timeout == 30.0
    assert config.elasticsearch.version_epoch == 0
    assert config.checkpoint.path == "cdc.checkpoint.json"
    assert config.checkpoint.min_interval == 1.0
    assert config.start.position == "end"
    assert config.start.gtid is None
    assert config.rules == "rules"
    assert config.batch.max_actions == 2000
    assert config.batch.max_bytes == 8 * 1024 * 1024
    assert config.batch.max_interval == 0.5
    assert config.retry.initial_backoff == 0.5
    assert config.retry.max_backoff == 30.0
    assert config.retry.max_attempts is None
    assert config.logging.level == "INFO"
    assert config.logging.format == "auto"
    assert config.base_dir == "."


def test_mysql_section_is_required():
    with pytest.raises(ConfigError, match=r"mysql: Field required"):
        parse_config({})


def test_non_mapping_is_rejected():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["mysql"], source="x.yml")


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "mysqll": {}}, source="cdc.yml")
    assert "cdc.yml: mysqll: unknown key" in str(info.value)


def test_unknown_nested_key_names_dotted_path():
    data = {"mysql": {"user": "cdc", "server_id": 1, "sever_id": 2}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cdc.yml")
    assert "mysql.sever_id: unknown key" in str(info.value)


def test_unknown_key_deeper_sections():
    data = {**MINIMAL, "batch": {"max_action": 5}, "retry": {"max_attempts": 3, "jitter": True}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    message = str(info.value)
    assert "batch.max_action: unknown key" in message
    assert "retry.jitter: unknown key" in message


def test_several_errors_reported_at_once():
    data = {
        "mysql": {"user": "cdc", "server_id": 0, "port": 70000, "flavour": "mariadb"},
        "batch": {"max_actions": 0},
        "logging": {"level": "TRACE"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cdc.yml")
    lines = str(info.value).splitlines()
    assert len(lines) == 5
    assert all(line.startswith("cdc.yml: ") for line in lines)
    message = str(info.value)
    assert "mysql.server_id:" in message
    assert "mysql.port:" in message
    assert "mysql.flavour: unknown key" in message
    assert "batch.max_actions:" in message
    assert "logging.level:" in message


def test_env_interpolation(monkeypatch):
    monkeypatch.setenv("CDC_TEST_PASSWORD", "s3cret")
    monkeypatch.setenv("CDC_TEST_PORT", "3307")
    monkeypatch.delenv("CDC_TEST_HOST", raising=False)
    data = {
        "mysql": {
            "user": "cdc",
            "server_id": 1,
            "password": "${CDC_TEST_PASSWORD}",
            "port": "${CDC_TEST_PORT}",
            "host": "${CDC_TEST_HOST:-db.example}",
        },
        "elasticsearch": {"hosts": ["http://${CDC_TEST_HOST:-es}:9200"]},
    }
    config = parse_config(data)
    assert config.mysql.password == "s3cret"
    assert config.mysql.port == 3307
    assert config.mysql.host == "db.example"
    assert config.elasticsearch.hosts == ["http://es:9200"]


def test_env_set_wins_over_default(monkeypatch):
    monkeypatch.setenv("CDC_TEST_USER", "from_env")
    config = parse_config({"mysql": {"user": "${CDC_TEST_USER:-fallback}", "server_id": 1}})
    assert config.mysql.user == "from_env"


def test_env_empty_default(monkeypatch):
    monkeypatch.delenv("CDC_TEST_UNSET", raising=False)
    config = parse_config({"mysql": {"user": "cdc", "server_id": 1, "password": "${CDC_TEST_UNSET:-}"}})
    assert config.mysql.password == ""


def test_missing_env_var_names_key(monkeypatch):
    monkeypatch.delenv("CDC_TEST_MISSING", raising=False)
    monkeypatch.delenv("CDC_TEST_MISSING2", raising=False)
    data = {
        "mysql": {"user": "cdc", "server_id": 1, "password": "${CDC_TEST_MISSING}"},
        "elasticsearch": {"hosts": ["http://a:9200", "${CDC_TEST_MISSING2}"]},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cdc.yml")
    message = str(info.value)
    assert "cdc.yml: mysql.password: environment variable CDC_TEST_MISSING is not set" in message
    assert "elasticsearch.hosts[1]: environment variable CDC_TEST_MISSING2 is not set" in message


@pytest.mark.parametrize("position", ["end", "binlog.000003:4", "mysql-bin.000010:157"])
def test_valid_start_positions(position):
    config = parse_config({**MINIMAL, "start": {"position": position}})
    assert config.start.position == position


@pytest.mark.parametrize("position", ["start", "binlog.000003", "binlog.000003:", ":4", "binlog.000003:abc"])
def test_invalid_start_position(position):
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "start": {"position": position}})
    assert "start.position:" in str(info.value)
    assert "FILE:POS" in str(info.value)


def test_hosts_must_have_scheme():
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "elasticsearch": {"hosts": ["localhost:9200"]}})
    assert "elasticsearch.hosts:" in str(info.value)
    assert "must start with http:// or https://" in str(info.value)


def test_hosts_must_not_be_empty():
    with pytest.raises(ConfigError, match="at least one host"):
        parse_config({**MINIMAL, "elasticsearch": {"hosts": []}})


def test_https_host_accepted():
    config = parse_config({**MINIMAL, "elasticsearch": {"hosts": ["https://es:9200", "http://es2:9200"]}})
    assert config.elasticsearch.hosts == ["https://es:9200", "http://es2:9200"]


def test_version_epoch_bounds():
    assert parse_config({**MINIMAL, "elasticsearch": {"version_epoch": 127}}).elasticsearch.version_epoch == 127
    with pytest.raises(ConfigError, match="elasticsearch.version_epoch"):
        parse_config({**MINIMAL, "elasticsearch": {"version_epoch": 128}})


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(ValidationError):
        config.rules = "other"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_config_resolves_paths_relative_to_file(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = _write(conf_dir / "cdc.yml", (
        "mysql:\n"
        "  user: cdc\n"
        "  server_id: 7\n"
        "rules: rules.d\n"
        "checkpoint:\n"
        "  path: state/cp.json\n"
    ))
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    config = load_config(path)
    assert config.base_dir == str(conf_dir.resolve())
    assert config.resolve(config.rules) == conf_dir.resolve() / "rules.d"
    assert config.resolve(config.checkpoint.path) == conf_dir.resolve() / "state" / "cp.json"
    assert config.resolve("/abs/path.json") == Path("/abs/path.json")


def test_load_config_relative_path_argument(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    _write(tmp_path / "conf" / "cdc.yml", "mysql: {user: cdc, server_id: 1}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/cdc.yml")
    assert config.resolve(config.rules) == (tmp_path / "conf").resolve() / "rules"


def test_load_config_invalid_yaml_names_file(tmp_path):
    path = _write(tmp_path / "broken.yml", "mysql: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "invalid YAML" in str(info.value)


def test_load_config_errors_name_the_file(tmp_path):
    path = _write(tmp_path / "cdc.yml", "mysql: {user: cdc, server_id: 1, sever_id: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:1: mysql.sever_id: unknown key (did you mean 'server_id'?)" in str(info.value)


def test_errors_give_the_line_and_suggest_the_key_that_was_meant(tmp_path):
    path = _write(tmp_path / "cdc.yml", (
        "mysql:\n"
        "  user: cdc\n"
        "  server_idd: 3\n"
        "  port: many\n"
        "batch:\n"
        "  max_actoins: 5\n"
        "elasticsearch:\n"
        "  hosts: [\"http://a:9200\"]\n"
        "  flux: 1\n"
        "checkpont: {path: x}\n"
    ))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert f"{path}:4: mysql.port: Input should be a valid integer, unable to parse string as an integer" in lines
    assert f"{path}:1: mysql.server_id: Field required" in lines  # a missing key: the line of its section
    assert f"{path}:3: mysql.server_idd: unknown key (did you mean 'server_id'?)" in lines
    assert f"{path}:6: batch.max_actoins: unknown key (did you mean 'max_actions'?)" in lines
    assert f"{path}:9: elasticsearch.flux: unknown key" in lines  # nothing close: no guess
    assert f"{path}:10: checkpont: unknown key (did you mean 'checkpoint'?)" in lines


def test_a_missing_environment_variable_gives_the_line(tmp_path, monkeypatch):
    monkeypatch.delenv("CDC_TEST_NOPE", raising=False)
    path = _write(tmp_path / "cdc.yml", "mysql:\n  user: cdc\n  server_id: 1\n  password: ${CDC_TEST_NOPE}\n")
    with pytest.raises(ConfigError, match=f"^{path}:4: mysql.password: environment variable CDC_TEST_NOPE is not set$"):
        load_config(path)


def test_invalid_yaml_has_the_same_format_as_in_rule_files(tmp_path):
    from cdc.rules import load_rules

    text = "mysql: {user: cdc,\n  server_id: [1 2}\n"
    config = _write(tmp_path / "cdc.yml", text)
    (tmp_path / "rules").mkdir()
    rules = _write(tmp_path / "rules" / "r.yml", text)
    with pytest.raises(ConfigError) as from_config:
        load_config(config)
    with pytest.raises(ConfigError) as from_rules:
        load_rules(tmp_path / "rules")
    assert str(from_config.value) == (f"{config}:2:18: invalid YAML: expected ',' or ']', but got '}}' "
                                      "(while parsing a flow sequence)")
    assert str(from_rules.value) == str(from_config.value).replace(str(config), str(rules))
    assert "<unicode string>" not in str(from_config.value)


def test_writable_paths_default_to_the_state_directory(tmp_path, monkeypatch):
    """systemd's StateDirectory= sets $STATE_DIRECTORY (the image sets it too): the config dir may be read-only."""
    path = _write(tmp_path / "cdc.yml", "mysql: {user: cdc, server_id: 1}\nrules: rules.d\n")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/cdc")
    config = load_config(path)
    assert config.state_dir == "/var/lib/cdc"
    assert config.resolve(config.checkpoint.path) == Path("/var/lib/cdc/cdc.checkpoint.json")
    assert config.resolve(config.dead_letter.path) == Path("/var/lib/cdc/dead-letters.jsonl")
    assert config.resolve(config.rules) == tmp_path.resolve() / "rules.d"  # read paths stay beside the config
    # An absolute path is kept; state_dir in the file wins over the environment, relative to the file.
    path.write_text("mysql: {user: cdc, server_id: 1}\nstate_dir: state\ncheckpoint: {path: /data/cp.json}\n")
    config = load_config(path)
    assert config.resolve(config.checkpoint.path) == Path("/data/cp.json")
    assert config.resolve(config.dead_letter.path) == tmp_path.resolve() / "state" / "dead-letters.jsonl"
    monkeypatch.delenv("STATE_DIRECTORY")
    path.write_text("mysql: {user: cdc, server_id: 1}\n")
    config = load_config(path)
    assert config.state_dir is None
    assert config.resolve(config.checkpoint.path) == tmp_path.resolve() / "cdc.checkpoint.json"


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yml"
    with pytest.raises(ConfigError, match="cannot read config") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_load_config_empty_file(tmp_path):
    path = _write(tmp_path / "empty.yml", "")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_load_config_rejects_base_dir_key(tmp_path):
    path = _write(tmp_path / "cdc.yml", "mysql: {user: cdc, server_id: 1}\nbase_dir: /tmp\n")
    with pytest.raises(ConfigError, match="base_dir: unknown key"):
        load_config(path)


def test_parse_config_ignores_base_dir_in_data():
    config = parse_config({**MINIMAL, "base_dir": "/evil"}, base_dir="/real")
    assert config.base_dir == "/real"


def test_load_config_scalar_document_is_config_error(tmp_path):
    path = _write(tmp_path / "cdc.yml", "42\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_indices_on_change_is_report_by_default_and_rebuild_needs_aliases_and_elasticsearch():
    assert parse_config(MINIMAL).indices.on_change == "report"
    assert parse_config({**MINIMAL, "indices": {"on_change": "rebuild"}}).indices.on_change == "rebuild"
    with pytest.raises(ConfigError, match="indices.on_change: Input should be 'report' or 'rebuild'"):
        parse_config({**MINIMAL, "indices": {"on_change": "swap"}})
    with pytest.raises(ConfigError, match="needs aliases: true"):
        parse_config({**MINIMAL, "indices": {"on_change": "rebuild", "aliases": False}})
    with pytest.raises(ConfigError, match="in Kafka mode the writers are `cdc sink` processes"):
        parse_config({**MINIMAL, "destination": "kafka", "indices": {"on_change": "rebuild"}})
