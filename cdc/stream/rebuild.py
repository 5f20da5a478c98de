"""The stream's rebuild stage for documents built from several tables (issue 15).

A row change of a table a rule joins (its root, a child, a lookup) cannot be
turned into a document by itself. `RelationBuilder` turns it into a
`RebuildRequest`, which rides through the pipeline like an action (buffered per
transaction, dropped on rollback, part of a batch); when the pipeline delivers
the batch, `Rebuild.deliver` finds the affected roots, reads them and everything
below them from MySQL in consistent snapshots, and writes the documents before
the batch counts as acknowledged. So the checkpoint never passes a change whose
documents were not rewritten.

Versions (why an older rebuild can never overwrite a newer one): a rebuilt
document is written with the version of the binlog position its consistent
read is consistent with (MariaDB: binlog_snapshot_file/position, lock-free;
MySQL: the position read under FLUSH TABLES WITH READ LOCK, `Database.
_begin_consistent`). The document is a function of the tables at that
position, so of two rebuilds the one with the higher version read the newer
state, and Elasticsearch keeps it whatever order the writes arrive in; equal
versions are the same state, and the second write is refused harmlessly as
stale. The same holds across the stream, snapshots and `cdc verify --repair`,
which all version such documents by their read's position, and after a crash:
a replayed change rebuilds from a newer read, with a higher version.

Why no change is missed: a rebuild is read only at a position at or after the
rows event that asked for it (`deliver` reads again until it is: the binlog can
reach a reader before the transaction is visible to a snapshot), so the read
sees the change. Which roots a change affects is found from the state at that
read (`roots_of`); a root whose link to the changed row was changed meanwhile
was changed by another event, which asks for the roots on both sides of it.

Ordering in the pipeline: every request of one rule carries the same document
key (`_SHARED`, the rule's index), so `InFlight` never sends two batches'
rebuilds of one rule at once: reads and writes follow binlog order, and a
delete's tombstone (kept only `index.gc_deletes`) is never overtaken by an
older read's index. Documents of other rules and plain tables go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

from cdc.config import RetryConfig
from cdc.errors import CdcError, SchemaChanged, SourceError
from cdc.model import Action, ActionType, BinlogPosition, ItemResult, Outcome, RowChange
from cdc.retry import Attempts
from cdc.rules import Rule, document_version
from cdc.rules.relations import (Assembler, Need, Query, RootQuery, document_actions, needs_for, read_documents,
                                 roots_of, roots_page)
from cdc.rules.values import ValueOptions
from cdc.stream.protocols import Converter

log = logging.getLogger("cdc.rebuild")

T = TypeVar("T")

# Stands in for the index of a request: never a real index name (Elasticsearch refuses the NUL).
_SHARED = "\x00rebuild"


class ConsistentReads(Protocol):
    """Reads in one consistent snapshot (cdc/mysql/server.py `Database`)."""

    def consistent_queries(self, work: Callable[[Query], T]) -> tuple[BinlogPosition, T]:
        """Run `work(query)` in one consistent snapshot; the binlog position the snapshot is consistent with."""
        ...

    def close(self) -> None:
        ...


def _no_query(sql: str, args: Sequence) -> list[dict]:
    raise AssertionError(f"no read expected here: {sql}")


class _Progress:
    """A log line every 10 s while a rebuild of more than one chunk of roots goes on, and one at its end."""

    def __init__(self, index: str, after: BinlogPosition, chunk: int):
        self.index, self.after, self.chunk = index, after, chunk
        self.roots = 0
        self.started = self.last = time.monotonic()

    def advance(self, roots: int) -> None:
        self.roots += roots
        if time.monotonic() - self.last >= 10:
            self._log("rebuilding")

    def done(self) -> None:
        if self.roots > self.chunk:
            self._log("rebuilt")

    def _log(self, what: str) -> None:
        self.last = time.monotonic()
        log.info("%s %s documents: %d roots so far (changes up to %s), %.0fs", what, self.index, self.roots,
                 self.after, self.last - self.started,
                 extra={"event": "rebuild_progress", "index": self.index, "roots": self.roots,
                        "position": str(self.after)})


@dataclass(frozen=True)
class RebuildRequest(Action):
    """A change asks for the documents of some rows' roots to be rebuilt (not a write: `Rebuild.deliver`)."""

    rule_no: int = 0
    need: Need | None = None

    @property
    def key(self) -> tuple:
        # One per need in a batch (the last of equal ones wins: same rows); the
        # (index, _id) of every request of a rule is shared, see the module docstring.
        return (_SHARED, self.rule_no, self.need)


class RelationBuilder:
    """The last link of the conversion chain (a `Converter`): the plain rules' actions from the
    converter it wraps, plus a rebuild request for each document built from several tables
    that the change touches."""

    def __init__(self, inner: Converter, rules: Sequence[Rule]):
        self.inner = inner
        self.relational = tuple(rules)
        self._tables: dict[tuple[str, str], list[int]] = {}
        for no, rule in enumerate(self.relational):
            for table in ((rule.schema, rule.table), *rule.relation_tables()):
                self._tables.setdefault(table, []).append(no)

    def actions(self, change: RowChange) -> list[Action]:
        actions = self.inner.actions(change)
        for no in self._tables.get((change.schema, change.table), ()):
            rule = self.relational[no]
            for need in needs_for(rule, change):
                actions.append(RebuildRequest(ActionType.INDEX, _SHARED, rule.index, 0, schema=change.schema,
                                              table=change.table, position=change.position, rule_no=no, need=need))
        return actions


class Rebuild:
    """Rebuild requests -> documents read from MySQL and written, chunk by chunk."""

    def __init__(self, rules: Sequence[Rule], connect: Callable[[], ConsistentReads], retry: RetryConfig,
                 version_epoch: int = 0, value_options: ValueOptions | None = None, chunk: int = 1000,
                 stop: threading.Event | None = None, visible_within: float = 30.0):
        self.rules = tuple(rules)
        self.connect = connect
        self.retry = retry
        self.version_epoch = version_epoch
        self.assemblers = [Assembler(rule, value_options) for rule in self.rules]
        self.chunk = chunk
        self.stop = stop or threading.Event()
        self.visible_within = visible_within
        self._reads: ConsistentReads | None = None
        self._lock = threading.Lock()  # one connection, used by one writer thread at a time
        # Reads made, by kind, for the cost model (README; bench/relations.py).
        # Consistent reads (transactions) by kind, and the statements in them.
        self.reads = {"resolve": 0, "documents": 0, "retried": 0}
        self.statements = 0
        self.documents = 0

    def builder(self, inner: Converter) -> RelationBuilder:
        return RelationBuilder(inner, self.rules)

    def close(self) -> None:
        with self._lock:
            if self._reads is not None:
                self._reads.close()
                self._reads = None

    def deliver(self, actions: list[Action], write: Callable[[list[Action]], None],
                refuse: Callable[[list[ItemResult]], None]) -> list[Action]:
        """Rebuild what the requests among `actions` ask for; the other actions are returned to be written.

        `write` writes actions (BulkWriter.write, or nothing in a dry run);
        `refuse` hands refused roots to the dead-letter/stop decision.
        """
        requests = [a for a in actions if isinstance(a, RebuildRequest)]
        if not requests:
            return actions
        by_rule: dict[int, list[RebuildRequest]] = {}
        for request in requests:
            by_rule.setdefault(request.rule_no, []).append(request)
        for no, found in by_rule.items():
            self._rebuild(no, found, write, refuse)
        return [a for a in actions if not isinstance(a, RebuildRequest)]

    def _rebuild(self, no: int, requests: list[RebuildRequest], write: Callable[[list[Action]], None],
                 refuse: Callable[[list[ItemResult]], None]) -> None:
        rule = self.rules[no]
        after = max(r.position for r in requests if r.position is not None)
        ids: set = set()
        upward: list[Need] = []
        for request in requests:
            assert request.need is not None
            if request.need.path:
                upward.append(request.need)
            else:
                ids |= request.need.pks
        pages: list[RootQuery] = []
        if upward and all(len(need.path) == 1 for need in upward):
            # Lookups of the root only: their roots are paged below, nothing to read first.
            found, pages = roots_of(_no_query, rule, upward)
            ids |= found
        elif upward:
            _, (found, pages) = self._read(lambda query: roots_of(query, rule, upward), after, "resolve")
            ids |= found
        progress = _Progress(rule.index, after, self.chunk)
        todo = sorted(ids, key=lambda v: (type(v).__name__, v))
        for i in range(0, len(todo), self.chunk):
            self._build(no, todo[i:i + self.chunk], after, write, refuse)
            progress.advance(len(todo[i:i + self.chunk]))
        # Roots reached through a lookup: a page of ids at a time (one lookup row may have a million).
        for root_query in pages:
            last = None
            while True:
                _, page = self._read(lambda query: roots_page(query, root_query, last, self.chunk), after, "resolve")
                if not page:
                    break
                self._build(no, page, after, write, refuse)
                progress.advance(len(page))
                if len(page) < self.chunk:
                    break
                last = page[-1]
        progress.done()

    def _build(self, no: int, ids: list, after: BinlogPosition, write: Callable[[list[Action]], None],
               refuse: Callable[[list[ItemResult]], None]) -> None:
        rule = self.rules[no]
        position, fetched = self._read(lambda query: read_documents(query, rule, ids), after, "documents")
        built, refused = document_actions(self.assemblers[no], ids, fetched,
                                          document_version(position, self.version_epoch), after)
        if refused:
            refuse([ItemResult(r.action, Outcome.REJECTED, 0, "cdc_refused", r.reason) for r in refused])
        write(built)
        self.documents += len(built)

    def _counted(self, query: Query) -> Query:
        def counted(sql: str, args: Sequence) -> list[dict]:
            self.statements += 1
            return query(sql, args)
        return counted

    def _read(self, work: Callable[[Query], T], after: BinlogPosition, kind: str) -> tuple[BinlogPosition, T]:
        """A consistent read that sees every change up to `after`; connection failures are retried."""
        attempts = Attempts(self.retry)
        deadline = time.monotonic() + self.visible_within
        while True:
            try:
                with self._lock:
                    if self._reads is None:
                        self._reads = self.connect()
                    position, result = self._reads.consistent_queries(lambda query: work(self._counted(query)))
            except SchemaChanged as exc:
                # Columns are planned from the schema at start-up (a dropped or renamed column
                # fails every read): stop rather than retry forever.
                raise CdcError(f"rebuilding {self.rules[0].index if len(self.rules) == 1 else 'documents'}: a "
                               f"table's columns changed since start-up ({exc}); restart cdc to plan the reads "
                               "again (the checkpoint is before this change)") from None
            except SourceError as exc:
                with self._lock:
                    if self._reads is not None:
                        self._reads.close()
                        self._reads = None
                delay = attempts.failed()
                if delay is None or self.stop.is_set():
                    raise CdcError(f"rebuild read failed: {exc}") from None
                log.warning("rebuild read failed: %s; retrying in %.1fs (attempt %d)", exc, delay, attempts.count,
                            extra={"event": "retry", "error": str(exc)})
                self.stop.wait(delay)
                continue
            self.reads[kind] += 1
            if not position < after:
                return position, result
            # The binlog reached us before the snapshot could see the transaction
            # (a commit is written to the binlog before the engine makes it
            # visible): the read would miss the change. Read again.
            self.reads["retried"] += 1
            if time.monotonic() > deadline:
                raise CdcError(f"a consistent read stays at {position}, before the change at {after} that asked "
                               f"for it, for {self.visible_within:.0f}s: is the server's binlog position stuck?")
            time.sleep(0.01)
