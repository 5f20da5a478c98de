"""Actions as Kafka messages, and back: the documented, versioned format of Kafka mode (pure).

Key: ``<index>/<id>`` in UTF-8. Elasticsearch index names cannot contain ``/``,
so the key names one document unambiguously; the producer's partitioner
hashes it, so every action of one document lands in one partition, in order.
Routing is not part of the key on purpose: a routing change is "delete at the
old routing, index at the new", and those two must stay in order.

Value (``format: cdc``, docs/kafka.md "Kafka mode" documents every field)::

    {"cdc": 1, "action": "index" | "delete" | "update", "index": "...", "id": "...",
     "routing": null | "...", "version": 123 | null, "pipeline": null | "...",
     "doc": {...} | null,
     "source": {"schema": "shop", "table": "orders", "file": "binlog.000042", "pos": 1234}}

`version` is the external version the reader derived from the binlog position
(null for `mode: update` rules, which write unversioned). Writers send exactly
that version, so a message delivered twice, or replayed after a rebalance,
comes back as "already newer" instead of overwriting newer data.

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

from typing import Any, Literal

import orjson

from cdc.model import Action, ActionType, BinlogPosition, DocFromJson

FORMAT_VERSION = 1
Format = Literal["cdc", "debezium"]


class MessageError(ValueError):
    """A Kafka message that is not an action this version of cdc can write."""


def key(action: Action) -> bytes:
    return f"{action.index}/{action.doc_id}".encode()


def _source(action: Action) -> dict[str, Any]:
    position = action.position
    return {"schema": action.schema, "table": action.table,
            "file": position.file if position is not None else None,
            "pos": position.pos if position is not None else None}


def encode(action: Action, fmt: Format = "cdc", timestamp: int | None = None) -> bytes:
    """One action as a message value (see the module docstring)."""
    version = action.version if action.versioned else None
    if fmt == "cdc":
        head = orjson.dumps({
            "cdc": FORMAT_VERSION, "action": action.type.value, "index": action.index, "id": action.doc_id,
            "routing": action.routing, "version": version, "pipeline": action.pipeline,
            "source": _source(action)})
        # The document's JSON is encoded once per action (Action.doc_json) and spliced in.
        return b"%s,\"doc\":%s}" % (head[:-1], action.doc_json or b"null")
    source = _source(action)
    source.update({"connector": "cdc", "db": action.schema, "index": action.index, "id": action.doc_id,
                   "routing": action.routing, "version": version, "pipeline": action.pipeline,
                   "action": action.type.value, "cdc": FORMAT_VERSION})
    head = orjson.dumps({"before": None, "source": source,
                         "op": "d" if action.type is ActionType.DELETE else "u",
                         "ts_ms": timestamp * 1000 if timestamp is not None else None})
    return b"%s,\"after\":%s}" % (head[:-1], action.doc_json or b"null")


class MessageAction(Action):
    """An `Action` decoded from a message: its document stays the JSON bytes the reader published
    (`doc_json`, written into the bulk body as they are) and is parsed only if asked for (a dead
    letter, a test)."""

    doc = DocFromJson()


# Where the document starts in a value `encode` made: the document is its last member, and the
# head before it is orjson's output, in which `,"doc":` (or `,"after":`) cannot occur inside a
# string (a quote in a string is escaped), so the first occurrence is the boundary.
_DOC_MARKS = (b',"doc":', b',"after":')


def decode(value: bytes | None) -> Action:
    """A message value (either format) back into the Action the reader published.

    A value laid out as `encode` makes it has only its head parsed: its document, checked to be
    one JSON object on one line (so it cannot break a bulk body's lines), goes to Elasticsearch
    as it is, and Elasticsearch parses it (a broken one is a rejected item: a dead letter or a
    stop, never a skip). Any other value is parsed whole, with the same checks.
    """
    if value is None:
        raise MessageError("empty message (a tombstone?): not a cdc action")
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


def _action(data: dict, raw: bytes | None = None) -> Action:
    """The action of a parsed message value. `raw`: its document's JSON as it stood in the value,
    unparsed (then `data` is the value without it), or None: the document is in `data`."""
    if "cdc" in data:
        fields, doc = data, data.get("doc")
    elif isinstance(data.get("source"), dict) and "cdc" in data["source"]:
        fields, doc = data["source"], data.get("after")
    else:
        raise MessageError("neither a cdc action nor a cdc Debezium envelope (no 'cdc' format version)")
    if fields["cdc"] != FORMAT_VERSION:
        raise MessageError(f"format version {fields['cdc']!r}; this cdc reads version {FORMAT_VERSION} "
                           "(upgrade the writers before the reader)")
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
    # Every field of Action but `doc` (tests/unit/test_kafka_messages.py compares the two ways).
    action = MessageAction.__new__(MessageAction)
    action.__dict__.update(type=kind, index=index, doc_id=doc_id, version=version if version is not None else 0,
                           routing=routing, schema=schema, table=table, position=position, pipeline=pipeline,
                           versioned=version is not None, doc_json=raw)
    return action
