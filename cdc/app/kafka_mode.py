"""Kafka mode (README: Kafka mode): `cdc run` publishes to a topic, `cdc sink` workers write it to Elasticsearch.

The reader (`cdc run` with `destination: kafka`) is the ordinary pipeline with
`KafkaPublisher` as its sink: a commit is saved only after the broker
acknowledged every earlier message (cdc/kafka/client.py), exactly as it is
saved only after Elasticsearch acknowledged them in single-process mode.

A writer (`cdc sink`) is a consumer-group member. Its loop:

1. read up to `batch.max_actions` x `batch.concurrency` messages (waiting at
   most `batch.max_interval` s when nothing is in flight) and keep the last
   write of each document (cdc/kafka/messages.py `plan`: the values of cdc's
   topic are `_bulk` lines, put together into bodies without being parsed);
2. hand each lane (`batch.concurrency` of them, threads with the same
   `BulkWriter` as `cdc run`: retries, 429, 413 split, dead letters, metrics)
   its part: every write of one document goes to the same lane, and a lane
   sends its parts one after another, so a document's writes reach
   Elasticsearch in partition order. Then read the next batch at once: reading
   and Elasticsearch's work overlap, and no lane waits for the slowest one
   (the loop once wrote a batch, waited for every lane, committed, and only
   then sent the next: a writer ran at a fifth of `cdc run`'s rate, issue 32);
3. commit the offsets after the last message of each partition of a batch once
   every lane acknowledged its part and every earlier batch is committed, as
   Kafka Connect's sink commits: offsets flushed after the records are written
   (WorkerSinkTask).

With two batches unacknowledged (an Elasticsearch outage) the writer stops
fetching, holding every partition paused, and keeps serving the group, so the
broker does not declare it dead and it holds at most two batches.

A rebalance that takes partitions away stops the lanes at their next retry
wait, commits what was acknowledged and drops the rest uncommitted: the new
owner reads it again from the last committed offset. The revocation callback
returns only after the lanes stopped, so two workers never write the same
partition at once. Redelivered messages carry their binlog versions and come
back "already newer".
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from cdc.app.session import Session, check_writable, log_summary, patiently
from cdc.errors import CdcError, ConfigError, RetryAbandoned, SinkUnavailableError
from cdc.es.destination import Destination
from cdc.kafka.client import ActionConsumer, KafkaPublisher, ensure_topic, find_topics
from cdc.kafka.debezium import ChangeDecoder, DebeziumError, Shape, Truncated
from cdc.app.debezium_plan import Planner
from cdc.kafka.messages import Received, plan
from cdc.kafka.stall import StallWatch
from cdc.model import Action, ColumnKind
from cdc.mysql.server import Database
from cdc.mysql.types import column_from_schema
from cdc.ops import build as operations
from cdc.rules import ActionBuilder, RowError, Rule, RuleSet, load_rules, resolved_or_stop
from cdc.stream.delivery import BulkWriter
from cdc.stream.observe import Stats

log = logging.getLogger("cdc.sink")


class UnreadableMessage(CdcError):
    """A message on the topic is not an action this cdc can write; it names where it is."""

    exit_code = 2


def publisher(session: Session, destination) -> KafkaPublisher:
    """`cdc run` with `destination: kafka`: the topic (made if missing) in place of Elasticsearch.

    `destination` (Elasticsearch, reached and checked at start-up so that rules'
    indices and mappings exist before writers write) stays open: the reader maps the
    fields of columns added while it runs there (cdc/es/fields.py), and writes no
    document there. The daemon closes it.
    """
    config = session.config
    described = patiently(f"connecting to Kafka at {config.kafka.bootstrap_servers}",
                          lambda: ensure_topic(config.kafka), session.stop, config.retry)
    log.info("publishing to Kafka at %s: %s, format %s", config.kafka.bootstrap_servers, described,
             config.kafka.format)
    return KafkaPublisher(config.kafka)


def latest(actions: list[Action]) -> list[Action]:
    """One action per document key, the newest (what the pipeline's Batch keeps), in first-seen order.

    A batch of messages can hold several writes of one document; one bulk
    request must not (Elasticsearch's per-item results could then finish them
    out of order on retries). Newest is the last one read, unless an earlier one
    carries a higher version: cdc's own topic keeps a document's actions in one
    partition, in order, but a Debezium topic is keyed by the table's primary
    key, so writes of a document made from several rows (or tables) can arrive
    from several partitions in any order. Elasticsearch would refuse the older
    one anyway; keeping it here would drop the newer one unwritten.
    """
    keyed: dict[tuple, Action] = {}
    for action in actions:
        kept = keyed.get(action.key)
        if kept is not None and kept.versioned and action.versioned and kept.version > action.version:
            continue
        keyed[action.key] = action
    return list(keyed.values())


def next_offsets(messages: list[Received]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the offset to resume from once `messages` are written: one past the last."""
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        where = (m.topic, m.partition)
        offsets[where] = max(offsets.get(where, 0), m.offset + 1)
    return offsets


def _unreadable(m: Received, what: str, exc: Exception) -> UnreadableMessage:
    return UnreadableMessage(
        f"message {m.topic}/{m.partition}@{m.offset} is not {what} ({exc}); nothing after it in "
        f"that partition is written and its offset is not committed. Remove or skip it (e.g. "
        f"kafka-consumer-groups --reset-offsets --to-offset {m.offset + 1}) and start again")


_FRACTION = re.compile(r"\((\d+)\)")


def shape(rule: Rule) -> Shape:
    """A resolved rule's table as `cdc.kafka.debezium` needs it: the columns as the binlog source gives them."""
    columns, fractions = {}, {}
    for info in rule.table_columns:
        column = column_from_schema(info.name, info.data_type, info.column_type, info.charset)
        columns[info.name] = column
        if column.kind in (ColumnKind.DATETIME, ColumnKind.TIME, ColumnKind.TIMESTAMP):
            match = _FRACTION.search(info.column_type)
            fractions[info.name] = int(match.group(1)) if match else 0
    return Shape(columns, fractions)


class DebeziumInput:
    """`kafka.input: debezium`: change events -> row changes -> actions, through the rules (README: Kafka mode).

    The same `ActionBuilder` as `cdc run` (rules, value options, version epoch)
    turns each row into actions; a row the rules cannot convert stops the sink
    as it stops `cdc run`, naming the message.
    """

    def __init__(self, rules: RuleSet, builder: ActionBuilder, planned: bool = True):
        self.rules = rules
        self.builder = builder
        self.shapes = {(r.schema, r.table): shape(r) for r in rules.rules}
        self.decoder = ChangeDecoder(self.shape_of)
        # The same actions without the RowChange and ActionBuilder layers, for the messages its plans
        # cover (cdc/app/debezium_plan.py); the others, and every error, go the way below.
        self.planner = Planner(builder, self.decoder, self.shape_of) if planned else None
        self.tombstones = 0
        self.truncates = 0

    def shape_of(self, schema: str, table: str) -> Shape | None:
        return self.shapes.get((schema, table))

    def __call__(self, messages: list[Received]) -> list[Action]:
        actions: list[Action] = []
        planner = self.planner
        for m in messages:
            if planner is not None and m.value is not None:
                planned = planner.actions(m.value)
                if planned is not None:
                    actions += planned
                    continue
            try:
                change = self.decoder.decode(m.value)
            except Truncated as exc:
                # As `cdc run` treats a TRUNCATE in the binlog (docs/limitations.md "Limitations"): not turned
                # into deletes. Said once per message, with where it is, never passed over silently.
                self.truncates += 1
                log.warning("%s (message %s/%s@%s): cdc does not turn a TRUNCATE into deletes; the index keeps "
                            "the table's documents until they are deleted or copied again (docs/kafka.md)",
                            exc, m.topic, m.partition, m.offset,
                            extra={"event": "truncate", "table": f"{exc.schema}.{exc.table}",
                                   "position": str(exc.position)})
                continue
            except DebeziumError as exc:
                raise _unreadable(m, "a Debezium row change cdc can apply", exc) from None
            if change is None:
                self.tombstones += 1  # the delete before it carried the change; Kafka compaction's marker
                continue
            try:
                actions.extend(self.builder.actions(change))
            except RowError as exc:
                raise UnreadableMessage(f"message {m.topic}/{m.partition}@{m.offset}: {exc}") from None
        return actions


@dataclass
class _Batch:
    """Messages read together and handed to the lanes: committed once every lane acknowledged its part."""

    offsets: dict[tuple[str, int], int]
    messages: int
    left: int  # lanes still writing their part
    newest: int | None  # the newest message's timestamp (ms)


# gc's third threshold while a writer runs: a full collection every this many middle ones (SinkWorker.run).
FULL_COLLECTION_EVERY = 100


class SinkWorker:
    """The loop of `cdc sink` (see the module docstring)."""

    def __init__(self, session: Session, destination, stats: Stats,
                 consumer_factory: Callable[..., ActionConsumer] = ActionConsumer,
                 decode_batch: Callable[[list[Received]], list[Action]] | None = None):
        self.session = session
        self.config = session.config
        self.destination = destination
        self.stats = stats
        # None: cdc's own topic, whose values are bulk lines put together unparsed (cdc/kafka/messages.py plan)
        self.decode_batch = decode_batch
        self.last_loop: float | None = None
        self._abort = threading.Event()
        self._carry: list[Received] = []
        self.partitions: list[int] = []
        client_id = f"cdc-sink-{socket.gethostname()}-{os.getpid()}"
        self.consumer = consumer_factory(self.config.kafka, self._assigned, self._revoked_cb, client_id=client_id)
        # Batches handed to the lanes, oldest first, by number; acknowledged ones leave from the front.
        self._batches: dict[int, _Batch] = {}
        self._next_batch = 0
        self._unacknowledged = 0  # messages of the batches above
        self._outstanding = 0  # parts handed to lanes and not reported
        self._reports: queue.SimpleQueue = queue.SimpleQueue()
        self._inboxes: list[queue.SimpleQueue] = []
        self._failures: list[BaseException] = []
        self._revoking = False
        self._held_at: float | None = None
        # Partitions assigned but not read (cdc/kafka/stall.py), looked at every few seconds between batches.
        self.stalls = StallWatch(self.config.kafka.stall_after)
        self._held_for = 0.0  # seconds its partitions were paused on purpose, which the stall clock leaves out
        self.stalled: set[tuple[str, int]] = set()
        self._look_every = min(10.0, self.config.kafka.stall_after / 3)
        self._next_look = time.monotonic() + self._look_every

    def _describe(self, partitions: list[tuple[str, int]]) -> str:
        """"0,2,4 of TOPIC" for cdc's one topic; "TOPIC[0],OTHER[0]" for a Debezium connector's topics."""
        if self.config.kafka.input == "cdc":
            return f"{','.join(str(p) for _, p in partitions) or '(none)'} of {self.config.kafka.topic}"
        return ",".join(f"{t}[{p}]" for t, p in partitions) or "(none)"

    def _assigned(self, partitions: list[tuple[str, int]]) -> None:
        self.partitions = [p for _, p in partitions]
        self.stalls.reset()
        log.info("assigned partitions %s", self._describe(partitions))

    def _revoked_cb(self, partitions: list[tuple[str, int]]) -> None:
        """Inside poll: stop writing what we are losing before the group hands it to someone else.

        What the lanes finished is committed; the rest is dropped uncommitted, and the next owner
        reads it again from there (its versions make any write done twice harmless)."""
        self._carry.clear()  # read before the revocation; the next owner reads them again
        if self._outstanding:
            log.info("partitions %s revoked while writing a batch: stopping it (what is not acknowledged is "
                     "left uncommitted)", self._describe(partitions))
            self._abort.set()
            self._revoking = True
            try:
                while self._outstanding:
                    self._reap(0.1)
            finally:
                self._revoking = False
        self._commit_acknowledged(asynchronous=False)
        self._batches.clear()
        self._unacknowledged = 0
        # A lane that gave up because the partitions went away failed at nothing; any other error stands.
        self._failures = [f for f in self._failures if not isinstance(f, SinkUnavailableError)]
        self._abort.clear()
        log.info("revoked partitions %s", self._describe(partitions))

    def run(self) -> Stats:
        # A writer's batches (messages, actions, their documents) live until Elasticsearch acknowledged them,
        # and hold no reference cycles; Python's full collections, at their default of one every tenth
        # middle one, walked them again and again. Measured with gc.callbacks on bench/kafka_catchup.py's
        # Debezium topic (109,965 messages): 1.15 s of the writer's 5.96 CPU s in the collector, 0.64 s of
        # it in 17 full collections; full collections ten times rarer: 0.65 s (the cdc-format writer:
        # 0.46 -> 0.31 s). Young and middle collections, which find nearly every cycle made, are unchanged.
        thresholds = gc.get_threshold()
        gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], FULL_COLLECTION_EVERY))
        try:
            return self._run()
        finally:
            gc.set_threshold(*thresholds)

    def _run(self) -> Stats:
        observers = self.session.observer()
        count = self.config.batch.concurrency
        # One bulk writer per lane (a writer's counters are its own thread's).
        writers = [self.session.writer(self.destination, Stats(), observed=True) for _ in range(count)]
        for writer in writers:
            writer.abort = self._abort
        self._inboxes = [queue.SimpleQueue() for _ in writers]
        lanes = [threading.Thread(target=self._lane, args=(w, inbox), name=f"cdc-sink-lane-{k}", daemon=True)
                 for k, (w, inbox) in enumerate(zip(writers, self._inboxes))]
        for lane in lanes:
            lane.start()
        stop = self.session.stop
        # A batch is what `cdc run` has in flight at most: `concurrency` requests of `max_actions`.
        most, wait = self.config.batch.max_actions * count, self.config.batch.max_interval
        try:
            while not stop.is_set():
                self.last_loop = time.monotonic()
                self._reap(0)
                if self._unacknowledged >= 2 * most:
                    # Two batches unacknowledged: stop fetching, so that an Elasticsearch outage holds
                    # no more than that; `poll` still serves the group (heartbeats, rebalances).
                    self._hold()
                    self._reap(0.05)
                    got = self.consumer.poll(0)  # paused: only a new assignment can hand out a message
                    if got is not None:
                        self._carry.append(got)
                    continue
                self._release()
                messages, self._carry = self._carry, []
                if len(messages) < most:
                    # While lanes write, read on without waiting: the broker's fetches and the batching
                    # overlap Elasticsearch's work instead of taking turns with it.
                    messages += self.consumer.consume(most - len(messages), 0.05 if self._batches else wait)
                if messages:
                    self._submit(messages)
                elif not self._batches and observers is not None:
                    observers.on_event(time.time())  # caught up: like the server's heartbeat
                if time.monotonic() >= self._next_look:
                    self.look_at_partitions(time.monotonic() - self._held_for)
            # Stopping: what the lanes hold is finished and committed first (SIGTERM's promise).
            self._hold()
            while self._outstanding:
                self.last_loop = time.monotonic()  # waiting for Elasticsearch is not being stuck
                self._reap(0.1)
                self.consumer.poll(0)
            self._commit_acknowledged(asynchronous=False)
        finally:
            self._abort.set()  # on an error: lanes waiting to retry give up (nothing of theirs is committed)
            for inbox in self._inboxes:
                inbox.put(None)
            for lane in lanes:
                lane.join()
            self.consumer.close()  # leaves the group: the others take over at once
        return self.stats

    def _lane(self, writer: BulkWriter, inbox: queue.SimpleQueue) -> None:
        """One lane: its parts in the order handed over, one after another, so a document's writes
        (always in the same lane) reach Elasticsearch in partition order."""
        while True:
            item = inbox.get()
            if item is None:
                return
            number, requests = item
            error: BaseException | None = None
            if self._abort.is_set():
                error = RetryAbandoned("not sent: the batch was given up")
            else:
                try:
                    writer.write(requests)  # in bulk requests of at most batch.max_actions / max_bytes
                except BaseException as exc:
                    error = exc
                    self._abort.set()  # the other lanes stop at their next retry wait
            counts = tuple(getattr(writer.stats, name) for name in _COUNTED)
            for name in _COUNTED:
                setattr(writer.stats, name, 0)
            self._reports.put((number, error, counts))

    def _submit(self, messages: list[Received]) -> None:
        batch = self.config.batch
        if self.decode_batch is None:
            planned = plan(messages, len(self._inboxes), batch.max_actions, batch.max_bytes,
                           lambda m, exc: _unreadable(m, "a cdc action", exc))
            parts = planned.lanes
        else:  # Debezium change events, through the rules
            lists: list[list[Action]] = [[] for _ in self._inboxes]
            for action in latest(self.decode_batch(messages)):
                lists[hash((action.index, action.doc_id)) % len(lists)].append(action)
            parts = list(lists)
        number = self._next_batch
        self._next_batch += 1
        busy = [(inbox, part) for inbox, part in zip(self._inboxes, parts) if len(part)]
        newest = max((m.timestamp_ms for m in messages if m.timestamp_ms is not None), default=None)
        self._batches[number] = _Batch(next_offsets(messages), len(messages), len(busy), newest)
        self._unacknowledged += len(messages)
        for inbox, part in busy:
            self._outstanding += 1
            inbox.put((number, part))
        if not busy:  # nothing to write (tombstones, a truncate): its offsets are committed as they come
            self._commit_acknowledged(asynchronous=True)

    def _reap(self, timeout: float) -> None:
        """Take the lanes' reports (waiting up to `timeout` for the first), commit what is acknowledged."""
        try:
            report = self._reports.get(timeout=timeout) if timeout > 0 else self._reports.get_nowait()
        except queue.Empty:
            return
        while True:
            number, error, counts = report
            self._outstanding -= 1
            for name, value in zip(_COUNTED, counts):
                setattr(self.stats, name, getattr(self.stats, name) + value)
            if error is not None:
                self._failures.append(error)
            elif number in self._batches:
                self._batches[number].left -= 1
            try:
                report = self._reports.get_nowait()
            except queue.Empty:
                break
        if self._revoking:
            return
        if self._failures:
            # The first error that is not another lane giving up because of it.
            real = [f for f in self._failures if not isinstance(f, RetryAbandoned)]
            raise (real or self._failures)[0]
        self._commit_acknowledged(asynchronous=True)

    def _commit_acknowledged(self, asynchronous: bool) -> None:
        """Commit the offsets after the batches that Elasticsearch acknowledged, with every one before them.

        Asynchronously while running (as Kafka Connect's sink commits offsets after the records are
        written, WorkerSinkTask): a commit that is lost only means those messages are written again,
        harmlessly. On a revocation and at the end, synchronously."""
        offsets: dict[tuple[str, int], int] = {}
        done, newest = 0, None
        while self._batches:
            number, batch = next(iter(self._batches.items()))
            if batch.left > 0:
                break
            del self._batches[number]
            self._unacknowledged -= batch.messages
            done += 1
            for where, offset in batch.offsets.items():
                offsets[where] = max(offsets.get(where, 0), offset)
            if batch.newest is not None:
                newest = batch.newest if newest is None else max(newest, batch.newest)
        if not done:
            return
        try:
            self.consumer.commit(offsets, asynchronous=asynchronous)
        except SinkUnavailableError as exc:
            log.warning("%s; the batch is written, and is written again (harmlessly) by whoever reads it next", exc)
            return
        self.stats.batches += done
        observers = self.session.observer()
        if observers is not None:
            if newest is not None:
                observers.on_event(newest / 1000)
            observers.on_acknowledged([], None)

    def _hold(self) -> None:
        if self._held_at is None:
            self._held_at = time.monotonic()
            self.consumer.hold()

    def _release(self) -> None:
        if self._held_at is not None:
            self._held_for += time.monotonic() - self._held_at  # paused on purpose: not a stall (kafka/stall.py)
            self._held_at = None
            self.consumer.release()

    def look_at_partitions(self, now: float) -> None:
        """Report each assigned partition's lag, and find, log and resume the stalled ones.

        `now` is a clock that stands still while the writer holds its partitions paused on purpose.

        A stalled partition is resumed: whatever paused it (librdkafka #1849 was one cause), the
        writer is between batches, when nothing of its own should be paused. The warning stays in
        the log and the metric shows the stall until the partition is read again.
        """
        self._next_look = time.monotonic() + self._look_every
        states = self.consumer.partition_states()
        if states is None:
            return  # the broker did not answer; the next look asks again
        stalled = self.stalls.update(states, now)
        keys = {(s.topic, s.partition) for s in stalled}
        new = [s for s in stalled if (s.topic, s.partition) not in self.stalled]
        if new:
            log.warning("partitions %s: %d message(s) waiting, not read for at least %.0f s although assigned to "
                        "this writer and not held by a batch (kafka.stall_after); resuming them",
                        self._describe([(s.topic, s.partition) for s in new]), sum(s.lag for s in new),
                        self.stalls.after, extra={"event": "partitions_stalled"})
            self.consumer.release()
        moving = sorted(self.stalled - keys)
        if moving:
            log.info("partitions %s are read again", self._describe(moving))
        self.stalled = keys
        observers = self.session.observer()
        if observers is not None:
            observers.on_partitions({(s.topic, s.partition): s.lag for s in states}, keys)

# The counters of a lane's writer that add up into the worker's.
_COUNTED = ("actions_sent", "actions_stale", "item_retries", "request_retries", "dead_lettered")


def sink(session: Session) -> Stats:
    """`cdc sink`: write the topic to Elasticsearch as a member of `kafka.group_id`, until stopped."""
    config = session.config
    check_writable(session.writable_paths(checkpoint=False))
    stats = Stats()
    worker: SinkWorker | None = None
    close_operations = operations.start(config, session.observers,
                                        lambda: worker.last_loop if worker is not None else None)
    debezium = config.kafka.input == "debezium"
    decode_batch = debezium_input(session) if debezium else None
    destination = Destination(config.elasticsearch)
    try:
        cluster = session.reach(destination)
        if debezium:
            assert isinstance(decode_batch, DebeziumInput)
            prepare_indices(session, decode_batch.rules, destination)
        described = patiently(f"connecting to Kafka at {config.kafka.bootstrap_servers}",
                              lambda: find_topics(config.kafka) if debezium else ensure_topic(config.kafka),
                              session.stop, config.retry)
        log.info("%s; reading Kafka %s (%s%s) as group %s", cluster,
                 config.kafka.bootstrap_servers, described, ", Debezium change events" if debezium else "",
                 config.kafka.group_id)
        worker = SinkWorker(session, destination, stats, decode_batch=decode_batch)
        session.observers.on_start(None, None, None)
        return worker.run()
    finally:
        destination.close()
        session.observers.on_stopping()
        close_operations()
        log_summary(stats, None)


def debezium_input(session: Session) -> DebeziumInput:
    """The rules, checked against the tables as `cdc run` checks them, and the builder that applies them.

    The sink reads no binlog, so it asks MySQL only for information_schema (its
    user needs SELECT on the mapped tables, nothing more): primary keys, column
    types, MariaDB's JSON columns; exactly what `cdc run` resolves its rules with.
    """
    config = session.config
    rules = load_rules(config.resolve(config.rules))
    db = patiently("connecting to MySQL", lambda: Database(config.mysql), session.stop, config.retry)
    try:
        rules = resolved_or_stop(rules, db.catalog(rules))
    finally:
        db.close()
    refuse_unversioned(rules)
    log.info("%d rule(s) for Debezium change events: %s", len(rules),
             ", ".join(f"{r.name}->{r.index}" for r in rules.rules))
    return DebeziumInput(rules, session.builder(rules, None))


def refuse_unversioned(rules: RuleSet) -> None:
    """Rules in `mode: update` cannot be applied from a Debezium topic (README: Kafka mode).

    A Debezium topic is keyed by the table's primary key, not by document: partial updates of
    one document could arrive from several partitions out of order, and without versions
    nothing would put them back in order.
    """
    unversioned = [r.source for r in rules.rules if r.mode != "index"]
    if unversioned:
        raise ConfigError(f"kafka.input: debezium writes versioned documents only; rule(s) in mode: update "
                          f"cannot be applied from a Debezium topic: {', '.join(unversioned)}")


def prepare_indices(session: Session, rules: RuleSet, destination: Destination) -> None:
    """Indices and mappings as `cdc run` makes them before its first write (Session.prepare)."""
    session.prepare_indices(rules, destination)
