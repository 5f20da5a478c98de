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


# ---------------------------------------------------------------- the MySQL root (scripts/servers.py sid_root)
_FAKE_CHROOT = """#!/bin/sh
# chroot ROOT apt-get clean | chroot ROOT /usr/sbin/mysqld --version
[ "$2" = /usr/sbin/mysqld ] && echo "/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))"
exit 0
"""


def _fake_debootstrap(tmp_path: Path, fail_first: int, seconds: float = 0) -> Path:
    """A `debootstrap` that fails its first `fail_first` runs (leaving half a root), then makes a root
    with a mysqld; every run is counted in tmp_path/runs. Also a `chroot` that answers --version."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "debootstrap").write_text(f"""#!/bin/sh
target="$4"
echo run >> {tmp_path}/runs
sleep {seconds}
mkdir -p "$target/debootstrap" && echo half > "$target/half-made"
if [ "$(wc -l < {tmp_path}/runs)" -le {fail_first} ]; then
  echo "E: Couldn't download packages: mysql-server-core" >&2
  echo "W: the mirror said 503" > "$target/debootstrap/debootstrap.log"
  exit 1
fi
mkdir -p "$target/usr/sbin" && touch "$target/usr/sbin/mysqld"
""")
    (bin_dir / "chroot").write_text(_FAKE_CHROOT)
    for tool in ("debootstrap", "chroot"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def _servers_in(monkeypatch, tmp_path: Path, bin_dir: Path):
    import servers

    monkeypatch.setattr(servers, "HOME", tmp_path / "home")
    monkeypatch.setattr(servers, "SID_ROOT", tmp_path / "home" / "sid-root")
    monkeypatch.setattr(servers.time, "sleep", lambda seconds: None)  # the pauses between attempts
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("CDC_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    return servers


def test_the_mysql_root_is_made_again_after_a_failed_debootstrap(monkeypatch, tmp_path, capsys):
    servers = _servers_in(monkeypatch, tmp_path, _fake_debootstrap(tmp_path, fail_first=2))
    root = servers.sid_root()
    assert root == servers.SID_ROOT and (root / "usr/sbin/mysqld").is_file()
    assert not (servers.HOME / "sid-root.partial").exists()
    assert (tmp_path / "runs").read_text().count("run") == 3
    assert servers.mysql_version() == "9.7.4-2"
    err = capsys.readouterr().err
    assert "attempt 3 of 3" in err and "debootstrap failed (exit 1); trying again" in err
    assert servers.sid_root() == root and (tmp_path / "runs").read_text().count("run") == 3  # made once


def test_a_mysql_root_that_cannot_be_made_is_a_clear_error(monkeypatch, tmp_path):
    servers = _servers_in(monkeypatch, tmp_path, _fake_debootstrap(tmp_path, fail_first=99))
    try:
        servers.sid_root()
        raise AssertionError("no error")
    except servers.ServerError as exc:
        message = str(exc)
    assert "could not make the MySQL root: `debootstrap --variant=minbase --include=mysql-server-core," \
           "mysql-client-core sid" in message
    assert "failed 3 times (exit 1)" in message and "http://mirror.invalid/debian" in message
    assert "Couldn't download packages: mysql-server-core" in message  # debootstrap's output
    assert "the mirror said 503" in message  # and its own log
    assert not servers.SID_ROOT.exists() and not (servers.HOME / "sid-root.partial").exists()


def test_parallel_starts_make_the_mysql_root_once(monkeypatch, tmp_path):
    """The warm-up thread and xdist workers may all ask at once: one debootstrap, all get the root."""
    servers = _servers_in(monkeypatch, tmp_path, _fake_debootstrap(tmp_path, fail_first=0, seconds=0.5))
    got: list[Path] = []
    threads = [threading.Thread(target=lambda: got.append(servers.sid_root())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert got == [servers.SID_ROOT] * 3
    assert (tmp_path / "runs").read_text().count("run") == 1
