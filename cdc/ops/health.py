"""/healthz, /readyz and /metrics over HTTP (the standard library's server, on a daemon thread).

* `/healthz` answers "should this process be restarted?": it fails only when the
  pipeline's main loop has not turned for `stuck_after` seconds. Waiting is not
  being stuck: an idle stream, an Elasticsearch outage (the loop waits on the
  writer and checks for a stop every 0.2 s) and start-up retries all stay healthy,
  because a restart would not help them.
* `/readyz` answers "is the index in sync?": streaming has started, an event or
  heartbeat came from the source within 3 heartbeat periods, the last bulk
  request succeeded (before the first one, the start-up cluster check counts, and
  the check's detail says so: an idle stream sends none), and the lag is under
  `metrics.max_lag_seconds`.

Both return JSON with every check, 200 when passing and 503 when not.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from cdc.config import Config
from cdc.errors import ConfigError
from cdc.ops.progress import Progress

log = logging.getLogger("cdc.health")

Metrics = Callable[[], tuple[bytes, str]]


def stuck_after(config: Config) -> float:
    """Seconds without a main-loop turn that mean "stuck".

    The idle loop wakes at least every batch.max_interval; 30 s leaves room for
    a slow rules step or a long GC pause without crying wolf.
    """
    return max(30.0, 2 * config.batch.max_interval)


class Health:
    def __init__(self, progress: Progress, last_loop: Callable[[], float | None], *, heartbeat: float,
                 max_lag: float, stuck_after: float, monotonic: Callable[[], float] = time.monotonic):
        self.progress = progress
        self.last_loop = last_loop
        self.heartbeat = heartbeat
        self.max_lag = max_lag
        self.stuck_after = stuck_after
        self._monotonic = monotonic

    def alive(self) -> tuple[bool, dict]:
        last_loop = self.last_loop()
        if self.progress.stopping or last_loop is None:
            # Start-up, a snapshot and shutdown have no main loop yet (or any more), and
            # their own timeouts and retries (connect, request, TimeoutStopSec).
            return True, {"status": "stopping" if self.progress.stopping else "starting"}
        age = max(0.0, self._monotonic() - last_loop)
        ok = age <= self.stuck_after
        return ok, {"status": "ok" if ok else "stuck", "loop_age_seconds": _round(age),
                    "stuck_after_seconds": self.stuck_after}

    def ready(self) -> tuple[bool, dict]:
        p = self.progress
        checks: dict[str, dict] = {}
        alive, live = self.alive()
        streaming = p.started and not p.stopping and self.last_loop() is not None
        checks["streaming"] = {"ok": streaming and alive, "detail": live["status"]}
        silence = p.silence()
        checks["source"] = {"ok": silence is not None and silence <= 3 * self.heartbeat,
                            "seconds_since_event": _round(silence), "limit": 3 * self.heartbeat}
        checks["elasticsearch"] = {"ok": p.sink_ok, "detail": p.sink_detail()}
        lag = p.seconds_behind()
        checks["lag"] = {"ok": lag is not None and lag <= self.max_lag, "seconds_behind_source": _round(lag),
                         "limit": self.max_lag}
        ok = all(c["ok"] for c in checks.values())
        return ok, {"status": "ok" if ok else "not ready", "checks": checks}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    timeout = 10  # a client that never finishes its request must not hold a thread forever

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(*self.server.health.alive())
        elif path == "/readyz":
            self._json(*self.server.health.ready())
        elif path == "/metrics" and self.server.metrics is not None:
            body, content_type = self.server.metrics()
            self._send(200, body, content_type)
        else:
            self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

    def _json(self, ok: bool, body: dict) -> None:
        self._send(200 if ok else 503, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        # Scrapes and probes every few seconds would drown the log.
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], health: Health, metrics: Metrics | None):
        self.health = health
        self.metrics = metrics
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class HealthServer:
    """Listens on (host, port) until `close()`; port 0 picks a free port (see `port`)."""

    def __init__(self, host: str, port: int, health: Health, metrics: Metrics | None = None):
        try:
            self._httpd = _Server((host, port), health, metrics)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="cdc-http", daemon=True)
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz on http://%s:%d", host, self.port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
