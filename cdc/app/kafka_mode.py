"""Kafka mode (README: Kafka mode): `cdc run` publishes to a topic, `cdc sink` workers write it to Elasticsearch.

The reader (`cdc run` with `destination: kafka`) is the ordinary pipeline with
`KafkaPublisher` as its sink: a commit is saved only after the broker
acknowledged every earlier message (cdc/kafka/client.py), exactly as it is
saved only after Elasticsearch acknowledged them in single-process mode.

A writer (`cdc sink`) is a consumer-group member. One turn of its loop:

1. read up to `batch.max_actions` x `batch.concurrency` messages (at most
   `batch.max_interval` s) and keep the last write of each document;
2. write them through the same `BulkWriter` as `cdc run` (retries, 429, 413
   split, dead letters, metrics) in up to `batch.concurrency` bulk requests at
   once (all writes of one document in one lane, in order; lanes may finish in
   any order), on other threads, while this thread keeps serving the group with
   every partition paused (so an Elasticsearch outage is waited out without
   the broker declaring the worker dead);
3. commit the offsets after the last message of each partition, and only after
   Elasticsearch acknowledged the batch (Kafka Connect's sink commits the same
   way: offsets flushed after the records are written, WorkerSinkTask).

A rebalance that takes partitions away during step 2 stops the write at its
next retry wait and drops the batch uncommitted: the new owner reads it again
from the last committed offset. The revocation callback returns only after the
write stopped, so two workers never write the same partition at once and a
document's writes reach Elasticsearch in partition order. Redelivered messages
carry their binlog versions and come back "already newer".
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from cdc.app.session import Session, check_writable, log_summary, patiently
from cdc.errors import CdcError, SinkUnavailableError
from cdc.es.destination import Destination
from cdc.kafka.client import ActionConsumer, KafkaPublisher, Received, ensure_topic
from cdc.kafka.messages import MessageError, decode
from cdc.model import Action
from cdc.ops import build as operations
from cdc.stream.delivery import BulkWriter
from cdc.stream.observe import Stats

log = logging.getLogger("cdc.sink")


class UnreadableMessage(CdcError):
    """A message on the topic is not an action this cdc can write; it names where it is."""

    exit_code = 2


def publisher(session: Session, destination) -> KafkaPublisher:
    """`cdc run` with `destination: kafka`: the topic (made if missing) in place of Elasticsearch.

    `destination` (Elasticsearch, reached and checked at start-up so that rules'
    indices and mappings exist before writers write) is closed: the reader
    writes nothing else there.
    """
    config = session.config
    destination.close()
    described = patiently("connecting to Kafka", lambda: ensure_topic(config.kafka), session.stop, config.retry)
    log.info("publishing to Kafka at %s: %s, format %s", config.kafka.bootstrap_servers, described,
             config.kafka.format)
    return KafkaPublisher(config.kafka)


def latest(actions: list[Action]) -> list[Action]:
    """One action per document key, the last one read (what the pipeline's Batch keeps), in first-seen order.

    A batch of messages can hold several writes of one document; one bulk
    request must not (Elasticsearch's per-item results could then finish them
    out of order on retries).
    """
    keyed: dict[tuple, Action] = {}
    for action in actions:
        keyed[action.key] = action
    return list(keyed.values())


def next_offsets(messages: list[Received]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the offset to resume from once `messages` are written: one past the last."""
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        where = (m.topic, m.partition)
        offsets[where] = max(offsets.get(where, 0), m.offset + 1)
    return offsets


def decoded(messages: list[Received]) -> list[Action]:
    actions = []
    for m in messages:
        try:
            actions.append(decode(m.value))
        except MessageError as exc:
            raise UnreadableMessage(
                f"message {m.topic}/{m.partition}@{m.offset} is not a cdc action ({exc}); nothing after it in "
                f"that partition is written and its offset is not committed. Remove or skip it (e.g. "
                f"kafka-consumer-groups --reset-offsets --to-offset {m.offset + 1}) and start again") from None
    return actions


class SinkWorker:
    """The loop of `cdc sink` (see the module docstring)."""

    def __init__(self, session: Session, destination, stats: Stats,
                 consumer_factory: Callable[..., ActionConsumer] = ActionConsumer):
        self.session = session
        self.config = session.config
        self.destination = destination
        self.stats = stats
        self.last_loop: float | None = None
        self._abort = threading.Event()
        self._revoked = False
        self._carry: list[Received] = []
        self.partitions: list[int] = []
        client_id = f"cdc-sink-{socket.gethostname()}-{os.getpid()}"
        self.consumer = consumer_factory(self.config.kafka, self._assigned, self._revoked_cb, client_id=client_id)
        self._writing: threading.Thread | None = None

    def _assigned(self, partitions: list[int]) -> None:
        self.partitions = partitions
        log.info("assigned partitions %s of %s", ",".join(map(str, partitions)) or "(none)", self.config.kafka.topic)

    def _revoked_cb(self, partitions: list[int]) -> None:
        """Inside poll: stop writing what we are losing before the group hands it to someone else."""
        self._revoked = True
        self._carry.clear()  # read before the revocation; the next owner reads them again
        writing = self._writing
        if writing is not None and writing.is_alive():
            log.info("partitions %s revoked while writing a batch: stopping it (it is left uncommitted)",
                     ",".join(map(str, partitions)))
            self._abort.set()
            writing.join()
        log.info("revoked partitions %s", ",".join(map(str, partitions)) or "(none)")

    def run(self) -> Stats:
        observers = self.session.observer()
        lanes = self.config.batch.concurrency
        # One bulk writer per lane (a writer's counters are its own thread's).
        writers = [self.session.writer(self.destination, Stats(), observed=True) for _ in range(lanes)]
        for writer in writers:
            writer.abort = self._abort
        stop = self.session.stop
        # Up to `concurrency` bulk requests of `max_actions` in flight, as `cdc run` sends them.
        most, wait = self.config.batch.max_actions * lanes, self.config.batch.max_interval
        try:
            while not stop.is_set():
                self.last_loop = time.monotonic()
                messages, self._carry = self._carry, []
                if len(messages) < most:
                    messages += self.consumer.consume(most - len(messages), wait)
                if not messages:
                    if observers is not None:
                        observers.on_event(time.time())  # caught up: like the server's heartbeat
                    continue
                self._write_and_commit(messages, writers)
        finally:
            for writer in writers:
                self._count(writer)
            self.consumer.close()  # leaves the group: the others take over at once
        return self.stats

    def _write_and_commit(self, messages: list[Received], writers: list[BulkWriter]) -> None:
        actions = latest(decoded(messages))
        failure: list[BaseException] = []
        self._revoked = False
        self._abort.clear()
        # A document's writes (an update per table of a `mode: update` index, a routing change's
        # delete and index) all go to one lane, in order; lanes may finish in any order.
        lanes: list[list[Action]] = [[] for _ in writers]
        for action in actions:
            lanes[hash((action.index, action.doc_id)) % len(lanes)].append(action)

        def write() -> None:
            def lane(writer: BulkWriter, mine: list[Action]) -> None:
                try:
                    writer.write(mine)  # in bulk requests of at most batch.max_actions / max_bytes
                except BaseException as exc:
                    failure.append(exc)
                    self._abort.set()  # the other lanes stop at their next retry wait

            threads = [threading.Thread(target=lane, args=(w, lanes[k]), name=f"cdc-sink-lane-{k}", daemon=True)
                       for k, w in enumerate(writers) if lanes[k]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        self.consumer.hold()
        self._writing = threading.Thread(target=write, name="cdc-sink-write", daemon=True)
        self._writing.start()
        while self._writing.is_alive():
            self.last_loop = time.monotonic()  # waiting for Elasticsearch is not being stuck
            got = self.consumer.poll(0.2)  # paused: only a new assignment can hand out a message
            if got is not None:
                self._carry.append(got)
        self._writing.join()
        self._writing = None
        self.consumer.release()
        for writer in writers:
            self._count(writer)
        if self._revoked:
            # Partitions were taken away while (or just before) writing: never commit for them.
            real = [f for f in failure if not isinstance(f, SinkUnavailableError)]
            if real:
                raise real[0]
            return
        if failure:
            # The first error that is not another lane giving up because of it.
            real = [f for f in failure if "stopped while waiting to retry" not in str(f)]
            raise (real or failure)[0]
        try:
            self.consumer.commit(next_offsets(messages))
        except SinkUnavailableError as exc:
            log.warning("%s; the batch is written, and is written again (harmlessly) by whoever reads it next", exc)
            return
        self.stats.batches += 1
        newest = max((m.timestamp_ms for m in messages if m.timestamp_ms is not None), default=None)
        observers = self.session.observer()
        if observers is not None:
            if newest is not None:
                observers.on_event(newest / 1000)
            observers.on_acknowledged(actions, None)

    def _count(self, writer: BulkWriter) -> None:
        for name in ("actions_sent", "actions_stale", "item_retries", "request_retries", "dead_lettered"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(writer.stats, name))
            setattr(writer.stats, name, 0)


def sink(session: Session) -> Stats:
    """`cdc sink`: write the topic to Elasticsearch as a member of `kafka.group_id`, until stopped."""
    config = session.config
    check_writable(session.writable_paths(checkpoint=False))
    stats = Stats()
    worker: SinkWorker | None = None
    close_operations = operations.start(config, session.observers,
                                        lambda: worker.last_loop if worker is not None else None)
    destination = Destination(config.elasticsearch)
    try:
        status = patiently("connecting to Elasticsearch", destination.check, session.stop, config.retry)
        described = patiently("connecting to Kafka", lambda: ensure_topic(config.kafka), session.stop,
                              config.retry)
        log.info("Elasticsearch cluster is %s; reading Kafka %s (%s) as group %s", status,
                 config.kafka.bootstrap_servers, described, config.kafka.group_id)
        worker = SinkWorker(session, destination, stats)
        session.observers.on_start(None, None, None)
        return worker.run()
    finally:
        destination.close()
        session.observers.on_stopping()
        close_operations()
        log_summary(stats, None)
