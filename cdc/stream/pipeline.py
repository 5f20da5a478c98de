"""source -> rules -> batch -> sink -> checkpoint.

Invariant: the saved position is always a transaction commit for which
Elasticsearch has acknowledged every earlier action.

How it holds:
* Rows are buffered per transaction and join the batch only at their commit
  (a ROLLBACK or a reconnect drops the open transaction). So a batch holds only
  whole, committed transactions, and its position is the last commit in it.
* The writer sends a batch, retries the items that may succeed later, and only
  when every action is acknowledged (or known stale) saves the batch's commit
  as the checkpoint. Flush first, checkpoint second, never the other way round:
  a crash in between replays at most the last batch, and versioned writes make
  that replay harmless (go-mysql canal saves on XID only; Debezium's offset
  moves on commit, BinlogOffsetContext.commitTransaction()).
* Batches are written one at a time, in order, so per-document order holds.

Threads: the source is read on its own thread (decoding overlaps the bulk in
flight); the writer runs on another; this loop turns rows into actions. Bounded
queues between them keep memory flat when Elasticsearch is slow.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from cdc.config import BatchConfig, RetryConfig
from cdc.stream.deadletter import DeadLetterStore
from cdc.stream.delivery import BulkWriter, action_weight
from cdc.errors import CdcError
from cdc.model import (
    Action,
    ActionType,
    BinlogPosition,
    Commit,
    Heartbeat,
    Rollback,
    RowChange,
    SourceEvent,
    StreamRestarted,
)
from cdc.stream.protocols import CheckpointStore, Sink
from cdc.stream.observe import Observer, Stats
from cdc.rules import ActionBuilder, RowError, RuleSet
from cdc.rules.values import ValueOptions

log = logging.getLogger("cdc.pipeline")


class Batch:
    """Committed actions waiting to be written: one per document (the last wins)."""

    def __init__(self) -> None:
        self.actions: dict[tuple[str, str], Action] = {}
        self.bytes = 0
        self.commit: Commit | None = None
        self.opened = time.monotonic()

    def add(self, action: Action) -> None:
        self.actions.pop(action.key, None)
        self.actions[action.key] = action
        self.bytes += action_weight(action)

    def __len__(self) -> int:
        return len(self.actions)


class _End:
    pass


@dataclass
class _Failure:
    error: BaseException


class Pipeline:
    def __init__(
        self,
        rules: RuleSet,
        sink: Sink,
        checkpoints: CheckpointStore | None,
        batch: BatchConfig,
        retry: RetryConfig,
        *,
        version_epoch: int = 0,
        value_options: ValueOptions | None = None,
        checkpoint_interval: float = 1.0,
        dry_run: bool = False,
        on_batch: Callable[[list[Action]], None] | None = None,
        observer: Observer | None = None,
        dead_letters: DeadLetterStore | None = None,
    ):
        self.rules = rules
        self.builder = ActionBuilder(rules, version_epoch, value_options)
        self.checkpoints = checkpoints
        self.batch_config = batch
        self.checkpoint_interval = checkpoint_interval
        self.dry_run = dry_run
        self.on_batch = on_batch
        self.observer = observer or Observer()
        self.stats = Stats()
        self.writer = BulkWriter(sink, batch, retry, self.stats, self.observer, dead_letters=dead_letters)
        self.stop_requested = threading.Event()
        self._writer_queue: queue.Queue = queue.Queue(maxsize=1)
        self._writer_error: BaseException | None = None
        self._last_save = 0.0
        self._unsaved: Commit | None = None
        # Monotonic time of the main loop's last turn (or backpressure wait), for
        # /healthz and the systemd watchdog: older than a few seconds means stuck.
        self.last_loop = time.monotonic()

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        self.stop_requested.set()

    def run(self, events: Callable[[], Iterator[SourceEvent]], close_source: Callable[[], None]) -> Stats:
        """Consume `events()` until it ends or a stop is requested; raise on a fatal error."""
        inbox: queue.Queue = queue.Queue(maxsize=10_000)
        reader = threading.Thread(target=self._read, args=(events, inbox), name="cdc-reader", daemon=True)
        writer = threading.Thread(target=self._write_loop, name="cdc-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            self._loop(inbox)
        finally:
            self.stop_requested.set()
            close_source()
            # The writer may have died with a batch still queued; never block on it.
            while writer.is_alive():
                try:
                    self._writer_queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
            writer.join()
            reader.join(timeout=5)
        if self._writer_error is not None:
            raise self._writer_error
        return self.stats

    def _read(self, events: Callable[[], Iterator[SourceEvent]], inbox: queue.Queue) -> None:
        try:
            for event in events():
                while not self.stop_requested.is_set():
                    try:
                        inbox.put(event, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self.stop_requested.is_set():
                    return
            inbox.put(_End())
        except BaseException as exc:  # handed to the main loop, which decides
            if not self.stop_requested.is_set():
                inbox.put(_Failure(exc))

    # ------------------------------------------------------------------ main loop
    def _loop(self, inbox: queue.Queue) -> None:
        batch = Batch()
        transaction: list[Action] = []
        event_actions: list[Action] = []
        event_position: BinlogPosition | None = None

        def end_event() -> None:
            # Within one rows event, deletes go first: an UPDATE that swaps keys
            # (id 1->2 and 2->1 in one statement) yields "delete 1, index 2,
            # delete 2, index 1", and the batch keeps only the last action per id.
            nonlocal event_actions, event_position
            transaction.extend(sorted(event_actions, key=lambda a: a.type is not ActionType.DELETE))
            event_actions, event_position = [], None

        while True:
            self.last_loop = time.monotonic()
            if self._writer_error is not None:
                return
            if self.stop_requested.is_set():
                # The open transaction (if any) is dropped; it is re-read after restart.
                self._hand_over(batch, final=True)
                return
            # Wake for the next flush only when a commit is waiting in the batch;
            # an idle loop need not spin (heartbeats still arrive every few seconds).
            if batch.commit is None:
                timeout = self.batch_config.max_interval
            else:
                timeout = max(0.05, self.batch_config.max_interval - (time.monotonic() - batch.opened))
            try:
                event = inbox.get(timeout=timeout)
            except queue.Empty:
                event = None
            if isinstance(event, RowChange):
                self.observer.on_event(event.timestamp)
                self.observer.on_row(event)
                if event.position != event_position:
                    end_event()
                    event_position = event.position
                event_actions.extend(self._actions(event))
                self.stats.rows += 1
            elif isinstance(event, Commit):
                self.observer.on_event(event.timestamp)
                self.observer.on_commit(event)
                end_event()
                for action in transaction:
                    batch.add(action)
                transaction.clear()
                batch.commit = event
                self.stats.transactions += 1
                self.stats.last_commit = event
            elif isinstance(event, (Rollback, StreamRestarted)):
                if transaction or event_actions:
                    log.info("dropping %d uncommitted actions (%s at %s)", len(transaction) + len(event_actions),
                             "rollback" if isinstance(event, Rollback) else "reconnect", event.position)
                transaction.clear()
                event_actions, event_position = [], None
            elif isinstance(event, _Failure):
                self._hand_over(batch, final=True)
                raise event.error
            elif isinstance(event, _End):
                self._hand_over(batch, final=True)
                return
            elif isinstance(event, Heartbeat):
                self.observer.on_event(0)
            # Heartbeats and timeouts fall through to the flush check.
            if self._due(batch):
                self._hand_over(batch)
                batch = Batch()

    def _due(self, batch: Batch) -> bool:
        if batch.commit is None:
            return False
        if len(batch) >= self.batch_config.max_actions or batch.bytes >= self.batch_config.max_bytes:
            return True
        return time.monotonic() - batch.opened >= self.batch_config.max_interval

    def _actions(self, change: RowChange) -> list[Action]:
        try:
            return self.builder.actions(change)
        except RowError as exc:
            raise CdcError(str(exc)) from None

    def _hand_over(self, batch: Batch, final: bool = False) -> None:
        """Queue a batch for the writer; blocks while the previous one is in flight (backpressure)."""
        if batch.commit is None and not final:
            return
        while self._writer_error is None:
            # Waiting for a slow or unreachable Elasticsearch is not being stuck.
            self.last_loop = time.monotonic()
            try:
                self._writer_queue.put((batch, final), timeout=0.2)
                return
            except queue.Full:
                continue

    # ------------------------------------------------------------------ writer
    def _write_loop(self) -> None:
        while True:
            try:
                item = self._writer_queue.get(timeout=max(0.1, self.checkpoint_interval))
            except queue.Empty:
                # Quiet period: save a commit that an earlier batch left unsaved
                # because of checkpoint_interval, so a crash replays less.
                try:
                    self._checkpoint(None, force=False)
                except BaseException as exc:
                    self._writer_error = exc
                    self.stop_requested.set()
                    return
                continue
            if item is None:
                return
            batch, final = item
            try:
                self._deliver(batch)
                self._checkpoint(batch.commit, force=final)
            except BaseException as exc:
                self._writer_error = exc
                self.stop_requested.set()
                return

    def _deliver(self, batch: Batch) -> None:
        actions = list(batch.actions.values())
        if actions:
            if self.dry_run:
                self.stats.actions_sent += len(actions)
            else:
                self.writer.write(actions)
                self.stats.batches += 1
            if self.on_batch:
                self.on_batch(actions)
        self.observer.on_acknowledged(actions, batch.commit)

    def _checkpoint(self, commit: Commit | None, force: bool) -> None:
        if commit is not None:
            self._unsaved = commit
        if self._unsaved is None or self.checkpoints is None:
            return
        now = time.monotonic()
        if not force and now - self._last_save < self.checkpoint_interval:
            return
        saved = self._unsaved
        self.checkpoints.save(saved.position, saved.gtid)
        self._last_save = now
        self._unsaved = None
        self.stats.checkpoints += 1
        self.stats.last_saved = saved.position
        self.observer.on_checkpoint(saved)
        log.debug("checkpoint %s gtid=%s", saved.position, saved.gtid)

