"""systemd's notify protocol (sd_notify(3)) in a few lines, without libsystemd.

A message is newline-separated KEY=VALUE lines sent as one datagram to the unix
socket named by $NOTIFY_SOCKET: a path, or an abstract socket name written with
a leading '@' (which stands for the leading NUL byte on the wire).

`SystemdNotifier` is an Observer: READY=1 when start-up checks have passed
(`on_start`), STOPPING=1 on shutdown (`on_stopping`), and a thread that sends
WATCHDOG=1 every half $WATCHDOG_USEC, but only while the pipeline's main loop
keeps turning (`alive()`), so a stuck loop stops the pings and systemd restarts
cdc. The same thread keeps STATUS= (position and lag) current.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable, Mapping

from cdc.model import BinlogPosition
from cdc.stream.observe import Observer
from cdc.ops.progress import Progress

log = logging.getLogger("cdc.notify")

# STATUS= lines are for `systemctl status`; more than one a second is noise.
STATUS_MIN_INTERVAL = 1.0
# Without a watchdog, how often the thread refreshes STATUS=.
STATUS_EVERY = 5.0


def send(message: str, address: str) -> bool:
    """Send one notification datagram; False (never an exception) if it could not be sent."""
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.debug("cannot notify systemd at %s: %s", address, exc)
        return False


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of $WATCHDOG_USEC in seconds (sd_watchdog_enabled(3)), or None if no watchdog is for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):  # set for another process (we were exec'd by a wrapper)
        return None
    return int(usec) / 1e6 / 2


class SystemdNotifier(Observer):
    def __init__(self, address: str, progress: Progress, alive: Callable[[], bool],
                 watchdog: float | None = None):
        self.address = address
        self.progress = progress
        self.alive = alive
        self.watchdog = watchdog
        self._tick = min(watchdog, STATUS_EVERY) if watchdog else STATUS_EVERY
        self._stopped = False
        self._closed = threading.Event()
        self._last_status = ""
        self._withheld = False
        # Started at once: start-up may wait out an outage, and the pings must go on meanwhile.
        self._thread = threading.Thread(target=self._run, name="cdc-notify", daemon=True)
        self._thread.start()

    @classmethod
    def from_environment(cls, progress: Progress, alive: Callable[[], bool],
                         environ: Mapping[str, str] = os.environ) -> "SystemdNotifier | None":
        address = environ.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        return cls(address, progress, alive, watchdog_interval(environ))

    # ------------------------------------------------------------------ hooks
    def on_start(self, position: BinlogPosition | None, gtid: str | None, saved_at: float | None) -> None:
        # Progress (added before us) has already recorded the start.
        self._last_status = self.progress.summary()
        send(f"READY=1\nSTATUS={self._last_status}", self.address)

    def on_stopping(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._last_status = "stopping: writing the last batch and saving the position"
        send(f"STOPPING=1\nSTATUS={self._last_status}", self.address)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        since_status = 0.0
        while not self._closed.wait(self._tick):
            if self.watchdog:
                self._ping()
            since_status += self._tick
            if since_status >= STATUS_MIN_INTERVAL and not self._stopped:
                since_status = 0.0
                status = self.progress.summary()
                if status != self._last_status:
                    self._last_status = status
                    send(f"STATUS={status}", self.address)

    def _ping(self) -> None:
        if self.alive():
            self._withheld = False
            send("WATCHDOG=1", self.address)
        elif not self._withheld:
            self._withheld = True
            log.error("the main loop has not turned for too long; withholding the watchdog ping, "
                      "so systemd will restart cdc (the checkpoint is safe)")
