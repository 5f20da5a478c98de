"""The deployment files (Dockerfile, docker-compose.yml, deploy/) agree with the code.

No Docker engine is needed (or used): these parse the files and check what they
promise against the config loader and the CLI. They do not build or run images.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath

import pytest
import yaml

import cdc
from cdc.config import parse_config
from cdc.rules import load_rules

import container  # scripts/, on sys.path (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKER_CONFIG = ROOT / "deploy" / "docker" / "cdc.yml"
MYSQL_INIT = ROOT / "deploy" / "docker" / "mysql-init.sql"
UNIT = ROOT / "deploy" / "systemd" / "cdc.service"

BINLOG_FLAGS = [
    "--log-bin=binlog",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--gtid-mode=ON",
    "--enforce-gtid-consistency=ON",
]
CONTAINER_CONFIG = PurePosixPath("/etc/cdc/cdc.yml")


# ---------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _command_list(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def _mounts(service: dict) -> dict[str, str]:
    """Short-syntax volumes as {target: source}."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        mounts[target] = source
    return mounts


def _compose_default(value: str, name: str) -> str | None:
    """The default in a compose `${NAME:-default}`, or the literal value."""
    m = re.fullmatch(r"\$\{" + name + r":-([^}]*)\}", value)
    return m.group(1) if m else (None if "${" in value else value)


def _dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and `\\` continuations joined."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def _last_json(keyword: str) -> list[str]:
    values = [args for kw, args in _dockerfile_instructions() if kw == keyword]
    assert values, f"no {keyword} in the Dockerfile"
    parsed = json.loads(values[-1])  # exec (JSON array) form, so signals reach cdc directly
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)
    return parsed


def _parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: [Section], Key=value, repeated keys kept in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# ---------------------------------------------------------------- (a) docker-compose.yml
def test_compose_has_the_three_services(compose):
    assert {"mysql", "elasticsearch", "cdc"} <= set(compose["services"])


def test_compose_mysql_is_set_up_for_cdc(compose):
    mysql = compose["services"]["mysql"]
    assert mysql["image"].startswith("docker.io/library/mysql:8")
    command = _command_list(mysql)
    for flag in BINLOG_FLAGS:
        assert flag in command, f"mysql command lacks {flag}"
    assert any(c.startswith("--server-id=") for c in command)
    assert "MYSQL_ROOT_PASSWORD" in mysql["environment"]
    init_targets = [t for t in _mounts(mysql) if t.startswith("/docker-entrypoint-initdb.d/")]
    assert init_targets and _mounts(mysql)[init_targets[0]] == "./deploy/docker/mysql-init.sql"
    assert "mysqladmin" in " ".join(mysql["healthcheck"]["test"])


def test_compose_elasticsearch_single_node_with_healthcheck(compose):
    es = compose["services"]["elasticsearch"]
    assert es["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    env = es["environment"]
    assert env["discovery.type"] == "single-node"
    assert str(env["xpack.security.enabled"]).lower() == "false"
    assert "_cluster/health" in " ".join(es["healthcheck"]["test"])


def test_compose_cdc_waits_for_healthy_servers_and_keeps_its_state(compose):
    svc = compose["services"]["cdc"]
    assert svc["build"] in (".", {"context": "."})
    assert svc["depends_on"] == {
        "mysql": {"condition": "service_healthy"},
        "elasticsearch": {"condition": "service_healthy"},
    }
    assert svc["restart"] == "on-failure"
    mounts = _mounts(svc)
    assert mounts[str(CONTAINER_CONFIG)] == "./deploy/docker/cdc.yml"
    assert mounts["/etc/cdc/rules"] == "./demo/rules"
    assert mounts["/var/lib/cdc"] == "cdc-state"
    assert "cdc-state" in (compose.get("volumes") or {})
    for source in mounts.values():  # every bind mount points at a file in the repo
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
    assert "CDC_MYSQL_PASSWORD" in svc["environment"]


def test_compose_password_matches_the_init_sql(compose):
    sql = MYSQL_INIT.read_text()
    m = re.search(r"CREATE USER 'cdc'@'%' IDENTIFIED WITH (\w+) BY '([^']*)'", sql)
    assert m, "mysql-init.sql does not create 'cdc'@'%'"
    plugin, password = m.groups()
    default = _compose_default(compose["services"]["cdc"]["environment"]["CDC_MYSQL_PASSWORD"], "CDC_MYSQL_PASSWORD")
    assert default == password
    if plugin == "mysql_native_password":  # disabled by default since MySQL 8.4
        assert "--mysql-native-password=ON" in _command_list(compose["services"]["mysql"])


def test_mysql_init_grants_and_demo_tables():
    sql = MYSQL_INIT.read_text()
    grant = re.search(r"GRANT (.+?) ON \*\.\* TO 'cdc'@'%'", sql)
    assert grant
    privileges = {p.strip().upper() for p in grant.group(1).split(",")}
    assert {"REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT", "RELOAD"} <= privileges
    tables = set(re.findall(r"CREATE TABLE (\w+)", sql))
    rules = load_rules(ROOT / "demo" / "rules")
    assert {(r.schema, r.table) for r in rules.rules} <= {("shop", t) for t in tables}
    assert "RESET MASTER" not in sql.upper()  # removed in MySQL 8.4


# ---------------------------------------------------------------- (b) deploy/docker/cdc.yml
def test_docker_config_validates_and_keeps_state_in_the_volume(monkeypatch, compose):
    monkeypatch.setenv("CDC_MYSQL_PASSWORD", "s3cret")
    config = parse_config(yaml.safe_load(DOCKER_CONFIG.read_text()), str(DOCKER_CONFIG),
                          str(CONTAINER_CONFIG.parent))
    assert config.mysql.password == "s3cret"
    assert config.mysql.host == "mysql" and config.mysql.port == 3306 and config.mysql.user == "cdc"
    assert config.elasticsearch.hosts == ["http://elasticsearch:9200"]

    checkpoint = PurePosixPath(config.checkpoint.path)
    assert checkpoint.is_absolute()
    assert PurePosixPath("/var/lib/cdc") in checkpoint.parents
    assert PurePosixPath(config.rules) == PurePosixPath("/etc/cdc/rules")

    # The compose file mounts what the config points at.
    mounts = _mounts(compose["services"]["cdc"])
    assert str(checkpoint.parent) in mounts
    assert config.rules in mounts

    mysql_command = _command_list(compose["services"]["mysql"])
    server_id = next(int(c.split("=", 1)[1]) for c in mysql_command if c.startswith("--server-id="))
    assert config.mysql.server_id != server_id
    if config.start.position != "end":  # a FILE:POS in the binlog that --log-bin names
        basename = next(c.split("=", 1)[1] for c in mysql_command if c.startswith("--log-bin="))
        assert config.start.position.startswith(basename + ".")


def test_docker_config_needs_the_password_variable(monkeypatch):
    from cdc.errors import ConfigError

    monkeypatch.delenv("CDC_MYSQL_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="CDC_MYSQL_PASSWORD"):
        parse_config(yaml.safe_load(DOCKER_CONFIG.read_text()), str(DOCKER_CONFIG), "/etc/cdc")


# ---------------------------------------------------------------- (c) Dockerfile
def test_dockerfile_is_multi_stage_on_python_311_slim():
    froms = [args.split() for kw, args in _dockerfile_instructions() if kw == "FROM"]
    # The native row path is compiled in a Rust stage; the wheels and the runtime share one
    # base, python:3.11-slim unless the build says otherwise (the tests' local base).
    assert [f[0] for f in froms] == ["${RUST}", "${BASE}", "${BASE}"]
    assert froms[0][-1] == "native" and froms[1][-1] == "build" and len(froms[2]) == 1
    assert ("ARG", "BASE=docker.io/library/python:3.11-slim") in _dockerfile_instructions()
    assert ("ARG", "RUST=docker.io/library/rust:1-slim-bookworm") in _dockerfile_instructions()


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for kw, args in _runtime_stage() if kw == "USER"]
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", "")


def test_dockerfile_entrypoint_cmd_and_signal():
    assert _last_json("ENTRYPOINT") == ["cdc"]
    assert _last_json("CMD") == ["run", "--config", str(CONTAINER_CONFIG)]
    runtime = dict(_runtime_stage())
    assert runtime.get("STOPSIGNAL") == "SIGTERM"
    volume = runtime["VOLUME"]
    assert (json.loads(volume) if volume.startswith("[") else volume.split()) == ["/var/lib/cdc"]
    assert runtime.get("WORKDIR") == "/var/lib/cdc"


def test_dockerfile_version_label_matches_the_package():
    args = [a for kw, a in _runtime_stage() if kw == "ARG" and a.startswith("VERSION=")]
    assert args == [f"VERSION={cdc.__version__}"]


def _healthcheck() -> tuple[list[str], str]:
    """The HEALTHCHECK's exec-form command, and the URL the image's ENV gives it."""
    checks = [args for kw, args in _runtime_stage() if kw == "HEALTHCHECK"]
    assert len(checks) == 1, "the runtime stage needs exactly one HEALTHCHECK"
    options, sep, command = checks[0].partition(" CMD ")
    assert sep and "--interval=" in options and "--timeout=" in options
    envs = " ".join(args for kw, args in _runtime_stage() if kw == "ENV")
    url = re.search(r"CDC_HEALTHCHECK_URL=(\S+)", envs)
    assert url, "no ENV CDC_HEALTHCHECK_URL"
    return json.loads(command), url.group(1)


def test_dockerfile_healthcheck_matches_the_docker_config(monkeypatch):
    argv, url = _healthcheck()
    assert argv[:2] == ["python", "-c"]  # the slim image has no curl
    monkeypatch.setenv("CDC_MYSQL_PASSWORD", "x")
    config = parse_config(yaml.safe_load(DOCKER_CONFIG.read_text()), str(DOCKER_CONFIG), "/etc/cdc")
    assert config.metrics.enabled, "the image's HEALTHCHECK needs metrics.enabled in deploy/docker/cdc.yml"
    assert url == f"http://127.0.0.1:{config.metrics.port}/readyz"  # healthy = in sync (see the Dockerfile)


def test_dockerfile_healthcheck_command_works_when_run_directly():
    """The image's command, run with this Python against a real /healthz: 0 healthy, 1 otherwise."""
    from cdc.ops.health import Health, HealthServer
    from cdc.ops.progress import Progress

    argv, _ = _healthcheck()
    progress = Progress(heartbeat=1)
    progress.on_start(None, None, None)
    loop = {"last": 0.0}
    server = HealthServer("127.0.0.1", 0, Health(progress, lambda: loop["last"], heartbeat=1, max_lag=60,
                                                 stuck_after=30))
    url = f"http://127.0.0.1:{server.port}/healthz"

    def check() -> int:
        return subprocess.run([sys.executable, *argv[1:]], env={"CDC_HEALTHCHECK_URL": url},
                              capture_output=True, timeout=30).returncode

    try:
        loop["last"] = time.monotonic()
        assert check() == 0
        loop["last"] = time.monotonic() - 60  # the main loop has not turned for a minute
        assert check() == 1
    finally:
        server.close()
    assert check() == 1  # nothing listening


def test_console_script_is_the_cli():
    (script,) = entry_points(group="console_scripts", name="cdc")
    assert script.value == "cdc.cli:main"


def _image_command_variants() -> list[list[str]]:
    variants = [[sys.executable, "-m", "cdc"]]
    script = Path(sys.executable).parent / "cdc"  # the venv's console script, as in the image
    if script.exists():
        variants.append([str(script)])
    return variants


@pytest.mark.parametrize("prefix", _image_command_variants(), ids=lambda p: " ".join(Path(x).name for x in p))
def test_the_images_command_exists(prefix, tmp_path):
    entrypoint, cmd = _last_json("ENTRYPOINT"), _last_json("CMD")
    assert entrypoint[0] == "cdc"
    argv = prefix + entrypoint[1:] + cmd + ["--help"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


# ---------------------------------------------------------------- (d) systemd unit
@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return _parse_unit(UNIT.read_text())


def _one(unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] has no {key}="
    return values[-1]


def test_unit_runs_cdc_run_as_user_cdc(unit):
    assert {"Unit", "Service", "Install"} <= set(unit)
    argv = _one(unit, "Service", "ExecStart").split()
    assert PurePosixPath(argv[0]).name == "cdc"
    assert argv[1:4] == ["run", "--config", "/etc/cdc/cdc.yml"]
    assert _one(unit, "Service", "User") == "cdc"


def test_unit_is_type_notify_with_a_watchdog(unit):
    # cdc/ops/notify.py sends READY=1, WATCHDOG=1 (every WatchdogSec/2), STATUS= and STOPPING=1.
    assert _one(unit, "Service", "Type") == "notify"
    assert _one(unit, "Service", "WatchdogSec") == "30"
    # The pings come from a thread of the main process, which NotifyAccess=main (the default) accepts.
    assert unit["Service"].get("NotifyAccess", ["main"])[-1] in ("main", "all")


def test_unit_restarts_only_when_it_can_help(unit):
    assert _one(unit, "Service", "Restart") == "on-failure"
    prevent = " ".join(unit["Service"]["RestartPreventExitStatus"]).split()
    assert {"2", "3"} <= set(prevent)
    assert _one(unit, "Service", "KillSignal") == "SIGTERM"


def test_unit_is_sandboxed_and_can_write_its_state(unit):
    service = unit["Service"]
    assert _one(unit, "Service", "NoNewPrivileges") == "yes"
    assert _one(unit, "Service", "ProtectSystem") == "strict"
    assert _one(unit, "Service", "StateDirectory") == "cdc"
    assert "/var/lib/cdc" in " ".join(service["ReadWritePaths"]).split()
    assert _one(unit, "Service", "WorkingDirectory") == "/var/lib/cdc"
    assert service["CapabilityBoundingSet"][-1] == ""
    assert _one(unit, "Service", "EnvironmentFile").lstrip("-") == "/etc/cdc/cdc.env"


def test_unit_passes_systemd_analyze_verify():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).splitlines()
    # The executable is not installed on a build machine; everything else must be clean.
    problems = [line for line in output if re.search(r"Unknown (key|section)|Failed to parse|ignoring|Invalid",
                                                     line, re.I)]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- (e) writable paths (issue 16)
def _env_instructions() -> dict[str, str]:
    env = {}
    for kw, args in _runtime_stage():
        if kw == "ENV":
            for pair in re.findall(r"(\w+)=(\S+)", args.replace("\\\n", " ")):
                env[pair[0]] = pair[1]
    return env


def test_the_image_puts_every_writable_path_in_its_volume(monkeypatch):
    """The image's STATE_DIRECTORY is its volume: a config with the default (relative) paths writes
    nothing to the read-only /etc/cdc; so does deploy/docker/cdc.yml."""
    state = _env_instructions().get("STATE_DIRECTORY")
    assert state is not None
    runtime = dict(_runtime_stage())
    volume = runtime["VOLUME"]
    assert [state] == (json.loads(volume) if volume.startswith("[") else volume.split())
    monkeypatch.setenv("STATE_DIRECTORY", state)
    monkeypatch.setenv("CDC_MYSQL_PASSWORD", "s3cret")
    for data in ({"mysql": {"user": "cdc", "server_id": 5}, "dead_letter": {"on_rejected": "dead_letter"}},
                 yaml.safe_load(DOCKER_CONFIG.read_text())):
        config = parse_config(data, "cdc.yml", str(CONTAINER_CONFIG.parent))
        for path in (config.checkpoint.path, config.dead_letter.path):
            assert PurePosixPath(state) in PurePosixPath(config.resolve(path)).parents, path


def test_the_unit_puts_every_writable_path_in_its_state_directory(unit, monkeypatch):
    """StateDirectory=cdc is /var/lib/cdc, which systemd passes as $STATE_DIRECTORY; ProtectSystem=strict
    leaves only ReadWritePaths writable, so the defaults must land there (they did not: issue 16)."""
    state = "/var/lib/" + _one(unit, "Service", "StateDirectory")
    assert state in " ".join(unit["Service"]["ReadWritePaths"]).split()
    monkeypatch.setenv("STATE_DIRECTORY", state)
    config = parse_config({"mysql": {"user": "cdc", "server_id": 5}}, "/etc/cdc/cdc.yml", "/etc/cdc")
    assert config.resolve(config.checkpoint.path) == Path(state) / "cdc.checkpoint.json"
    assert config.resolve(config.dead_letter.path) == Path(state) / "dead-letters.jsonl"
    assert config.resolve(config.rules) == Path("/etc/cdc/rules")


def test_the_init_sql_says_what_setup_cfg_installs():
    """mysql-init.sql once said cdc does not install `cryptography`; setup.cfg installs PyMySQL[rsa]."""
    setup_cfg = (ROOT / "setup.cfg").read_text()
    init = (ROOT / "deploy" / "docker" / "mysql-init.sql").read_text()
    assert re.search(r"PyMySQL\[rsa\]", setup_cfg)
    assert "which cdc does not install" not in init and "PyMySQL[rsa]" in init


def test_the_docs_start_the_stack_the_way_the_compose_file_says():
    """docs/operations.md "Docker" (README.md until issue 30 moved its operations prose there)."""
    found = re.search(r"#\s+(CDC_MYSQL_PASSWORD=\S+ docker compose up[^\n]*)", (ROOT / "docker-compose.yml").read_text())
    assert found is not None
    compose_command = found.group(1).strip()
    assert f"`{compose_command}`" in (ROOT / "docs" / "operations.md").read_text()


# ---------------------------------------------------------------- (f) image names
def _repo_files(*patterns: str) -> list[Path]:
    """The repository's files whose names match, outside .git, .venv, build output and caches."""
    skip = {".git", ".venv", "target", "build", "dist", "node_modules", "__pycache__"}
    found = []
    for directory, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        found += [Path(directory) / f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)]
    return sorted(found)


def _fully_qualified(reference: str) -> bool:
    """Names its registry: the first component is a host (has a dot or a port, or is localhost).

    podman resolves a short name (python:3.11-slim) only through registries.conf aliases or
    search registries; Debian 12's has neither, so `podman build .` failed at once."""
    first, sep, _ = reference.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def _containerfile_images(path: Path) -> list[str]:
    """The images a Dockerfile/Containerfile pulls: FROM (with its ARG defaults) and the syntax directive."""
    images: list[str] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    first = path.read_text().splitlines()[0]
    if first.startswith("# syntax="):
        images.append(first.split("=", 1)[1].strip())
    for keyword, rest in _dockerfile_instructions(path):
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args.setdefault(name, default)
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
            if image.lower() != "scratch" and image not in stages:
                images.append(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return images


class _AnyTagLoader(yaml.SafeLoader):
    """Compose files use tags such as `!reset {}`; their values do not matter here."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _compose_images(path: Path) -> list[str]:
    data = yaml.load(path.read_text(), Loader=_AnyTagLoader) or {}
    images = []
    for service in (data.get("services") or {}).values():
        if service and "image" in service:
            image = service["image"]
            m = re.fullmatch(r"\$\{\w+:-([^}]*)\}", image)  # ${CDC_IMAGE:-default}
            images.append(m.group(1) if m else image)
    return images


def test_every_image_name_is_fully_qualified():
    containerfiles = _repo_files("Dockerfile*", "Containerfile*")
    composefiles = _repo_files("docker-compose*.yml", "docker-compose*.yaml", "compose*.yml", "compose*.yaml")
    assert DOCKERFILE in containerfiles and COMPOSE in composefiles
    images = {f"{path.relative_to(ROOT)}: {image}" for path in containerfiles for image in _containerfile_images(path)}
    images |= {f"{path.relative_to(ROOT)}: {image}" for path in composefiles for image in _compose_images(path)}
    # The local images the tests build on (scripts/container.py).
    images |= {f"scripts/container.py: {image}" for image in (container.BASE_IMAGE, container.BUILDER_IMAGE,
                                                              container.IMAGE)}
    assert not [image for image in sorted(images) if not _fully_qualified(image.split(": ", 1)[1])]
    assert "Dockerfile: docker.io/library/python:3.11-slim" in images  # the check sees the ARG defaults
    assert "docker-compose.yml: docker.io/library/mysql:8.4" in images


def test_short_image_names_are_told_apart():
    assert not any(map(_fully_qualified, ["python:3.11-slim", "rust:1-slim-bookworm", "apache/kafka:4.1.1",
                                          "docker/dockerfile:1"]))
    assert all(map(_fully_qualified, ["docker.io/library/python:3.11-slim", "localhost/cdc:test",
                                      "docker.elastic.co/elasticsearch/elasticsearch:9.1.5",
                                      "registry.local:5000/cdc"]))


# ---------------------------------------------------------------- (g) what the install lines install
def _setup_cfg() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def _limited_api() -> str:
    """The stable ABI the wheel is built for: CPython's oldest version that setup.cfg accepts."""
    oldest = re.fullmatch(r">=\s*3\.(\d+)", _setup_cfg()["options"]["python_requires"].strip())
    assert oldest, "python_requires is not of the form >=3.N"
    return f"cp3{oldest.group(1)}"


def test_the_wheel_is_tagged_for_the_stable_abi():
    """`python -m build --wheel` once gave cdc-0.1.0-cp311-cp311-linux_x86_64.whl, which pip on 3.12 refuses."""
    limited = _limited_api()
    assert _setup_cfg()["bdist_wheel"]["py_limited_api"] == limited  # the wheel's tag: cp311-abi3-<platform>
    # ... and what makes that tag true: the module is built for the stable ABI of that version.
    cargo = tomllib.loads((ROOT / "native" / "Cargo.toml").read_text())
    assert f"abi3-py{limited[2:]}" in cargo["dependencies"]["pyo3"]["features"]
    [module] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools-rust"]["ext-modules"]
    assert module["target"] == "cdc._native" and module["py-limited-api"] == limited
    assert module["optional"] is True  # no Rust toolchain: cdc installs and runs the Python path


def _install_arguments() -> list[tuple[str, str]]:
    """(file, argument) of every `pip install` in the documentation and the deployment files."""
    files = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "RELIABILITY.md", DOCKERFILE, ROOT / "Makefile",
             *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bench").glob("*.md")),
             *sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file())]
    found = []
    for path in files:
        # The arguments end at the line's end, a comment, a shell operator or a Markdown code span's end;
        # `pip install` at a line's end goes on on the next line (wrapped prose).
        for m in re.finditer(r"pip install[ \t]*(?:\n[ \t]*)?([^\n`#;&|)]*)", path.read_text()):
            found += [(path.name, arg.strip("'\"")) for arg in m.group(1).split() if not arg.startswith("-")]
    return found


def _installs_what_the_project_builds(argument: str) -> bool:
    """A path (the checkout, a wheel the build writes), or a package that is not cdc (a tool, pip itself)."""
    name = PurePosixPath(argument).name
    if name.endswith(".whl"):  # the file `python -m build --wheel` writes (the platform may be a glob)
        return fnmatch.fnmatch(name, f"cdc-{cdc.__version__}-{_limited_api()}-abi3-*.whl")
    if argument.startswith((".", "/", "~", "$")) or "/" in argument:
        return True
    requirement = re.match(r"[A-Za-z0-9._-]+", argument)
    return requirement is not None and re.sub(r"[-_.]+", "-", requirement.group(0)).lower() != "cdc"


def test_install_lines_name_only_what_the_project_builds():
    """PyPI's `cdc` is another project, and no build made the py3-none-any wheel deploy/ once named."""
    arguments = _install_arguments()
    assert ("README.md", ".") in arguments and ("install.md", ".") in arguments
    assert any(f == "cdc.service" for f, _ in arguments)
    assert [f"{f}: pip install {a}" for f, a in arguments if not _installs_what_the_project_builds(a)] == []


def test_install_line_check_tells_them_apart():
    bad = ["cdc", "cdc==0.1.0", "cdc[test]", "cdc-0.1.0-py3-none-any.whl", "dist/cdc-0.1.0-cp311-cp311-linux_x86_64.whl"]
    good = [".", ".[test]", "/path/to/checkout", "dist/cdc-0.1.0-cp311-abi3-linux_x86_64.whl",
            "dist/cdc-0.1.0-cp311-abi3-*.whl", "build", "podman-compose", "pip"]
    assert not any(map(_installs_what_the_project_builds, bad))
    assert all(map(_installs_what_the_project_builds, good))
