"""Build the stages from a config and run them: `run` (the daemon) and `replay`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from cdc.stream.checkpoint import FileCheckpointStore
from cdc.config import Config
from cdc.mysql.server import Database
from cdc.stream.deadletter import DeadLetterStore
from cdc.stream.delivery import BulkWriter
from cdc.errors import CdcError, ConfigError, PreflightError, PurgedPositionError, SinkUnavailableError, SourceConnectionError
from cdc.model import Action, BinlogPosition
from cdc.ops import build as operations
from cdc.stream.observe import Observers, Stats
from cdc.stream.pipeline import Pipeline
from cdc.retry import Backoff
from cdc.rules import ActionBuilder, Rule, RuleSet, load_rules, resolved_or_stop
from cdc.es.sink import ElasticsearchSink
from cdc.copy.snapshot import OnDemandProgress, Snapshot, SnapshotState, TableProgress, TableReader
from cdc.mysql.source import BinlogSource, StartPoint
from cdc.rules.values import ValueOptions
from cdc.copy.verify import Verifier, VerifyReport
from cdc.es.indices import ensure as ensure_indices

log = logging.getLogger("cdc")


@dataclass(frozen=True)
class ReplayRange:
    start: StartPoint
    end: BinlogPosition | None  # None: up to the end of the binlog when the replay starts


def _patiently(what: str, call: Callable, stop: threading.Event, retry):
    """Call until it works or fails for good; outages at start-up are waited out."""
    backoff = Backoff(retry.initial_backoff, retry.max_backoff)
    attempts = 0
    while True:
        try:
            return call()
        except (SourceConnectionError, SinkUnavailableError) as exc:
            attempts += 1
            if retry.max_attempts and attempts >= retry.max_attempts:
                raise
            delay = backoff.next()
            log.warning("%s: %s; retrying in %.1fs (attempt %d)", what, exc, delay, attempts)
            if stop.wait(delay):
                raise CdcError(f"stopped while waiting for {what}") from None


def _saved_at(store: FileCheckpointStore) -> float | None:
    """When the checkpoint file was last saved; read by a second store so `store`'s state is untouched."""
    checkpoint = FileCheckpointStore(store.path).load()
    return checkpoint.saved_at if checkpoint is not None else None


def _chosen(rules: RuleSet, tables: list[str] | None) -> list[Rule]:
    """The rules of `--table` options (all without); an unknown table is a config error."""
    unknown = sorted(set(tables or ()) - {r.name for r in rules.rules})
    if unknown:
        raise ConfigError(f"--table {', '.join(unknown)}: no rule maps these tables "
                          f"(known: {', '.join(r.name for r in rules.rules)})")
    return [r for r in rules.rules if not tables or r.name in tables]


class Daemon:
    """One run of cdc: set-up checks, then the pipeline until stopped."""

    def __init__(self, config: Config):
        self.config = config
        self.stop = threading.Event()
        self.pipeline: Pipeline | None = None
        # Metrics, health endpoints and systemd notifications hang off these hooks (cdc/operations.py).
        self.observers = Observers()
        self._close_operations: Callable[[], None] = lambda: None

    def request_stop(self) -> None:
        self.stop.set()
        self.observers.on_stopping()
        if self.pipeline is not None:
            self.pipeline.request_stop()

    def dead_letters(self) -> DeadLetterStore | None:
        if self.config.dead_letter.on_rejected != "dead_letter":
            return None
        return DeadLetterStore(self.config.resolve(self.config.dead_letter.path))

    def _prepare(self, reads_binlog: bool = True) -> tuple[Database, RuleSet, ElasticsearchSink]:
        rules = load_rules(self.config.resolve(self.config.rules))
        db = _patiently("connecting to MySQL", lambda: Database(self.config.mysql), self.stop, self.config.retry)
        log.info("connected to %s %s at %s:%s", "MariaDB" if db.info.mariadb else "MySQL", db.info.version,
                 self.config.mysql.host, self.config.mysql.port)
        for warning in db.preflight(reads_binlog):
            log.warning("%s", warning)
        rules = resolved_or_stop(rules, db.catalog(rules))
        sink = ElasticsearchSink(self.config.elasticsearch)
        status = _patiently("connecting to Elasticsearch", sink.check, self.stop, self.config.retry)
        log.info("Elasticsearch cluster is %s; %d rule(s): %s", status, len(rules),
                 ", ".join(f"{r.name}->{r.index}" for r in rules.rules))
        if any(r.create_index is not None for r in rules.rules):  # rules' create_index (cdc/indices.py)
            options = ValueOptions.from_config(self.config.values)
            _patiently("creating indices", lambda: ensure_indices(rules.rules, sink, options), self.stop,
                       self.config.retry)
        return db, rules, sink

    def _pipeline(self, rules: RuleSet, sink, store, dry_run: bool = False,
                  on_batch: Callable[[list[Action]], None] | None = None) -> Pipeline:
        self.pipeline = Pipeline(
            rules, sink, store, self.config.batch, self.config.retry, dead_letters=self.dead_letters(),
            version_epoch=self._epoch(store),
            value_options=ValueOptions.from_config(self.config.values),
            checkpoint_interval=self.config.checkpoint.min_interval,
            dry_run=dry_run, on_batch=on_batch,
            observer=self._observer(),
        )
        if self.stop.is_set():
            self.pipeline.request_stop()
        return self.pipeline

    def run(self, resnapshot: bool = False) -> Stats:
        store = FileCheckpointStore(self.config.resolve(self.config.checkpoint.path))
        store.lock()
        self._close_operations = operations.start(self.config, self.observers, self._last_loop)
        db, rules, sink = self._prepare()
        stats = Stats()
        try:
            start, copy = self._start_point(db, rules, store, resnapshot)
            # Start-up checks passed (systemd READY=1): a snapshot is work, not start-up.
            self.observers.on_start(start.position, start.gtid, _saved_at(store))
            if copy and not self.stop.is_set():
                self._snapshot(db, rules, sink, store, start, copy, stats)
            source = self._source(db, rules)
        finally:
            db.close()
        if self.stop.is_set():
            sink.close()
            self._log_summary(stats)
            store.unlock()
            self._stop_operations()
            return stats
        pipeline = self._pipeline(rules, sink, store)
        try:
            return pipeline.run(lambda: source.events(start), source.close)
        finally:
            sink.close()
            self._log_summary(pipeline.stats)
            store.unlock()
            self._stop_operations()

    def _last_loop(self) -> float | None:
        """When the pipeline's main loop last turned (monotonic); None before streaming starts."""
        return self.pipeline.last_loop if self.pipeline is not None else None

    def _stop_operations(self) -> None:
        self.observers.on_stopping()
        self._close_operations()

    def _start_point(self, db: Database, rules: RuleSet, store: FileCheckpointStore,
                     resnapshot: bool) -> tuple[StartPoint, list[Rule]]:
        """Where to stream from, and which tables to copy first (see cdc/snapshot.py)."""
        mode = self.config.snapshot.mode
        names = [r.name for r in rules.rules]
        checkpoint = store.load()
        failover = checkpoint is not None and not resnapshot and (
            checkpoint.by_gtid or (checkpoint.server is not None and checkpoint.server != db.identity))
        if failover:
            return self._failover(db, rules, store, checkpoint)
        if checkpoint is not None and not resnapshot:
            try:
                db.check_position_available(checkpoint.position)
            except PurgedPositionError:
                if mode != "when_needed":
                    raise
                log.warning("the checkpoint's binlog %s is gone; snapshot.mode=when_needed: copying every table "
                            "again", checkpoint.position)
                checkpoint, resnapshot = None, True
        if checkpoint is not None and not resnapshot:
            start = StartPoint(checkpoint.position, checkpoint.gtid)
            log.info("resuming from checkpoint %s (gtid %s)", checkpoint.position, checkpoint.gtid or "-")
            if store.snapshotted is None:  # a format-1 checkpoint predates snapshots: take the rules as copied
                store.snapshotted = tuple(names)
            state = SnapshotState.from_json(store.snapshot)
            copy = [r for r in rules.rules if r.name in state.pending
                    or (mode != "never" and r.name not in store.snapshotted and r.name not in state.tables)]
            return start, copy
        store.snapshotted, store.snapshot = (), None
        store.server = db.identity
        if self.config.start.position == "end" or resnapshot:
            position, gtid = db.current_position()
            start = StartPoint(position, gtid)
            log.info("%s: starting at the current end of the binlog, %s",
                     "re-snapshot" if resnapshot else "no checkpoint", position)
            copy = list(rules.rules) if (mode != "never" or resnapshot) else []
        else:
            position = BinlogPosition.parse(self.config.start.position)
            db.check_position_available(position)
            start = StartPoint(position, self.config.start.gtid or db.gtid_at(position))
            log.info("no checkpoint: starting at configured position %s (no snapshot: the binlog from there "
                     "is replayed instead)", position)
            copy = []
        # Saved at once, so that a restart before the first commit loses nothing.
        store.save(start.position, start.gtid)
        return start, copy

    def _failover(self, db: Database, rules: RuleSet, store: FileCheckpointStore,
                  checkpoint) -> tuple[StartPoint, list[Rule]]:
        """The checkpoint's position is another server's: continue by GTID on this one.

        File numbers and offsets of two servers are unrelated, so this server's
        positions may be lower than those that versioned the existing documents;
        its writes would then be refused as stale. Raising the epoch (the high
        bits of every version) keeps versions growing across the switch.
        """
        if not checkpoint.gtid:
            raise PreflightError(
                f"cdc was following {checkpoint.server} and is now connected to {db.identity}, but its "
                "checkpoint has no GTID state to find its place on the new server: rebuild the index with "
                "`cdc run --resnapshot`")
        if not checkpoint.by_gtid:
            if store.epoch + self.config.elasticsearch.version_epoch >= 127:
                raise PreflightError("the version epoch is exhausted (127 failovers); rebuild the indices "
                                     "and reset it")
            store.epoch += 1
            log.warning("failover: checkpoint is from %s, this server is %s; resuming from GTID %s with version "
                        "epoch %d", checkpoint.server, db.identity, checkpoint.gtid, store.epoch)
            store.server = db.identity
            # Until the first commit here is saved, restarts must also resume by GTID.
            store.save(checkpoint.position, checkpoint.gtid, by_gtid=True)
        else:
            log.info("resuming from GTID %s after a failover (version epoch %d)", checkpoint.gtid, store.epoch)
        state = SnapshotState.from_json(store.snapshot)
        if state.pending:
            raise PreflightError("a snapshot was unfinished at the failover; finish it with `cdc run --resnapshot`")
        copy = [r for r in rules.rules
                if self.config.snapshot.mode != "never" and r.name not in (store.snapshotted or tuple(
                    r.name for r in rules.rules))]
        return StartPoint(checkpoint.position, checkpoint.gtid, by_gtid=True), copy

    def _epoch(self, store: FileCheckpointStore | None) -> int:
        """Config epoch plus failovers so far. Commands that do not hold the
        checkpoint (replay, snapshot) read it too: with a lower epoch their
        writes would be refused as stale."""
        if store is None:
            store = FileCheckpointStore(self.config.resolve(self.config.checkpoint.path))
            try:
                store.load()
            except CdcError:
                pass
        return self.config.elasticsearch.version_epoch + store.epoch

    def _builder(self, rules: RuleSet, store: FileCheckpointStore | None) -> ActionBuilder:
        """Row -> actions as the stream does them: the same epoch and value options everywhere."""
        return ActionBuilder(rules, self._epoch(store), ValueOptions.from_config(self.config.values))

    def _writer(self, sink, stats: Stats, observed: bool = False, dead_letters: bool = True) -> BulkWriter:
        return BulkWriter(sink, self.config.batch, self.config.retry, stats,
                          dead_letters=self.dead_letters() if dead_letters else None,
                          observer=self._observer() if observed else None)

    def _observer(self) -> Observers | None:
        """None when nothing listens, so that the hot path pays no per-row hook calls."""
        return self.observers if self.observers.observers else None

    def _snapshot(self, db: Database, rules: RuleSet, sink, store: FileCheckpointStore, start: StartPoint,
                  copy: list[Rule], stats: Stats) -> None:
        """Copy tables before streaming; progress rides in the checkpoint, whose position does not move."""
        state = SnapshotState.from_json(store.snapshot)
        for rule in copy:
            state.tables.setdefault(rule.name, TableProgress())

        def save(state: SnapshotState) -> None:
            store.snapshot = state.to_json()
            store.save(start.position, start.gtid, by_gtid=start.by_gtid)

        save(state)
        snapshot = Snapshot(db, self._builder(rules, store), self._writer(sink, stats, observed=True),
                            self.config.snapshot, save, self.stop, gc_deletes=sink.gc_deletes)
        started = time.monotonic()
        snapshot.run(copy, state)
        if state.pending:
            log.info("snapshot stopped with %s still to copy; it resumes on the next start", ", ".join(state.pending))
            return
        store.snapshotted = tuple(sorted(set(store.snapshotted or ()) | {r.name for r in copy}))
        store.snapshot = None
        store.save(start.position, start.gtid, by_gtid=start.by_gtid)
        log.info("snapshot done: %d rows from %d table(s) in %.1fs; streaming from %s", snapshot.rows_written,
                 len(copy), time.monotonic() - started, start.position)

    def snapshot(self, tables: list[str] | None, where: str | None) -> SnapshotState:
        """`cdc snapshot`: copy tables again while the daemon streams (its checkpoint is not touched).

        Progress is kept in <checkpoint>.snapshot.json; a run with the same tables
        and condition resumes where the previous one stopped.
        """
        db, rules, sink = self._prepare(reads_binlog=False)
        try:
            chosen = _chosen(rules, tables)
            progress = OnDemandProgress(self.config.resolve(self.config.checkpoint.path + ".snapshot.json"))
            state = progress.load([r.name for r in chosen], where)
            snapshot = Snapshot(db, self._builder(rules, None), self._writer(sink, Stats()), self.config.snapshot,
                                progress.save, self.stop, gc_deletes=sink.gc_deletes, where=where, online=True)
            snapshot.run(chosen, state)
            if not state.pending:
                progress.finish()
            log.info("snapshot %s: %d rows written", "finished" if not state.pending else "stopped",
                     snapshot.rows_written)
            return state
        finally:
            db.close()
            sink.close()

    def verify(self, tables: list[str] | None, sample: int | None = None, repair: bool = False,
               interactive: bool | None = None) -> VerifyReport:
        """`cdc verify`: compare the indices with their tables, also while the daemon streams (cdc/verify.py).

        Reads like `cdc snapshot` and writes only with `repair`; the daemon's checkpoint
        is only read, to know when the daemon has indexed everything up to a re-read.
        """
        db, rules, sink = self._prepare(reads_binlog=False)
        try:
            chosen = _chosen(rules, tables)
            store = FileCheckpointStore(self.config.resolve(self.config.checkpoint.path))

            def caught_up(position: BinlogPosition) -> bool:
                if not store.is_locked_by_other():
                    return True  # no daemon: nothing is on its way to Elasticsearch
                checkpoint = store.load()
                return checkpoint is not None and checkpoint.position >= position

            log.info("verify: %d table(s)%s; a daemon is %s", len(chosen), ", repairing" if repair else "",
                     "running on this checkpoint" if store.is_locked_by_other() else "not running")
            # Repairs are checked right after; a rejected one stops verify rather than going to the store.
            writer = self._writer(sink, Stats(), dead_letters=False) if repair else None
            verifier = Verifier(TableReader(db, self.config.snapshot.chunk_size), sink, rules, self._epoch(None),
                                ValueOptions.from_config(self.config.values), caught_up, self.stop, writer=writer,
                                sample=sample, interactive=interactive,
                                max_chunk_age=self.config.snapshot.max_chunk_age)
            return verifier.run(chosen)
        finally:
            db.close()
            sink.close()

    def replay(self, span: ReplayRange, dry_run: bool, move_checkpoint: bool,
               on_batch: Callable[[list[Action]], None] | None = None, server_id: int | None = None) -> Stats:
        # A replay runs beside the daemon, so it must register with another server_id.
        mysql = self.config.mysql.model_copy(update={"server_id": server_id or self.config.mysql.server_id + 1})
        self.config = self.config.model_copy(update={"mysql": mysql})
        store = None
        if move_checkpoint:
            store = FileCheckpointStore(self.config.resolve(self.config.checkpoint.path))
            store.lock()
            store.load()  # so that saves keep its snapshot record, server and epoch
        db, rules, sink = self._prepare()
        try:
            end = span.end
            if end is None:
                end, _ = db.current_position()
            start = span.start
            if start.position is not None and not start.by_gtid:
                db.check_position_available(start.position)
                if start.gtid is None:
                    start = StartPoint(start.position, db.gtid_at(start.position))
            source = self._source(db, rules, end=end)
            log.info("replaying from %s to %s%s", start.position or f"GTID {start.gtid}", end,
                     " (dry run)" if dry_run else "")
        finally:
            db.close()
        pipeline = self._pipeline(rules, sink, store, dry_run=dry_run, on_batch=on_batch)
        try:
            return pipeline.run(lambda: source.events(start), source.close)
        finally:
            sink.close()
            self._log_summary(pipeline.stats)
            if store:
                store.unlock()

    def _source(self, db: Database, rules: RuleSet, end: BinlogPosition | None = None) -> BinlogSource:
        tables = rules.table_filter()  # also lets through tables created later that a pattern matches
        return BinlogSource(self.config.mysql, db.info.mariadb, tables, self.config.retry, stop=self.stop, end=end)

    @staticmethod
    def _log_summary(stats: Stats) -> None:
        elapsed = max(time.time() - stats.started, 1e-9)
        log.info("stopped: %d rows, %d transactions, %d actions written (%d already newer), %d batches, "
                 "%d retries, last checkpoint %s, %.1fs", stats.rows, stats.transactions, stats.actions_sent,
                 stats.actions_stale, stats.batches, stats.item_retries + stats.request_retries,
                 stats.last_saved or "-", elapsed)
