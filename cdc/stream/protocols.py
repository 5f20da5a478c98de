"""The swappable parts of a stream, as the pipeline sees them.

The daemon plugs in `BinlogSource` (cdc/mysql/source.py), `ElasticsearchSink`
(cdc/es/sink.py) and `FileCheckpointStore` (cdc/stream/checkpoint.py); unit
tests plug in the fakes of tests/unit/fakes.py. mypy checks both against these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

from cdc.model import Action, BinlogPosition, BulkResult, SourceEvent, StartPoint

if TYPE_CHECKING:
    from cdc.stream.checkpoint import Checkpoint


class Source(Protocol):
    def events(self, start: StartPoint) -> Iterator[SourceEvent]:
        """Row changes and commits from `start` (a transaction boundary) on, until stopped or at the end."""
        ...

    def close(self) -> None:
        """Stop reading; `events` returns soon after (callable from another thread)."""
        ...


class Sink(Protocol):
    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        """One bulk request; an outcome per action. Raises SinkError subclasses (cdc/errors.py).

        `refresh`: answer only once a refresh made the writes searchable (refresh=wait_for)."""
        ...


class CheckpointStore(Protocol):
    def save(self, position: BinlogPosition, gtid: str | None, by_gtid: bool = False) -> "Checkpoint":
        """Durably record a commit whose actions, and all earlier ones, Elasticsearch acknowledged."""
        ...

    def load(self) -> "Checkpoint | None":
        ...
