"""Typed seams between the stages: source -> rules -> batch -> sink -> checkpoint.

Nothing here imports pymysqlreplication or elasticsearch; each stage translates
its library's objects into these frozen values at its own boundary.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import orjson

_FILE_SEQ = re.compile(r"\.(\d+)$")


class _computed_once:
    """Like functools.cached_property, minus the lock it takes on every miss before Python 3.12.

    The value is stored in the instance's __dict__, which then shadows this
    descriptor; that also works on frozen dataclasses. Two threads computing it
    at once would both store the same value.
    """

    def __init__(self, compute):
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@functools.total_ordering
@dataclass(frozen=True)
class BinlogPosition:
    """A place in the binlog: `pos` is the byte offset of the *next* event in `file`.

    Ordered by (file number, pos), never by the file name as text: the server
    numbers files with at least six digits and goes on past 999999
    (`binlog.1000000` follows `binlog.999999`, which sorts after it as text).
    """

    file: str
    pos: int

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, BinlogPosition):
            return NotImplemented
        if self.file == other.file:  # the common case, without parsing the names
            return self.pos < other.pos
        return (self.file_seq, self.pos) < (other.file_seq, other.pos)

    @classmethod
    def parse(cls, text: str) -> "BinlogPosition":
        """Parse ``FILE:POS`` (as printed by ``str()``), e.g. ``mysql-bin.000003:157``."""
        name, sep, pos = text.rpartition(":")
        if not sep or not name or not pos.isdigit():
            raise ValueError(f"expected FILE:POS (e.g. binlog.000003:4), got {text!r}")
        return cls(name, int(pos))

    @_computed_once
    def file_seq(self) -> int:
        """The numeric suffix of the file name; binlog files are numbered in order.

        Computed once per position: ordering and document versions ask for it per event and per row."""
        match = _FILE_SEQ.search(self.file)
        if not match:
            raise ValueError(f"binlog file name {self.file!r} has no numeric suffix")
        return int(match.group(1))

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"


class Op(enum.Enum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


class ColumnKind(enum.Enum):
    """What a column holds, as far as value conversion needs to know.

    The source maps the server's field types to these; the converter never sees
    a MySQL type code.
    """

    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"  # single precision: rendered as the shortest decimal that is the same float32
    DOUBLE = "double"
    DATE = "date"
    DATETIME = "datetime"
    TIMESTAMP = "timestamp"
    TIME = "time"
    YEAR = "year"
    STRING = "string"
    BINARY = "binary"
    ENUM = "enum"
    SET = "set"
    BIT = "bit"
    JSON = "json"
    GEOMETRY = "geometry"
    POINT = "point"  # a POINT column (the binlog says GEOMETRY; the rules know it from information_schema)
    OTHER = "other"


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    # BIT(n) width, needed to tell a BIT(1) flag from a bit field.
    bits: int | None = None
    # BINARY(n): values are n bytes. The binlog drops trailing 0x00 pad bytes
    # (SELECT returns them), so the converter pads back to n.
    pad_to: int | None = None
    # BIGINT UNSIGNED (binlog: LONGLONG with the unsigned flag): only the index mapping needs to know
    # (unsigned_long, cdc/es/fields.py); values convert the same, so equality ignores it.
    unsigned_64: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class RowChange:
    """One changed row, decoded with the schema the binlog carried at that time.

    `position` is where the row's event ended: an ordering key for document
    versions, never a place to resume from (see `Commit`).
    """

    op: Op
    schema: str
    table: str
    columns: tuple[Column, ...]
    before: Mapping[str, Any] | None  # None for INSERT
    after: Mapping[str, Any] | None  # None for DELETE
    position: BinlogPosition
    timestamp: int
    # Index of the row inside its rows event (a statement can change many rows).
    row_index: int = 0


@dataclass(frozen=True)
class StartPoint:
    """Where to start reading: always a transaction boundary.

    With `by_gtid`, the server finds the position from the GTID state (used to
    replay by GTID, e.g. on a new primary after failover); otherwise file/pos.
    """

    position: BinlogPosition | None
    gtid: str | None = None
    by_gtid: bool = False


@dataclass(frozen=True)
class Commit:
    """The end of a transaction: the only kind of position that is safe to resume from."""

    position: BinlogPosition
    gtid: str | None  # the server's GTID state after this transaction, if known
    timestamp: int


@dataclass(frozen=True)
class Rollback:
    """A transaction that ended in ROLLBACK in the binlog: discard its rows."""

    position: BinlogPosition


@dataclass(frozen=True)
class StreamRestarted:
    """The source reconnected and resumes from its last commit: drop the open transaction."""

    position: BinlogPosition


@dataclass(frozen=True)
class Heartbeat:
    """Nothing new, but the connection is alive (keeps lag and watchdogs honest)."""

    timestamp: float


@dataclass(frozen=True)
class RowsData:
    """A rows event handed over undecoded, for the native row path (docs/row-path.md "Row path").

    `readers` says how each column is read from `body` (the rows, after the
    columns-present bitmaps); `decode` gives the same event as `RowChange`s
    through the library, for tables or values the native plan does not do.
    """

    op: Op
    schema: str
    table: str
    columns: tuple[Column, ...]
    readers: tuple[tuple[Any, ...] | None, ...]  # None: a column only the library reads
    body: bytes
    position: BinlogPosition
    timestamp: int
    decode: Callable[[], list[RowChange]] = field(compare=False, repr=False)


SourceEvent = RowChange | Commit | Rollback | StreamRestarted | Heartbeat


# Per update action: how often Elasticsearch itself re-applies a partial update
# that lost a race with another write to the same document (its `_bulk` line says so:
# cdc/es/bulk.py encode_bulk, native/src/actions.rs).
UPDATE_RETRY_ON_CONFLICT = 3


class ActionType(enum.Enum):
    INDEX = "index"
    DELETE = "delete"
    UPDATE = "update"  # partial document with doc_as_upsert (rules in `mode: update`)


@dataclass(frozen=True)
class Action:
    """One Elasticsearch write, with everything needed to explain it if it fails."""

    type: ActionType
    index: str
    doc_id: str
    version: int
    doc: Mapping[str, Any] | None = None
    routing: str | None = None
    # Where it came from, for error messages and dead letters.
    schema: str = ""
    table: str = ""
    position: BinlogPosition | None = None
    pipeline: str | None = None  # ingest pipeline (index actions only)
    # False for `mode: update` rules: Elasticsearch refuses external versions on
    # updates, so their writes (and deletes) are sent without a version.
    versioned: bool = True

    @_computed_once
    def doc_json(self) -> bytes | None:
        """`doc` as JSON, encoded on first use and kept: the batch's size accounting,
        the split into bulk requests and the bulk body (also when it is sent again)
        all use these same bytes. Not a field, so equality and `replace` ignore it;
        the document must not be changed once the action exists."""
        if self.doc is None:
            return None
        # orjson's result keeps its whole output buffer (4 KB for a 300-byte document);
        # kept for a batch's lifetime that is ten times the JSON. The copy is exact.
        return bytes(memoryview(orjson.dumps(self.doc)))

    # The action line of its `_bulk` request, made with the action by the native row path
    # (native/src/actions.rs, the same bytes `cdc.es.bulk.encode_bulk` makes from the
    # fields); None here: encode_bulk makes it. Not a field: `replace` gives an action
    # without it, whose line is made from its (new) fields.
    bulk_meta: ClassVar[bytes | None] = None

    @_computed_once
    def key(self) -> tuple:
        """Actions with the same key replace each other in a batch (the last one wins).

        Routing is part of it: a routing change is "delete at the old routing,
        index at the new", two writes that must both be sent. Partial updates
        from different tables build one document together, so none may replace
        another's. Computed once (the batch and the writers ask per action); the
        native row path makes it with the action.
        """
        if self.type is ActionType.UPDATE:
            return (self.index, self.doc_id, self.routing, self.schema, self.table)
        return (self.index, self.doc_id, self.routing)

    @_computed_once
    def document(self) -> tuple[str, str]:
        """(index, _id): the document it writes, whatever its routing (per-document order, `InFlight`)."""
        return (self.index, self.doc_id)


class DocFromJson:
    """`doc` of an Action whose document came as JSON (`doc_json` in its __dict__, from the native
    row path or a Kafka message): decoded on first use (dead letters, dry runs), then kept."""

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        data = instance.__dict__["doc_json"]
        doc = instance.__dict__["doc"] = None if data is None else orjson.loads(data)
        return doc


class EncodedActions(Sequence[Action]):
    """Actions whose `_bulk` body is already encoded; the `Action` objects are made only when asked for.

    A snapshot chunk of the native row path (cdc/copy/native.py): its body comes
    from Rust in one piece (native/src/text.rs `snapshot_body`), the same bytes
    `encode_bulk` makes of the actions. The writer sends `body` as it is and reads
    only the count from a response in which every item succeeded; a failed item,
    a dead letter, a split or any other look at an action makes them all once
    (`make`, deterministic: the same rows give the same actions).
    """

    __slots__ = ("body", "weight", "_count", "_make", "_actions")

    def __init__(self, body: bytes, count: int, weight: int, make: Callable[[], list[Action]]):
        self.body = body
        self.weight = weight  # the actions' `action_weight` summed: how batches are sized
        self._count = count
        self._make = make
        self._actions: list[Action] | None = None

    @property
    def actions(self) -> list[Action]:
        if self._actions is None:
            actions = self._make()
            if len(actions) != self._count:
                raise RuntimeError(f"{len(actions)} actions made for a body of {self._count}")
            self._actions = actions
        return self._actions

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        return self.actions[index]

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)


class EncodedParts(Sequence[Action]):
    """A snapshot chunk too big for one bulk request: `EncodedActions` parts, one request each.

    `snapshot_body` (native/src/text.rs) splits a chunk as `cdc.stream.delivery.chunks`
    would (`batch.max_actions`, `batch.max_bytes`), so a chunk bigger than a request
    still goes out as bodies made in Rust, never as actions made one by one. Asked for,
    a part's actions are its slice of the chunk's, made once (cdc/copy/native.py).
    """

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[EncodedActions]):
        self.parts = tuple(parts)

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __getitem__(self, index):
        return [action for part in self.parts for action in part.actions][index]

    def __iter__(self) -> Iterator[Action]:
        for part in self.parts:
            yield from part.actions


class Outcome(enum.Enum):
    OK = "ok"
    STALE = "stale"  # external version conflict: a newer write is already there
    RETRY = "retry"  # 429 / 5xx / timeout: send again later
    REJECTED = "rejected"  # the document is bad; retrying will not help


@dataclass(frozen=True)
class ItemResult:
    action: Action
    outcome: Outcome
    status: int
    error_type: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class BulkResult:
    items: tuple[ItemResult, ...] = field(default_factory=tuple)

    def with_outcome(self, *outcomes: Outcome) -> list[ItemResult]:
        return [item for item in self.items if item.outcome in outcomes]


@dataclass(frozen=True)
class StoredDoc:
    """A document as Elasticsearch holds it, read back by `cdc verify`."""

    index: str
    doc_id: str
    version: int  # _version: the binlog-position version of its last write (internal for mode: update)
    source: Mapping[str, Any] | None = None  # None when only ids were asked for
    routing: str | None = None
