"""`cdc dlq`: list, show, re-send and remove documents Elasticsearch rejected (dead_letter.on_rejected: dead_letter)."""

from __future__ import annotations

from cdc.config import Config
from cdc.es.destination import Destination
from cdc.stream.deadletter import DeadLetter, DeadLetterStore
from cdc.stream.deadletter import retry as retry_dead_letters


def store(config: Config) -> DeadLetterStore:
    return DeadLetterStore(config.resolve(config.dead_letter.path))


def find(config: Config, letter_id: str) -> DeadLetter | None:
    return next((letter for letter in store(config).list() if letter.id == letter_id), None)


def retry(config: Config, ids: set[str] | None) -> tuple[list[str], list[DeadLetter]]:
    """Send dead letters again (all, or `ids`); those that now succeed leave the store."""
    sink = Destination(config.elasticsearch)
    try:
        return retry_dead_letters(store(config), sink, ids)
    finally:
        sink.close()


def purge(config: Config, ids: set[str] | None) -> int:
    """Remove dead letters for good: `ids`, or every one for None."""
    letters = store(config)
    return letters.remove({letter.id for letter in letters.list()} if ids is None else ids)
