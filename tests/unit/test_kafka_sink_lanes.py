"""`cdc sink`'s lanes (cdc/app/kafka_mode.py SinkWorker): a document's writes in partition order, offsets
committed only after Elasticsearch acknowledged the batch and every batch before it (pure: a fake
consumer and a fake Elasticsearch, real BulkWriters on real threads)."""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, Sequence

import pytest
import yaml

from cdc.app.kafka_mode import SinkWorker
from cdc.app.session import Session
from cdc.config import Config, KafkaConfig, load_config
from cdc.errors import RejectedActionsError
from cdc.kafka.client import ActionConsumer
from cdc.kafka.messages import Received, encode, headers, key
from cdc.kafka.stall import PartitionState
from cdc.model import Action, ActionType, BinlogPosition, BulkResult, EncodedActions, ItemResult, Outcome
from cdc.stream.delivery import BulkWriter
from cdc.stream.observe import Observers, Stats
from cdc.stream.protocols import Sink

TOPIC = "t"


def message(offset: int, doc_id: str, version: int, partition: int = 0) -> Received:
    action = Action(ActionType.INDEX, "i", doc_id, version, {"v": version}, schema="s", table="t",
                    position=BinlogPosition("binlog.000001", version))
    return Received(TOPIC, partition, offset, encode(action), None, key(action), headers(action))


# The fakes subclass what SinkWorker takes, without their __init__ (which connects), and
# override what it calls: mypy checks the overrides' signatures against the real ones.
class FakeConsumer(ActionConsumer):
    """Hands out the messages a test queued, `count` at a time; records commits."""

    def __init__(self, config: KafkaConfig, on_assign: Callable[[list[tuple[str, int]]], None],
                 on_revoke: Callable[[list[tuple[str, int]]], None], client_id: str | None = None):
        self.queued: list[Received] = []
        self.commits: list[dict[tuple[str, int], int]] = []
        self.lock = threading.Lock()

    def consume(self, count: int, timeout: float) -> list[Received]:
        with self.lock:
            taken, self.queued = self.queued[:count], self.queued[count:]
        if not taken:
            time.sleep(min(timeout, 0.01))
        return taken

    def poll(self, timeout: float) -> Received | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    def commit(self, offsets: dict[tuple[str, int], int], asynchronous: bool = False) -> None:
        with self.lock:
            self.commits.append(dict(offsets))

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass

    def partition_states(self, timeout: float = 2.0) -> list[PartitionState] | None:
        return []

    def close(self) -> None:
        pass


class FakeElasticsearch:
    """Acknowledges every item, in the order given, unless told to hold or refuse a document."""

    def __init__(self) -> None:
        self.written: list[tuple[str, int]] = []  # (doc_id, version) in the order applied
        self.bodies: list[bool] = []  # whether each request came as the values put together
        self.lock = threading.Lock()
        self.hold: dict[str, threading.Event] = {}
        self.refuse: set[str] = set()
        self.delays: random.Random | None = None  # requests take 0-5 ms, so that lanes overtake each other

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        encoded = isinstance(actions, EncodedActions)
        if self.delays is not None:
            with self.lock:
                delay = self.delays.uniform(0, 0.005)
            time.sleep(delay)
        for action in actions:
            gate = self.hold.get(action.doc_id)
            if gate is not None:
                gate.wait(10)
        items: list[ItemResult] = []
        with self.lock:
            self.bodies.append(encoded)
            for action in actions:
                if action.doc_id in self.refuse:
                    items.append(ItemResult(action, Outcome.REJECTED, 400, "mapper_parsing_exception", "no"))
                    continue
                self.written.append((action.doc_id, action.version))
                items.append(ItemResult(action, Outcome.OK, 201))
        return BulkResult(tuple(items))


class FakeSession(Session):
    def __init__(self, config: Config):
        self.config = config
        self.stop = threading.Event()

    def writer(self, sink: Sink, stats: Stats, observed: bool = False, dead_letters: bool = True) -> BulkWriter:
        return BulkWriter(sink, self.config.batch, self.config.retry, stats)

    def observer(self) -> Observers | None:
        return None


_: Sink = FakeElasticsearch()  # mypy checks it fits the protocol


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "cdc.yml"
    path.write_text(yaml.safe_dump({"mysql": {"user": "cdc", "server_id": 5},
                                    "batch": {"max_actions": 3, "concurrency": 2},
                                    "retry": {"initial_backoff": 0.01, "max_backoff": 0.01, "max_attempts": 2}}))
    session = FakeSession(load_config(str(path)))
    es = FakeElasticsearch()
    worker = SinkWorker(session, es, Stats(), consumer_factory=FakeConsumer)
    return session, es, worker


def run_in_thread(worker: SinkWorker) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def wait(what: str, condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def doc_of(m: Received) -> str:
    """The document of a message made by `message`, from its key (index/id)."""
    assert m.key is not None
    return m.key.decode().split("/")[1]


def committed(consumer: FakeConsumer) -> dict[tuple[str, int], int]:
    merged: dict[tuple[str, int], int] = {}
    for offsets in consumer.commits:
        for where, offset in offsets.items():
            assert offset >= merged.get(where, 0), "a commit went backwards"
            merged[where] = offset
    return merged


def test_every_document_is_written_in_partition_order_and_everything_is_committed(setup):
    """300 messages over 3 partitions and 5 documents, read 6 at a time (max_actions x concurrency):
    each document's writes arrive in the order of its partition, as request bodies put together from
    the values, and the offsets end committed one past each partition's last message."""
    session, es, worker = setup
    es.delays = random.Random(5)
    messages = []
    for n in range(300):
        doc = str(n % 5)
        messages.append(message(n // 3, doc, n, partition=int(doc) % 3))
    worker.consumer.queued = list(messages)
    thread, errors = run_in_thread(worker)
    wait("every message committed", lambda: committed(worker.consumer) == {
        (TOPIC, p): max(m.offset for m in messages if m.partition == p) + 1 for p in range(3)})
    session.stop.set()
    thread.join(10)
    assert not errors
    for doc in map(str, range(5)):
        versions = [v for d, v in es.written if d == doc]
        assert versions == sorted(versions) and versions, (doc, versions)
        assert versions[-1] == max(n for n in range(300) if str(n % 5) == doc)  # the last write arrived
    assert all(es.bodies)
    assert worker.stats.batches >= 2 and worker.stats.actions_sent == len(es.written)


def test_offsets_wait_for_the_slowest_lane_and_later_batches_do_not_jump_it(setup):
    """A document whose request Elasticsearch holds: later batches are written by the other lane
    meanwhile, but nothing is committed past the held batch until it is acknowledged."""
    session, es, worker = setup
    gate = es.hold["slow"] = threading.Event()
    worker.consumer.queued = [message(0, "slow", 1)]
    thread, errors = run_in_thread(worker)
    wait("the held request", lambda: worker._outstanding == 1)
    others = [message(n, f"d{n}", n + 1) for n in range(1, 12)]
    worker.consumer.queued = list(others)
    lane_of_slow = hash(b"i/slow") % 2
    free = [m for m in others if hash(m.key) % 2 != lane_of_slow]
    wait("the other lane's writes", lambda: len(es.written) >= len(free))
    assert committed(worker.consumer) == {}  # the first batch is not acknowledged: nothing may be committed
    gate.set()
    wait("everything committed", lambda: committed(worker.consumer) == {(TOPIC, 0): 12})
    session.stop.set()
    thread.join(10)
    assert not errors
    # In its lane, the held write went first: the writes queued behind it came after it.
    behind = [(doc_of(m), m.offset + 1) for m in others if hash(m.key) % 2 == lane_of_slow]
    assert all(es.written.index(("slow", 1)) < es.written.index(w) for w in behind)


def test_a_refused_document_stops_the_writer_and_nothing_after_it_is_committed(setup):
    """Without a dead-letter store, a refused item stops `cdc sink` (never a skip); the offsets of its
    batch and of every later one stay uncommitted, so a restart writes them again."""
    session, es, worker = setup
    es.refuse.add("bad")
    worker.consumer.queued = [message(0, "ok", 1), message(1, "bad", 2), message(2, "later", 3)]
    thread, errors = run_in_thread(worker)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RejectedActionsError), errors
    assert "i/bad" in str(errors[0])
    assert committed(worker.consumer) == {}  # one batch: none of its offsets


def test_full_collections_are_rarer_while_a_writer_runs(setup):
    """A writer's batches hold no cycles: full collections are ten times rarer while it runs (SinkWorker.run),
    and the thresholds are as they were once it returns."""
    import gc

    session, es, worker = setup
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    consume = worker.consumer.consume

    def watched(count: int, timeout: float) -> list[Received]:
        seen.append(gc.get_threshold())
        session.stop.set()
        return consume(count, timeout)

    worker.consumer.consume = watched
    worker.run()
    assert seen and seen[0] == (before[0], before[1], max(before[2], 100))
    assert gc.get_threshold() == before


def test_consume_hands_out_each_message_as_a_received_tuple():
    """ActionConsumer.consume makes a Received per message (through tuple.__new__): the same fields, in order,
    and a message without a timestamp (type 0) has None."""

    class Message:
        def __init__(self, offset: int, ts: tuple[int, int]):
            self.offset_, self.ts = offset, ts

        def error(self):
            return None

        def timestamp(self):
            return self.ts

        def topic(self):
            return TOPIC

        def partition(self):
            return 3

        def offset(self):
            return self.offset_

        def value(self):
            return b"v%d" % self.offset_

        def key(self):
            return b"k"

        def headers(self):
            return [("h", b"1")]

    class Consumer:
        def consume(self, count: int, timeout: float):
            return [Message(7, (1, 1796000000000)), Message(8, (0, -1))][:count]

    consumer = object.__new__(ActionConsumer)
    consumer.consumer = Consumer()  # type: ignore[assignment]
    consumer.headers = True
    got = consumer.consume(10, 0)
    assert got == [Received(TOPIC, 3, 7, b"v7", 1796000000000, b"k", [("h", b"1")]),
                   Received(TOPIC, 3, 8, b"v8", None, b"k", [("h", b"1")])]
    assert all(type(r) is Received for r in got) and got[1].timestamp_ms is None and got[0].headers == [("h", b"1")]
    # A Debezium-fed writer's (kafka.input: debezium) are read without their headers, which nothing reads.
    consumer.headers = False
    assert consumer.consume(10, 0) == [Received(TOPIC, 3, 7, b"v7", 1796000000000, b"k", None),
                                       Received(TOPIC, 3, 8, b"v8", None, b"k", None)]


def test_only_a_debezium_fed_consumer_leaves_headers_out(tmp_path):
    """ActionConsumer reads headers for cdc's own topic (they carry the format version) and not for Debezium's."""
    from cdc.config import load_config

    made = {}
    for name, kafka in (("cdc", {"topic": "t"}), ("debezium", {"input": "debezium", "topics": ["p.s.t"]})):
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump({"mysql": {"user": "cdc", "server_id": 5}, "destination": "kafka",
                                        "kafka": {"bootstrap_servers": "127.0.0.1:1", **kafka}}))
        consumer = ActionConsumer(load_config(str(path)).kafka, lambda p: None, lambda p: None)
        made[name] = consumer.headers
        consumer.close()
    assert made == {"cdc": True, "debezium": False}
