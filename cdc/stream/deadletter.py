"""Documents Elasticsearch rejected for good, kept so that nothing is lost.

With `dead_letter.on_rejected: dead_letter`, a rejected action (mapping or parse
error, a document over the size limit) is appended here, durably (fsync), before
the batch counts as done and the checkpoint moves past it. Each entry keeps the
whole action, where it came from and why it failed, so `cdc dlq retry` can send
it again once the cause is fixed. The file is JSON lines; changes other than
appends rewrite it atomically under a lock, so the daemon and `cdc dlq` can
work on it at the same time.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from cdc.durable import atomic_write, sync_directory
from cdc.errors import DeadLetterError
from cdc.model import Action, ActionType, BinlogPosition, ItemResult
from cdc.stream.protocols import Sink


@dataclass(frozen=True)
class DeadLetter:
    id: str
    time: float
    action: Action
    status: int
    error_type: str | None
    reason: str | None

    def to_json(self) -> dict:
        a = self.action
        try:
            doc, unparsed = a.doc, None
        except ValueError:
            # Only a document that came as JSON text and is not JSON (a Kafka message another
            # producer wrote: cdc/kafka/messages.py leaves parsing to Elasticsearch, which rejected
            # it): the letter keeps the text, so it says what was sent.
            doc, unparsed = None, (a.doc_json or b"").decode("utf-8", "replace")
        action = {"type": a.type.value, "index": a.index, "doc_id": a.doc_id, "version": a.version,
                  "doc": doc, "routing": a.routing, "pipeline": a.pipeline, "versioned": a.versioned}
        if unparsed is not None:
            action["doc_json"] = unparsed
        return {
            "id": self.id, "time": self.time, "status": self.status, "error_type": self.error_type,
            "reason": self.reason, "schema": a.schema, "table": a.table, "doc_id": a.doc_id,
            "position": str(a.position) if a.position else None, "action": action,
        }

    @classmethod
    def from_json(cls, data: dict) -> "DeadLetter":
        a = data["action"]
        action = Action(ActionType(a["type"]), a["index"], a["doc_id"], int(a["version"]), a.get("doc"),
                        a.get("routing"), data.get("schema", ""), data.get("table", ""),
                        BinlogPosition.parse(data["position"]) if data.get("position") else None,
                        pipeline=a.get("pipeline"), versioned=a.get("versioned", True))
        return cls(data["id"], float(data["time"]), action, int(data["status"]), data.get("error_type"),
                   data.get("reason"))


class DeadLetterStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add(self, items: Sequence[ItemResult]) -> list[DeadLetter]:
        """Append rejected items; returns only after they are on disk."""
        letters = [DeadLetter(uuid.uuid4().hex[:12], time.time(), i.action, i.status, i.error_type, i.reason)
                   for i in items]
        data = "".join(json.dumps(letter.to_json(), default=str) + "\n" for letter in letters).encode()
        with self._locked():
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                try:
                    # os.write may write part of the data (a filesystem nearly full writes what fits, and the
                    # next write raises ENOSPC): write all of it, or take the torn tail back off, so the file
                    # never holds half a letter and no letter is reported written that is not.
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError as exc:
                    with suppress(OSError):
                        os.ftruncate(fd, size)
                        os.fsync(fd)
                    raise DeadLetterError(f"{self.path}: cannot write {len(letters)} dead letter(s): "
                                          f"{exc.strerror or exc}") from None
            finally:
                os.close(fd)
            if created:  # a new file's directory entry is durable only once the directory is synced
                sync_directory(self.path.parent)
        return letters

    def list(self) -> list[DeadLetter]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        letters = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                letters.append(DeadLetter.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise DeadLetterError(f"{self.path}:{n}: unreadable dead letter ({exc})") from None
        return letters

    def count(self) -> int:
        return len(self.list())

    def remove(self, ids: set[str]) -> int:
        """Drop these entries (after a successful retry, or a purge); returns how many went."""
        if not ids or not self.path.exists():
            # Nothing to drop: leave no file or lock behind (`cdc dlq purge` and `retry` on a store
            # that was never written, e.g. with dead_letter.on_rejected: stop).
            return 0
        with self._locked():
            letters = self.list()
            keep = [letter for letter in letters if letter.id not in ids]
            atomic_write(self.path, "".join(json.dumps(letter.to_json(), default=str) + "\n" for letter in keep), 0o600)
        return len(letters) - len(keep)


def retry(store: DeadLetterStore, sink: Sink, ids: set[str] | None = None) -> tuple[list[str], list[DeadLetter]]:
    """Send dead letters again; those Elasticsearch now accepts (or already has newer) leave the store.

    Returns (ids done, letters still failing). Versions are the original ones,
    so a retry can never overwrite a newer write made since.
    """
    from cdc.model import Outcome  # local: keeps the module's import list about storage

    letters = [letter for letter in store.list() if ids is None or letter.id in ids]
    done: list[str] = []
    failing: list[DeadLetter] = []
    for start in range(0, len(letters), 500):
        part = letters[start:start + 500]
        result = sink.write([letter.action for letter in part])
        for letter, item in zip(part, result.items):
            if item.outcome in (Outcome.OK, Outcome.STALE):
                done.append(letter.id)
            else:
                failing.append(DeadLetter(letter.id, letter.time, letter.action, item.status, item.error_type,
                                          item.reason))
    store.remove(set(done))
    return done, failing
