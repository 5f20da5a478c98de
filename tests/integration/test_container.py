"""The container image, built with podman and run as a sidecar next to the test servers.

The image is the project's Dockerfile, built on a Debian base made locally
(scripts/container.py: no registry is reachable here; the `image` fixture of
tests/integration/conftest.py, shared with test_compose.py). The container shares the
host's network, so it reaches MariaDB, and Elasticsearch through a fault proxy.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
import yaml
from harness import binlog_position, es_docs, free_port, wait_until_equal
from proxy import FaultProxy

import container

pytestmark = [
    pytest.mark.serial,  # the whole module (tests/conftest.py says what serial means)
    pytest.mark.skipif(container.available() is not None,
                       reason=f"podman cannot build images here: {container.available()}"),
]

CDC_UID = 10001  # the Dockerfile's cdc user


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


class Sidecar:
    """cdc in a container: config and rules mounted read-only, state in a named volume."""

    def __init__(self, image: str, config_dir, volume: str, metrics_port: int):
        self.image, self.config_dir, self.volume, self.metrics_port = image, config_dir, volume, metrics_port
        self.name: str | None = None

    def mounts(self) -> list[str]:
        return ["-v", f"{self.config_dir}:/etc/cdc:ro", "-v", f"{self.volume}:/var/lib/cdc"]

    def start(self) -> "Sidecar":
        self.name = f"cdc-test-{uuid.uuid4().hex[:8]}"
        podman("run", "-d", "--name", self.name, "--network", "host", *container.PODMAN_FLAGS, *self.mounts(),
               "-e", "CDC_MYSQL_PASSWORD=cdc",
               "-e", f"CDC_HEALTHCHECK_URL=http://127.0.0.1:{self.metrics_port}/readyz", self.image)
        return self

    @property
    def started(self) -> str:
        """The container's name; the methods below need one that was started."""
        assert self.name is not None, "the sidecar was not started"
        return self.name

    def logs(self) -> str:
        result = podman("logs", self.started, check=False)
        return result.stdout + result.stderr

    def healthy(self) -> bool:
        return podman("healthcheck", "run", self.started, check=False).returncode == 0

    def wait_health(self, healthy: bool, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.healthy() != healthy:
            state = podman("inspect", "--format", "{{.State.Status}}", self.started).stdout.strip()
            assert state == "running", f"the container is {state}:\n{self.logs()[-3000:]}"
            assert time.monotonic() < deadline, f"not {'healthy' if healthy else 'unhealthy'}:\n{self.logs()[-3000:]}"
            time.sleep(0.5)

    def stop(self) -> int:
        podman("stop", "-t", "60", self.started, timeout=90)
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.started).stdout.strip())

    def remove(self) -> None:
        if self.name:
            podman("rm", "-f", self.name, check=False)

    def read_state(self, name: str) -> str:
        """A file of the state volume, read by a throwaway container of the same image."""
        return podman("run", "--rm", *container.PODMAN_FLAGS, "-v", f"{self.volume}:/var/lib/cdc:ro",
                      "--entrypoint", "cat", self.image, f"/var/lib/cdc/{name}").stdout


@pytest.fixture
def es_proxy(servers):
    host, port = servers.es_url.removeprefix("http://").split(":")
    proxy = FaultProxy(host, int(port))
    yield proxy
    proxy.close()


@pytest.fixture
def volume():
    name = f"cdc-state-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


def write_config(directory, servers, database: str, index: str, es_port: int, metrics_port: int, start: str) -> None:
    (directory / "rules").mkdir(parents=True)
    (directory / "rules" / "t.yml").write_text(yaml.safe_dump({"rules": [
        {"schema": database, "table": "t", "index": index}]}))
    (directory / "cdc.yml").write_text(yaml.safe_dump({
        "mysql": {"host": "127.0.0.1", "port": servers.mariadb_port, "user": servers.cdc_user,
                  "password": "${CDC_MYSQL_PASSWORD}", "server_id": 4000 + free_port() % 1000, "heartbeat": 1},
        "elasticsearch": {"hosts": [f"http://127.0.0.1:{es_port}"], "request_timeout": 5},
        # Absolute paths in the volume: /etc/cdc is mounted read-only.
        "checkpoint": {"path": "/var/lib/cdc/checkpoint.json", "min_interval": 0},
        "dead_letter": {"path": "/var/lib/cdc/dead-letters.jsonl", "on_rejected": "dead_letter"},
        "start": {"position": start},
        "rules": "/etc/cdc/rules",
        "batch": {"max_interval": 0.2},
        "retry": {"initial_backoff": 0.2, "max_backoff": 1},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": metrics_port},
    }))
    # The container runs as uid 10001, which must read the bind-mounted files.
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_sidecar_streams_checks_health_keeps_state_and_stops_cleanly(
        image, servers, db, database, es, index_prefix, tmp_path, es_proxy, volume):
    index = f"{index_prefix}-t"
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, s VARCHAR(20))")
    # 's' is numeric in the index, so a row with text there is rejected: a dead letter.
    es.indices.create(index=index, mappings={"properties": {"s": {"type": "long"}}})
    file, pos = binlog_position(db)
    metrics_port = free_port()
    write_config(tmp_path / "etc", servers, database, index, es_proxy.port, metrics_port, f"{file}:{pos}")
    sidecar = Sidecar(image, tmp_path / "etc", volume, metrics_port).start()
    try:
        db.execute("INSERT INTO t VALUES (1, 1, '1'), (2, 2, '2')")
        wait_until_equal(db, es, "t", index, ["id"])
        sidecar.wait_health(True)

        # The image runs the native row path when it was built with a Rust toolchain (scripts/container.py).
        if container.rust_toolchain() is not None:
            assert f"row path for {database}.t: native" in sidecar.logs(), sidecar.logs()[-3000:]

        # The daemon is the image's non-root user.
        status = podman("exec", sidecar.started, "cat", "/proc/1/status").stdout
        assert [line.split()[1] for line in status.splitlines() if line.startswith("Uid:")] == [str(CDC_UID)]

        # Elasticsearch unreachable: the next bulk request fails, the container turns unhealthy ...
        es_proxy.cut()
        db.execute("INSERT INTO t VALUES (3, 3, '3')")
        sidecar.wait_health(False)
        # ... and healthy again once it is back and the row is in.
        es_proxy.restore()
        wait_until_equal(db, es, "t", index, ["id"], timeout=60)
        sidecar.wait_health(True)

        db.execute("INSERT INTO t VALUES (4, 4, 'not a number')")
        deadline = time.monotonic() + 30
        while "dead letter" not in sidecar.logs():
            assert time.monotonic() < deadline, sidecar.logs()[-3000:]
            time.sleep(0.2)
        after_writes = binlog_position(db)

        # No compiler in the final image: the native stage's toolchain stays behind.
        assert podman("exec", sidecar.started, "sh", "-c", "command -v gcc cc cargo rustc", check=False).stdout == ""

        # SIGTERM: finish, save the position, exit 0.
        assert sidecar.stop() == 0, sidecar.logs()[-3000:]
        saved = json.loads(sidecar.read_state("checkpoint.json"))
        assert (saved["file"], saved["pos"]) >= after_writes
    finally:
        sidecar.remove()

    # A new container on the same volume resumes from the checkpoint and still has the dead letter.
    letters = [json.loads(line) for line in sidecar.read_state("dead-letters.jsonl").splitlines()]
    assert [letter["doc_id"] for letter in letters] == ["4"]
    again = Sidecar(image, tmp_path / "etc", volume, metrics_port).start()
    try:
        db.execute("INSERT INTO t VALUES (5, 5, '5')")
        deadline = time.monotonic() + 60
        while "5" not in es_docs(es, index):
            assert time.monotonic() < deadline, again.logs()[-3000:]
            time.sleep(0.2)
        assert "resuming from checkpoint" in again.logs()
        assert sorted(es_docs(es, index)) == ["1", "2", "3", "5"]
        assert again.stop() == 0
    finally:
        again.remove()
