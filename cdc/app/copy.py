"""`cdc snapshot` and `cdc verify`: copy tables again, or compare them with their indices, beside the daemon."""

from __future__ import annotations

import logging
from typing import Callable

from cdc.app.session import Session, check_writable, chosen_rules
from cdc.copy.snapshot import OnDemandProgress, Pace, Snapshot, SnapshotState, TableReader
from cdc.copy.verify import Verifier, VerifyReport
from cdc.model import BinlogPosition
from cdc.rules.values import ValueOptions
from cdc.stream.checkpoint import FileCheckpointStore
from cdc.stream.observe import Stats

log = logging.getLogger("cdc")


def snapshot(session: Session, tables: list[str] | None, where: str | None) -> SnapshotState:
    """Copy tables again while the daemon streams (its checkpoint is not touched).

    Progress is kept in <checkpoint>.snapshot.json; a run with the same tables
    and condition resumes where the previous one stopped.
    """
    config = session.config
    progress_path = config.resolve(config.checkpoint.path + ".snapshot.json")
    check_writable(session.writable_paths(checkpoint=False, extra={"checkpoint.path (.snapshot.json)": progress_path}))
    db, rules, sink = session.prepare(reads_binlog=False)
    try:
        chosen = chosen_rules(rules, tables)
        progress = OnDemandProgress(progress_path)
        state = progress.load([r.name for r in chosen], where)
        copy = Snapshot(db, session.builder(rules, None), session.writer(sink, Stats()), config.snapshot,
                        progress.save, session.stop, gc_deletes=sink.gc_deletes, where=where, online=True,
                        row_path=config.row_path)
        copy.run(chosen, state)
        if not state.pending:
            progress.finish()
        log.info("snapshot %s: %d rows written", "finished" if not state.pending else "stopped", copy.rows_written)
        return state
    finally:
        db.close()
        sink.close()


def daemon_caught_up(store: FileCheckpointStore) -> Callable[[BinlogPosition], bool]:
    """Has the daemon on this checkpoint indexed everything up to a position? (`cdc verify` waits for it.)"""

    def caught_up(position: BinlogPosition) -> bool:
        if not store.is_locked_by_other():
            return True  # no daemon: nothing is on its way to Elasticsearch
        checkpoint = store.load()
        return checkpoint is not None and checkpoint.position >= position

    return caught_up


def verify(session: Session, tables: list[str] | None, sample: int | None = None, repair: bool = False,
           interactive: bool | None = None) -> VerifyReport:
    """Compare the indices with their tables, also while the daemon streams (cdc/copy/verify.py).

    Reads like `cdc snapshot` and writes only with `repair`; the daemon's checkpoint
    is only read, to know when the daemon has indexed everything up to a re-read.
    """
    config = session.config
    db, rules, sink = session.prepare(reads_binlog=False, writes=repair)
    try:
        chosen = chosen_rules(rules, tables)
        store = session.checkpoint_store()
        log.info("verify: %d table(s)%s; a daemon is %s", len(chosen), ", repairing" if repair else "",
                 "running on this checkpoint" if store.is_locked_by_other() else "not running")
        # Repairs are checked right after; a rejected one stops verify rather than going to the store.
        writer = session.writer(sink, Stats(), dead_letters=False) if repair else None
        verifier = Verifier(TableReader(db, config.snapshot.chunk_size), sink, rules, session.epoch(None),
                            ValueOptions.from_config(config.values), daemon_caught_up(store), session.stop, writer=writer,
                            sample=sample, interactive=interactive, max_chunk_age=config.snapshot.max_chunk_age,
                            pace=Pace(config.snapshot.max_rows_per_second))
        return verifier.run(chosen)
    finally:
        db.close()
        sink.close()
