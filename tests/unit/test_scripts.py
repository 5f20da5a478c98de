"""The developer scripts in scripts/ (the suite's harness) without servers or podman."""

from __future__ import annotations

import gc
import os
import socket
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import container

ROOT = Path(__file__).resolve().parents[2]


def test_container_base_closes_the_tar_pipe(monkeypatch):
    """base() pipes `tar` into `podman import`: no pipe is left for the garbage collector.

    The first `make test` on a machine builds the base image in the warm-up thread, and a
    pipe left open there was a ResourceWarning, which failed whichever test was running.
    Here debootstrap, chroot and podman are stand-ins; tar really runs.
    """
    imported = []

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        if args[0] == "debootstrap":  # a root file system of one file
            rootfs = Path(args[-2])
            (rootfs / "usr/local/share/ca-certificates").mkdir(parents=True)
            (rootfs / "hello").write_text("hello\n")
        elif args[:2] == ("podman", "import"):
            imported.append(kw["stdin"].read())
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(container, "image_exists", lambda name: False)
    monkeypatch.setattr(container, "_run", run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert container.base() == container.BASE_IMAGE
        gc.collect()
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert len(imported) == 1 and b"./hello" in imported[0]  # the tar of the root went to podman import


class _FakeKafka:
    """Answers Metadata requests as a one-broker Kafka does (v4), on a free port; records the requests."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.requests: list[tuple[int, int]] = []  # (api key, api version)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            with conn:
                header = conn.recv(4, socket.MSG_WAITALL)
                if len(header) < 4:  # a connect-only check (kafka_broker._listening)
                    continue
                request = conn.recv(struct.unpack(">i", header)[0], socket.MSG_WAITALL)
                key, version, correlation = struct.unpack(">hhi", request[:8])
                self.requests.append((key, version))
                host = b"127.0.0.1"
                body = (struct.pack(">iii", correlation, 0, 1)  # throttle 0 ms, one broker:
                        + struct.pack(">ih", 1, len(host)) + host + struct.pack(">ih", self.port, -1)  # no rack
                        + struct.pack(">hii", -1, 1, 0))  # no cluster id, controller 1, no topics
                conn.sendall(struct.pack(">i", len(body)) + body)

    def close(self) -> None:
        self.server.close()


def test_kafka_broker_up_runs_without_confluent_kafka(tmp_path):
    """`python3 scripts/kafka_broker.py up` (README) on a python without confluent_kafka, as Debian's is.

    Here on a broker that runs already (a fake one: the pid file names this process), which
    `up` asks for metadata; it imported confluent_kafka for that and crashed."""
    kafka = _FakeKafka()
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "kafka.pid").write_text(str(os.getpid()))
    script = ROOT / "scripts" / "kafka_broker.py"
    blocked = ("import runpy, sys; sys.modules['confluent_kafka'] = None; "  # `import confluent_kafka` fails
               f"sys.argv = [{str(script)!r}, 'up']; runpy.run_path(sys.argv[0], run_name='__main__')")
    try:
        # No mvn and no java: if `up` did not find the broker ready, it fails at once instead of starting one.
        result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "CDC_DEV_HOME": str(tmp_path), "KAFKA_PORT": str(kafka.port),
                                     "PATH": str(tmp_path), "KAFKA_JAVA": str(tmp_path / "java")})
    finally:
        kafka.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Kafka", os.environ.get("KAFKA_VERSION", "4.1.1"), f"127.0.0.1:{kafka.port}"]
    assert "already running" in result.stderr
    assert kafka.requests and set(kafka.requests) == {(3, 4)}  # Metadata v4
