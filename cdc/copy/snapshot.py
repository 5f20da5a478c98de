"""Copying existing rows into Elasticsearch: chunked, consistent, resumable.

Each chunk of a table (up to `chunk_size` rows in key order) is read inside its
own short `START TRANSACTION WITH CONSISTENT SNAPSHOT`, together with the binlog
position that snapshot corresponds to (MariaDB: the status variables
binlog_snapshot_file/position, lock-free, mariadb.com "Enhancements for START
TRANSACTION WITH CONSISTENT SNAPSHOT"; MySQL: a global read lock held only
while the position is read). The chunk's documents carry the version of that
position, exactly as the stream would have written them. So:

* Streaming from any position at or before the snapshot's first chunk (the
  daemon's checkpoint) converges: events older than a chunk lose to it on
  version, newer ones win. No long transaction, no lock held for a table.
* Every chunk is a resume point: progress (the last key written) is saved
  after Elasticsearch acknowledged the chunk (with concurrent writes, at most
  every SAVE_EVERY seconds and when the copy ends or stops; a resume copies
  again what was acknowledged since, which converges as above).
* Deleted rows cannot come back: a stream delete leaves a tombstone that
  Elasticsearch forgets after `index.gc_deletes` (60 s by default); a chunk
  that was read before the delete but written after the tombstone expired
  would resurrect the row. A chunk is therefore written within
  `max_chunk_age` (at most half of gc_deletes) of being read, or read again
  (the same key range, so no row falls between chunks).

Concurrency: a table's chunks are read one after another on one connection
(each chunk starts after the last key of the one before), while up to
`snapshot.concurrency` earlier chunks are being written; the progress moves
only over chunks acknowledged in order, so a resume never skips a chunk that
was still in flight. Up to `snapshot.tables` tables are copied at once, each on
its own connection (its own consistent reads). Memory holds at most
tables x (2 x concurrency + 1) chunks: up to `concurrency` being written, as
many written but waiting for an older chunk, and the one being read.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


from cdc.durable import atomic_write
from cdc.config import SnapshotConfig
from cdc.copy.native import SnapshotRows
from cdc.mysql.server import Database, PacketRows
from cdc.stream.delivery import BulkWriter
from cdc.stream.observe import Stats
from cdc.errors import CdcError, SchemaChanged, SourceError, CheckpointError, PreflightError, SinkUnavailableError
from cdc.es.indices import index_target
from cdc.model import Action, BinlogPosition, Column, ColumnKind, ItemResult, Op, Outcome, RowChange
from cdc.mysql.types import column_from_schema
from cdc.rules import ActionBuilder, Rule, document_version
from cdc.rules.relations import Assembler, document_actions, read_documents, root_pk
from cdc.rules.rowpath import RowPathMode

log = logging.getLogger("cdc.snapshot")

@dataclass
class TableProgress:
    """How far the copy of one table has come; saved after every acknowledged chunk."""

    last_key: list[Any] | None = None
    rows: int = 0
    done: bool = False

    def to_json(self) -> dict:
        return {"last_key": self.last_key, "rows": self.rows, "done": self.done}

    @classmethod
    def from_json(cls, data: dict) -> "TableProgress":
        return cls(data.get("last_key"), int(data.get("rows", 0)), bool(data.get("done", False)))


# Beside the tables' "schema.table" keys in the checkpoint's snapshot object; no table name lacks the dot.
BULK_LOAD_KEY = "_bulk_load"


@dataclass
class SnapshotState:
    """Progress of one snapshot run, keyed by "schema.table"."""

    tables: dict[str, TableProgress] = field(default_factory=dict)
    # index -> the settings to put back once the copy is done (cdc/copy/bulkload.py); saved here, in
    # the checkpoint, before the bulk-load settings are applied, so that a killed run puts them back too.
    bulk_load: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict:
        out: dict[str, Any] = {name: p.to_json() for name, p in self.tables.items()}
        if self.bulk_load:
            out[BULK_LOAD_KEY] = self.bulk_load
        return out

    @classmethod
    def from_json(cls, data: dict | None) -> "SnapshotState":
        data = dict(data or {})
        bulk_load = data.pop(BULK_LOAD_KEY, None) or {}
        return cls({name: TableProgress.from_json(p) for name, p in data.items()},
                   {index: dict(values) for index, values in bulk_load.items()})

    @property
    def pending(self) -> list[str]:
        return [name for name, p in self.tables.items() if not p.done]


@dataclass(frozen=True)
class TablePlan:
    rule: Rule
    columns: tuple[Column, ...]
    names: tuple[str, ...]
    key: tuple[str, ...]
    paged: bool  # False: no unique key to page by, so one pass over the whole table
    estimate: int

    @property
    def name(self) -> str:
        return self.rule.name


class Progress:
    """A progress bar per table on a terminal, periodic log lines otherwise."""

    def __init__(self, plan: TablePlan, done: int, interactive: bool | None = None, what: str = "snapshot"):
        self.plan = plan
        self.what = what
        self.done = done
        self.started = time.monotonic()
        self.last_log = self.started
        self.bar = None
        if interactive if interactive is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=max(plan.estimate, done) or None, initial=done, desc=plan.name, unit="rows",
                            dynamic_ncols=True, leave=True, file=sys.stderr)

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            if self.bar.total is not None and self.done > self.bar.total:
                self.bar.total = self.done
            self.bar.update(rows)
            return
        now = time.monotonic()
        if now - self.last_log >= 10:
            self.last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.plan.estimate - self.done) / rate if rate and self.plan.estimate > self.done else 0
            log.info("%s %s: %d of ~%d rows, %.0f rows/s, eta %.0fs", self.what, self.plan.name, self.done,
                     self.plan.estimate, rate, eta, extra={"table": self.plan.name})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Pace:
    """At most `rate` rows per second on average (`snapshot.max_rows_per_second`); None: no limit.

    A rebuild's copy shares Elasticsearch and the cores with the live stream: unthrottled, it
    raised the stream's commit -> acknowledged p99 from 20 to 244 ms (BENCHMARKS.md, issue 31).
    `take(rows)` is called after each chunk is handed over and waits until the copy is back
    under the rate: the rows so far, divided by the rate, is the earliest time to go on.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.clock = clock
        self.lock = threading.Lock()
        self.free_at: float | None = None  # when the rows taken so far will have been paid for

    def take(self, rows: int, stop: threading.Event) -> float:
        """Count `rows`; wait (until `stop`) as long as the copy is ahead of the rate. The wait, in seconds."""
        if self.rate is None or rows <= 0:
            return 0.0
        cost = rows / self.rate
        with self.lock:
            now = self.clock()
            # These rows were read since the last take (or, on the first, are taken to have needed
            # their share of time): the copy may go on once they are paid for at the rate. A copy
            # slower than the rate keeps no credit to burst with later.
            start = now - cost if self.free_at is None else max(self.free_at, now - cost)
            self.free_at = start + cost
            wait = self.free_at - now
        if wait > 0:
            stop.wait(wait)
        return max(wait, 0.0)


class Snapshot:
    """Copies the tables of a rule set, chunk by chunk, into Elasticsearch."""

    pace = Pace(None)  # __init__ sets the configured one; this no-limit default serves a bare instance

    def __init__(self, db: Database, builder: ActionBuilder, writer: BulkWriter, config: SnapshotConfig,
                 save_progress: Callable[[SnapshotState], None], stop: threading.Event,
                 gc_deletes: Callable[[str], float | None] | None = None, where: str | None = None,
                 interactive: bool | None = None, online: bool = False, row_path: RowPathMode = "auto"):
        self.db = db
        self.builder = builder
        self.writer = writer
        self.config = config
        self.save_progress = save_progress
        self.stop = stop
        self.gc_deletes = gc_deletes or (lambda index: None)
        self.where = where
        self.interactive = interactive
        # Only a snapshot that runs while the daemon streams can race a delete's
        # tombstone; the daemon's own snapshot finishes before streaming starts.
        self.online = online
        self.rows_written = 0
        # Shared by the tables copied at once (workers are shallow copies): one budget for the copy.
        self.pace = Pace(config.max_rows_per_second)
        # Chunks as row packets for the native row path (cdc/copy/native.py), where it can run.
        self.native = SnapshotRows(builder, row_path, (writer.batch.max_actions, writer.batch.max_bytes))
        self.reader = TableReader(db, config.chunk_size, where, raw=self.native.enabled, chunk_bytes=config.chunk_bytes)

    def plan(self, rule: Rule) -> TablePlan:
        return self.reader.plan(rule)

    def _read_chunk(self, plan: TablePlan, last_key: list | None) -> tuple[BinlogPosition, Sequence[tuple]]:
        return self.reader.read_chunk(plan, last_key)

    # ------------------------------------------------------------------ running
    def run(self, rules: Iterable[Rule], state: SnapshotState) -> SnapshotState:
        """Copy what is not done yet; returns early (progress saved) when `stop` is set."""
        todo = [rule for rule in rules if not state.tables.setdefault(rule.name, TableProgress()).done]
        save_lock = threading.Lock()
        save_progress = self.save_progress

        def save(state: SnapshotState) -> None:
            with save_lock:  # tables copied at once share one state file
                save_progress(state)

        self.save_progress = save
        try:
            tables = min(self.config.tables, len(todo))
            if tables <= 1:
                for rule in todo:
                    if self.stop.is_set() or not self._copy_table(self, rule, state):
                        break
                return state
            # Each table on its own connection: a connection runs one consistent read at a time.
            failed = threading.Event()

            def one(rule: Rule) -> None:
                if self.stop.is_set() or failed.is_set():
                    return
                db = Database(self.db.config)
                worker = copy.copy(self)
                worker.db, worker.reader = db, TableReader(db, self.config.chunk_size, self.where, self.reader.raw,
                                                           self.config.chunk_bytes)
                worker.rows_written = 0
                worker.writer = copy.copy(self.writer)  # its own abort; counts added below
                worker.writer.stats = Stats()
                try:
                    self._copy_table(worker, rule, state)
                except BaseException:
                    failed.set()
                    raise
                finally:
                    db.close()
                    with _STATS_LOCK:
                        self.rows_written += worker.rows_written
                        _add_counts(self.writer.stats, worker.writer.stats)

            with ThreadPoolExecutor(tables, thread_name_prefix="cdc-snapshot-table") as pool:
                for future in [pool.submit(one, rule) for rule in todo]:
                    future.result()
            return state
        finally:
            self.save_progress = save_progress

    @staticmethod
    def _copy_table(snapshot: "Snapshot", rule: Rule, state: SnapshotState) -> bool:
        """False when stopped while waiting for Elasticsearch (the last saved chunk stands)."""
        try:
            snapshot._copy(snapshot.plan(rule), state.tables[rule.name], state)
        except SinkUnavailableError:
            if not snapshot.stop.is_set():
                raise
            return False
        return True

    def _copy(self, plan: TablePlan, progress: TableProgress, state: SnapshotState) -> None:
        if progress.last_key is not None:
            log.info("resuming snapshot of %s after key %s (%d rows done)", plan.name, progress.last_key,
                     progress.rows, extra={"table": plan.name})
        else:
            log.info("snapshot of %s into %s: ~%d rows, %s", plan.name, plan.rule.index, plan.estimate,
                     f"chunks of up to {self.reader.limit(plan)} rows by {', '.join(plan.key)}" if plan.paged
                     else "one pass (no unique key to page by)", extra={"table": plan.name})
        bar = Progress(plan, progress.rows, self.interactive)
        try:
            if not plan.paged and progress.rows:
                progress.rows = 0  # a single pass cannot resume; copying again is harmless
            changes = 0
            while not self.stop.is_set():
                try:
                    if plan.paged and self.config.concurrency > 1:
                        if not self._copy_concurrently(plan, progress, state, bar):
                            return  # stopped: what is saved stands
                        rows = None
                    else:
                        rows = self._write_chunk(plan, progress)
                except SchemaChanged:
                    # An ALTER TABLE between planning and reading: plan again with the
                    # columns as they are now. Chunks are read whole, so none is half old.
                    changes += 1
                    if changes > 10:
                        raise CdcError(f"snapshot of {plan.name}: the table keeps changing under the copy")
                    log.warning("snapshot of %s: the table's columns changed; reading them again", plan.name,
                                extra={"table": plan.name})
                    plan = self.plan(plan.rule)
                    continue
                if rows is None:
                    break
                self.save_progress(state)
                bar.advance(rows)
                if not plan.paged:
                    break
            else:
                return
            progress.done = True
            self.save_progress(state)
            log.info("snapshot of %s done: %d rows", plan.name, progress.rows, extra={"table": plan.name})
        finally:
            bar.close()

    def _max_age(self, index: str) -> float:
        if not self.online:
            return float("inf")
        return fresh_window(self.config.max_chunk_age, self.gc_deletes(index))

    def _write_chunk(self, plan: TablePlan, progress: TableProgress) -> int | None:
        """Read, convert and write one chunk; None when the table is finished."""
        # A name built from column values (monthly indices) is asked about as its pattern.
        max_age = self._max_age(index_target(plan.rule)[1])
        read: list[Sequence[tuple]] = [()]

        def chunk() -> Sequence[Action] | None:
            position, rows = self._read_chunk(plan, progress.last_key)
            read[0] = rows
            return self._actions(plan, position, rows, after=progress.last_key) if rows else None

        if write_while_fresh(self.writer, self.stop, max_age, chunk, f"snapshot chunk of {plan.name}",
                             plan.name) is None:
            return None
        self.rows_written += len(read[0])
        progress.rows += len(read[0])
        if plan.paged:
            progress.last_key = last_key(plan, read[0])
        self.pace.take(len(read[0]), self.stop)
        return len(read[0])

    def _copy_concurrently(self, plan: TablePlan, progress: TableProgress, state: SnapshotState,
                           bar: "Progress") -> bool:
        """Read chunks in key order while up to `concurrency` earlier ones are written.

        True when the table is read to its end and every chunk is written, False
        on a stop; raises SchemaChanged (after the chunks in flight are written
        and saved) for the caller to plan the table again.
        """
        max_age = self._max_age(index_target(plan.rule)[1])
        window: deque[tuple[list | None, list[Any], int, Future]] = deque()  # oldest first
        failed = threading.Event()  # a chunk failed: the others stop waiting to retry
        stop = _Either(self.stop, failed)
        saved = [time.monotonic(), False]  # when progress was last saved; whether it has moved since

        def settle(block: bool) -> None:
            """Save progress over the chunks acknowledged in order; raise the first failure."""
            if block and window:
                # Only the chunks still in flight: a later chunk written before the oldest one is
                # already done, and waiting on it too returned at once (a busy loop that held the GIL).
                wait([f for *_, f in window if not f.done()], return_when=FIRST_COMPLETED)
            for *_, future in window:
                if future.done() and future.exception() is not None:
                    failed.set()
                    wait([f for *_, f in window])  # the others end soon: they stop retrying
                    raise future.exception()  # type: ignore[misc]
            moved = 0
            while window and window[0][3].done():
                _, end, rows, future = window.popleft()
                future.result()
                self.rows_written += rows
                progress.rows += rows
                progress.last_key = end
                moved += rows
            if moved:
                bar.advance(moved)
                # Each save is fsynced, on the thread that reads the next chunks: at most one per
                # SAVE_EVERY (and one when this ends, below). A resume copies again what was
                # acknowledged since, at the same or newer versions.
                now = time.monotonic()
                if now - saved[0] >= SAVE_EVERY:
                    self.save_progress(state)
                    saved[:] = [now, False]
                else:
                    saved[1] = True

        after = progress.last_key
        finished = False
        try:
            with ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="cdc-snapshot-write") as pool:
                try:
                    while not self.stop.is_set():
                        # Up to `concurrency` writes in flight, counted as unfinished writes: a chunk
                        # written before an older one still waits in the window for the progress to
                        # pass it, and counting it held a writer idle. The memory bound: twice that.
                        while (sum(not f.done() for *_, f in window) >= self.config.concurrency
                               or len(window) >= 2 * self.config.concurrency):
                            settle(block=True)
                        settle(block=False)
                        try:
                            position, rows = self._read_chunk(plan, after)
                        except SchemaChanged:
                            while window:  # the chunks read before the change are good: finish them
                                settle(block=True)
                            raise
                        if not rows:
                            finished = True
                            break
                        end = last_key(plan, rows)
                        actions = self._actions(plan, position, rows, after=after)
                        read_at = time.monotonic()
                        future = pool.submit(self._write_range, plan, after, end, actions, read_at, max_age, stop)
                        window.append((after, end, len(rows), future))
                        after = end
                        # Before the next read, not between this read and its write: chunks stay fresh.
                        self.pace.take(len(rows), self.stop)
                    while window:
                        settle(block=True)
                except BaseException:
                    failed.set()  # chunks still in flight stop retrying; their rows are read again on resume
                    raise
        finally:
            if saved[1]:
                self.save_progress(state)  # the chunks acknowledged in order since the last save
        return finished and not self.stop.is_set()

    def _write_range(self, plan: TablePlan, after: list | None, upto: list[Any], actions: Sequence[Action],
                     read_at: float, max_age: float, stop: "_Either") -> None:
        """Write one chunk within `max_age` of reading it, or read its key range again (on a connection of its own)."""
        writer = copy.copy(self.writer)  # abort is per write; counts are added to the shared Stats below
        writer.stats = Stats()
        first: list = [(read_at, actions)]

        def read() -> Sequence[Action] | None:
            db = Database(self.db.config)
            try:
                reader = TableReader(db, self.config.chunk_size, self.where, self.reader.raw)
                position, rows = reader.read_range(plan, after, upto)
                return self._actions(plan, position, rows, db, after)
            finally:
                db.close()

        try:
            write_while_fresh(writer, stop, max_age, read, f"snapshot chunk of {plan.name}", plan.name, first=first[0])
        finally:
            with _STATS_LOCK:
                _add_counts(self.writer.stats, writer.stats)

    def _actions(self, plan: TablePlan, position: BinlogPosition, rows: Sequence[tuple],
                 db: Database | None = None, after: list | None = None) -> Sequence[Action]:
        if plan.rule.relations:
            return self._documents(plan, rows, db or self.db)
        if isinstance(rows, PacketRows):
            native = self.native.actions(plan.rule.schema, plan.rule.table, plan.columns, position, rows, after)
            if native is not None:
                return native
            # The Python path: the same packets, converted by PyMySQL as a cursor would.
        actions: list[Action] = []
        now = int(time.time())
        for i, row in enumerate(rows):
            actions.extend(self.builder.actions(row_change(plan, position, row, now, i)))
        return actions


    def _documents(self, plan: TablePlan, rows: Sequence[tuple], db: Database) -> list[Action]:
        """A chunk of roots with their children and lookups (issue 15), read again in one consistent snapshot.

        The chunk's rows only say which roots; the documents come from a second
        read that takes them and every related row at one position, and carry
        its version, as the stream's rebuilds do (cdc/stream/rebuild.py).
        Roots deleted in between become deletes at that version.
        """
        rule = plan.rule
        pk = plan.names.index(root_pk(rule))
        ids = [row[pk] for row in rows]
        try:
            position, fetched = db.consistent_queries(lambda query: read_documents(query, rule, ids))
        except SchemaChanged:
            raise SchemaChanged(plan.name) from None
        except SourceError as exc:
            raise CdcError(f"snapshot read of {plan.name} and its relations failed: {exc}") from None
        assembler = Assembler(rule, self.builder.value_options, self.builder.stats)
        actions, refused = document_actions(assembler, ids, fetched,
                                            document_version(position, self.builder.version_epoch), position)
        self.writer.refuse([ItemResult(r.action, Outcome.REJECTED, 0, "cdc_refused", r.reason) for r in refused])
        return actions


def last_key(plan: TablePlan, rows: Sequence[tuple]) -> list[Any]:
    """The key of the last row of a chunk, in the JSON form `read_chunk` continues after."""
    return [_jsonable_key(rows[-1][plan.names.index(k)]) for k in plan.key]


def row_change(plan: TablePlan, position: BinlogPosition, row: tuple, now: int, index: int = 0) -> RowChange:
    """A row as read by a consistent read, as the insert the stream would have seen at `position`."""
    values = dict(zip(plan.names, row))
    return RowChange(Op.INSERT, plan.rule.schema, plan.rule.table, plan.columns, None, values, position, now, index)


class TableReader:
    """Plans a table and reads its rows in short consistent reads, each with its binlog position.

    Shared by snapshots (chunks in key order) and `cdc verify` (chunks, and
    rows by key). A row from here goes through `row_change` and the same
    ActionBuilder as the stream.
    """

    def __init__(self, db: Database, chunk_size: int, where: str | None = None, raw: bool = False,
                 chunk_bytes: int | None = None):
        self.db = db
        self.chunk_size = chunk_size
        self.where = where
        self.raw = raw  # rows as `PacketRows` (for the native row path), converted one by one when indexed
        # A chunk's rows stop near this many bytes (snapshot.chunk_bytes): what a chunk holds in
        # memory, with up to tables x (2 x concurrency + 1) chunks at once, stays bounded when rows
        # are wide. None: chunk_size rows (cdc verify's batches).
        self.chunk_bytes = chunk_bytes
        self._row_bytes: dict[str, float] = {}  # "schema.table" -> average bytes per row of its last chunk

    def limit(self, plan: TablePlan) -> int:
        """Rows in the next chunk of `plan`'s table: chunk_size, fewer where its rows are wide."""
        row_bytes = self._row_bytes.get(plan.name)
        if self.chunk_bytes is None or not row_bytes:
            return self.chunk_size
        return max(1, min(self.chunk_size, int(self.chunk_bytes / row_bytes)))

    # ------------------------------------------------------------------ planning
    def plan(self, rule: Rule) -> TablePlan:
        cols = self.db.rows(
            "SELECT COLUMN_NAME AS name, DATA_TYPE AS dtype, COLUMN_TYPE AS ctype, CHARACTER_SET_NAME AS cs "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION",
            (rule.schema, rule.table))
        if not cols:
            raise PreflightError(f"{rule.source}: table {rule.name} does not exist")
        columns = [column_from_schema(c["name"], c["dtype"], c["ctype"], c["cs"]) for c in cols]
        key = tuple(rule.id_columns or ())
        paged = self._is_unique(rule, key)
        stats = self.db.rows("SELECT TABLE_ROWS AS n, AVG_ROW_LENGTH AS width FROM information_schema.TABLES "
                             "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (rule.schema, rule.table))
        estimate = int(stats[0]["n"] or 0) if stats else 0
        if stats and stats[0]["width"] and rule.name not in self._row_bytes:
            # The storage engine's estimate (pages included, so on the wide side) until chunks are read.
            self._row_bytes[rule.name] = float(stats[0]["width"])
        return TablePlan(rule, tuple(columns), tuple(c.name for c in columns), key, paged, estimate)

    def _is_unique(self, rule: Rule, key: tuple[str, ...]) -> bool:
        """Can we page by `key`? Only if some unique index has exactly these non-null columns."""
        rows = self.db.rows(
            "SELECT INDEX_NAME AS idx, COLUMN_NAME AS col, NULLABLE AS nullable FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s AND NON_UNIQUE=0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (rule.schema, rule.table))
        indexes: dict[str, list[tuple[str, str]]] = {}
        for r in rows:
            indexes.setdefault(r["idx"], []).append((r["col"], r["nullable"]))
        return any(tuple(c for c, _ in cols) == key and all(n != "YES" for _, n in cols)
                   for cols in indexes.values())

    # ------------------------------------------------------------------ reading
    def read_chunk(self, plan: TablePlan, last_key: list | None) -> tuple[BinlogPosition, list[tuple]]:
        """The next `chunk_size` rows after `last_key` (JSON form, see _jsonable_key), in key order."""
        cols = _select_list(plan)
        table = f"`{plan.rule.schema}`.`{plan.rule.table}`"
        conditions, args = [], []
        if plan.paged and last_key is not None:
            keys = ", ".join(f"`{k}`" for k in plan.key)
            conditions.append(f"({keys}) > ({', '.join(['%s'] * len(plan.key))})")
            args.extend(key_args(last_key))
        if self.where:
            conditions.append(f"({self.where})")
        sql = f"SELECT {cols} FROM {table}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if plan.paged:
            sql += f" ORDER BY {', '.join(f'`{k}`' for k in plan.key)} LIMIT {self.limit(plan)}"
        position, rows = self._consistent(plan, sql, args)
        if self.chunk_bytes is not None and isinstance(rows, PacketRows) and rows.packets:
            self._row_bytes[plan.name] = sum(map(len, rows.packets)) / len(rows.packets)
        return position, rows

    def read_range(self, plan: TablePlan, after: list | None, upto: list) -> tuple[BinlogPosition, list[tuple]]:
        """The rows with keys after `after` (None: from the start) up to and including `upto`, in key order:
        a chunk read again covers exactly the keys it covered before."""
        keys = ", ".join(f"`{k}`" for k in plan.key)
        marks = ", ".join(["%s"] * len(plan.key))
        conditions, args = [f"({keys}) <= ({marks})"], list(key_args(upto))
        if after is not None:
            conditions.insert(0, f"({keys}) > ({marks})")
            args = list(key_args(after)) + args
        if self.where:
            conditions.append(f"({self.where})")
        sql = (f"SELECT {_select_list(plan)} FROM `{plan.rule.schema}`.`{plan.rule.table}` "
               f"WHERE {' AND '.join(conditions)} ORDER BY {keys}")
        return self._consistent(plan, sql, args)

    def read_keys(self, plan: TablePlan, keys: Sequence[Sequence[Any]]) -> tuple[BinlogPosition, list[tuple]]:
        """The rows with these key values (those that exist), in one consistent read."""
        if not keys:
            return self._consistent(plan, "SELECT 1 FROM DUAL WHERE FALSE", [])
        table = f"`{plan.rule.schema}`.`{plan.rule.table}`"
        sql = f"SELECT {_select_list(plan)} FROM {table} WHERE {_key_in(plan.key, len(keys))}"
        return self._consistent(plan, sql, [v for key in keys for v in key])

    def sample_keys(self, plan: TablePlan, count: int) -> list[tuple]:
        """Up to `count` random key values. ORDER BY RAND() reads and sorts every key of the table:
        the server's cost grows with the table, ours does not."""
        keys = ", ".join(f"`{k}`" for k in plan.key)
        sql = f"SELECT {keys} FROM `{plan.rule.schema}`.`{plan.rule.table}`"
        if self.where:
            sql += f" WHERE ({self.where})"
        return [tuple(row) for row in self._consistent(plan, f"{sql} ORDER BY RAND() LIMIT {int(count)}", [])[1]]

    def _consistent(self, plan: TablePlan, sql: str, args: Sequence[Any]) -> tuple[BinlogPosition, list[tuple]]:
        try:
            if self.raw:
                return self.db.consistent_read_raw(sql, args)  # type: ignore[return-value]  # a Sequence[tuple]
            return self.db.consistent_read(sql, args)
        except SchemaChanged:
            raise SchemaChanged(plan.name) from None
        except SourceError as exc:
            raise CdcError(f"snapshot read of {plan.name} failed: {exc}") from None


class OnDemandProgress:
    """Progress of `cdc snapshot` runs, in a file beside the checkpoint (never the checkpoint itself)."""

    def __init__(self, path: Path):
        self.path = path
        self.key: dict = {}

    def load(self, tables: list[str], where: str | None) -> SnapshotState:
        self.key = {"tables": sorted(tables), "where": where}
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = None
        except ValueError:
            raise CheckpointError(f"{self.path}: not valid JSON; remove it to start the snapshot over") from None
        if isinstance(data, dict) and data.get("key") == self.key:
            state = SnapshotState.from_json(data.get("tables"))
            log.info("resuming the unfinished snapshot recorded in %s", self.path)
        else:
            state = SnapshotState()
        for name in tables:
            state.tables.setdefault(name, TableProgress())
        return state

    def save(self, state: SnapshotState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Durable: after a crash the snapshot resumes from this state, never from a torn file.
        atomic_write(self.path, json.dumps({"key": self.key, "tables": state.to_json()}))

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def fresh_window(max_chunk_age: float, gc_deletes: float | None) -> float:
    """How long rows read from the table may wait to be written (module docstring: deleted rows)."""
    return min(max_chunk_age, gc_deletes / 2) if gc_deletes is not None else max_chunk_age


def write_while_fresh(writer: BulkWriter, stop: "threading.Event | _Either", max_age: float,
                      read: Callable[[], Sequence[Action] | None], what: str, table: str,
                      first: tuple[float, Sequence[Action]] | None = None) -> Sequence[Action] | None:
    """Read, then write what was read within `max_age` of reading it, or read it again.

    Shared by snapshot chunks and `cdc verify --repair`: both write rows read
    from the table while the stream may be deleting them. `read` returns the
    actions of a fresh read, or None when there is nothing left to read.
    `first`: (time.monotonic() of the read, actions) of a read already made.
    """
    while True:
        actions: Sequence[Action] | None
        if first is not None:
            (read_at, actions), first = first, None
        else:
            read_at = time.monotonic()
            actions = read()
        if actions is None:
            return None
        expired = threading.Event()
        timer = threading.Timer(max(0.0, read_at + max_age - time.monotonic()), expired.set)
        timer.daemon = True
        if max_age != float("inf"):
            timer.start()
        try:
            writer.abort = _Either(expired, stop)
            writer.write(actions)
        except SinkUnavailableError:
            # Only the expired read is worth another try here; an outage that
            # outlasted retry.max_attempts, or a stop, ends the work.
            if stop.is_set() or not expired.is_set():
                raise
            log.warning("%s not written within %.1fs of reading it; reading it again", what, max_age,
                        extra={"table": table})
            continue
        finally:
            timer.cancel()
            writer.abort = None
        return actions


_STATS_LOCK = threading.Lock()
SAVE_EVERY = 0.2  # seconds: the most often a concurrent snapshot saves its progress (each save is fsynced)


def _add_counts(total: Stats, part: Stats) -> None:
    """Counts a writer of its own kept (`+=` on one Stats from several threads can lose counts)."""
    for name in ("actions_sent", "actions_stale", "item_retries", "request_retries", "dead_lettered"):
        setattr(total, name, getattr(total, name) + getattr(part, name))


class _Either:
    """Looks like one threading.Event that is set when either of two is (for BulkWriter.abort)."""

    def __init__(self, a: "threading.Event | _Either", b: "threading.Event | _Either"):
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.a.is_set() or self.b.is_set():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.a.wait(min(left, 0.1))


def _jsonable_key(value: Any) -> Any:
    """Key values are saved as JSON in the checkpoint and sent back as query parameters."""
    if isinstance(value, (int, str)) or value is None:
        return value
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    return str(value)


def key_args(last_key: list) -> list:
    return [bytes.fromhex(v["hex"]) if isinstance(v, dict) and "hex" in v else v for v in last_key]


def _select_list(plan: TablePlan) -> str:
    # MariaDB prints FLOAT with 6 significant digits over the text protocol
    # (1.23457); `col + 0e0` reads the stored float32 exactly, as the binlog has it.
    return ", ".join(f"`{c.name}` + 0e0 AS `{c.name}`" if c.kind is ColumnKind.FLOAT else f"`{c.name}`"
                     for c in plan.columns)


def _key_in(key: Sequence[str], count: int) -> str:
    """`(k1, k2) IN ((%s, %s), ...)`: a row-constructor IN, which MariaDB and MySQL answer from the key's index."""
    if len(key) == 1:
        return f"`{key[0]}` IN ({', '.join(['%s'] * count)})"
    one = f"({', '.join(['%s'] * len(key))})"
    return f"({', '.join(f'`{k}`' for k in key)}) IN ({', '.join([one] * count)})"
