"""What a running daemon shows its operators: metrics, health endpoints, systemd notifications.

`start()` adds the observers to the daemon's `Observers` and starts what needs a
thread; the function it returns stops them again. Each piece is off unless
asked for: the HTTP port by `metrics.enabled`, systemd notifications by
$NOTIFY_SOCKET (set by systemd for Type=notify units).
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

from cdc.config import Config
from cdc.ops.health import Health, HealthServer, stuck_after
from cdc.ops.metrics import PrometheusObserver
from cdc.ops.notify import SystemdNotifier
from cdc.stream.observe import Observer, Observers
from cdc.ops.progress import Progress


def start(config: Config, observers: Observers, last_loop: Callable[[], float | None],
          environ: Mapping[str, str] = os.environ) -> Callable[[], None]:
    progress = Progress(config.mysql.heartbeat)
    health = Health(progress, last_loop, heartbeat=config.mysql.heartbeat,
                    max_lag=config.metrics.max_lag_seconds, stuck_after=stuck_after(config))
    users: list[Observer] = []
    closers: list[Callable[[], None]] = []

    def alive() -> bool:
        return health.alive()[0]

    if config.metrics.enabled:  # first: a port in use stops start-up before any thread runs
        metrics = PrometheusObserver(progress)
        server = HealthServer(config.metrics.host, config.metrics.port, health, metrics.exposition)
        users.append(metrics)
        closers.append(server.close)
    notifier = SystemdNotifier.from_environment(progress, alive, environ)
    if notifier is not None:
        users.append(notifier)
        closers.append(notifier.close)
    if users:  # with nothing to feed, no hooks at all: they cost a few microseconds a row
        for observer in (progress, *users):  # progress first: the others read it in the same hooks
            observers.add(observer)

    def stop() -> None:
        for close in reversed(closers):
            close()

    return stop
