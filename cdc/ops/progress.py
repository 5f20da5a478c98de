"""Where replication stands right now: one Observer that the operations surfaces share.

Metrics (metrics.py), the health endpoints (health.py) and systemd status lines
(notify.py) all read this one record, so they can never disagree about lag or
position. Hooks write it from the pipeline's threads; readers on other threads
only ever see whole values (each field is replaced, never mutated in place).

Seconds behind the source, and why it is not simply `now - last event time`:

* A binlog event carries the second its statement ran on the source. When the
  main loop handles an event, `now - timestamp` is how far behind it is at that
  moment; that value is kept (as Debezium's MilliSecondsBehindSource does).
* The server sends a heartbeat only when it has had nothing to send for
  `mysql.heartbeat` seconds, so a heartbeat proves cdc has read everything:
  the lag is 0 (heartbeats carry timestamp 0, see observe.py).
* `now - last event time` would instead climb after every quiet write until
  the next heartbeat, showing seconds of lag on an idle, caught-up stream.
* Silence is not proof of being caught up: once nothing at all (event or
  heartbeat) has arrived for longer than one heartbeat period, every further
  second of silence counts as lag. So a dead connection or a main loop blocked
  behind a slow Elasticsearch shows up as growing lag, not as a frozen 0.

Binlog timestamps have whole-second resolution and come from the source's
clock, so the value is good to about a second (plus any clock skew).
"""

from __future__ import annotations

import time
from typing import Callable

from cdc.model import Action, BinlogPosition, Commit
from cdc.stream.observe import Observer


class Progress(Observer):
    def __init__(self, heartbeat: float, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.heartbeat = heartbeat
        self._clock = clock
        self._monotonic = monotonic
        self.started = False
        self.stopping = False
        # Source side.
        self.last_seen: float | None = None  # monotonic time of the last event or heartbeat
        self._lag_when_seen = 0.0
        self.read_position: BinlogPosition | None = None  # last commit read
        self.read_gtid: str | None = None
        # Elasticsearch side. Unknown until start-up's cluster check passed (`on_start`: nothing
        # starts before it), then ok until a bulk request says otherwise. An idle stream may send
        # none for hours, and is as ready as the check said; `bulk_answered` tells the two apart.
        self.sink_ok = False
        self.sink_problem: str | None = "not checked yet (starting)"
        self.bulk_answered = False
        self.acknowledged_position: BinlogPosition | None = None
        # Checkpoint.
        self.checkpoint_position: BinlogPosition | None = None
        self.checkpoint_gtid: str | None = None
        self.checkpoint_saved_at: float | None = None  # epoch seconds

    # ------------------------------------------------------------------ hooks
    def on_start(self, position: BinlogPosition | None, gtid: str | None, saved_at: float | None) -> None:
        self.read_position = self.acknowledged_position = position
        self.read_gtid = gtid
        if saved_at is not None:
            self.checkpoint_position, self.checkpoint_gtid, self.checkpoint_saved_at = position, gtid, saved_at
        if not self.bulk_answered:
            self.sink_ok, self.sink_problem = True, None
        self.started = True

    def on_stopping(self) -> None:
        self.stopping = True

    def on_event(self, timestamp: float) -> None:
        # Lag first, then last_seen: a reader between the two sees the old pair
        # with a slightly longer silence, never a new lag with an old silence.
        self._lag_when_seen = max(0.0, self._clock() - timestamp) if timestamp > 0 else 0.0
        self.last_seen = self._monotonic()

    def on_commit(self, commit: Commit) -> None:
        self.read_position, self.read_gtid = commit.position, commit.gtid

    def on_bulk(self, actions: int, seconds: float, ok: int, stale: int, retry: int, rejected: int) -> None:
        # Rejected items are a data problem (they stop cdc, or go to the dead-letter
        # store), not a sign that Elasticsearch is unreachable or overloaded.
        self.bulk_answered = True
        if retry:
            self.sink_ok = False
            self.sink_problem = f"{retry} of {actions} items failed with 429/5xx in the last bulk request"
        else:
            self.sink_ok, self.sink_problem = True, None

    def on_retry(self, kind: str, count: int, delay: float, why: str = "") -> None:
        if kind == "request":
            self.bulk_answered = True
            self.sink_ok = False
            self.sink_problem = "the last bulk request failed (Elasticsearch unreachable or overloaded)"
        if why and not self.sink_ok:
            # The server's own words (a 429 cluster_block_exception of a read-only index, say) tell
            # an operator what to fix, where "items failed with 429/5xx" does not.
            self.sink_problem = why

    def on_acknowledged(self, actions: list[Action], commit: Commit | None) -> None:
        if commit is not None:
            self.acknowledged_position = commit.position

    def on_checkpoint(self, commit: Commit) -> None:
        self.checkpoint_position, self.checkpoint_gtid = commit.position, commit.gtid
        self.checkpoint_saved_at = self._clock()

    # ------------------------------------------------------------------ readings
    def silence(self) -> float | None:
        """Seconds since the last event or heartbeat; None before the first one."""
        last_seen = self.last_seen
        return None if last_seen is None else max(0.0, self._monotonic() - last_seen)

    def seconds_behind(self) -> float | None:
        """Seconds behind the source (see the module docstring); None before the first event or heartbeat."""
        lag, silence = self._lag_when_seen, self.silence()
        if silence is None:
            return None
        return lag + max(0.0, silence - self.heartbeat)

    def sink_detail(self) -> str:
        """What the Elasticsearch side's state rests on, for /readyz."""
        if self.sink_problem is not None:
            return self.sink_problem
        if self.bulk_answered:
            return "last bulk request succeeded"
        return "no bulk request yet; the cluster check at start-up passed"

    def checkpoint_age(self) -> float | None:
        saved_at = self.checkpoint_saved_at
        return None if saved_at is None else max(0.0, self._clock() - saved_at)

    def summary(self) -> str:
        """One line for people: systemd's STATUS= and logs."""
        if self.stopping:
            return "stopping"
        if not self.started:
            return "starting"
        lag = self.seconds_behind()
        parts = [f"read {self.read_position or '-'}", f"checkpoint {self.checkpoint_position or '-'}",
                 f"lag {lag:.1f}s" if lag is not None else "no binlog event read yet"]
        if not self.sink_ok:
            parts.append("Elasticsearch failing")
        return "running: " + ", ".join(parts)
