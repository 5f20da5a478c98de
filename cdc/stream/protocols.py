"""The swappable parts of a stream, as the pipeline sees them.

The daemon plugs in `BinlogSource` (cdc/mysql/source.py), the conversion chain
(`Converter`: cdc/app/session.py `Session.conversion`), `Destination`
(cdc/es/destination.py, for every engine) and `FileCheckpointStore`
(cdc/stream/checkpoint.py); unit tests plug in the fakes of tests/unit/fakes.py.
mypy checks both against these. cdc/es/ may import this module (and no other of
cdc/stream/, tests/unit/test_structure.py): its functions take a `SearchAdmin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

from cdc.model import Action, BinlogPosition, BulkResult, RowChange, SourceEvent, StartPoint, StoredDoc

if TYPE_CHECKING:
    from cdc.stream.checkpoint import Checkpoint


class Source(Protocol):
    def events(self, start: StartPoint) -> Iterator[SourceEvent]:
        """Row changes and commits from `start` (a transaction boundary) on, until stopped or at the end."""
        ...

    def close(self) -> None:
        """Stop reading; `events` returns soon after (callable from another thread)."""
        ...


class Converter(Protocol):
    """The conversion stage: a row change -> its actions, through the rules.

    `ActionBuilder` (cdc/rules/actions.py) is one; `RowPath` (cdc/rules/rowpath.py: the
    native path's ready actions) and `RelationBuilder` (cdc/stream/rebuild.py: rebuild
    requests for documents built from several tables) wrap another. The chain is built
    once per command and handed to the pipeline (and its `prepare` to the source)."""

    def actions(self, change: RowChange) -> list[Action]:
        """Raises RowError (cdc/errors.py) for a row the rules cannot convert, naming it."""
        ...


class Sink(Protocol):
    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        """One bulk request; an outcome per action. Raises SinkError subclasses (cdc/errors.py).

        `refresh`: answer only once a refresh made the writes searchable (refresh=wait_for)."""
        ...


class SearchAdmin(Protocol):
    """Reads and index administration on the search cluster, the same for every engine (cdc/es/admin.py).

    What index creation, mappings, aliases, verify, bulk-load settings and rebuilds take; the
    write path takes a `Sink`. Raises SinkError subclasses (cdc/errors.py)."""

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """One request, e.g. ("PUT", "/orders_v1", {...}): (status, decoded body); a 404 is an answer."""
        ...

    def mget(self, refs: Sequence[tuple[str, str, str | None]]) -> list[StoredDoc | None]:
        """(index, id, routing) -> the stored document or None, in order; realtime."""
        ...

    def scan_ids(self, index: str, fields: Sequence[str] = (), batch: int = 1000) -> Iterator[StoredDoc]:
        """Every document of an index or pattern, with its version and only `fields` of its source."""
        ...

    def refresh(self, index: str) -> None:
        ...

    def gc_deletes(self, index: str) -> float | None:
        """The shortest `index.gc_deletes` of the matching indices, in seconds; None if there is none."""
        ...


class CheckpointStore(Protocol):
    def save(self, position: BinlogPosition, gtid: str | None, by_gtid: bool = False) -> "Checkpoint":
        """Durably record a commit whose actions, and all earlier ones, Elasticsearch acknowledged."""
        ...

    def load(self) -> "Checkpoint | None":
        ...
