"""What the pipeline reports about itself: counters in `Stats`, and hooks for `Observer`s.

The pipeline and the bulk writer call the hooks at the moments that matter; a
metrics exporter or a systemd notifier implements the ones it needs. Hooks run
on the pipeline's threads, so they must be quick and must not raise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cdc.model import Action, BinlogPosition, Commit, RowChange


@dataclass
class Stats:
    rows: int = 0
    transactions: int = 0
    actions_sent: int = 0
    actions_stale: int = 0
    item_retries: int = 0
    request_retries: int = 0
    batches: int = 0
    checkpoints: int = 0
    dead_lettered: int = 0
    last_commit: Commit | None = None
    last_saved: BinlogPosition | None = None
    started: float = field(default_factory=time.time)


class Observer:
    """Base class with no-op hooks; override what you need."""

    def on_start(self, position: BinlogPosition | None, gtid: str | None, saved_at: float | None) -> None:
        """Start-up checks passed; streaming begins at this commit position.

        `saved_at` is when the checkpoint there was saved (epoch seconds), None if it is not saved yet.
        """

    def on_stopping(self) -> None:
        """cdc is shutting down (a signal, or a fatal error); may be called more than once."""

    def on_row(self, change: RowChange) -> None:
        """A row change was read from the binlog (before rules are applied)."""

    def on_rows(self, change: RowChange, count: int) -> None:
        """A rows event's `count` row changes were read as one item (`change`: the first row).

        The native row path hands over a whole event at once; counting it here once,
        not `count` times, is part of what made its catch-up cheaper (issue 19)."""
        for _ in range(count):
            self.on_row(change)

    def on_event(self, timestamp: float) -> None:
        """Any binlog event or heartbeat arrived; `timestamp` is the event's (0 for heartbeats)."""

    def on_commit(self, commit: Commit) -> None:
        """A transaction commit was read."""

    def on_bulk(self, actions: int, seconds: float, ok: int, stale: int, retry: int, rejected: int) -> None:
        """One bulk request finished (whatever its items' outcomes)."""

    def on_retry(self, kind: str, count: int, delay: float, why: str = "") -> None:
        """`kind` is "request" (the whole bulk failed) or "items" (some items failed); `why` is what
        failed, as the retry log line says it (the first item's status, error type and reason)."""

    def on_acknowledged(self, actions: list[Action], commit: Commit | None) -> None:
        """A batch is fully in Elasticsearch; `commit` is its last transaction."""

    def on_latency(self, oldest: Commit, read_at: float) -> None:
        """A batch and every earlier one are acknowledged; `oldest` is the batch's first
        transaction, which the source handed over at `read_at` (time.monotonic())."""

    def on_dead_letter(self, count: int) -> None:
        """Rejected actions were put in the dead-letter store."""

    def on_checkpoint(self, commit: Commit) -> None:
        """The checkpoint was saved at this commit."""

    def on_partitions(self, lag: dict[tuple[str, int], int], stalled: set[tuple[str, int]]) -> None:
        """`cdc sink`: messages after the read position of each assigned (topic, partition), and
        which of them are stalled (assigned, messages waiting, not read: cdc/kafka/stall.py)."""


class Observers(Observer):
    """Fan out to several observers; one that raises is logged and ignored."""

    def __init__(self, observers: list[Observer] | None = None):
        self.observers = list(observers or [])

    def add(self, observer: Observer) -> None:
        self.observers.append(observer)

    def __getattribute__(self, name: str):
        if name.startswith("on_"):
            # One fan-out function per hook, made once: the pipeline calls some hooks for
            # every rows event, and a new closure per call showed in catch-up profiles.
            fan_outs = object.__getattribute__(self, "_fan_outs")
            fan_out = fan_outs.get(name)
            if fan_out is None:
                fan_out = fan_outs[name] = _fan_out(object.__getattribute__(self, "observers"), name)
            return fan_out
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name == "observers":
            object.__setattr__(self, "_fan_outs", {})


def _fan_out(observers: list[Observer], name: str):
    def fan_out(*args, **kwargs) -> None:
        for observer in observers:
            try:
                getattr(observer, name)(*args, **kwargs)
            except Exception:  # an observer must never break replication
                import logging

                logging.getLogger("cdc.observe").exception("observer %r failed in %s", observer, name)

    return fan_out
