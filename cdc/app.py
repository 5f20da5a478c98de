"""Build the stages from a config and run them: `run` (the daemon) and `replay`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .checkpoint import FileCheckpointStore
from .config import Config
from .database import Database
from .errors import CdcError, SinkUnavailableError, SourceConnectionError
from .model import Action, BinlogPosition
from .observe import Stats
from .pipeline import Pipeline
from .retry import Backoff
from .rules import RuleSet, load_rules
from .sink import ElasticsearchSink
from .source import BinlogSource, StartPoint

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


class Daemon:
    """One run of cdc: set-up checks, then the pipeline until stopped."""

    def __init__(self, config: Config):
        self.config = config
        self.stop = threading.Event()
        self.pipeline: Pipeline | None = None

    def request_stop(self) -> None:
        self.stop.set()
        if self.pipeline is not None:
            self.pipeline.request_stop()

    def _prepare(self) -> tuple[Database, RuleSet, ElasticsearchSink]:
        rules = load_rules(self.config.resolve(self.config.rules))
        db = _patiently("connecting to MySQL", lambda: Database(self.config.mysql), self.stop, self.config.retry)
        log.info("connected to %s %s at %s:%s", "MariaDB" if db.info.mariadb else "MySQL", db.info.version,
                 self.config.mysql.host, self.config.mysql.port)
        for warning in db.preflight():
            log.warning("%s", warning)
        rules = db.resolve_rules(rules)
        sink = ElasticsearchSink(self.config.elasticsearch)
        status = _patiently("connecting to Elasticsearch", sink.check, self.stop, self.config.retry)
        log.info("Elasticsearch cluster is %s; %d rule(s): %s", status, len(rules),
                 ", ".join(f"{r.name}->{r.index}" for r in rules.rules))
        return db, rules, sink

    def _pipeline(self, rules: RuleSet, sink, store, dry_run: bool = False,
                  on_batch: Callable[[list[Action]], None] | None = None) -> Pipeline:
        self.pipeline = Pipeline(
            rules, sink, store, self.config.batch, self.config.retry,
            version_epoch=self.config.elasticsearch.version_epoch,
            checkpoint_interval=self.config.checkpoint.min_interval,
            dry_run=dry_run, on_batch=on_batch,
        )
        if self.stop.is_set():
            self.pipeline.request_stop()
        return self.pipeline

    def run(self) -> Stats:
        store = FileCheckpointStore(self.config.resolve(self.config.checkpoint.path))
        store.lock()
        db, rules, sink = self._prepare()
        try:
            checkpoint = store.load()
            if checkpoint is not None:
                db.check_position_available(checkpoint.position)
                start = StartPoint(checkpoint.position, checkpoint.gtid)
                log.info("resuming from checkpoint %s (gtid %s)", checkpoint.position, checkpoint.gtid or "-")
            elif self.config.start.position == "end":
                position, gtid = db.current_position()
                start = StartPoint(position, gtid)
                log.info("no checkpoint: starting at the current end of the binlog, %s", position)
                store.save(position, gtid)  # so that a restart before the first commit loses nothing
            else:
                position = BinlogPosition.parse(self.config.start.position)
                db.check_position_available(position)
                start = StartPoint(position, self.config.start.gtid or db.gtid_at(position))
                log.info("no checkpoint: starting at configured position %s", position)
            source = self._source(db, rules)
        finally:
            db.close()
        pipeline = self._pipeline(rules, sink, store)
        try:
            return pipeline.run(lambda: source.events(start), source.close)
        finally:
            sink.close()
            self._log_summary(pipeline.stats)
            store.unlock()

    def replay(self, span: ReplayRange, dry_run: bool, move_checkpoint: bool,
               on_batch: Callable[[list[Action]], None] | None = None, server_id: int | None = None) -> Stats:
        # A replay runs beside the daemon, so it must register with another server_id.
        mysql = self.config.mysql.model_copy(update={"server_id": server_id or self.config.mysql.server_id + 1})
        self.config = self.config.model_copy(update={"mysql": mysql})
        store = None
        if move_checkpoint:
            store = FileCheckpointStore(self.config.resolve(self.config.checkpoint.path))
            store.lock()
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
        tables = {(r.schema, r.table) for r in rules.rules}
        return BinlogSource(self.config.mysql, db.info.mariadb, tables, self.config.retry, stop=self.stop, end=end)

    @staticmethod
    def _log_summary(stats: Stats) -> None:
        elapsed = max(time.time() - stats.started, 1e-9)
        log.info("stopped: %d rows, %d transactions, %d actions written (%d already newer), %d batches, "
                 "%d retries, last checkpoint %s, %.1fs", stats.rows, stats.transactions, stats.actions_sent,
                 stats.actions_stale, stats.batches, stats.item_retries + stats.request_retries,
                 stats.last_saved or "-", elapsed)
