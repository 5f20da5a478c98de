"""The one set of unit-test fakes for the stream's swappable parts (cdc/stream/protocols.py).

Pure logic only: integration tests use the real servers.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from cdc.errors import RequestTooLargeError
from cdc.model import Action, BinlogPosition, BulkResult, ItemResult, Outcome, SourceEvent, StartPoint, StoredDoc
from cdc.stream.checkpoint import Checkpoint
from cdc.stream.protocols import CheckpointStore, SearchAdmin, Sink, Source

STATUS = {Outcome.OK: 201, Outcome.STALE: 409, Outcome.RETRY: 429, Outcome.REJECTED: 400}
ERROR = {
    Outcome.STALE: ("version_conflict_engine_exception", "version conflict"),
    Outcome.RETRY: ("es_rejected_execution_exception", "queue full"),
    Outcome.REJECTED: ("mapper_parsing_exception", "failed to parse field [name]"),
}


# One answer of FakeSink: see its docstring.
Step = BaseException | Outcome | dict[str, Outcome] | None


class FakeSink:
    """Records every bulk request and answers from a script.

    `script` holds one step per call, then `always` is used: None (all OK), an
    exception to raise, an Outcome for every action, or a dict doc_id -> Outcome
    (the others OK). `bad` ids are always rejected with `status`/`error`;
    requests of more than `limit` actions are refused as too large (HTTP 413).
    """

    def __init__(self, log: list | None = None, script: Sequence[Step] = (), always: Step = None,
                 delay: float = 0.0, *, bad: Iterable[str] = (),
                 limit: int | None = None, status: int = 400, error: str = "mapper_parsing_exception"):
        self.calls: list[list[Action]] = []
        self.refreshes: list[bool] = []  # per call: did it ask to wait for a refresh?
        self.log = log if log is not None else []
        self.script = list(script)
        self.always = always
        self.delay = delay
        self.bad, self.limit, self.status, self.error = set(bad), limit, status, error

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        self.calls.append(list(actions))
        self.refreshes.append(refresh)
        self.log.append(("write", tuple(a.doc_id for a in actions)))
        if self.delay:
            time.sleep(self.delay)
        if self.limit is not None and len(actions) > self.limit:
            raise RequestTooLargeError("too large")
        step = self.script.pop(0) if self.script else self.always
        if isinstance(step, BaseException):
            raise step
        items: list[ItemResult] = []
        for action in actions:
            if action.doc_id in self.bad:
                items.append(ItemResult(action, Outcome.REJECTED, self.status, self.error, f"bad {action.doc_id}"))
                continue
            outcome = step if isinstance(step, Outcome) else (step or {}).get(action.doc_id, Outcome.OK)
            error_type, reason = ERROR.get(outcome, (None, None))
            items.append(ItemResult(action, outcome, STATUS[outcome], error_type, reason))
        return BulkResult(tuple(items))

    @property
    def sent(self) -> list[Action]:
        return [a for call in self.calls for a in call]

    @property
    def sent_ids(self) -> list[list[str]]:
        return [[a.doc_id for a in call] for call in self.calls]


class MemoryStore:
    """A checkpoint store in memory: `saves` lists (position, gtid) in order."""

    def __init__(self, log: list | None = None):
        self.saves: list[tuple[BinlogPosition, str | None]] = []
        self.log = log if log is not None else []
        self.last: Checkpoint | None = None

    def save(self, position: BinlogPosition, gtid: str | None, by_gtid: bool = False) -> Checkpoint:
        self.saves.append((position, gtid))
        self.log.append(("save", position, gtid))
        self.last = Checkpoint(position, gtid, time.time(), by_gtid=by_gtid)
        return self.last

    def load(self) -> Checkpoint | None:
        return self.last


class ListSource:
    """A source whose events are what `events()` gives (a list, or a generator function so that a test
    can pause or fail the stream); `close` calls `on_close` (from the pipeline's thread)."""

    def __init__(self, events: Iterable[SourceEvent] | Callable[[], Iterable[SourceEvent]],
                 on_close: Callable[[], None] = lambda: None):
        self._events = events
        self.on_close = on_close
        self.started: list[StartPoint] = []

    def events(self, start: StartPoint) -> Iterator[SourceEvent]:
        self.started.append(start)
        yield from (self._events() if callable(self._events) else self._events)

    def close(self) -> None:
        self.on_close()


START = StartPoint(BinlogPosition("binlog.000001", 4), None)


def doc_of(action: Action) -> Mapping[str, Any]:
    """The document an action carries: the test knows it is a write with one (a delete has none)."""
    assert action.doc is not None, action
    return action.doc


class AdminBase:
    """A `SearchAdmin` whose every request fails the test: a test's fake subclasses it and
    overrides what the code under test may call, with the protocol's signatures (mypy
    checks the overrides), so a fake stands where a `SearchAdmin` is expected."""

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        raise AssertionError(f"unexpected request {method} {path}")

    def mget(self, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
        raise AssertionError(f"unexpected mget of {len(refs)} documents")

    def scan_ids(self, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
        raise AssertionError(f"unexpected scan of {index}")

    def refresh(self, index: str) -> None:
        raise AssertionError(f"unexpected refresh of {index}")

    def gc_deletes(self, index: str) -> float | None:
        raise AssertionError(f"unexpected gc_deletes of {index}")


# mypy checks here that the fakes fit the protocols (cdc/stream/protocols.py)
_sink: Sink = FakeSink()
_store: CheckpointStore = MemoryStore()
_admin: SearchAdmin = AdminBase()
_source: Source = ListSource([])
