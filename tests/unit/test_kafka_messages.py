"""Kafka mode's message format (cdc/kafka/messages.py) and the writer's batch bookkeeping (pure)."""

import dataclasses
import orjson

import pytest

from cdc.app.kafka_mode import UnreadableMessage, decoded, latest, next_offsets
from cdc.kafka.client import Received
from cdc.kafka.messages import FORMAT_VERSION, MessageError, decode, encode, key
from cdc.es.sink import encode_bulk
from cdc.model import Action, ActionType, BinlogPosition
from cdc.stream.deadletter import DeadLetter

POS = BinlogPosition("binlog.000042", 1234)


def index_action(**kw):
    base = dict(type=ActionType.INDEX, index="shop-orders", doc_id="7", version=(42 << 32) | 1234,
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
    decoded_action = decode(encode(action, fmt, timestamp=1700000000))
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
    body = encode_bulk([decode(value), decode(encode(index_action()))])
    assert body.count(b"\n") == 4 and body.split(b"\n")[1] == b'{"a":1,}'
    # Rejected, it is a dead letter that keeps the text sent.
    letter = DeadLetter("x", 0.0, decode(value), 400, "document_parsing_exception", "bad JSON").to_json()
    assert letter["action"]["doc"] is None and letter["action"]["doc_json"] == '{"a":1,}'
    assert "doc_json" not in DeadLetter("y", 0.0, decode(encode(index_action())), 400, None, None).to_json()["action"]


def test_the_cdc_format_is_the_documented_one():
    value = orjson.loads(encode(index_action()))
    assert value == {"cdc": FORMAT_VERSION, "action": "index", "index": "shop-orders", "id": "7",
                     "routing": "r1", "version": (42 << 32) | 1234, "pipeline": None,
                     "source": {"schema": "shop", "table": "orders", "file": "binlog.000042", "pos": 1234},
                     "doc": {"id": 7, "total": "12.50", "tags": ["a", "é"]}}
    unversioned = orjson.loads(encode(index_action(type=ActionType.UPDATE, versioned=False)))
    assert unversioned["version"] is None


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
    (orjson.dumps({"cdc": 2, "action": "index"}), "upgrade the writers"),
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


def test_an_unreadable_message_stops_the_writer_naming_where_it_is():
    good = Received("t", 0, 5, encode(index_action()), None)
    bad = Received("t", 3, 17, b"{}", None)
    with pytest.raises(UnreadableMessage, match=r"t/3@17 .*--to-offset 18") as err:
        decoded([good, bad])
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
