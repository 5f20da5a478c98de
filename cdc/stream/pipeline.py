"""source -> rules -> batch -> sink -> checkpoint.

Invariant: the saved position is always a transaction commit for which
Elasticsearch has acknowledged every earlier action.

How it holds:
* Rows are buffered per transaction and join the batch only at their commit
  (a ROLLBACK or a reconnect drops the open transaction). So a batch holds only
  whole, committed transactions, and its position is the last commit in it.
* Up to `batch.concurrency` batches are written at once (`InFlight`). A batch
  counts as acknowledged only when every action in it is acknowledged (or known
  stale) *and* every earlier batch is; only then is its commit saved. Flush
  first, checkpoint second: a crash in between replays at most the batches in
  flight, and versioned writes make that replay harmless (go-mysql canal saves
  on XID only; Debezium's offset moves on commit,
  BinlogOffsetContext.commitTransaction()).
* Per-document order: a write is not sent while an earlier batch has an
  unacknowledged write of the same document (same index and _id); the batch's
  other writes go at once, and the held ones follow when that earlier write is
  acknowledged (`InFlight` has the argument). So the writes of one document
  reach Elasticsearch in binlog order, and a backlog whose every batch touches a
  few documents of the one before still has `concurrency` requests in flight.
  Within a batch only the last write of a document is kept (`Batch.add`, by
  `Action.key`: not across a routing move, nor partial updates of different
  tables). External versions alone
  would not be enough: `mode: update` rules write unversioned, and a delete's
  tombstone is forgotten after index.gc_deletes, so an old index that overtook
  a delete by more than that (a long retry) would bring the row back.

When a batch goes out (adaptive flushing): as soon as the source has nothing
more to read and no bulk request is in flight, so a quiet stream is written
within a bulk round trip; while a request is in flight the next batch keeps
growing, so a busy stream makes big batches. A full batch (`max_actions`,
`max_bytes`) goes out at once if one of the `concurrency` slots is free, else
the loop waits for one (back-pressure); `max_interval` caps how long a batch
waits while input keeps coming (it then takes a free slot too).

Threads: the source is read on its own thread (decoding overlaps the bulks in
flight); `concurrency` writers send batches; this loop turns rows into actions.
Bounded queues between them keep memory flat when Elasticsearch is slow.
"""

from __future__ import annotations

import logging
import operator
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from cdc.config import BatchConfig, RetryConfig
from cdc.stream.deadletter import DeadLetterStore
from cdc.stream.delivery import ACTION_OVERHEAD, BulkWriter
from cdc.errors import CdcError
from cdc.model import (
    Action,
    ActionType,
    BinlogPosition,
    Commit,
    Heartbeat,
    Rollback,
    RowChange,
    StartPoint,
    StreamRestarted,
)
from cdc.stream.protocols import CheckpointStore, Converter, Sink, Source
from cdc.stream.rebuild import Rebuild
from cdc.stream.observe import Observer, Stats
from cdc.rules import ActionBuilder, RowError, RuleSet
from cdc.rules.rowpath import PreparedChange

log = logging.getLogger("cdc.pipeline")

# Counters the writers keep on their own and add to the pipeline's under its lock
# (`+=` on a shared object from several threads can lose counts).
# Row changes per reader -> main loop queue item at most (see Pipeline._read; a native
# rows event counts as its rows), and items the queue holds: together they bound how
# far the reader reads ahead (about 10,000 row changes, as when every row was an item).
ROWS_PER_ITEM = 250
INBOX_ITEMS = 40

_WRITER_COUNTERS = ("actions_sent", "actions_stale", "item_retries", "request_retries", "dead_lettered")


class Batch:
    """Committed actions waiting to be written: one per document (the last wins)."""

    def __init__(self) -> None:
        self.actions: dict[tuple[str, str], Action] = {}
        self.bytes = 0
        self.commit: Commit | None = None
        # The batch's first transaction and when it was read (time.monotonic()):
        # the latency metrics report the oldest write a batch acknowledges.
        self.first_commit: Commit | None = None
        self.first_read = 0.0
        self.opened = time.monotonic()

    def add(self, action: Action) -> None:
        self.add_all((action,))

    def add_all(self, actions: Sequence[Action]) -> None:
        """The actions, in order (a committed transaction's): the last write of a document wins and moves
        to the end. One loop, with `action_weight` inlined: it runs per row change on the main loop, which
        shares the GIL with the reader's decoding (issue 28)."""
        kept = self.actions
        pop = kept.pop
        weight = 0
        for action in actions:
            key = action.key
            pop(key, None)  # re-inserted at the end: the batch keeps binlog order
            kept[key] = action
            doc = action.doc_json
            weight += ACTION_OVERHEAD if doc is None else ACTION_OVERHEAD + len(doc)
        self.bytes += weight

    def committed(self, commit: Commit) -> None:
        if self.first_commit is None:
            self.first_commit, self.first_read = commit, time.monotonic()
        self.commit = commit

    def __len__(self) -> int:
        return len(self.actions)


class InFlight:
    """Batches handed to the writers, in binlog order: which writes may start, and which batches are acknowledged.

    Pure bookkeeping (the pipeline holds the lock). `take()` gives the next
    `Part` to send: the actions of the oldest batch with unsent writes whose
    documents no earlier batch still has unacknowledged writes for. The rest of
    that batch waits, and a later `take()` sends it once those earlier writes
    are acknowledged. `finish(part)` returns the batches that are now
    acknowledged together with every earlier one, oldest first: the only ones
    whose commits may be saved.

    Why this keeps per-document order: a write of document D in batch N is sent
    only when no batch before N has an unacknowledged (sent or unsent) write of
    D. By induction over N, the writes of D are sent one batch after the other,
    each after the one before it was acknowledged, so they reach Elasticsearch
    in binlog order however many requests are in flight. Within a batch all
    writes of one document (a routing move's delete and index, partial updates
    from several tables) go in the same part, in the batch's order, and a bulk
    request applies the items of one document in request order (one shard, its
    primary term; BulkWriter re-sends failed items in that order too).
    Documents no earlier batch touches do not wait at all: with several writers,
    a backlog whose batches each update a few documents of the batch before no
    longer goes one bulk request at a time (issue 19).
    """

    @dataclass
    class Entry:
        seq: int
        batch: Batch
        waiting: list[Action]  # not yet sent, in batch order
        unfinished: set  # documents (index, _id) with writes not yet acknowledged: sent or waiting
        running: int = 0  # parts handed to writers and not finished
        started: bool = False  # a first part was taken (a batch of commits only has one, empty)

        @property
        def done(self) -> bool:
            return self.started and not self.waiting and self.running == 0

    @dataclass(frozen=True)
    class Part:
        """Writes of one batch to send together; its documents are no other unfinished part's."""

        seq: int
        actions: list[Action]
        documents: frozenset

    def __init__(self) -> None:
        self.entries: list[InFlight.Entry] = []  # oldest first; acknowledged ones are removed from the front
        self._next = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, batch: Batch) -> int:
        seq = self._next
        self._next += 1
        actions = list(batch.actions.values())
        self.entries.append(InFlight.Entry(seq, batch, actions, set(map(_document, actions))))
        return seq

    def take(self) -> "InFlight.Part | None":
        earlier: list[set] = []  # unfinished documents of each earlier batch
        for entry in self.entries:
            if entry.waiting or not entry.started:
                free, held = entry.waiting, []  # type: list[Action], list[Action]
                if earlier:
                    free = []
                    busy = earlier[0] if len(earlier) == 1 else set().union(*earlier)
                    for action in entry.waiting:
                        (held if action.document in busy else free).append(action)
                if free or not (entry.started or held):  # an empty part only for a batch of commits only
                    entry.waiting = held
                    entry.started = True
                    entry.running += 1
                    return InFlight.Part(entry.seq, free, frozenset([a.document for a in free]))
            if entry.unfinished:
                earlier.append(entry.unfinished)
        return None

    def finish(self, part: "InFlight.Part") -> list[Batch]:
        for entry in self.entries:
            if entry.seq == part.seq:
                entry.running -= 1
                entry.unfinished -= part.documents
                break
        else:
            raise KeyError(part.seq)
        acknowledged = []
        while self.entries and self.entries[0].done:
            acknowledged.append(self.entries.pop(0).batch)
        return acknowledged

    @property
    def running(self) -> int:
        return sum(e.running for e in self.entries)


_document = operator.attrgetter("document")  # an action's (index, _id), got without a Python call per action


def _not_delete(action: Action) -> bool:
    return action.type is not ActionType.DELETE


class _End:
    pass


class _Wake:
    """A writer finished a batch: a slot is free (sent to the main loop through the inbox)."""


_WAKE = _Wake()


@dataclass
class _Failure:
    error: BaseException


@dataclass(frozen=True)
class _Due:
    """A checkpoint decided under the pipeline's lock, to be written outside it (`Pipeline._save`)."""

    number: int  # in acknowledgement order
    commit: Commit


class Pipeline:
    def __init__(
        self,
        rules: RuleSet,
        sink: Sink,
        checkpoints: CheckpointStore | None,
        batch: BatchConfig,
        retry: RetryConfig,
        *,
        converter: Converter | None = None,
        checkpoint_interval: float = 1.0,
        dry_run: bool = False,
        on_batch: Callable[[list[Action]], None] | None = None,
        observer: Observer | None = None,
        dead_letters: DeadLetterStore | None = None,
        rebuild: Rebuild | None = None,
        check_columns: Callable[[RowChange], None] | None = None,
    ):
        self.rules = rules
        # Documents built from several tables: their changes come as rebuild requests (cdc/stream/rebuild.py).
        self.rebuild = rebuild
        # Called with each row before its actions are built: maps the fields of a table's new columns
        # before the first document with them (cdc/es/fields.py FieldMapper.check).
        self.check_columns = check_columns
        # The conversion stage, built once by the command (cdc/app/session.py `conversion`: the
        # builder, the native row path, rebuild requests); the plain builder of `rules` by default.
        self.converter: Converter = converter if converter is not None else ActionBuilder(rules)
        self.checkpoints = checkpoints
        self.batch_config = batch
        self.concurrency = batch.concurrency
        self.checkpoint_interval = checkpoint_interval
        self.dry_run = dry_run
        self.on_batch = on_batch
        self.observer = observer or Observer()
        self.stats = Stats()
        self.stop_requested = threading.Event()
        # Set when a writer failed: the others stop waiting to retry (nothing
        # they hold can be saved past the failed batch anyway).
        self._abort = threading.Event()
        wait_for_refresh: Callable[[Action], bool] | None = None
        if any(r.refresh_wait_for for r in (*rules.rules, *rules.patterns)):
            wait_for_refresh = lambda action: rules.waits_for_refresh(action.schema, action.table)  # noqa: E731
        # A dry run's writers send nothing: a part is done as soon as it is taken, and one thread does
        # them all (still up to `concurrency` batches in flight, so batches form as in a run). Four
        # threads woken at every hand-over only took the GIL from the reader and this loop (issue 28).
        # Documents built from several tables are read from MySQL by the writers, dry run or not.
        threads = 1 if dry_run and rebuild is None else self.concurrency
        self.writers = [BulkWriter(sink, batch, retry, Stats(), self.observer, abort=self._abort,
                                   dead_letters=dead_letters, wait_for_refresh=wait_for_refresh)
                        for _ in range(threads)]
        self.writer = self.writers[0]
        self._lock = threading.Condition()
        self._in_flight = InFlight()
        self._closing = False
        self._inbox: queue.Queue | None = None
        self._writer_error: BaseException | None = None
        self._last_save = 0.0
        self._unsaved: Commit | None = None
        self._due_count = 0  # checkpoints decided (`_checkpoint`), under the lock
        self._saved_count = 0  # the number after the last one written, under _save_lock
        self._save_lock = threading.Lock()
        # Monotonic time of the main loop's last turn (or backpressure wait), for
        # /healthz and the systemd watchdog: older than a few seconds means stuck.
        self.last_loop = time.monotonic()

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        self.stop_requested.set()

    def run(self, source: Source, start: StartPoint) -> Stats:
        """Consume `source` from `start` until it ends or a stop is requested; raise on a fatal error."""
        inbox: queue.Queue = queue.Queue(maxsize=INBOX_ITEMS)
        self._inbox = inbox
        reader = threading.Thread(target=self._read, args=(source, start, inbox), name="cdc-reader", daemon=True)
        writers = [threading.Thread(target=self._write_loop, args=(w,), name=f"cdc-writer-{i}", daemon=True)
                   for i, w in enumerate(self.writers)]
        reader.start()
        for thread in writers:
            thread.start()
        try:
            self._loop(inbox)
        finally:
            self.stop_requested.set()
            source.close()
            with self._lock:
                # Writers finish what was handed over (unless one failed), then end.
                self._closing = True
                self._lock.notify_all()
            for thread in writers:
                thread.join()
            reader.join(timeout=5)
            if self._writer_error is None:
                # The last acknowledged commit, if checkpoint_interval held it back.
                with self._lock:
                    due = self._checkpoint(None, force=True)
                self._save(due)
        if self._writer_error is not None:
            raise self._writer_error
        return self.stats

    def _read(self, source: Source, start: StartPoint, inbox: queue.Queue) -> None:
        # Row changes go to the main loop in lists, with the event that ends them (a
        # commit, mostly) as the last item: a row is of no use before its commit, so
        # holding rows back until then delays nothing, and one queue item per
        # transaction instead of per row saves a lock round and a wake-up per row
        # (issue 19: Queue.put and its notify were 8% of a catch-up's GIL time).
        # ROWS_PER_ITEM bounds a list inside a big transaction.
        rows: list = []
        count = 0
        item: object
        try:
            for event in source.events(start):
                if isinstance(event, RowChange):
                    rows.append(event)
                    count += event.count if event.__class__ is PreparedChange else 1
                    if count < ROWS_PER_ITEM:
                        continue
                    item, rows, count = rows, [], 0
                elif rows:
                    rows.append(event)
                    item, rows, count = rows, [], 0
                else:
                    item = event
                while not self.stop_requested.is_set():
                    try:
                        inbox.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self.stop_requested.is_set():
                    return
            if rows:
                inbox.put(rows)
            inbox.put(_End())
        except BaseException as exc:  # handed to the main loop, which decides
            if not self.stop_requested.is_set():
                if rows:
                    inbox.put(rows)
                inbox.put(_Failure(exc))

    # ------------------------------------------------------------------ main loop
    def _loop(self, inbox: queue.Queue) -> None:
        batch = Batch()
        transaction: list[Action] = []
        event_actions: list[Action] = []
        event_position: BinlogPosition | None = None
        max_interval = self.batch_config.max_interval

        def end_event() -> None:
            # Within one rows event, deletes go first: an UPDATE that swaps keys
            # (id 1->2 and 2->1 in one statement) yields "delete 1, index 2,
            # delete 2, index 1", and the batch keeps only the last action per id.
            nonlocal event_actions, event_position
            if len(event_actions) > 1:
                event_actions.sort(key=_not_delete)  # stable: the order among the rest is kept
            transaction.extend(event_actions)
            event_actions, event_position = [], None

        def add_row(change: RowChange) -> None:
            nonlocal event_position
            self.observer.on_event(change.timestamp)
            if change.__class__ is PreparedChange:  # a whole rows event, one item (native row path)
                self.observer.on_rows(change, change.count)
                self.stats.rows += change.count
            else:
                self.observer.on_row(change)
                self.stats.rows += 1
            if change.position != event_position:
                end_event()
                event_position = change.position
            if self.check_columns is not None:
                self.check_columns(change)
            event_actions.extend(self._actions(change))

        while True:
            self.last_loop = time.monotonic()
            if self._writer_error is not None:
                return
            if self.stop_requested.is_set():
                # The open transaction (if any) is dropped; it is re-read after restart.
                self._hand_over(batch, wait=True)
                return
            # With a commit waiting, wake up by max_interval at the latest; a free
            # writer slot also wakes this loop (_WAKE). An idle loop need not spin
            # (heartbeats still arrive every few seconds).
            if batch.commit is None:
                timeout = max_interval
            else:
                timeout = max(0.005, max_interval - (time.monotonic() - batch.opened))
            event: object
            try:
                event = inbox.get(timeout=timeout)
            except queue.Empty:
                event = None
            if event.__class__ is list:  # row changes, then maybe the event that ends them (`_read`)
                for change in event:
                    if not isinstance(change, RowChange):
                        event = change
                        break
                    add_row(change)
                else:
                    continue  # rows alone never complete a batch
            if isinstance(event, RowChange):
                add_row(event)
                continue
            elif isinstance(event, Commit):
                self.observer.on_event(event.timestamp)
                self.observer.on_commit(event)
                end_event()
                batch.add_all(transaction)
                transaction.clear()
                batch.committed(event)
                self.stats.transactions += 1
                self.stats.last_commit = event
            elif isinstance(event, (Rollback, StreamRestarted)):
                if transaction or event_actions:
                    log.info("dropping %d uncommitted actions (%s at %s)", len(transaction) + len(event_actions),
                             "rollback" if isinstance(event, Rollback) else "reconnect", event.position)
                transaction.clear()
                event_actions, event_position = [], None
            elif isinstance(event, _Failure):
                self._hand_over(batch, wait=True)
                raise event.error
            elif isinstance(event, _End):
                self._hand_over(batch, wait=True)
                return
            elif isinstance(event, Heartbeat):
                self.observer.on_event(0)
            # Commits, heartbeats, wake-ups and timeouts fall through to the flush check.
            if batch.commit is None:
                continue
            if len(batch) >= self.batch_config.max_actions or batch.bytes >= self.batch_config.max_bytes:
                self._hand_over(batch, wait=True)  # full: wait for a slot (back-pressure)
                batch = Batch()
            elif inbox.empty() and not self._in_flight:
                # The source is quiet and nothing is in flight: send now. With a bulk in
                # flight, keep adding until it is acknowledged (its writer wakes this
                # loop): a batch waits at most one round trip, and a busy stream does
                # not turn into a stream of one-row requests.
                self._hand_over(batch)
                batch = Batch()
            elif time.monotonic() - batch.opened >= max_interval and self._hand_over(batch):
                batch = Batch()

    def _actions(self, change: RowChange) -> list[Action]:
        try:
            return self.converter.actions(change)
        except RowError as exc:
            raise CdcError(str(exc)) from None

    def _hand_over(self, batch: Batch, wait: bool = False) -> bool:
        """Give a batch to the writers if fewer than `concurrency` are unfinished.

        With `wait`, block until there is room (backpressure); without, return
        False at once, and the caller keeps adding to the batch.
        """
        if batch.commit is None:
            return True  # nothing committed: nothing to write or save
        with self._lock:
            while len(self._in_flight) >= self.concurrency:
                if not wait or self._writer_error is not None:
                    return False
                # Waiting for a slow or unreachable Elasticsearch is not being stuck.
                self.last_loop = time.monotonic()
                self._lock.wait(0.2)
            if self._writer_error is not None:
                return False
            self._in_flight.add(batch)
            self._lock.notify_all()
            return True

    # ------------------------------------------------------------------ writers
    def _write_loop(self, writer: BulkWriter) -> None:
        while True:
            with self._lock:
                while True:
                    if self._writer_error is not None:
                        return
                    part = self._in_flight.take()
                    if part is not None:
                        break
                    if self._closing and self._in_flight.running == 0 and len(self._in_flight) == 0:
                        self._lock.notify_all()
                        return
                    if not self._lock.wait(max(0.05, self.checkpoint_interval)):
                        # Quiet period: save a commit that an earlier batch left unsaved
                        # because of checkpoint_interval, so a crash replays less.
                        due = self._checkpoint(None, force=False)
                        if due is not None and not self._save_unlocked(due):
                            return
            try:
                self._deliver(part.actions, writer)
            except BaseException as exc:
                with self._lock:
                    self._count(writer)
                    self._fail(exc)
                return
            with self._lock:
                self._count(writer)
                due = None
                try:
                    for batch in self._in_flight.finish(part):
                        due = self._acknowledged(batch) or due
                except BaseException as exc:
                    self._fail(exc)
                    return
                self._lock.notify_all()
                if due is not None and not self._save_unlocked(due):
                    return
            if self._inbox is not None:
                try:
                    self._inbox.put_nowait(_WAKE)
                except queue.Full:
                    pass  # the main loop has plenty to read; it checks for room after every commit

    def _fail(self, exc: BaseException) -> None:
        """Called with the lock held: the first writer error stops the pipeline."""
        if self._writer_error is None:
            self._writer_error = exc
        self._abort.set()
        self.stop_requested.set()
        self._lock.notify_all()

    def _deliver(self, actions: list[Action], writer: BulkWriter) -> None:
        if self.rebuild is not None:  # rebuilt documents are read and written here, before the part counts as done
            actions = self.rebuild.deliver(actions, (lambda a: None) if self.dry_run else writer.write, writer.refuse)
        if actions and not self.dry_run:
            writer.write(actions)

    def _count(self, writer: BulkWriter) -> None:
        mine = writer.stats
        for name in _WRITER_COUNTERS:
            setattr(self.stats, name, getattr(self.stats, name) + getattr(mine, name))
            setattr(mine, name, 0)

    def _acknowledged(self, batch: Batch) -> "_Due | None":
        """With the lock held, in binlog order: this batch and every earlier one are in Elasticsearch.

        Returns the checkpoint to save now, if one is due (`_checkpoint`).
        """
        actions = list(batch.actions.values())
        if actions:
            if self.dry_run:
                self.stats.actions_sent += len(actions)
            else:
                self.stats.batches += 1
            if self.on_batch:
                self.on_batch(actions)
        self.observer.on_acknowledged(actions, batch.commit)
        if actions and batch.first_commit is not None:
            self.observer.on_latency(batch.first_commit, batch.first_read)
        return self._checkpoint(batch.commit, force=False)

    def _checkpoint(self, commit: Commit | None, force: bool) -> "_Due | None":
        """With the lock held: the newest acknowledged commit if it is due for saving (at most
        every checkpoint_interval), numbered in acknowledgement order; `_save` writes it.

        Deciding and writing are apart so that the file write and its fsyncs (a
        millisecond, tens under disk load) happen outside the pipeline's lock, which the
        main loop and the other writers need to hand over and finish batches.
        """
        if commit is not None:
            self._unsaved = commit
        if self._unsaved is None or self.checkpoints is None:
            return None
        now = time.monotonic()
        if not force and now - self._last_save < self.checkpoint_interval:
            return None
        due = _Due(self._due_count, self._unsaved)
        self._due_count += 1
        self._last_save = now
        self._unsaved = None
        return due

    def _save(self, due: "_Due | None") -> None:
        """Without the pipeline's lock: write `due` unless a newer one is written already.

        Writers decide under the lock in acknowledgement order but may reach this in
        another; the number makes the saved position only move forward, and the
        save lock keeps two writes (one temporary file per process) apart.
        """
        if due is None or self.checkpoints is None:
            return
        with self._save_lock:
            if due.number < self._saved_count:
                return  # a newer commit was saved while this writer waited
            saved = due.commit
            self.checkpoints.save(saved.position, saved.gtid)
            self._saved_count = due.number + 1
            self.stats.checkpoints += 1
            self.stats.last_saved = saved.position
            self.observer.on_checkpoint(saved)
        log.debug("checkpoint %s gtid=%s", saved.position, saved.gtid)

    def _save_unlocked(self, due: "_Due") -> bool:
        """For a writer holding the lock: `_save` with the lock released; False (and the pipeline failed) if it raised."""
        self._lock.release()
        try:
            self._save(due)
        except BaseException as exc:
            self._lock.acquire()
            self._fail(exc)
            return False
        self._lock.acquire()
        return True
