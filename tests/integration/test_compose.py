"""docker-compose.yml's cdc service, brought up with podman-compose against the test servers.

The project's compose file runs MySQL 8.4 and Elasticsearch 9 from images that cannot
be pulled here (docs/tested-where.md "Tested where"), so only its cdc service is brought up, with
docker-compose.local.yml on top: the image built by scripts/container.py (the `image`
fixture, shared with test_container.py), the host's network, no services to wait for,
and this test's config and rules. Everything else comes from docker-compose.yml as a
user gets it: the password variable, the `cdc-state` volume, the stop grace period,
the restart policy, and the image's entrypoint and HEALTHCHECK.

podman-compose (PyPI, a test extra) turns the files into podman commands; this
machine's podman traps (docs/operations.md "Docker") go in as `--podman-run-args`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from harness import CdcSetup, binlog_position, free_port, wait_until_equal

import container

ROOT = Path(__file__).resolve().parents[2]
PODMAN_COMPOSE = shutil.which("podman-compose", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

pytestmark = [
    pytest.mark.serial,  # the whole module (tests/conftest.py says what serial means)
    pytest.mark.skipif(container.available() is not None,
                       reason=f"podman cannot build images here: {container.available()}"),
    pytest.mark.skipif(PODMAN_COMPOSE is None, reason="podman-compose is not installed (pip install -e '.[test]')"),
]


class Compose:
    """`podman-compose -p PROJECT -f docker-compose.yml -f docker-compose.local.yml ...` in the repository."""

    def __init__(self, project: str, env: dict[str, str]):
        self.project, self.env = project, env

    def __call__(self, *args: str, timeout: float = 120) -> str:
        began = time.monotonic()
        run_args = [f"--podman-run-args={flag}" for flag in _joined(container.PODMAN_FLAGS)]
        result = subprocess.run(
            [str(PODMAN_COMPOSE), "-p", self.project, *run_args,
             "-f", "docker-compose.yml", "-f", "docker-compose.local.yml", *args],
            cwd=ROOT, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"podman-compose {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        print(f"podman-compose {' '.join(args)}: {time.monotonic() - began:.1f} s")  # shown when the test fails
        return result.stdout

    def containers(self) -> list[dict]:
        out = subprocess.run(["podman", "ps", "-a", "--format", "json", "--filter",
                              f"label=io.podman.compose.project={self.project}"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out or "[]")

    def the_container(self) -> str:
        [found] = self.containers()
        return found["Names"][0]

    def logs(self) -> str:
        result = subprocess.run(["podman", "logs", self.the_container()], capture_output=True, text=True)
        return result.stdout + result.stderr


def _joined(flags: list[str]) -> list[str]:
    """["--runtime", "runc", ...] as ["--runtime=runc", ...]: one podman-compose argument each."""
    pairs = iter(flags)
    return [f"{flag}={value}" for flag, value in zip(pairs, pairs)]


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True)


def test_compose_brings_up_the_cdc_service_and_resumes_from_its_volume(image, servers, db, database, es, index_prefix,
                                                                       tmp_path):
    index = f"{index_prefix}-t"
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    file, pos = binlog_position(db)
    metrics_port = free_port()
    (tmp_path / "etc").mkdir()
    setup = CdcSetup(tmp_path / "etc", servers, [{"schema": database, "table": "t", "index": index}],
                     # The variable docker-compose.yml sets; a relative checkpoint lands in the
                     # image's state directory, the cdc-state volume.
                     mysql__password="${CDC_MYSQL_PASSWORD}", checkpoint__path="checkpoint.json",
                     start__position=f"{file}:{pos}",
                     metrics__enabled=True, metrics__host="127.0.0.1", metrics__port=metrics_port)
    for path in [setup.dir, *setup.dir.rglob("*")]:  # read by the image's uid 10001
        path.chmod(0o755 if path.is_dir() else 0o644)
    project = f"cdctest{uuid.uuid4().hex[:8]}"
    compose = Compose(project, {"CDC_IMAGE": image, "CDC_MYSQL_PASSWORD": servers.cdc_password,
                                "CDC_CONFIG": str(setup.config_path),
                                "CDC_RULES": str(setup.dir / "rules"),
                                "CDC_HEALTHCHECK_URL": f"http://127.0.0.1:{metrics_port}/readyz"})
    volume = f"{project}_cdc-state"
    try:
        compose("up", "-d", "--no-build", "cdc")
        db.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
        wait_until_equal(db, es, "t", index, ["id"])
        name = compose.the_container()
        deadline = time.monotonic() + 60
        while podman("healthcheck", "run", name).returncode != 0:
            assert time.monotonic() < deadline, f"not healthy:\n{compose.logs()[-3000:]}"
            time.sleep(0.5)
        written = binlog_position(db)

        # `stop` sends SIGTERM: cdc saves its position in the volume and exits 0.
        compose("stop", "cdc")
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), compose.logs()[-3000:]
        mountpoint = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip())
        saved = json.loads((mountpoint / "checkpoint.json").read_text())
        assert (saved["file"], saved["pos"]) >= written

        # `down` removes the container and keeps the volume; `up` again resumes from it.
        compose("down")
        assert compose.containers() == []
        assert podman("volume", "exists", volume).returncode == 0
        db.execute("INSERT INTO t VALUES (3, 3)", "UPDATE t SET v = 20 WHERE id = 2")
        compose("up", "-d", "--no-build", "cdc")
        wait_until_equal(db, es, "t", index, ["id"])
        assert f"resuming from checkpoint {saved['file']}:{saved['pos']}" in compose.logs()
    finally:
        compose("down", "-v")
    # Nothing left behind: no container, no volume, no pod.
    assert compose.containers() == []
    assert podman("volume", "exists", volume).returncode != 0
    assert podman("pod", "exists", f"pod_{project}").returncode != 0
