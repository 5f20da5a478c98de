"""Getting actions into Elasticsearch: the one place that decides retry or stop.

`BulkWriter.write(actions)` returns only when every action is acknowledged (or
known to be stale); it splits them into bounded bulk requests, re-sends only the
items that may succeed later (429/5xx) with capped exponential backoff and
jitter, waits out outages, and raises `RejectedActionsError` for items that will
never succeed. Used by the stream and by snapshots alike.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Callable, Iterator, Protocol, Sequence

from cdc.config import BatchConfig, RetryConfig
from cdc.stream.deadletter import DeadLetterStore
from cdc.errors import (RejectedActionsError, RequestTooLargeError, RetryAbandoned, SinkAccessError,
                        SinkUnavailableError)
from cdc.model import Action, EncodedActions, EncodedParts, ItemResult, Outcome
from cdc.stream.protocols import Sink
from cdc.stream.observe import Observer, Stats
from cdc.retry import Attempts

log = logging.getLogger("cdc.delivery")


ACTION_OVERHEAD = 100  # an action's metadata line in a bulk body, about


def action_weight(action: Action) -> int:
    """Approximate bytes of an action in a bulk body (metadata line ~100 bytes).

    The document is encoded once per action (`Action.doc_json`); the bulk body reuses those bytes.
    """
    doc = action.doc_json
    return ACTION_OVERHEAD + (len(doc) if doc is not None else 0)


def chunks(actions: Sequence[Action], max_actions: int, max_bytes: int) -> Iterator[Sequence[Action]]:
    """Split actions into bulk requests of bounded size, keeping their order."""
    if isinstance(actions, EncodedParts):  # a snapshot chunk encoded in parts: each as encoded, if it fits
        for part in actions.parts:
            yield from chunks(part, max_actions, max_bytes)
        return
    if isinstance(actions, EncodedActions) and len(actions) <= max_actions and (actions.weight <= max_bytes
                                                                                 or len(actions) == 1):
        # One request as it was encoded (a snapshot chunk); a bigger one is split below. An action that
        # alone weighs more than max_bytes is a request of its own either way.
        yield actions
        return
    chunk: list[Action] = []
    size = 0
    for action in actions:
        weight = action_weight(action)
        if chunk and (len(chunk) >= max_actions or size + weight > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += weight
    if chunk:
        yield chunk


def describe_rejections(rejected: Sequence[ItemResult]) -> str:
    lines = [f"Elasticsearch rejected {len(rejected)} document(s); stopping without moving the checkpoint:"]
    for item in rejected[:5]:
        a = item.action
        lines.append(f"  {a.type.value} {a.index}/{a.doc_id} from {a.schema}.{a.table} at {a.position}: "
                     f"{item.status} {item.error_type}: {item.reason}")
    if len(rejected) > 5:
        lines.append(f"  ... and {len(rejected) - 5} more")
    if any(_is_mapping_conflict(item) for item in rejected):
        lines.append(_MAPPING_HINT)
    return "\n".join(lines)


# A value the index's mapping cannot take. Tried as a new user would, the usual cause is a JSON column
# whose values differ in type from row to row ({"size": 1} then {"size": 2.5} or {"size": "L"}, a scalar
# where an object was mapped): dynamic mapping fixed the type from the first document.
_MAPPING_CONFLICT = re.compile(r"tried to parse field .* as object|cannot be changed from type|failed to parse field")
_MAPPING_HINT = ("  The index's mapping takes another type than these documents give. For a JSON column, set "
                 "`json_mapping: flattened` (or `disabled`) in its rule and move the index to the new mapping with "
                 "`cdc rebuild`; for another column, fix its field in the index template or the rule's `convert:`. "
                 "To keep going and set such documents aside instead, set `dead_letter.on_rejected: dead_letter`.")


def _is_mapping_conflict(item: ItemResult) -> bool:
    return item.error_type in ("document_parsing_exception", "mapper_parsing_exception", "illegal_argument_exception") \
        and bool(_MAPPING_CONFLICT.search(item.reason or ""))


class Abort(Protocol):
    """What BulkWriter.abort must be: a threading.Event, or something that waits like one."""

    def wait(self, timeout: float) -> bool:
        ...


# Per-item statuses that mean "this user may not": 401 bad credentials, 403 no privilege.
ACCESS_STATUSES = frozenset({401, 403})


class BulkWriter:
    def __init__(self, sink: Sink, batch: BatchConfig, retry: RetryConfig, stats: Stats | None = None,
                 observer: Observer | None = None, abort: Abort | None = None,
                 dead_letters: DeadLetterStore | None = None,
                 wait_for_refresh: Callable[[Action], bool] | None = None):
        self.sink = sink
        # Actions whose requests must wait until they are searchable (rules' refresh: wait_for).
        self.wait_for_refresh = wait_for_refresh
        # Where rejected actions go instead of stopping the daemon (dead_letter.on_rejected).
        self.dead_letters = dead_letters
        self.batch = batch
        self.retry = retry
        self.stats = stats or Stats()
        self.observer = observer or Observer()
        # Set to give up waiting between retries (only where giving up is safe:
        # nothing is acknowledged that was not written).
        self.abort = abort

    def write(self, actions: Sequence[Action]) -> None:
        for chunk in chunks(actions, self.batch.max_actions, self.batch.max_bytes):
            self._write_chunk(chunk)

    def _write_chunk(self, pending: Sequence[Action]) -> None:
        attempts = Attempts(self.retry)
        while pending:
            started = time.monotonic()
            try:
                wait = self.wait_for_refresh
                if wait is not None and any(map(wait, pending)):
                    result = self.sink.write(pending, refresh=True)
                else:
                    result = self.sink.write(pending)
            except RequestTooLargeError as exc:
                if len(pending) > 1:  # halve until each part fits
                    half = len(pending) // 2
                    self._write_chunk(pending[:half])
                    self._write_chunk(pending[half:])
                    return
                self._reject([ItemResult(pending[0], Outcome.REJECTED, 413, "request_too_large", str(exc))])
                return
            except SinkUnavailableError as exc:
                self.stats.request_retries += 1
                self._wait_or_give_up(attempts, f"bulk request failed: {exc}", len(pending), "request")
                continue
            rejected = result.with_outcome(Outcome.REJECTED)
            stale = result.with_outcome(Outcome.STALE)
            retry = result.with_outcome(Outcome.RETRY)
            self.observer.on_bulk(len(pending), time.monotonic() - started,
                                  len(pending) - len(rejected) - len(stale) - len(retry),
                                  len(stale), len(retry), len(rejected))
            denied = [r for r in rejected if r.status in ACCESS_STATUSES]
            if denied:
                # A missing privilege is the operator's to fix, and every later document
                # would be refused too: stop with the position unchanged, dead-letter nothing.
                raise SinkAccessError(
                    f"Elasticsearch refused {len(denied)} of {len(pending)} actions for lack of access "
                    f"(docs/security.md, Minimal Elasticsearch role):\n{describe_rejections(denied)}", tuple(denied))
            if rejected:
                self._reject(rejected)
            self.stats.actions_stale += len(stale)
            self.stats.actions_sent += len(pending) - len(retry) - len(rejected)
            if retry:
                self.stats.item_retries += len(retry)
                first = retry[0]
                self._wait_or_give_up(attempts,
                                      f"{len(retry)} of {len(pending)} items failed with {first.status} "
                                      f"({first.error_type}: {first.reason})", len(retry), "items")
            pending = [r.action for r in retry]  # in request order: per-id order is kept

    def refuse(self, refused: Sequence[ItemResult]) -> None:
        """Actions cdc itself cannot make (a root over max_children, cdc/stream/rebuild.py): the same decision."""
        if refused:
            self._reject(refused)

    def _reject(self, rejected: Sequence[ItemResult]) -> None:
        """Stop, or set the documents aside durably; either way nothing passes silently."""
        if self.dead_letters is None:
            raise RejectedActionsError(describe_rejections(rejected), tuple(rejected))
        self.dead_letters.add(rejected)
        self.stats.dead_lettered += len(rejected)
        self.observer.on_dead_letter(len(rejected))
        for item in rejected:
            a = item.action
            log.error("dead letter: %s %s/%s from %s.%s at %s: %s %s: %s", a.type.value, a.index, a.doc_id,
                      a.schema, a.table, a.position, item.status, item.error_type, item.reason,
                      extra={"event": "dead_letter", "table": f"{a.schema}.{a.table}", "doc_id": a.doc_id,
                             "index": a.index,
                             "position": str(a.position), "error": item.reason})

    def _wait_or_give_up(self, attempts: Attempts, why: str, count: int, kind: str) -> None:
        delay = attempts.failed()
        if delay is None:
            raise SinkUnavailableError(f"{why}; gave up after {attempts.count} attempts")
        self.observer.on_retry(kind, count, delay, why)
        log.warning("%s; retrying %d actions in %.1fs (attempt %d)", why, count, delay, attempts.count,
                    extra={"event": "retry", "actions": count, "error": why})
        if self.abort is not None:
            if self.abort.wait(delay):
                raise RetryAbandoned(f"{why}; stopped while waiting to retry")
        else:
            time.sleep(delay)
