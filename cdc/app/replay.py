"""`cdc replay`: re-apply a range of the binlog to Elasticsearch, then exit.

Writes carry versions from the binlog position, so replaying over an up-to-date
index changes nothing and replaying into an empty one rebuilds it. It reads
with its own server_id, so it can run beside the daemon.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from cdc.app.session import Session, check_writable, log_summary, patiently
from cdc.app.start import never_on_server
from cdc.errors import PurgedPositionError
from cdc.model import Action, ActionType, BinlogPosition, StartPoint
from cdc.mysql.server import Database

log = logging.getLogger("cdc")
_kind = operator.attrgetter("type", "index")  # what a dry run counts an action under


@dataclass(frozen=True)
class ReplayRange:
    start: StartPoint
    end: BinlogPosition | None  # None: up to the end of the binlog when the replay starts


def _unused_server_id(session: Session) -> int:
    """mysql.server_id + 1, or the next id no reader is listed with.

    A reader that just stopped (the previous replay) stays listed until the server
    next fails to send it a heartbeat; taking the next free id spares a back-to-back
    replay that wait (issue 16). An explicit --server-id is used as given.
    """
    config = session.config.mysql
    first = config.server_id + 1
    db = patiently("connecting to MySQL", lambda: Database(config), session.stop, session.config.retry)
    try:
        listed = db.replica_ids()
        taken = {config.server_id, db.info.server_id}
    finally:
        db.close()
    if listed is None:  # not allowed to ask: preflight says so, and waits for a clash as before
        return first
    chosen = next(i for i in range(first, first + 1000) if i not in listed | taken)
    if chosen != first:
        log.info("server_id %d is listed in SHOW SLAVE HOSTS (a reader that just stopped stays listed until its "
                 "next heartbeat); this replay reads with server_id %d", first, chosen,
                 extra={"server_id": chosen})
    return chosen


def check_on_server(position: BinlogPosition, files: list[str]) -> None:
    """Refuse a --from-position whose binlog file the server does not have: purged (exit 3), or never there (exit 2)."""
    if position.file in files:
        return
    never = never_on_server(position, files, "--from-position", "Choose a position SHOW BINARY LOGS lists")
    raise never or PurgedPositionError(
        f"binlog file {position.file} (position {position}) is not on the server (it has "
        f"{f'{files[0]} to {files[-1]}' if files else 'none'}): the changes there were purged, and cannot be "
        "replayed. `cdc run --resnapshot` rebuilds an index from the tables.")


def action_json(action: Action) -> dict[str, Any]:
    """One action as a dry run prints it: what the bulk request would carry, and where it came from."""
    return {"action": action.type.value, "index": action.index, "id": action.doc_id,
            "version": action.version if action.versioned else None, "routing": action.routing,
            "pipeline": action.pipeline, "table": f"{action.schema}.{action.table}",
            "position": str(action.position) if action.position else None, "doc": action.doc}


class DryRunReport:
    """What a dry run says about the batches it would write: the first `limit` actions (all without a
    limit) go to `show`, and every action is counted under its type and index ("index shop-orders")."""

    def __init__(self, show: Callable[[dict[str, Any]], None] | None, limit: int | None):
        self.show = show
        self.limit = limit
        self.shown = 0
        # (type, index) -> actions, in the order each was first seen. Counted in C (Counter.update), not
        # by a Python loop per action: `add` runs per batch on the writer holding the pipeline's lock, and
        # shares the GIL with the reader's decoding (issue 28). Named as the summary names them in `counts`.
        self._tally: Counter[tuple[ActionType, str]] = Counter()

    def add(self, actions: list[Action]) -> None:
        show, limit = self.show, self.limit
        if show is not None and (limit is None or self.shown < limit):
            for action in actions if limit is None else actions[:limit - self.shown]:
                show(action_json(action))
                self.shown += 1
        self._tally.update(map(_kind, actions))

    def counts(self) -> dict[str, int]:
        """The summary's `would_write`: actions per "type index", in the order each was first seen."""
        return {f"{kind.value} {index}": n for (kind, index), n in self._tally.items()}


def replay(session: Session, span: ReplayRange, dry_run: bool = False, move_checkpoint: bool = False,
           server_id: int | None = None, show: Callable[[dict[str, Any]], None] | None = None,
           limit: int | None = None) -> dict[str, Any]:
    """Replay `span`; return the summary `cdc replay` prints.

    With `dry_run` nothing is written: each action goes to `show` (at most
    `limit` of them) and the summary counts them per type and index.
    """
    # A replay runs beside the daemon, so it must register with another server_id.
    config = session.config
    if server_id is None:
        server_id = _unused_server_id(session)
    mysql = config.mysql.model_copy(update={"server_id": server_id})
    session.config = config = config.model_copy(update={"mysql": mysql})
    store = None
    if move_checkpoint:
        check_writable(session.writable_paths())
        store = session.checkpoint_store()
        store.lock()
        store.load()  # so that saves keep its snapshot record, server and epoch
    elif not dry_run:
        check_writable(session.writable_paths(checkpoint=False))
    report = DryRunReport(show, limit)

    db, rules, sink = session.prepare(writes=not dry_run)
    try:
        end = span.end
        if end is None:
            end, _ = db.current_position()
        start = span.start
        if start.position is not None and not start.by_gtid:
            check_on_server(start.position, db.binlog_files())
            db.check_event_start(start.position)
            if start.gtid is None:
                start = StartPoint(start.position, db.gtid_at(start.position))
        conversion = session.conversion(rules, store)
        source = session.source(db, rules, conversion, end=end)
        log.info("replaying from %s to %s%s", start.position or f"GTID {start.gtid}", end,
                 " (dry run)" if dry_run else "")
    except BaseException:
        sink.close()
        raise
    finally:
        db.close()
    pipeline = session.new_pipeline(conversion, sink, store, dry_run=dry_run,
                                    on_batch=report.add if dry_run else None)
    try:
        stats = pipeline.run(source, start)
    finally:
        sink.close()
        log_summary(pipeline.stats, None, dry_run=dry_run)
        if store:
            store.unlock()
    summary: dict[str, Any] = {
        "rows": stats.rows, "transactions": stats.transactions,
        "actions": stats.actions_sent, "already_newer": stats.actions_stale,
        "last_commit": str(stats.last_commit.position) if stats.last_commit else None}
    if dry_run:
        summary["would_write"] = counts = report.counts()
        if limit is not None and report.shown < sum(counts.values()):
            summary["shown"] = report.shown
    return summary
