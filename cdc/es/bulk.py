"""The `_bulk` request, the same for every engine: the body cdc sends and what its answer means.

`encode_bulk(actions)` makes the NDJSON body; `decode_response(data)` reads the answer's
bytes (the transports' JSON deserializers call it, cdc/es/transport.py);
`parse_bulk_response(actions, body)` gives an `Outcome` per action, in order.
Elasticsearch 7.17, 8, 9 and OpenSearch 2 and 3 take the same body and answer alike
(external versions with 409 for a stale write, `retry_on_conflict`, routing, ingest
pipelines, `filter_path`; their bulk API references), so nothing here knows the engine.

Every write is versioned (`version_type=external`, the version from the binlog
position), so a replay or a retry can never overwrite a newer document: a 409
means "a newer write is already there" and counts as done (`Outcome.STALE`),
and a delete of a missing document (404) is done as well.
"""

from __future__ import annotations

from typing import Sequence

import orjson

from cdc.es.statuses import RETRY_STATUSES
from cdc.errors import SinkError
from cdc.model import UPDATE_RETRY_ON_CONFLICT, Action, ActionType, BulkResult, EncodedActions, ItemResult, Outcome

# Every item has a status, so none is filtered out and items still pair with actions in order;
# `errors` says whether any failed (parse_bulk_response).
BULK_RESPONSE_FIELDS = "errors,items.*.status,items.*.error"


# How a filtered bulk response in which no item failed begins (filter_path=BULK_RESPONSE_FIELDS:
# Elasticsearch writes `errors` before `items`, BulkResponse.toXContent; `took` is filtered out).
_ACKNOWLEDGED = b'{"errors":false,"items":['
_ACKNOWLEDGED_LEN = len(_ACKNOWLEDGED)


class AcknowledgedItems(Sequence):
    """The items of a bulk response with `"errors": false`, from its bytes: counted at once, parsed on demand.

    With `filter_path=errors,items.*.status,items.*.error` and no failed item, every
    item is `{"<op>":{"status":N}}` and nothing else in the body says `"status"`,
    so counting that key counts the items (the count is still checked against the
    actions sent, `parse_bulk_response`). Any `"error"` in the body, or another
    beginning, and the serializer parses the whole body as before.
    """

    def __init__(self, data: bytes):
        self._data = data
        self._count = data.count(b'"status"')
        self._parsed: list | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if self._parsed is None:
            self._parsed = orjson.loads(self._data)["items"]
        return self._parsed[index]


def encode_bulk(actions: Sequence[Action]) -> bytes:
    """The NDJSON body of a `_bulk` request.

    Documents go in as the bytes each action already encoded once (`Action.doc_json`,
    also used to size batches), so they are not serialised again here or on a re-send.
    Action lines are put together from pieces, each index name encoded once per body:
    the same bytes orjson makes of the metadata dict (tests/unit/test_sink.py compares
    them), at about half the cost (issue 19: encode_bulk was a tenth of a native
    catch-up's interpreter time). Actions of the native row path bring their action
    line along (`Action.bulk_meta`).
    """
    if actions.__class__ is EncodedActions:
        return actions.body  # encoded with the actions (a snapshot chunk)
    lines: list[bytes] = []
    append = lines.append
    dumps = orjson.dumps
    names: dict[str, bytes] = {}
    for action in actions:
        line = action.bulk_meta
        if line is not None:  # made with the action from the same fields (native/src/actions.rs)
            append(line)
            kind = action.type
            if kind is ActionType.INDEX:
                append(_doc_json(action))
            elif kind is ActionType.UPDATE:
                append(b'{"doc":' + _doc_json(action) + b',"doc_as_upsert":true}')
            continue
        index = action.index
        name = names.get(index)
        if name is None:
            name = names[index] = dumps(index)
        meta = b'{"_index":' + name + b',"_id":' + dumps(action.doc_id)
        kind = action.type
        # Updates cannot carry an external version (Elasticsearch refuses it), so
        # rules in mode: update write unversioned, deletes included.
        if action.versioned and kind is not ActionType.UPDATE:
            meta += b',"version":%d,"version_type":"external"' % action.version
        if action.routing is not None:
            meta += b',"routing":' + dumps(action.routing)
        if kind is ActionType.INDEX:
            if action.pipeline:
                meta += b',"pipeline":' + dumps(action.pipeline)
            append(b'{"index":' + meta + b'}}')
            append(_doc_json(action))
        elif kind is ActionType.UPDATE:
            # Concurrent updates of one document (several tables building it)
            # conflict on its internal version; Elasticsearch re-applies them itself.
            append(b'{"update":' + meta + b',"retry_on_conflict":%d}}' % UPDATE_RETRY_ON_CONFLICT)
            # The same bytes orjson makes of {"doc": doc, "doc_as_upsert": True}.
            append(b'{"doc":' + _doc_json(action) + b',"doc_as_upsert":true}')
        else:
            append(b'{"delete":' + meta + b'}}')
    append(b"")
    return b"\n".join(lines)


def _doc_json(action: Action) -> bytes:
    doc = action.doc_json
    return doc if doc is not None else b"null"


def classify(action: Action, item: dict) -> ItemResult:
    """One item of a bulk response -> its outcome."""
    status = int(item.get("status", 0))
    error = item.get("error")
    if 200 <= status < 300:
        return ItemResult(action, Outcome.OK, status)
    if status == 404 and action.type is ActionType.DELETE and not error:
        return ItemResult(action, Outcome.OK, status)  # already gone
    error_type = error.get("type") if isinstance(error, dict) else str(error or "")
    reason = error.get("reason") if isinstance(error, dict) else None
    if status == 409 and error_type == "version_conflict_engine_exception":
        if action.type is ActionType.UPDATE or not action.versioned:
            # Unversioned: a conflict means another write got in between, not that
            # a newer one is there. Sending it again is right; counting it done would lose it.
            return ItemResult(action, Outcome.RETRY, status, error_type, reason)
        return ItemResult(action, Outcome.STALE, status, error_type, reason)
    if status in RETRY_STATUSES:
        return ItemResult(action, Outcome.RETRY, status, error_type, reason)
    return ItemResult(action, Outcome.REJECTED, status, error_type, reason)


def parse_bulk_response(actions: Sequence[Action], body: dict) -> BulkResult:
    items = body.get("items") or []
    if len(items) != len(actions):
        raise SinkError(f"bulk response has {len(items)} items for {len(actions)} actions")
    if body.get("errors") is False:
        return _Acknowledged(actions, items)
    # Items come back in request order (Elasticsearch bulk API reference).
    return BulkResult(_classified(actions, items))


def _classified(actions: Sequence[Action], items: list) -> tuple[ItemResult, ...]:
    return tuple(classify(a, next(iter(i.values()))) for a, i in zip(actions, items))


class _Acknowledged(BulkResult):
    """A bulk response with `"errors": false`: every item succeeded, and its results are made only if asked for.

    `errors` is true if any item failed (Elasticsearch and OpenSearch bulk API
    reference, response body); a delete of a missing document is not a failure
    (its 404 comes with `errors: false`, checked on 8.19), and `classify` counts
    it done too. So no item is STALE, RETRY or REJECTED, and `BulkWriter` asks for
    nothing else: a writer no longer makes an `ItemResult` per acknowledged action
    (issue 19: about 0.6 of the 0.9 us per action that parsing a response cost).
    """

    _response: tuple[Sequence[Action], list]

    def __init__(self, actions: Sequence[Action], items: list):
        object.__setattr__(self, "_response", (actions, items))

    @property
    def items(self) -> tuple[ItemResult, ...]:
        actions, items = self._response
        return _classified(actions, items)

    def with_outcome(self, *outcomes: Outcome) -> list[ItemResult]:
        return list(self.items) if Outcome.OK in outcomes else []




def decode_response(data: bytes):
    """A JSON answer's bytes -> its value, with orjson (both transports' JSON deserializer).

    Responses are parsed with orjson: a bulk response holds an item per action, and the
    standard library's json took 10% of a native catch-up's GIL time (issue 19, py-spy).
    While OpenSearch's answers went through opensearch-py's own (the standard library's),
    a 2,000-document request cost 2.48 ms of client CPU there against 1.07 ms on
    Elasticsearch; through this, 0.95 ms (bench/clients.py, issue 29). orjson's errors are
    ValueErrors, which both libraries' serializers report as before (SerializationError).
    """
    if data[:_ACKNOWLEDGED_LEN] == _ACKNOWLEDGED and b'"error"' not in data:
        # A bulk response in which every item succeeded: its items are counted
        # here and parsed only if asked for (orjson still took 9% of a native
        # catch-up's GIL time making a dict per item that nothing reads).
        return {"errors": False, "items": AcknowledgedItems(data)}
    return orjson.loads(data)
