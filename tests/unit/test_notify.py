"""sd_notify over a real unix datagram socket (path and abstract), and the notifier's rules."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from cdc.model import BinlogPosition, Commit
from cdc.ops.notify import SystemdNotifier, send, watchdog_interval
from cdc.ops.progress import Progress


class Listener:
    """The systemd side: a bound datagram socket that collects messages."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def drain(self, seconds: float = 0.0) -> list[str]:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                if time.monotonic() >= deadline:
                    return self.messages

    def wait_for(self, predicate, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain(0.05)
            if predicate(self.messages):
                return self.messages
        raise AssertionError(f"not seen in {timeout}s: {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    # A short path: unix socket paths are limited to 107 bytes.
    directory = tempfile.mkdtemp(prefix="cdcn")
    path = os.path.join(directory, "notify")
    lst = Listener(path)
    yield lst
    lst.close()
    Path(path).unlink(missing_ok=True)
    os.rmdir(directory)


def test_send_to_a_path_socket(listener):
    assert send("READY=1\nSTATUS=hello", listener.address)
    assert listener.drain() == ["READY=1\nSTATUS=hello"]


def test_send_to_an_abstract_socket():
    listener = Listener(f"@cdc-test-{uuid.uuid4().hex}")
    try:
        assert send("WATCHDOG=1", listener.address)
        assert listener.drain() == ["WATCHDOG=1"]
    finally:
        listener.close()


def test_send_never_raises_when_nobody_listens(tmp_path):
    assert send("READY=1", str(tmp_path / "gone")) is False
    assert send("READY=1", f"@cdc-nobody-{uuid.uuid4().hex}") is False


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec(environ, expected):
    assert watchdog_interval(environ) == expected


def test_no_notify_socket_no_notifier():
    assert SystemdNotifier.from_environment(Progress(1), lambda: True, {}) is None


def test_ready_watchdog_status_and_stopping(listener):
    progress = Progress(heartbeat=1)
    alive = {"ok": True}
    notifier = SystemdNotifier.from_environment(progress, lambda: alive["ok"],
                                                {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "100000"})
    assert notifier is not None and notifier.watchdog == 0.05
    try:
        # Pings start before READY: start-up may have to wait out an outage.
        listener.wait_for(lambda m: m.count("WATCHDOG=1") >= 2)
        assert not any(m.startswith("READY=1") for m in listener.messages)
        progress.on_start(BinlogPosition("binlog.000002", 300), None, None)
        notifier.on_start(BinlogPosition("binlog.000002", 300), None, None)
        listener.wait_for(lambda m: any(x.startswith("READY=1\nSTATUS=running: read binlog.000002:300") for x in m))
        # Status lines follow progress (at most once a second).
        progress.on_commit(Commit(BinlogPosition("binlog.000002", 900), None, 0))
        progress.on_event(0)
        listener.wait_for(lambda m: any(x.startswith("STATUS=running: read binlog.000002:900") and "lag 0.0s" in x
                                        for x in m), timeout=4)
        # A stuck loop: the pings stop, so systemd's watchdog fires.
        alive["ok"] = False
        listener.drain(0.2)
        listener.messages.clear()
        listener.drain(0.4)
        assert "WATCHDOG=1" not in listener.messages
        alive["ok"] = True
        listener.wait_for(lambda m: "WATCHDOG=1" in m)
        notifier.on_stopping()
        notifier.on_stopping()  # once only
        listener.drain(0.2)
        stopping = [m for m in listener.messages if m.startswith("STOPPING=1")]
        assert len(stopping) == 1 and "STATUS=stopping" in stopping[0]
    finally:
        notifier.close()
    assert not notifier._thread.is_alive()


def test_without_watchdog_only_status_is_refreshed(listener):
    progress = Progress(heartbeat=1)
    notifier = SystemdNotifier(listener.address, progress, lambda: True, watchdog=None)
    try:
        listener.drain(0.3)
        assert "WATCHDOG=1" not in listener.messages
    finally:
        notifier.close()
