"""Actions as Kafka messages, and back: the documented, versioned format of Kafka mode (pure).

Key: ``<index>/<id>`` in UTF-8. Elasticsearch index names cannot contain ``/``,
so the key names one document unambiguously; the producer's partitioner
hashes it, so every action of one document lands in one partition, in order.
Routing is not part of the key on purpose: a routing change is "delete at the
old routing, index at the new", and those two must stay in order.

Value (``format: cdc``, version 2; docs/kafka.md "Message format" documents it):
the action's lines of an Elasticsearch ``_bulk`` body, each ending in a newline,
exactly as `cdc run` would send them (cdc/es/bulk.py `encode_bulk`)::

    {"index":{"_index":"shop-orders","_id":"7","version":180388627690,"version_type":"external"}}
    {"id":7,"total":"12.50"}

Headers: ``cdc`` (the format version, ``2``), ``cdc-source`` (JSON
``[schema, table, file, pos]``, where the row came from: for dead letters and
error messages) and, only for a write that must not replace another write of
the same document in a batch (another routing, or a partial update of another
table), ``cdc-key``. A writer concatenates values into bulk bodies without
parsing them (issue 32: the writer's work is Elasticsearch's, not Python's per
message); it looks at a value's lines only when Elasticsearch refused an item.

`version` is the external version the reader derived from the binlog position
(absent for `mode: update` rules, which write unversioned). Writers send exactly
that version, so a message delivered twice, or replayed after a rebalance,
comes back as "already newer" instead of overwriting newer data.

Version 1 (a JSON object per action, ``{"cdc": 1, "action": ..., "doc": ...}``) is
still read, so writers upgraded first drain a topic the old reader filled.

``format: debezium`` wraps the same content in a Debezium-style change envelope
(the payload Debezium's JsonConverter writes with ``schemas.enable=false``)
for other consumers: ``op`` is ``u`` for index and update actions (once the
rules have made a document, an insert and an update are the same write) and
``d`` for deletes, ``after`` is the document (null for a delete), ``before`` is
always null, ``ts_ms`` is when it was published (milliseconds), and ``source``
carries the binlog coordinates plus cdc's ``index``, ``id``, ``routing``,
``version`` and ``pipeline``, from which `cdc sink` can write it too.

Decoding refuses what it does not understand (`MessageError`): a message of a
newer format version, or a broken one, is a dead letter or a stop, never a
silent skip.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple, Sequence

import orjson

from cdc.es.bulk import encode_bulk
from cdc.model import Action, ActionType, BinlogPosition, DocFromJson, EncodedActions, EncodedParts

FORMAT_VERSION = 2  # format: cdc
ENVELOPE_VERSION = 1  # format: debezium (the `cdc` member of its source)
READABLE = (1, 2)
Format = Literal["cdc", "debezium"]

FORMAT_HEADER = "cdc"
SOURCE_HEADER = "cdc-source"
KEY_HEADER = "cdc-key"
_VERSION_2 = str(FORMAT_VERSION).encode()


class MessageError(ValueError):
    """A Kafka message that is not an action this version of cdc can write."""


class Received(NamedTuple):
    """One consumed message: where it is, and what it holds (decoded by the caller).

    A tuple, not a dataclass: a writer makes one per message, and a frozen dataclass's
    `__init__` cost as much as the rest of a message's handling."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None


def key(action: Action) -> bytes:
    return f"{action.index}/{action.doc_id}".encode()


def _source(action: Action) -> dict[str, Any]:
    position = action.position
    return {"schema": action.schema, "table": action.table,
            "file": position.file if position is not None else None,
            "pos": position.pos if position is not None else None}


def encode(action: Action, fmt: Format = "cdc", timestamp: int | None = None) -> bytes:
    """One action as a message value (see the module docstring); `headers` gives its headers."""
    if fmt == "cdc":
        # The lines `cdc run` sends; the native row path made the action line with the action.
        return encode_bulk((action,))
    version = action.version if action.versioned else None
    source = _source(action)
    source.update({"connector": "cdc", "db": action.schema, "index": action.index, "id": action.doc_id,
                   "routing": action.routing, "version": version, "pipeline": action.pipeline,
                   "action": action.type.value, "cdc": ENVELOPE_VERSION})
    head = orjson.dumps({"before": None, "source": source,
                         "op": "d" if action.type is ActionType.DELETE else "u",
                         "ts_ms": timestamp * 1000 if timestamp is not None else None})
    return b"%s,\"after\":%s}" % (head[:-1], action.doc_json or b"null")


def headers(action: Action, fmt: Format = "cdc") -> list[tuple[str, bytes]] | None:
    """The message's headers (see the module docstring); None for the Debezium envelope, which holds it all."""
    if fmt != "cdc":
        return None
    position = action.position
    found = [(FORMAT_HEADER, _VERSION_2),
             (SOURCE_HEADER, orjson.dumps([action.schema, action.table, position.file if position else None,
                                           position.pos if position else None]))]
    if action.routing is not None or action.type is ActionType.UPDATE:
        # What `Action.key` adds to the message key: such writes must not replace one another in a batch.
        found.append((KEY_HEADER, orjson.dumps([action.routing, action.schema, action.table]
                                               if action.type is ActionType.UPDATE else [action.routing])))
    return found


class MessageAction(Action):
    """An `Action` decoded from a message: its document stays the JSON bytes the reader published
    (`doc_json`, written into the bulk body as they are) and is parsed only if asked for (a dead
    letter, a test)."""

    doc = DocFromJson()


# Where the document starts in a version 1 value `encode` made: the document is its last member,
# and the head before it is orjson's output, in which `,"doc":` (or `,"after":`) cannot occur
# inside a string (a quote in a string is escaped), so the first occurrence is the boundary.
_DOC_MARKS = (b',"doc":', b',"after":')


def _format(found: list[tuple[str, bytes]] | None) -> bytes | None:
    for name, value in found or ():
        if name == FORMAT_HEADER:
            return value
    return None


def _header(found: list[tuple[str, bytes]] | None, wanted: str) -> bytes | None:
    for name, value in found or ():
        if name == wanted:
            return value
    return None


def decode(value: bytes | None, found: list[tuple[str, bytes]] | None = None) -> Action:
    """A message (either format, any version this cdc reads) back into the Action the reader published.

    `found`: the message's headers. A value of version 2 is parsed line by line (`_lines`). A
    version 1 value laid out as its `encode` made it has only its head parsed: its document,
    checked to be one JSON object on one line (so it cannot break a bulk body's lines), goes to
    Elasticsearch as it is, and Elasticsearch parses it (a broken one is a rejected item: a dead
    letter or a stop, never a skip). Any other value is parsed whole, with the same checks.
    """
    if value is None:
        raise MessageError("empty message (a tombstone?): not a cdc action")
    version = _format(found)
    if version is not None:
        if version != _VERSION_2:
            raise _unknown(version)
        return _from_lines(value, _header(found, SOURCE_HEADER))
    for mark in _DOC_MARKS:
        at = value.find(mark)
        if at <= 0:
            continue
        raw = value[at + len(mark):-1]
        if value.endswith(b"}") and raw[:1] == b"{" and raw.endswith(b"}") and b"\n" not in raw \
                and b"\r" not in raw:
            try:
                head = orjson.loads(value[:at] + b"}")
            except orjson.JSONDecodeError:
                break  # not `encode`'s layout after all: parsed whole below
            if isinstance(head, dict):
                return _action(head, raw)
        break
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError("not a JSON object")
    return _action(data)


def _unknown(version: Any) -> MessageError:
    shown = version.decode(errors="replace") if isinstance(version, bytes) else repr(version)
    return MessageError(f"format version {shown}; this cdc reads versions {', '.join(map(str, READABLE))} "
                        "(upgrade the writers before the reader)")


def _action(data: dict, raw: bytes | None = None) -> Action:
    """The action of a parsed version 1 value (or envelope). `raw`: its document's JSON as it stood
    in the value, unparsed (then `data` is the value without it), or None: the document is in `data`."""
    if "cdc" in data:
        fields, doc = data, data.get("doc")
    elif isinstance(data.get("source"), dict) and "cdc" in data["source"]:
        fields, doc = data["source"], data.get("after")
    else:
        raise MessageError("neither a cdc action nor a cdc Debezium envelope (no 'cdc' format version)")
    if fields["cdc"] != 1:
        raise _unknown(fields["cdc"])
    try:
        kind = ActionType(fields["action"])
        index, doc_id = fields["index"], fields["id"]
        version = fields.get("version")
        source = data["source"]  # both formats: schema, table, file, pos
        position = BinlogPosition(source["file"], int(source["pos"])) if source.get("file") else None
        schema, table = source.get("schema") or "", source.get("table") or ""
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise MessageError(f"incomplete action: {exc!r}") from None
    if not isinstance(index, str) or not isinstance(doc_id, str) or not index or not doc_id:
        raise MessageError("index and id must be non-empty strings")
    if version is not None and not isinstance(version, int):
        raise MessageError(f"version must be an integer, got {version!r}")
    if kind is not ActionType.DELETE and raw is None and not isinstance(doc, dict):
        raise MessageError(f"a {kind.value} action needs a document object")
    routing, pipeline = fields.get("routing"), fields.get("pipeline")
    if raw is None or kind is ActionType.DELETE:
        return Action(kind, index, doc_id, version if version is not None else 0,
                      doc if kind is not ActionType.DELETE else None, routing=routing, schema=schema, table=table,
                      position=position, pipeline=pipeline, versioned=version is not None)
    return _message_action(kind, index, doc_id, version, routing, schema, table, position, pipeline, raw)


def _message_action(kind: ActionType, index: str, doc_id: str, version: int | None, routing: str | None,
                    schema: str, table: str, position: BinlogPosition | None, pipeline: str | None,
                    raw: bytes | None, meta: bytes | None = None) -> Action:
    # Every field of Action but `doc` (tests/unit/test_kafka_messages.py compares the two ways).
    action = MessageAction.__new__(MessageAction)
    action.__dict__.update(type=kind, index=index, doc_id=doc_id, version=version if version is not None else 0,
                           routing=routing, schema=schema, table=table, position=position, pipeline=pipeline,
                           versioned=version is not None, doc_json=raw)
    if meta is not None:
        action.__dict__["bulk_meta"] = meta  # sent again as it came (a retried item)
    return action


# A version 2 value: its first bytes say the action, and how many lines it has.
_LINES = {b'{"index":': (ActionType.INDEX, 2), b'{"delete":': (ActionType.DELETE, 1),
          b'{"update":': (ActionType.UPDATE, 2)}
_UPSERT_HEAD, _UPSERT_TAIL = b'{"doc":', b',"doc_as_upsert":true}'


def _kind(value: bytes) -> ActionType:
    """The action of a version 2 value, after checking it cannot shift the lines of the values
    around it in a bulk body: an action line cdc writes, and exactly as many newlines as that
    action has lines. A broken document on its own line is Elasticsearch's to refuse (a dead
    letter or a stop with its position), as `cdc run`'s would be."""
    shape = _LINES.get(value[:value.find(b":") + 1])
    if shape is None or not value.endswith(b"\n") or value.count(b"\n") != shape[1]:
        raise MessageError("not the _bulk lines of one action (format version 2)")
    return shape[0]


def _from_lines(value: bytes, source: bytes | None) -> Action:
    kind = _kind(value)
    meta, _, rest = value.partition(b"\n")
    try:
        line = orjson.loads(meta)[kind.value]
        index, doc_id = line["_index"], line["_id"]
        where = orjson.loads(source) if source is not None else [None, None, None, None]
        schema, table, file, pos = where
        position = BinlogPosition(file, int(pos)) if file and pos is not None else None
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise MessageError(f"incomplete action: {exc!r}") from None
    version = line.get("version")
    if not isinstance(index, str) or not isinstance(doc_id, str) or not index or not doc_id:
        raise MessageError("index and id must be non-empty strings")
    if version is not None and not isinstance(version, int):
        raise MessageError(f"version must be an integer, got {version!r}")
    doc: bytes | None = None
    if kind is ActionType.INDEX:
        doc = rest[:-1]
    elif kind is ActionType.UPDATE:
        doc = rest[:-1]
        if not (doc.startswith(_UPSERT_HEAD) and doc.endswith(_UPSERT_TAIL)):
            raise MessageError("an update's second line is not {\"doc\": ..., \"doc_as_upsert\": true}")
        doc = doc[len(_UPSERT_HEAD):-len(_UPSERT_TAIL)]
    return _message_action(kind, index, doc_id, version, line.get("routing"), schema or "", table or "",
                           position, line.get("pipeline"), doc, meta)


def _version(value: bytes) -> int | None:
    """The external version in a version 2 value's action line; None: unversioned."""
    at = value.find(b'"version":', 0, value.find(b"\n"))
    if at < 0:
        return None
    end = at + 10
    while value[end:end + 1].isdigit():
        end += 1
    return int(value[at + 10:end])


class Planned(NamedTuple):
    """A writer's batch: per lane, the requests to send (in order), and the messages it covers."""

    lanes: list[Sequence[Action]]
    writes: int  # actions after keeping each document's last write


def plan(messages: Sequence[Received], lanes: int, max_actions: int, max_bytes: int,
         unreadable: Callable[[Received, MessageError], Exception]) -> Planned:
    """Messages of cdc's topic -> bulk requests per lane, their bodies the values put together.

    Keeps the last write of each document (as `Batch.add` does in `cdc run`: one bulk request
    must not hold two writes of one document, whose per-item retries could then finish out of
    order). The last one read is the newest, unless an earlier one carries a higher version: a
    reader that restarts publishes again from its checkpoint, so an older copy can follow a
    newer one. All writes of a document go to one lane, in order.

    Version 1 messages are turned into version 2 values first (a topic the old reader filled).
    `unreadable(message, error)` makes the exception that stops the writer for a message that is
    not an action.
    """
    keyed: dict[Any, Received] = {}
    for m in messages:
        found = m.headers
        if found is not None and found[0][0] == FORMAT_HEADER and found[0][1] == _VERSION_2:
            extra = _header(found, KEY_HEADER) if len(found) > 2 else None
        else:
            try:
                if _format(found) is not None:  # a version this cdc does not know
                    raise _unknown(_format(found))
                action = decode(m.value, found)
            except MessageError as exc:
                raise unreadable(m, exc) from None
            found = headers(action)
            m = m._replace(value=encode(action), headers=found)
            extra = _header(found, KEY_HEADER)
        value = m.value
        assert value is not None  # decode refused a tombstone
        try:
            _kind(value)
        except MessageError as exc:
            raise unreadable(m, exc) from None
        k = (m.key, extra)
        kept = keyed.get(k)
        if kept is not None:
            older, newer = _version(kept.value), _version(value)  # type: ignore[arg-type]
            if older is not None and newer is not None and older > newer:
                continue
        keyed[k] = m
    per_lane: list[list[Received]] = [[] for _ in range(lanes)]
    for m in keyed.values():
        per_lane[hash(m.key) % lanes].append(m)
    return Planned([_requests(mine, max_actions, max_bytes) for mine in per_lane], len(keyed))


def _requests(messages: list[Received], max_actions: int, max_bytes: int) -> Sequence[Action]:
    """One lane's messages as `_bulk` bodies of at most `max_actions` and `max_bytes`, in order."""
    parts: list[EncodedActions] = []
    chunk: list[Received] = []
    size = 0
    for m in messages:
        weight = len(m.value)  # type: ignore[arg-type]
        if chunk and (len(chunk) >= max_actions or size + weight > max_bytes):
            parts.append(_body(chunk, size))
            chunk, size = [], 0
        chunk.append(m)
        size += weight
    if chunk:
        parts.append(_body(chunk, size))
    return EncodedParts(parts)


def _body(messages: list[Received], size: int) -> EncodedActions:
    # The Action objects are made only if Elasticsearch refuses an item, or for a retry or a split.
    return EncodedActions(b"".join([m.value for m in messages]), len(messages), size,  # type: ignore[misc]
                          lambda: [decode(m.value, m.headers) for m in messages])
