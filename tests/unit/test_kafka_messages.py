"""Kafka mode's message format (cdc/kafka/messages.py) and the writer's batch bookkeeping (pure)."""

import dataclasses
from typing import Any, Sequence

import orjson

import pytest

from cdc.app.kafka_mode import UnreadableMessage, _unreadable, latest, next_offsets
from cdc.kafka.messages import FORMAT_VERSION, MessageError, Received, decode, encode, headers, key, plan
from cdc.es.sink import encode_bulk
from cdc.model import Action, ActionType, BinlogPosition, EncodedActions, EncodedParts
from cdc.stream.deadletter import DeadLetter

POS = BinlogPosition("binlog.000042", 1234)


def cdc_headers(action: Action) -> list[tuple[str, bytes]]:
    """The headers of the cdc format (the Debezium envelope has none)."""
    found = headers(action)
    assert found is not None
    return found


def requests(lane: Sequence[Action]) -> tuple[EncodedActions, ...]:
    """A planned lane's bulk requests: the writer's lanes are encoded, their bodies the values as published."""
    assert isinstance(lane, EncodedParts), lane
    return lane.parts


def index_action(**kw):
    base: dict[str, Any] = dict(type=ActionType.INDEX, index="shop-orders", doc_id="7", version=(42 << 32) | 1234,
                doc={"id": 7, "total": "12.50", "tags": ["a", "é"]}, routing="r1", schema="shop", table="orders",
                position=POS)
    base.update(kw)
    return Action(**base)


@pytest.mark.parametrize("fmt", ["cdc", "debezium"])
@pytest.mark.parametrize("action", [
    index_action(),
    index_action(type=ActionType.DELETE, doc=None, routing=None),
    index_action(type=ActionType.UPDATE, versioned=False, version=0, pipeline=None),
    index_action(pipeline="enrich", position=None),
])
def test_every_action_survives_the_round_trip(action, fmt):
    decoded_action = decode(encode(action, fmt, timestamp=1700000000), headers(action, fmt))
    # A decoded action keeps its document as the published JSON bytes (MessageAction), parsed on use.
    assert fields(decoded_action) == fields(action)
    assert decoded_action.doc_json == action.doc_json
    assert encode_bulk([decoded_action]) == encode_bulk([action])


def fields(action: Action) -> dict:
    return {f.name: getattr(action, f.name) for f in dataclasses.fields(Action)}


@pytest.mark.parametrize("value", [
    # another producer's layout: the document first, spaces, or a newline inside it
    b'{"doc": {"a": 1}, "cdc": 1, "action": "index", "index": "i", "id": "1", "version": 3, "source": {}}',
    b'{"cdc":1,"action":"index","index":"i","id":"1","version":3,"source":{},"doc":{"a":\n1}}',
    b'{"cdc":1,"action":"index","index":"i","id":"1","version":3,"source":{},"doc": {"a":1} }',
    b'{"cdc":1,"action":"index","index":"i","id":",\\"doc\\":","version":3,"source":{},"doc":{"a":1}}',
])
def test_other_layouts_of_the_same_action_decode_the_same(value):
    action = decode(value)
    assert action.doc == {"a": 1} and action.type is ActionType.INDEX and action.version == 3
    assert orjson.loads(encode_bulk([action]).split(b"\n")[1]) == {"a": 1}  # one line in the bulk body


def test_a_broken_document_in_the_published_layout_is_left_to_elasticsearch_on_its_own_line():
    """Only the head is parsed; a broken document still takes exactly one line of the bulk body, so
    Elasticsearch rejects that item alone (a dead letter or a stop, with its position)."""
    value = b'{"cdc":1,"action":"index","index":"i","id":"1","version":3,"source":{},"doc":{"a":1,}}'
    body = encode_bulk([decode(value), decode(encode(index_action()), headers(index_action()))])
    assert body.count(b"\n") == 4 and body.split(b"\n")[1] == b'{"a":1,}'
    # Rejected, it is a dead letter that keeps the text sent.
    letter = DeadLetter("x", 0.0, decode(value), 400, "document_parsing_exception", "bad JSON").to_json()
    assert letter["action"]["doc"] is None and letter["action"]["doc_json"] == '{"a":1,}'
    good = index_action()
    assert "doc_json" not in DeadLetter("y", 0.0, decode(encode(good), headers(good)), 400, None,
                                        None).to_json()["action"]


def test_the_cdc_format_is_the_documented_one():
    """Version 2 (docs/kafka.md "Message format"): the value is the action's `_bulk` lines, the
    headers say the version, where the row came from and, for a write that must not replace
    another of its document, what else tells them apart."""
    action = index_action(routing=None)
    meta, doc, end = encode(action).split(b"\n")
    assert orjson.loads(meta) == {"index": {"_index": "shop-orders", "_id": "7", "version": (42 << 32) | 1234,
                                            "version_type": "external"}}
    assert orjson.loads(doc) == {"id": 7, "total": "12.50", "tags": ["a", "é"]} and end == b""
    assert headers(action) == [("cdc", str(FORMAT_VERSION).encode()),
                               ("cdc-source", b'["shop","orders","binlog.000042",1234]')]
    assert dict(cdc_headers(index_action()))["cdc-key"] == b'["r1"]'  # routing: a write of its own
    update = index_action(type=ActionType.UPDATE, versioned=False)
    meta, doc, _ = encode(update).split(b"\n")
    assert "version" not in orjson.loads(meta)["update"]  # unversioned
    assert orjson.loads(doc) == {"doc": update.doc, "doc_as_upsert": True}
    assert dict(cdc_headers(update))["cdc-key"] == b'["r1","shop","orders"]'  # a partial update of its table
    assert encode(index_action(type=ActionType.DELETE, doc=None)).count(b"\n") == 1


def test_the_debezium_envelope_has_debeziums_fields():
    value = orjson.loads(encode(index_action(), "debezium", timestamp=1700000000))
    assert value["op"] == "u" and value["before"] is None and value["ts_ms"] == 1700000000000
    assert value["after"] == {"id": 7, "total": "12.50", "tags": ["a", "é"]}
    assert value["source"]["db"] == "shop" and value["source"]["table"] == "orders"
    assert value["source"]["file"] == "binlog.000042" and value["source"]["pos"] == 1234
    deleted = orjson.loads(encode(index_action(type=ActionType.DELETE, doc=None), "debezium"))
    assert deleted["op"] == "d" and deleted["after"] is None


def test_the_key_is_the_document():
    assert key(index_action()) == b"shop-orders/7"
    # routing is not part of it: a routing change's delete and index must share a partition
    assert key(index_action(routing="other")) == key(index_action())


@pytest.mark.parametrize("value, why", [
    (None, "tombstone"),
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"op": "c", "after": {}, "source": {"db": "x"}}', "neither"),  # a plain Debezium event
    (orjson.dumps({"cdc": 3, "action": "index"}), "upgrade the writers"),
    (orjson.dumps({"cdc": 1, "action": "index", "index": "i", "id": "1", "version": 3, "source": {}}),
     "needs a document"),
    (orjson.dumps({"cdc": 1, "action": "merge", "index": "i", "id": "1", "source": {}}), "incomplete"),
    (orjson.dumps({"cdc": 1, "action": "delete", "index": "", "id": "1", "source": {}}), "non-empty"),
    (orjson.dumps({"cdc": 1, "action": "delete", "index": "i", "id": "1", "version": "3", "source": {}}),
     "integer"),
])
def test_what_is_not_an_action_is_refused(value, why):
    with pytest.raises(MessageError, match=why):
        decode(value)


def test_what_is_not_a_version_2_action_is_refused():
    ok = [("cdc", b"2")]
    for value, found, why in [
        (b'{"index":{"_index":"i","_id":"1"}}\n{"a":1}\n', [("cdc", b"3")], "upgrade the writers"),
        (b'{"index":{"_index":"i","_id":"1"}}\n{"a":\n1}\n', ok, "_bulk lines"),  # would shift the body's lines
        (b'{"delete":{"_index":"i","_id":"1"}}\n{"a":1}\n', ok, "_bulk lines"),  # a delete has one line
        (b'{"create":{"_index":"i","_id":"1"}}\n{"a":1}\n', ok, "_bulk lines"),  # not an action cdc writes
        (b'{"index":{"_index":"i","_id":"1"}}\n{"a":1}', ok, "_bulk lines"),  # no final newline
        (b'{"index":{"_index":"i"}}\n{"a":1}\n', ok, "incomplete"),
        (b'{"update":{"_index":"i","_id":"1"}}\n{"a":1}\n', ok, "doc_as_upsert"),
    ]:
        with pytest.raises(MessageError, match=why):
            decode(value, found)


def test_an_unreadable_message_stops_the_writer_naming_where_it_is():
    good = Received("t", 0, 5, encode(index_action()), None, None, headers(index_action()))
    bad = Received("t", 3, 17, b"{}", None)
    with pytest.raises(UnreadableMessage, match=r"t/3@17 .*--to-offset 18") as err:
        plan([good, bad], 1, 100, 10**6, _unreadable_error)
    assert err.value.exit_code == 2


def test_a_batch_keeps_the_last_write_of_each_document():
    first = index_action(version=1)
    other = index_action(doc_id="8", version=2)
    deleted = index_action(type=ActionType.DELETE, doc=None, version=3)
    moved = index_action(routing="r2", version=4)  # another routing: its own write
    assert latest([first, other, deleted, moved]) == [deleted, other, moved]


def test_offsets_to_commit_are_one_past_the_last_message_of_each_partition():
    messages = [Received("t", 0, 10, b"", None), Received("t", 1, 3, b"", None), Received("t", 0, 12, b"", None),
                Received("t", 0, 11, b"", None)]
    assert next_offsets(messages) == {("t", 0): 13, ("t", 1): 4}


def test_delivery_errors_become_the_writers_outcomes():
    from confluent_kafka import KafkaError

    from cdc.kafka.client import KafkaPublisher
    from cdc.model import Outcome

    action = index_action()
    outcome = KafkaPublisher._outcome
    too_big = outcome(action, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert (too_big.outcome, too_big.status) == (Outcome.REJECTED, 413)  # dead letter or stop
    denied = outcome(action, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert (denied.outcome, denied.status) == (Outcome.REJECTED, 403)  # the writer stops with exit 2
    for code in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError.NOT_LEADER_FOR_PARTITION):
        again = outcome(action, KafkaError(code))
        assert (again.outcome, again.status) == (Outcome.RETRY, 503)  # sent again with backoff


def received(actions, fmt_headers=True, partition=0):
    return [Received("t", partition, offset, encode(a), None, key(a), headers(a) if fmt_headers else None)
            for offset, a in enumerate(actions)]


def lane_actions(planned):
    return [[a for a in lane] for lane in planned.lanes]


def test_the_writer_puts_values_together_into_the_bodies_cdc_run_would_send():
    """The bodies are the values as published, one lane per document, split as `chunks` splits; the
    actions are made only when asked for (an item refused, a retry), equal to the published ones."""
    actions = [index_action(doc_id=str(i), routing=None, version=i) for i in range(10)]
    planned = plan(received(actions), 3, 2, 10_000, _unreadable_error)
    assert planned.writes == 10
    for lane in planned.lanes:
        for request in requests(lane):
            assert len(request) <= 2
            assert request.body == encode_bulk(list(request))  # `list` makes the actions
    made = sorted((a for lane in lane_actions(planned) for a in lane), key=lambda a: a.version)
    assert [fields(a) for a in made] == [fields(a) for a in actions]
    # bytes bound the requests too
    tight = plan(received(actions), 1, 100, len(encode(actions[0])) * 3, _unreadable_error)
    assert [len(r) for r in requests(tight.lanes[0])] == [3, 3, 3, 1]


def _unreadable_error(m, exc):
    return _unreadable(m, "a cdc action", exc)


def test_the_writer_keeps_each_documents_last_write_in_its_lane_in_order():
    first = index_action(version=1, routing=None)
    other = index_action(doc_id="8", version=2, routing=None)
    deleted = index_action(type=ActionType.DELETE, doc=None, version=3, routing=None)
    moved = index_action(version=4)  # another routing: a write of its own
    update_a = index_action(type=ActionType.UPDATE, versioned=False, routing=None, table="a")
    update_b = index_action(type=ActionType.UPDATE, versioned=False, routing=None, table="b")
    planned = plan(received([first, other, deleted, moved, update_a, update_b]), 4, 100, 10**6, _unreadable_error)
    assert planned.writes == 5
    lanes = [lane for lane in lane_actions(planned) if lane]
    seven = next(lane for lane in lanes if any(a.doc_id == "7" for a in lane))
    # every write of document 7 in one lane, first-seen order, the delete replacing the index
    assert [(a.type, a.routing, a.table) for a in seven if a.doc_id == "7"] == [
        (ActionType.DELETE, None, "orders"), (ActionType.INDEX, "r1", "orders"),
        (ActionType.UPDATE, None, "a"), (ActionType.UPDATE, None, "b")]


def test_an_older_copy_read_after_a_newer_one_does_not_replace_it():
    """A reader that restarts publishes again from its checkpoint: the older copy can come second."""
    newer, older = index_action(version=9, routing=None), index_action(version=5, routing=None)
    planned = plan(received([newer, older]), 1, 100, 10**6, _unreadable_error)
    assert [a.version for a in lane_actions(planned)[0]] == [9]
    unversioned = [index_action(type=ActionType.UPDATE, versioned=False, version=0, doc={"n": n}, routing=None)
                   for n in (1, 2)]
    planned = plan(received(unversioned), 1, 100, 10**6, _unreadable_error)
    assert [a.doc for a in lane_actions(planned)[0]] == [{"n": 2}]  # the last one read


def test_version_1_messages_are_written_as_version_2_ones():
    """A topic the old reader filled drains through a new writer: the same bodies."""
    actions = [index_action(doc_id=str(i), version=i) for i in range(4)]
    old = [Received("t", 0, i, orjson.dumps({
        "cdc": 1, "action": "index", "index": a.index, "id": a.doc_id, "routing": a.routing, "version": a.version,
        "pipeline": None, "source": {"schema": "shop", "table": "orders", "file": "binlog.000042", "pos": 1234},
        "doc": a.doc}), None, key(a)) for i, a in enumerate(actions)]
    assert [r.body for r in requests(plan(old, 1, 100, 10**6, _unreadable_error).lanes[0])] == \
        [r.body for r in requests(plan(received(actions), 1, 100, 10**6, _unreadable_error).lanes[0])]


def test_a_message_the_writer_cannot_write_stops_it_naming_where_it_is():
    good = received([index_action()])
    bad = Received("t", 3, 17, b'{"index":{"_index":"i","_id":"1"}}\n{"a":\n1}\n', None, b"i/1", [("cdc", b"2")])
    with pytest.raises(UnreadableMessage, match=r"t/3@17 .*--to-offset 18"):
        plan([*good, bad], 2, 100, 10**6, _unreadable_error)
    newer = Received("t", 1, 4, b"{}", None, b"i/1", [("cdc", b"7")])
    with pytest.raises(UnreadableMessage, match=r"t/1@4 .*format version 7"):
        plan([newer], 2, 100, 10**6, _unreadable_error)


def test_a_failed_delivery_report_is_matched_to_its_action():
    """One callback serves a whole `write`; a failed report finds its action by key and value."""
    from confluent_kafka import KafkaError

    from cdc.kafka.client import _Call

    class Report:
        def __init__(self, k, v):
            self.k, self.v = k, v

        def key(self):
            return self.k

        def value(self):
            return self.v

    keys, values = [b"i/1", b"i/2", b"i/1"], [b"a", b"b", b"c"]
    call = _Call(3)
    call.on_delivery(None, Report(b"i/1", b"a"))
    call.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), Report(b"i/1", b"c"))
    call.on_delivery(None, Report(b"i/2", b"b"))
    assert call.remaining == 0
    errors = call.errors(keys, values)
    assert list(errors) == [2] and errors[2].code() == KafkaError._MSG_TIMED_OUT
    stray = _Call(3)
    stray.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), Report(b"other", b"x"))
    assert sorted(stray.errors(keys, values)) == [0, 1, 2]  # unmatched: all sent again, none counted done
