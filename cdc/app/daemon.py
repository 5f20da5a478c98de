"""`cdc run`: set-up checks, the start plan (cdc/app/start.py), any snapshot, then the pipeline until stopped."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from cdc.app.session import Session, check_writable, log_summary, patiently
from cdc.app.start import ServerFacts, StartPlan, decide_start
from cdc.copy.bulkload import BulkLoad
from cdc.copy.lifecycle import dual_writes, state_path
from cdc.copy.snapshot import Snapshot, SnapshotState, TableProgress
from cdc.errors import CdcError, PreflightError
from cdc.mysql.server import Database
from cdc.model import StartPoint
from cdc.ops import build as operations
from cdc.rules import Rule, RuleSet
from cdc.stream.checkpoint import FileCheckpointStore
from cdc.stream.dualwrite import DualWriteSink, FileTargets
from cdc.stream.observe import Stats

if TYPE_CHECKING:
    from cdc.es.destination import Destination
    from cdc.kafka.client import KafkaPublisher

log = logging.getLogger("cdc")


def run(session: Session, resnapshot: bool = False) -> Stats:
    """Stream until stopped; the checkpoint is locked for the whole run."""
    config = session.config
    check_writable(session.writable_paths())  # at start, not at the first rejected document
    store = session.checkpoint_store()
    store.lock()
    close_operations = operations.start(config, session.observers, session.last_loop)
    stats = Stats()

    def finish(stats: Stats | None, resume_from=None) -> None:
        if stats is not None:
            log_summary(stats, resume_from)
        store.unlock()
        session.observers.on_stopping()
        close_operations()

    try:
        db, rules, destination = session.prepare()
    except BaseException:
        finish(None)
        raise
    try:  # README: Kafka mode; the pipeline is the same, its sink a topic
        sink: Destination | KafkaPublisher
        if config.destination == "kafka":
            from cdc.app import kafka_mode  # Kafka mode only: imports confluent-kafka

            sink = kafka_mode.publisher(session, destination)
        else:
            # Actions for an alias that `cdc rebuild` is filling a new index for go into that index too.
            sink = DualWriteSink(destination, FileTargets(state_path(config), dual_writes))  # type: ignore[assignment]
    except BaseException:
        db.close()
        finish(None)
        raise
    try:
        try:
            start, copy = _start(session, db, rules, store, resnapshot)
            # Start-up checks passed (systemd READY=1): a snapshot is work, not start-up.
            session.observers.on_start(start.position, start.gtid, _saved_at(store))
            # Also with nothing left to copy: a run killed after its copy and before the checkpoint said
            # so has bulk-load settings to put back (cdc/copy/bulkload.py).
            if (copy or SnapshotState.from_json(store.snapshot).bulk_load) and not session.stop.is_set():
                # Kafka mode: the writers fill the indices after the reader's copy ends; no bulk-load settings.
                bulk = config.destination != "kafka" and config.snapshot.bulk_settings
                _snapshot(session, db, rules, sink, store, start, copy, stats, BulkLoad(destination), bulk)
            conversion = session.conversion(rules, store)
            source = session.source(db, rules, conversion)
        finally:
            db.close()
    except BaseException:
        sink.close()
        finish(None)
        raise
    # Where the next start resumes if nothing is committed now: the position saved at start-up.
    resume_from = start.position if not start.by_gtid else f"GTID {start.gtid}"
    if session.stop.is_set():
        sink.close()
        finish(stats, resume_from)
        return stats
    # New columns' fields go into Elasticsearch itself, also in Kafka mode, where the sink is a topic.
    pipeline = session.new_pipeline(conversion, sink, store, fields_in=destination)
    background = _rebuild_on_change(session, rules, destination)
    try:
        return pipeline.run(source, start)
    finally:
        if background is not None:
            # Stopped with the stream (the same stop event): at a chunk's end, its state saved to resume from.
            background.join(60)
        sink.close()
        if config.destination == "kafka":
            destination.close()  # the reader's connection for mapping fields (the sink is the topic)
        finish(pipeline.stats, resume_from)


def _rebuild_on_change(session: Session, rules: RuleSet, destination: "Destination"):
    """indices.on_change: rebuild: the rebuilds start-up calls for, run in the background (cdc/app/rebuild.py
    `in_background`); None when there are none or the setting is `report` (start-up has logged the command)."""
    if session.config.indices.on_change != "rebuild" or session.config.destination != "elasticsearch":
        return None
    from cdc.app import rebuild

    try:
        names = rebuild.needed(session, rules, destination)
    except CdcError as exc:  # Elasticsearch unreachable a moment: the stream waits it out; the rebuild waits a start
        log.warning("indices.on_change: rebuild: cannot tell which indices differ from the rules (%s); not "
                    "rebuilding in this run", exc)
        return None
    return rebuild.in_background(session, names) if names else None


def _start(session: Session, db: Database, rules: RuleSet, store: FileCheckpointStore,
           resnapshot: bool) -> tuple[StartPoint, list[Rule]]:
    """Carry out the start plan: where to stream from, and which tables to copy first."""
    checkpoint = store.load()
    facts = ServerFacts(db.identity, tuple(db.binlog_files()))
    plan = decide_start(checkpoint, facts, session.config, [r.name for r in rules.rules], resnapshot)
    for level, message in plan.notes:
        log.log(level, "%s", message)
    if plan.start is not None:  # resume or failover: the notes above said where
        log.info("streaming from %s", plan.start.position or f"GTID {plan.start.gtid}",
                 extra={"event": "start", "how": plan.how, "position": str(plan.start.position),
                        "gtid": plan.start.gtid})
    store.server, store.epoch = plan.server, plan.epoch
    store.snapshotted, store.snapshot = plan.snapshotted, plan.snapshot
    start = plan.start if plan.start is not None else _fresh_start(session, db, plan)
    assert start.position is not None  # by GTID too: the position the checkpoint had
    if plan.save_now:
        # A fresh start is saved at once, so that a restart before the first commit loses nothing;
        # a failover switch, so that a restart before the first commit here resumes by GTID too.
        store.save(start.position, start.gtid, by_gtid=start.by_gtid)
    if plan.refusal:
        raise PreflightError(plan.refusal)
    return start, [r for r in rules.rules if r.name in plan.copy]


def _fresh_start(session: Session, db: Database, plan: StartPlan) -> StartPoint:
    if plan.fresh_at is None:
        position, gtid = db.current_position()
        log.info("%s: starting at the current end of the binlog, %s",
                 "re-snapshot" if plan.resnapshot else "no checkpoint", position,
                 extra={"event": "start", "how": plan.how, "position": str(position), "gtid": gtid})
        return StartPoint(position, gtid)
    position = plan.fresh_at
    db.check_event_start(position)  # before it is saved: a bad position must not become the checkpoint
    log.info("no checkpoint: starting at configured position %s (no snapshot: the binlog from there is replayed "
             "instead)", position, extra={"event": "start", "how": plan.how, "position": str(position)})
    return StartPoint(position, session.config.start.gtid or db.gtid_at(position))


def _saved_at(store: FileCheckpointStore) -> float | None:
    """When the checkpoint file was last saved; read by a second store so `store`'s state is untouched."""
    checkpoint = FileCheckpointStore(store.path).load()
    return checkpoint.saved_at if checkpoint is not None else None


def _snapshot(session: Session, db: Database, rules: RuleSet, sink, store: FileCheckpointStore, start: StartPoint,
              copy: list[Rule], stats: Stats, loads: BulkLoad, bulk: bool) -> None:
    """Copy tables before streaming; progress rides in the checkpoint, whose position does not move.

    With `bulk`, the empty indices the copy fills get bulk-load settings first and their own back at the end,
    before the checkpoint says the copy is done (cdc/copy/bulkload.py: the order makes it crash-safe)."""
    assert start.position is not None
    position = start.position
    state = SnapshotState.from_json(store.snapshot)
    for rule in copy:
        state.tables.setdefault(rule.name, TableProgress())

    def save(state: SnapshotState) -> None:
        store.snapshot = state.to_json()
        store.save(position, start.gtid, by_gtid=start.by_gtid)

    def save_loading(loading: dict) -> None:
        state.bulk_load = loading
        save(state)

    save(state)
    if bulk and copy:
        patiently("setting bulk-load settings", lambda: loads.begin(copy, state.bulk_load, save_loading),
                  session.stop, session.config.retry)
    snapshot = Snapshot(db, session.builder(rules, store), session.writer(sink, stats, observed=True),
                        session.config.snapshot, save, session.stop, gc_deletes=sink.gc_deletes,
                        row_path=session.config.row_path)
    started = time.monotonic()
    snapshot.run(copy, state)
    if state.pending:
        log.info("snapshot stopped with %s still to copy; it resumes on the next start", ", ".join(state.pending))
        return
    if state.bulk_load:  # also when bulk_settings was turned off since they were set
        patiently("putting index settings back", lambda: loads.end(state.bulk_load), session.stop,
                  session.config.retry)
    store.snapshotted = tuple(sorted(set(store.snapshotted or ()) | {r.name for r in copy}))
    store.snapshot = None
    store.save(position, start.gtid, by_gtid=start.by_gtid)
    log.info("snapshot done: %d rows from %d table(s) in %.1fs; streaming from %s", snapshot.rows_written,
             len(copy), time.monotonic() - started, start.position,
             extra={"event": "snapshot_done", "rows": snapshot.rows_written, "position": str(start.position)})
