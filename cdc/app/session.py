"""What every command that talks to the servers shares: building the stages from the config.

A `Session` is one command's run: its config, the stop event a signal sets,
the observers (metrics, health, systemd) and the pipeline once one streams.
The command functions (cdc/app/daemon.py, replay.py, copy.py) build their
stages through it, so that the stream, snapshots, verify and replay convert
rows, version documents and retry in exactly the same way.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cdc.config import Config
from cdc.errors import CdcError, ConfigError, Stopped
from cdc.es.destination import Destination
from cdc.model import Action, BinlogPosition, RowChange
from cdc.mysql.server import Database
from cdc.mysql.source import BinlogSource
from cdc.retry import Attempts
from cdc.rules import ActionBuilder, Rule, RuleSet, load_rules, resolved_or_stop
from cdc.rules.rowpath import NATIVE_AVAILABLE, RowPath, check_mode
from cdc.rules.values import ValueOptions
from cdc.stream.checkpoint import FileCheckpointStore
from cdc.stream.deadletter import DeadLetterStore
from cdc.stream.delivery import BulkWriter
from cdc.stream.observe import Observers, Stats
from cdc.stream.pipeline import Pipeline
from cdc.stream.rebuild import Rebuild
from cdc.stream.protocols import Converter, SearchAdmin

log = logging.getLogger("cdc")


def patiently(what: str, call: Callable, stop: threading.Event, retry):
    """Call until it works or fails for good; outages at start-up are waited out.

    What may be tried again is the error's `retriable` flag, set where the error
    is made (cdc/errors.py): the library boundary knows what a failure means.
    A stop signal while it tries or waits is a normal stop (`Stopped`, exit 0), not the outage's error.
    """
    attempts = Attempts(retry)
    while True:
        try:
            return call()
        except CdcError as exc:
            if not exc.retriable:
                raise
            if not stop.is_set():
                delay = attempts.failed()
                if delay is None:
                    raise
                log.warning("%s: %s; retrying in %.1fs (attempt %d)", what, exc, delay, attempts.count)
                if not stop.wait(delay):
                    continue
            raise Stopped(f"stopped while {what} (last attempt: {exc})") from None


def writable_problems(paths: dict[str, Path], create: bool = True) -> list[str]:
    """The files of `paths` (config key -> file) that cannot be created, each with why.

    A missing directory is created when `create` (as the checkpoint store does);
    without it, its nearest existing parent must be writable.
    """
    problems = []
    for key, path in paths.items():
        directory = path.parent
        try:
            if create:
                directory.mkdir(parents=True, exist_ok=True)
            else:
                while not directory.exists() and directory != directory.parent:
                    directory = directory.parent
            fd, probe = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".probe")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problems.append(f"{key}: cannot write {path}: {exc.strerror or exc}")
    return problems


def check_writable(paths: dict[str, Path]) -> None:
    """Every file a command will write must be creatable: say so at start-up (exit 2), not at first use.

    A directory that cannot be written to, e.g. /etc/cdc under systemd's
    ProtectSystem=strict, is a set-up error that a restart cannot fix.
    """
    problems = writable_problems(paths)
    if problems:
        raise ConfigError("files cdc must write are not writable:\n  - " + "\n  - ".join(problems) + "\n"
                          "Set state_dir (or these keys) to a writable directory. Relative paths of "
                          "checkpoint.path and dead_letter.path resolve against state_dir, which defaults "
                          "to $STATE_DIRECTORY (set by the systemd unit and the container image), else to "
                          "the config file's directory.")


def chosen_rules(rules: RuleSet, tables: list[str] | None) -> list[Rule]:
    """The rules of `--table` options (all without); an unknown table is a config error."""
    unknown = sorted(set(tables or ()) - {r.name for r in rules.rules})
    if unknown:
        raise ConfigError(f"--table {', '.join(unknown)}: no rule maps these tables "
                          f"(known: {', '.join(r.name for r in rules.rules)})")
    return [r for r in rules.rules if not tables or r.name in tables]


@dataclass(frozen=True)
class Conversion:
    """One command's conversion stage (`Session.conversion`), handed to its source and its pipeline."""

    rules: RuleSet  # the rules the row path converts: without those of documents built from several tables
    converter: Converter  # row change -> actions, for the pipeline
    row_path: RowPath  # the native path inside it: `prepare` runs on the source's reader thread
    rebuild: Rebuild | None  # reads and writes the documents built from several tables


class Session:
    """One command's run: config, stop event, observers, and the stages built from them."""

    def __init__(self, config: Config):
        self.config = config
        self.stop = threading.Event()
        self.pipeline: Pipeline | None = None
        # Metrics, health endpoints and systemd notifications hang off these hooks (cdc/ops/build.py).
        self.observers = Observers()

    def request_stop(self) -> None:
        self.stop.set()
        self.observers.on_stopping()
        if self.pipeline is not None:
            self.pipeline.request_stop()

    # ------------------------------------------------------------------ paths
    def checkpoint_store(self) -> FileCheckpointStore:
        return FileCheckpointStore(self.config.resolve(self.config.checkpoint.path))

    def dead_letters(self) -> DeadLetterStore | None:
        if self.config.dead_letter.on_rejected != "dead_letter":
            return None
        return DeadLetterStore(self.config.resolve(self.config.dead_letter.path))

    def writable_paths(self, checkpoint: bool = True, extra: dict[str, Path] | None = None) -> dict[str, Path]:
        paths = dict(extra or {})
        if checkpoint:
            paths["checkpoint.path"] = self.config.resolve(self.config.checkpoint.path)
        if self.config.dead_letter.on_rejected == "dead_letter":
            paths["dead_letter.path"] = self.config.resolve(self.config.dead_letter.path)
        return paths

    # ------------------------------------------------------------------ stages
    def prepare(self, reads_binlog: bool = True, writes: bool = True) -> tuple[Database, RuleSet, Destination]:
        """Rules, both servers reached and checked, indices created: what every command starts with."""
        config = self.config
        rules = load_rules(config.resolve(config.rules))
        db = patiently("connecting to MySQL", lambda: Database(config.mysql), self.stop, config.retry)
        log.info("connected to %s %s at %s:%s", "MariaDB" if db.info.mariadb else "MySQL", db.info.version,
                 config.mysql.host, config.mysql.port)
        for warning in db.preflight(reads_binlog):
            log.warning("%s", warning)
        rules = resolved_or_stop(rules, db.catalog(rules))
        sink = Destination(config.elasticsearch)
        log.info("%s; %d rule(s): %s", self.reach(sink), len(rules), ", ".join(f"{r.name}->{r.index}" for r in rules.rules))
        self.prepare_indices(rules, sink, writes)
        return db, rules, sink

    def prepare_indices(self, rules: RuleSet, sink: Destination, writes: bool = True) -> None:
        """What a start does to indices before the first write (docs/rules.md "Creating indices"); a dry run
        (`writes` false) creates no index (README: Replay)."""
        if not writes:
            return
        # Here, not at the top: a dry run (and every command that writes no index) does without them.
        from cdc.es.fields import FieldMapper
        from cdc.es.indices import ensure as ensure_indices
        from cdc.es.indices import ensure_aliases, map_unsigned_fields

        config = self.config
        options = ValueOptions.from_config(config.values)
        aliases = config.indices.aliases
        if any(r.create_index is not None for r in rules.rules):  # rules' create_index (cdc/es/indices.py)
            patiently("creating indices", lambda: ensure_indices(rules.rules, sink, options, aliases), self.stop,
                      config.retry)
        # BIGINT UNSIGNED fields of the other rules: a dynamic `long` would reject big values
        patiently("mapping unsigned 64-bit fields", lambda: map_unsigned_fields(rules.rules, sink, options, aliases),
                  self.stop, config.retry)
        if aliases:  # every other fixed name: an alias onto a versioned index (cdc/es/aliases.py)
            patiently("creating indices", lambda: ensure_aliases(rules.rules, sink, options), self.stop, config.retry)
        # Columns the indices have not mapped yet (added while cdc was stopped, or never non-null): their planned
        # fields, before the first document (cdc/es/fields.py); the stream does the same for each new table map.
        mapper = FieldMapper(rules, sink, options)
        patiently("mapping the tables' columns", lambda: mapper.start(rules.rules), self.stop, config.retry)

    def _mapping_fields(self, rules: RuleSet, sink: SearchAdmin) -> Callable[[RowChange], None]:
        """FieldMapper.check, waiting out an outage as the bulk writes do (retry settings, a stop signal
        ends the wait): Elasticsearch down while a table's new definition arrives is no reason to stop."""
        from cdc.es.fields import FieldMapper  # as in prepare_indices: not for a dry run

        mapper = FieldMapper(rules, sink, ValueOptions.from_config(self.config.values))

        def check(change: RowChange) -> None:
            try:
                return mapper.check(change)  # per row: no retry machinery unless it fails
            except CdcError as exc:
                if not exc.retriable:
                    raise
            patiently(f"mapping the new columns of {change.schema}.{change.table}", lambda: mapper.check(change),
                      self.stop, self.config.retry)

        return check

    def reach(self, destination: Destination) -> str:
        """Wait until the search cluster answers; say how it is, naming what answered ("OpenSearch cluster is green")."""
        status = patiently(f"connecting to {destination.product} at {self.config.elasticsearch.addresses}",
                           destination.check, self.stop, self.config.retry)
        return f"{destination.product} cluster is {status}"

    def conversion(self, rules: RuleSet, store: FileCheckpointStore | None) -> Conversion:
        """The conversion stage, built once for the source and the pipeline (README: Code map): the rules'
        `ActionBuilder`, the native row path around it (README: Row path), and around that the rebuild
        requests of documents built from several tables (issue 15, cdc/stream/rebuild.py)."""
        config = self.config
        # Rules with children/lookups: their documents are rebuilt from MySQL reads; the row path
        # converts the other rules, and decodes the rows of the tables joined into those documents
        # (their rebuild requests need the values, which the native path keeps in Rust).
        relational = [r for r in rules.rules if r.relations]
        rebuild = None
        joined: frozenset[tuple[str, str]] = frozenset()
        if relational:
            rebuild = Rebuild(relational, lambda: Database(config.mysql), config.retry, self.epoch(store),
                              ValueOptions.from_config(config.values), stop=self.stop)
            joined = frozenset(t for r in relational for t in ((r.schema, r.table), *r.relation_tables()))
            rules = rules.replace([r for r in rules.rules if not r.relations])
        log.log(*check_mode(config.row_path))
        row_path = RowPath(self.builder(rules, store), config.row_path, decoded=joined)
        converter: Converter = row_path if rebuild is None else rebuild.builder(row_path)
        for observer in self.observers.observers:  # cdc_row_path for `cdc status`
            if hasattr(observer, "watch_row_paths"):
                observer.watch_row_paths(lambda: dict(row_path.tables))
        return Conversion(rules, converter, row_path, rebuild)

    def new_pipeline(self, conversion: Conversion, sink, store: FileCheckpointStore | None, dry_run: bool = False,
                     on_batch: Callable[[list[Action]], None] | None = None, fields_in=None) -> Pipeline:
        """New columns' fields are mapped before their first document (cdc/es/fields.py) in `fields_in`, by
        default the sink. Kafka mode's reader passes the Elasticsearch its writers write to: it maps a field when
        it reads the table map, before it publishes a document that carries the column, so the mapping is in
        place before any writer can write one."""
        config = self.config
        rules = conversion.rules
        self.pipeline = Pipeline(
            rules, sink, store, config.batch, config.retry, dead_letters=self.dead_letters(),
            rebuild=conversion.rebuild, converter=conversion.converter,
            checkpoint_interval=config.checkpoint.min_interval,
            dry_run=dry_run, on_batch=on_batch,
            observer=self.observer(),
            check_columns=None if dry_run else self._mapping_fields(rules, sink if fields_in is None else fields_in),
        )
        if self.stop.is_set():
            self.pipeline.request_stop()
        return self.pipeline

    def source(self, db: Database, rules: RuleSet, conversion: Conversion,
               end: BinlogPosition | None = None) -> BinlogSource:
        """The binlog source of `rules`' tables; on the native path it hands each rows event to the
        conversion's row path (`RowPath.prepare`) on its reader thread."""
        tables = rules.table_filter()  # also lets through tables created later that a pattern matches
        native = self.config.row_path != "python" and NATIVE_AVAILABLE
        return BinlogSource(self.config.mysql, db.info.mariadb, tables, self.config.retry, stop=self.stop, end=end,
                            prepare=conversion.row_path.prepare if native else None, identity=db.identity)

    def epoch(self, store: FileCheckpointStore | None) -> int:
        """Config epoch plus failovers so far. Commands that do not hold the
        checkpoint (replay, snapshot, verify) read it too: with a lower epoch
        their writes would be refused as stale."""
        if store is None:
            store = self.checkpoint_store()
            try:
                store.load()
            except CdcError:
                pass
        return self.config.elasticsearch.version_epoch + store.epoch

    def builder(self, rules: RuleSet, store: FileCheckpointStore | None) -> ActionBuilder:
        """Row -> actions as the stream does them: the same epoch and value options everywhere."""
        return ActionBuilder(rules, self.epoch(store), ValueOptions.from_config(self.config.values))

    def writer(self, sink, stats: Stats, observed: bool = False, dead_letters: bool = True) -> BulkWriter:
        return BulkWriter(sink, self.config.batch, self.config.retry, stats,
                          dead_letters=self.dead_letters() if dead_letters else None,
                          observer=self.observer() if observed else None)

    def observer(self) -> Observers | None:
        """None when nothing listens, so that the hot path pays no per-row hook calls."""
        return self.observers if self.observers.observers else None

    def last_loop(self) -> float | None:
        """When the pipeline's main loop last turned (monotonic); None before streaming starts."""
        return self.pipeline.last_loop if self.pipeline is not None else None


def log_summary(stats: Stats, resume_from: BinlogPosition | str | None, dry_run: bool = False) -> None:
    """The last line of a run. `resume_from`: where the next start resumes (the last checkpoint saved,
    also one saved at start-up before any commit), None when this command keeps no checkpoint."""
    elapsed = max(time.time() - stats.started, 1e-9)
    where = stats.last_saved or resume_from
    log.info("stopped: %d rows, %d transactions, %d actions %s (%d already newer), %d batches, %d retries, "
             "%s, %.1fs", stats.rows, stats.transactions, stats.actions_sent,
             "would be written (dry run)" if dry_run else "written", stats.actions_stale, stats.batches,
             stats.item_retries + stats.request_retries,
             f"last checkpoint {where}" if where is not None else "no checkpoint", elapsed,
             extra={"event": "stopped", "rows": stats.rows, "transactions": stats.transactions,
                    "actions": stats.actions_sent, "position": str(where) if where is not None else None})
