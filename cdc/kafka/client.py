"""The one module that sees confluent_kafka (librdkafka): publishing actions, consuming them, the topic.

`KafkaPublisher` is a pipeline Sink (cdc/stream/protocols.py): `write(actions)`
returns only when the broker has acknowledged every message of the call (acks
from all in-sync replicas, `enable.idempotence`), with one outcome per action,
so the pipeline's rule "save a commit only after everything before it was
acknowledged" (cdc/stream/pipeline.py) holds for Kafka unchanged. librdkafka
errors are translated into cdc's outcomes and errors here:

* a delivery that failed (broker down past `kafka.delivery_timeout`, leader
  moves, ...) is `Outcome.RETRY`: the bulk writer sends it again with backoff;
* a message larger than the broker takes is `REJECTED` with status 413, and a
  topic the credentials may not write is `REJECTED` with 403 (the writer stops
  with exit 2, as for Elasticsearch's 403);
* a fatal producer error (the idempotent producer lost its sequence, librdkafka
  CONFIGURATION.md "enable.idempotence") stops the daemon with the broker's
  reason; the checkpoint is before every unacknowledged message, so a restart
  with a new producer loses nothing.

The idempotent producer keeps the messages of one partition in order across
its internal retries (librdkafka INTRODUCTION.md "Idempotent Producer"). A
message the writer sends again after a failed delivery can land after later
messages of its partition; the external versions the messages carry make the
Elasticsearch writes come out the same.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
import time
from typing import Any, Callable, Sequence, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from cdc.config import KafkaConfig
from cdc.errors import ConfigError, SinkError, SinkUnavailableError
from cdc.kafka.messages import Format, Received, encode, headers, key
from cdc.kafka.stall import PartitionState
from cdc.model import Action, BulkResult, ItemResult, Outcome

_tuple_new = tuple.__new__
log = logging.getLogger("cdc.kafka")

# Settings cdc's guarantees rest on: user settings (kafka.producer / kafka.consumer) cannot change them.
PRODUCER_FIXED: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}
# The classic group protocol with an eager assignor: a rebalance takes every partition away before
# any is handed out, so a writer that drops its unfinished batch on revocation re-reads all of it
# from the committed offsets. An incremental rebalance (cooperative-sticky, or KIP-848's
# group.protocol=consumer) would let it keep partitions whose read position is past that batch.
CONSUMER_FIXED: dict[str, Any] = {"enable.auto.commit": False, "enable.auto.offset.store": False,
                                  "enable.partition.eof": False, "group.protocol": "classic"}
_ACCESS = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
           KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
           KafkaError.SASL_AUTHENTICATION_FAILED}
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}


# librdkafka's own log lines (connection failures and the like) go through cdc's logging, and so
# its formats, instead of raw "%3|...|FAIL|..." lines on stderr.
_LIBRDKAFKA_LOG = logging.getLogger("cdc.kafka.librdkafka")


def _settings(config: KafkaConfig, extra: dict[str, Any], fixed: dict[str, Any], side: str) -> dict[str, Any]:
    clash = sorted(k for k in extra if k in fixed and extra[k] != fixed[k])
    if clash:
        raise ConfigError(f"kafka.{side}: {', '.join(clash)} cannot be changed (cdc's delivery guarantee rests "
                          "on them; docs/kafka.md)")
    return {"bootstrap.servers": config.bootstrap_servers, **extra, **fixed}


def _client(settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "logger": _LIBRDKAFKA_LOG}


def _admin(config: KafkaConfig, client: dict[str, Any], role: str) -> AdminClient:
    """An admin client with the security settings of the producer or consumer section."""
    return AdminClient(_client(_settings(config, {k: v for k, v in client.items()
                                                  if k.startswith(("security.", "sasl.", "ssl."))}, {}, role)))


def _topics(config: KafkaConfig, client: dict[str, Any], role: str, timeout: float) -> tuple[AdminClient, Any]:
    """An admin client with the security settings of the producer or consumer section, and the cluster's topics.

    Raises SinkUnavailableError while the broker cannot be reached (start-up waits it out).
    """
    admin = _admin(config, client, role)
    try:
        return admin, admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise SinkUnavailableError(f"Kafka at {config.bootstrap_servers} unreachable: {exc}") from None


def ensure_topic(config: KafkaConfig, timeout: float = 10.0) -> str:
    """The topic, created with `kafka.partitions` if missing; its partition count as a description.

    Raises SinkUnavailableError while the broker cannot be reached (start-up waits it out).
    """
    admin, meta = _topics(config, config.producer, "producer", timeout)
    topic = meta.topics.get(config.topic)
    if topic is None or topic.error is not None:
        rf = config.replication_factor if config.replication_factor is not None else -1  # -1: broker default
        futures = admin.create_topics([NewTopic(config.topic, config.partitions, rf)], request_timeout=timeout)
        try:
            futures[config.topic].result(timeout)
            log.info("created Kafka topic %s with %d partitions", config.topic, config.partitions)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                if isinstance(err, KafkaError) and err.code() in _ACCESS:
                    raise ConfigError(f"Kafka refused to create topic {config.topic}: {err.str()}; create it "
                                      "yourself or grant CREATE on it") from None
                raise SinkUnavailableError(f"creating Kafka topic {config.topic}: {exc}") from None
        return f"topic {config.topic}, {config.partitions} partitions (new)"
    return f"topic {config.topic}, {len(topic.partitions)} partitions"


def subscribed(config: KafkaConfig) -> list[str]:
    """What `cdc sink` subscribes to: `topic` (cdc's actions) or `topics` (a Debezium connector's)."""
    return list(config.topics) if config.input == "debezium" else [config.topic]


def find_topics(config: KafkaConfig, timeout: float = 10.0) -> str:
    """`kafka.input: debezium`: the existing topics `kafka.topics` names or matches, as a description.

    cdc creates none of them (the connector does); a pattern also picks up topics made later.
    Raises SinkUnavailableError while the broker cannot be reached (start-up waits it out).
    """
    _, meta = _topics(config, config.consumer, "consumer", timeout)
    patterns = [re.compile(t) for t in config.topics if t.startswith("^")]
    names = set(config.topics)
    found = sorted(t for t in meta.topics if t in names or any(p.match(t) for p in patterns))
    missing = sorted(t for t in names if not t.startswith("^") and t not in meta.topics)
    if missing:
        log.warning("Kafka topic(s) %s do not exist yet; cdc sink reads them once the connector makes them",
                    ", ".join(missing))
    return f"{len(found)} topic(s): {', '.join(found) or '(none yet)'}"


class _Call:
    """The delivery reports of one `write`: how many are missing, and the failed ones.

    One bound method serves every message of the call: a closure per message (to know its
    index) cost a third of the reader's producing CPU (4 against 6-7 us per message, by hand).
    A failed report is matched back to its action by key and value, only when one fails."""

    def __init__(self, count: int):
        self.remaining = count
        self.failed: list[tuple[bytes | None, bytes | None, KafkaError]] = []
        self.lock = threading.Lock()

    def on_delivery(self, err, msg) -> None:
        with self.lock:
            self.remaining -= 1
            if err is not None:
                self.failed.append((msg.key(), msg.value(), err))

    def errors(self, keys: Sequence[bytes], values: Sequence[bytes]) -> dict[int, KafkaError]:
        """Index of the call's message -> its delivery error."""
        if not self.failed:
            return {}
        where: dict[tuple[bytes, bytes], list[int]] = {}
        for i, pair in enumerate(zip(keys, values)):
            where.setdefault(pair, []).append(i)
        found = {}
        for k, v, err in self.failed:
            indices = where.get((k, v))  # type: ignore[arg-type]
            if not indices:
                # Not one of ours as sent (it cannot happen; if it did, sending all again is harmless,
                # while counting a failed one delivered would lose it).
                return {i: err for i in range(len(keys))}
            found[indices.pop(0)] = err
        return found


class KafkaPublisher:
    """A Sink that publishes each action to `kafka.topic`, keyed by document; see the module docstring."""

    def __init__(self, config: KafkaConfig, fmt: Format | None = None):
        self.config = config
        self.format: Format = fmt or config.format
        self.fatal: KafkaError | None = None
        settings = _settings(config, config.producer, PRODUCER_FIXED, "producer")
        settings.setdefault("linger.ms", 5)
        settings.setdefault("compression.type", "lz4")
        settings.setdefault("message.timeout.ms", int(config.delivery_timeout * 1000))
        settings["error_cb"] = self._on_error
        self.producer = Producer(_client(settings))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
            log.error("Kafka producer: fatal error %s", err.str())
        else:  # connection losses and the like: librdkafka reconnects by itself
            log.warning("Kafka producer: %s", err.str())

    def check(self) -> str:
        return ensure_topic(self.config)

    def gc_deletes(self, index: str) -> float | None:
        """The snapshot's tombstone guard asks the destination; Kafka keeps no tombstones (None: the default)."""
        return None

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        """Publish; return once the broker acknowledged every message (see the module docstring).

        `refresh` (a rule's `refresh: wait_for`) has no meaning for a topic, and the message
        does not carry it: docs/kafka.md "Kafka mode" lists that as a limit.
        """
        call = _Call(len(actions))
        outcomes: dict[int, ItemResult] = {}
        topic = self.config.topic
        report = call.on_delivery
        keys, values = [], []
        for i, action in enumerate(actions):
            timestamp = None
            if self.format == "debezium":
                timestamp = int(time.time())
            value = encode(action, self.format, timestamp)
            found = headers(action, self.format)
            message_key = key(action)
            keys.append(message_key)
            values.append(value)
            while True:
                try:
                    self.producer.produce(topic, value, message_key, headers=cast(Any, found), on_delivery=report)
                    break
                except BufferError:  # the local queue is full: serve delivery reports, then try again
                    self.producer.poll(0.05)
                except KafkaException as exc:
                    err = exc.args[0]
                    outcomes[i] = self._outcome(action, err)
                    with call.lock:
                        call.remaining -= 1
                    break
        while call.remaining > 0:
            if self.fatal is not None:
                break
            self.producer.poll(0.05)
        if self.fatal is not None:
            raise SinkError(f"the Kafka producer stopped with a fatal error: {self.fatal.str()}; restart cdc "
                            "(the checkpoint is before every message not acknowledged)")
        errors = call.errors(keys, values)
        items = []
        for i, action in enumerate(actions):
            if i in outcomes:
                items.append(outcomes[i])
                continue
            err = errors.get(i)
            items.append(ItemResult(action, Outcome.OK, 201) if err is None else self._outcome(action, err))
        return BulkResult(tuple(items))

    @staticmethod
    def _outcome(action: Action, err: Any) -> ItemResult:
        if not isinstance(err, KafkaError):
            return ItemResult(action, Outcome.RETRY, 503, "kafka", str(err))
        if err.code() in _TOO_LARGE:
            return ItemResult(action, Outcome.REJECTED, 413, err.name(), err.str())
        if err.code() in _ACCESS:
            return ItemResult(action, Outcome.REJECTED, 403, err.name(), err.str())
        if err.fatal():
            raise SinkError(f"the Kafka producer stopped with a fatal error: {err.str()}")
        return ItemResult(action, Outcome.RETRY, 503, err.name(), err.str())

    def close(self) -> None:
        # Everything written was acknowledged when `write` returned; this only ends the client.
        self.producer.flush(5)
        # The producer holds our error callback, and so us: drop it here, in this thread, rather
        # than leave the cycle to a garbage collection in any thread (confluent-kafka-python #1761).
        del self.producer


def _committed(err, partitions) -> None:
    """librdkafka's report of an offset commit (an asynchronous one is not waited for)."""
    if err is not None:
        log.warning("committing Kafka offsets failed: %s; those messages are written again (harmlessly) by "
                    "whoever reads them next", err.str() if hasattr(err, "str") else err)


class ActionConsumer:
    """A consumer-group member on `kafka.topic` (or a Debezium connector's `kafka.topics`), committing
    offsets only when told.

    `on_revoke` is called (from inside `poll`/`consume`) before partitions are
    taken away, with the worker's chance to stop writing them first.
    """

    def __init__(self, config: KafkaConfig, on_assign: Callable[[list[tuple[str, int]]], None],
                 on_revoke: Callable[[list[tuple[str, int]]], None], client_id: str | None = None):
        self.config = config
        # A Debezium-fed writer reads no headers (the connector's four, on every message, made a list and four
        # tuples per message that lived with its batch): Received.headers is None there.
        self.headers = config.input != "debezium"
        settings = _settings(config, config.consumer, CONSUMER_FIXED, "consumer")
        if "cooperative" in str(settings.get("partition.assignment.strategy", "")):
            raise ConfigError("kafka.consumer: partition.assignment.strategy must be eager (range or roundrobin): "
                              "cdc sink drops an unfinished batch when partitions are revoked and relies on "
                              "reading all of it again (docs/kafka.md)")
        settings.setdefault("group.id", config.group_id)
        self.group = str(settings["group.id"])
        self._admin: AdminClient | None = None  # made on the first look at the partitions
        settings.setdefault("auto.offset.reset", "earliest")  # a new group starts at the topic's beginning
        # A killed writer's partitions move after this (librdkafka's default is 45 s). The writer
        # keeps polling while it writes, so only a dead or cut-off process misses it.
        settings.setdefault("session.timeout.ms", 10_000)
        settings.setdefault("heartbeat.interval.ms", 2_000)
        if client_id:
            settings.setdefault("client.id", client_id)
        settings["error_cb"] = lambda err: log.warning("Kafka consumer: %s", err.str())
        settings["on_commit"] = _committed
        self.consumer = Consumer(_client(settings))
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._held = False
        self.consumer.subscribe(subscribed(config), on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)

    def _assigned(self, consumer, partitions) -> None:
        # librdkafka keeps the pause flag of a partition that is revoked and then assigned back to
        # the same consumer (librdkafka #1849; Kafka's Java consumer keeps it too for partitions that
        # stay, apache/kafka#22538). A partition taken away while a batch was written (paused by
        # `hold`) would come back paused after `release` had already run on the empty assignment,
        # and never be read again while the writer kept heartbeating. So every assignment sets the
        # pause state itself: paused only while a batch is being written.
        consumer.assign(partitions)  # in the callback, so the library does not assign after it
        if partitions:
            (consumer.pause if self._held else consumer.resume)(partitions)
        self._on_assign(sorted((p.topic, p.partition) for p in partitions))

    def _revoked(self, consumer, partitions) -> None:
        self._on_revoke(sorted((p.topic, p.partition) for p in partitions))

    def consume(self, count: int, timeout: float) -> list[Received]:
        """Up to `count` messages within `timeout`; a broker error is logged and the call returns what it has."""
        try:
            messages = self.consumer.consume(count, timeout)
        except KafkaException as exc:
            raise SinkUnavailableError(f"Kafka consume failed: {exc}") from None
        received = []
        with_headers = self.headers
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise SinkError(f"Kafka consumer: fatal error {err.str()}")
                log.warning("Kafka consumer: %s", err.str())
                continue
            kind, ts = msg.timestamp()
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None  # set on every message
            # Received(...) through tuple.__new__: the NamedTuple's own __new__ is Python code (0.27 against
            # 0.12 µs a message, measured here).
            received.append(_tuple_new(Received, (topic, partition, offset, msg.value(),
                                                  ts if kind != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
                                                  msg.key(), msg.headers() if with_headers else None)))
        return received

    def hold(self) -> None:
        """Stop fetching (while a batch is written) but stay in the group: `poll` serves rebalances."""
        self._held = True
        self.consumer.pause(self.consumer.assignment())

    def release(self) -> None:
        self._held = False
        self.consumer.resume(self.consumer.assignment())

    def poll(self, timeout: float) -> Received | None:
        """Serve the group (heartbeats are librdkafka's; rebalance callbacks run here)."""
        got = self.consume(1, timeout)
        return got[0] if got else None

    def commit(self, offsets: dict[tuple[str, int], int], asynchronous: bool = False) -> None:
        """Commit `offsets` ((topic, partition) -> next offset to read); a failed asynchronous commit
        is logged (`_committed`): the messages were written, and whoever reads them next writes them
        again, harmlessly."""
        if not offsets:
            return
        try:
            listed = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            if asynchronous:
                self.consumer.commit(offsets=listed, asynchronous=True)
            else:
                self.consumer.commit(offsets=listed, asynchronous=False)
        except KafkaException as exc:
            # Not fatal: the messages were written; whoever reads them next writes them again,
            # and their versions make that harmless.
            raise SinkUnavailableError(f"committing Kafka offsets failed: {exc}") from None

    def partition_states(self, timeout: float = 2.0) -> list[PartitionState] | None:
        """Where this consumer stands in each assigned partition, from the broker; None if it did not answer.

        The read position is the consumer's own once it has read from the partition since the
        assignment, else the group's committed offset (where it starts), else the partition's start.
        """
        try:
            assigned = self.consumer.assignment()
            if not assigned:
                return []
            # Asked through an admin client, on a connection of its own: on the consumer's, each
            # request waited behind its fetch (a broker answers one connection's requests in order,
            # and a fetch waits up to fetch.wait.max.ms for data), so a look at 12 partitions held
            # the writer's loop for seconds (issue 32).
            admin = self._admin
            if admin is None:
                admin = self._admin = _admin(self.config, self.config.consumer, "consumer")
            wanted = [TopicPartition(tp.topic, tp.partition) for tp in assigned]
            high = admin.list_offsets({tp: OffsetSpec.latest() for tp in wanted}, request_timeout=timeout)
            low = admin.list_offsets({tp: OffsetSpec.earliest() for tp in wanted}, request_timeout=timeout)
            group = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(self.group, wanted)], request_timeout=timeout)
            positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(assigned)}
            commits = {(tp.topic, tp.partition): tp.offset
                       for tp in group[self.group].result(timeout).topic_partitions}
            highs = {(tp.topic, tp.partition): f.result(timeout).offset for tp, f in high.items()}
            lows = {(tp.topic, tp.partition): f.result(timeout).offset for tp, f in low.items()}
            states = []
            for tp in assigned:
                key = (tp.topic, tp.partition)
                read_to = next((o for o in (positions.get(key, -1), commits.get(key, -1)) if o >= 0), lows[key])
                states.append(PartitionState(tp.topic, tp.partition, read_to, highs[key]))
            return states
        except (KafkaException, concurrent.futures.TimeoutError, KeyError) as exc:
            log.debug("partition positions not known: %s", exc)
            return None

    def close(self) -> None:
        """Leave the group (the others take the partitions at once); the client is unusable afterwards.

        A closed Consumer crashes the interpreter on any further call (confluent-kafka-python #255,
        #1942), so it is dropped as well, which also frees it here rather than in a later GC.
        """
        self._admin = None
        consumer = self.__dict__.pop("consumer", None)
        if consumer is not None:
            consumer.close()
