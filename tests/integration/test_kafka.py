"""Kafka mode on real servers: `cdc run` -> a real Kafka broker (KRaft, scripts/kafka_broker.py) -> `cdc sink` -> ES.

The broker is started once per session by the `kafka` fixture, only for these
tests; each test has its own topic and consumer group.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from harness import (CdcProcess, kafka_broker_up, kafka_lock, matched, wait_for, CdcSetup, WriteLoad, create_two_tables, es_docs, free_port, index_rules,
                     wait_until_equal)
from proxy import FaultProxy


RESTARTS_BROKER = {"test_nothing_lost_when_reader_writers_broker_and_elasticsearch_fail_under_load"}


@pytest.fixture(scope="session")
def broker():
    with kafka_broker_up() as bootstrap:
        yield bootstrap


@pytest.fixture
def kafka(broker, request):
    """Kafka tests run side by side, except the ones that restart the broker (RESTARTS_BROKER)."""
    with kafka_lock(".kafka-tests.lock", exclusive=request.node.name in RESTARTS_BROKER):
        yield broker


def kafka_settings(bootstrap: str, topic: str, partitions: int = 6, **extra) -> dict:
    return {"bootstrap_servers": bootstrap, "topic": topic, "partitions": partitions, "group_id": f"g-{topic}",
            "delivery_timeout": 10,
            # a SIGKILLed writer's partitions move after 3 s instead of 45 s (the test broker allows
            # sessions down to 2 s: group.min.session.timeout.ms in scripts/kafka_broker.py)
            "consumer": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 1000}, **extra}


def reader_setup(directory, servers, rules, bootstrap, topic, **overrides) -> CdcSetup:
    return _setup(directory, servers, rules, {"destination": "kafka", "kafka": kafka_settings(bootstrap, topic)},
                  **overrides)


def writer_setup(tmp_path, servers, rules, bootstrap, topic, es_url: str | None = None) -> CdcSetup:
    extra: dict = {"kafka": kafka_settings(bootstrap, topic)}
    setup = _setup(tmp_path, servers, rules, extra)
    if es_url is not None:
        _patch(setup, lambda c: c["elasticsearch"].update(hosts=[es_url]))
    return setup


def _setup(directory, servers, rules, top: dict, **overrides) -> CdcSetup:
    directory.mkdir(parents=True, exist_ok=True)
    setup = CdcSetup(directory, servers, rules, **overrides)
    _patch(setup, lambda c: c.update(top))
    return setup


def _patch(setup: CdcSetup, change) -> None:
    import yaml

    config = yaml.safe_load(setup.config_path.read_text())
    change(config)
    setup.config_path.write_text(yaml.safe_dump(config))


def sink(setup: CdcSetup) -> CdcProcess:
    proc = setup.process("sink", "--log-format", "json", "--log-level", "DEBUG").start()
    return proc


def verify(setup: CdcSetup) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "cdc", "verify", "--config", str(setup.config_path), "--json",
                           "--log-format", "json"], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **setup.env})
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"verify exited {proc.returncode} without a report:\n{proc.stdout}\n{proc.stderr[-4000:]}")


def read_topic(bootstrap: str, topic: str, timeout: float = 30) -> list:
    """Every message the topic holds: each partition read from its start to its end offset as it is
    now (the producers have stopped). Reading until the end offsets, rather than until a count or a
    quiet spell, proves "nothing else" without waiting out a timeout (cdc's producer is idempotent,
    not transactional: no control records, so the offsets between the watermarks are all messages)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peek-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        want = sum(high - low for low, high in marks.values())
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in marks.items()])
        got: list = []
        deadline = time.monotonic() + timeout
        while len(got) < want:
            assert time.monotonic() < deadline, f"{len(got)} of the {want} messages of {topic} read in {timeout}s"
            got += [m for m in consumer.consume(want - len(got), 1.0) if m.error() is None]
    finally:
        consumer.close()
    return got


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """The sum of the group's committed offsets (how far its writers have acknowledged)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def committed_to_end(bootstrap: str, group: str, topic: str, partitions) -> bool:
    """Whether the group's committed offset of each of `partitions` is that partition's end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        done = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return all(tp.offset == consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
                   for tp in done)
    finally:
        consumer.close()


def assignments(proc: CdcProcess) -> list[list[int]]:
    """Each 'assigned partitions 0,2,4 of TOPIC' the writer logged, in order."""
    out = []
    for line in proc.logs():
        msg = str(line.get("msg", ""))
        if msg.startswith("assigned partitions "):
            listed = msg.split()[2]
            out.append([] if listed == "(none)" else [int(p) for p in listed.split(",")])
    return out


# ---------------------------------------------------------------------------------------------------------------


def test_reader_publishes_documented_messages_and_a_writer_indexes_them(
        tmp_path, servers, kafka, db, database, index_prefix, es):
    create_two_tables(db, 50)  # copied by the snapshot, through Kafka too
    topic = f"t-{index_prefix}"
    rules = index_rules(database, index_prefix, "a", "b")
    reader = reader_setup(tmp_path / "reader", servers, rules, kafka, topic)
    cdc = reader.run()
    cdc.wait_for_log("publishing to Kafka")
    cdc.wait_for_event("snapshot_done", timeout=60)
    db.execute("UPDATE a SET v = -1 WHERE id = 3", "DELETE FROM a WHERE id = 4",
               "INSERT INTO b VALUES (99, 1, 12.50)")
    wsetup = writer_setup(tmp_path / "writer", servers, rules, kafka, topic)
    metrics_port = free_port()
    _patch(wsetup, lambda c: c.update(metrics={"enabled": True, "port": metrics_port}))
    writer = sink(wsetup)
    try:
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])
        wait_until_equal(db, es, "b", f"{index_prefix}-b", ["k1", "k2"])
        # The writer's /metrics counts its bulk items as `cdc run` does: the 103 messages, less the
        # writes a batch replaced (a/3's copy and update, a/4's copy and delete, if read together).
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        ok = float(matched(r'^cdc_actions_written_total\{outcome="ok"\} (\S+)$', text, re.M).group(1))
        assert 101 <= ok <= 103, text
        code, report = verify(reader)
        assert code == 0 and report["summary"]["ok"], report
        assert report["summary"]["missing"] == report["summary"]["differing"] == report["summary"]["orphans"] == 0
    finally:
        assert writer.stop() == 0
        assert cdc.stop() == 0
    assert "stopped:" in writer.text()

    # The messages are the documented format (docs/kafka.md "Message format", version 2): the
    # value is the action's _bulk lines, keyed by index/id, with the binlog version; the headers
    # say the format version and where the row came from.
    messages = read_topic(kafka, topic)
    assert len(messages) == 103  # 50 + 50 snapshot rows, an update, a delete, an insert, and nothing else
    values = []
    for m in messages:
        found = dict(m.headers())
        assert found["cdc"] == b"2"
        schema, table, file, pos = orjson.loads(found["cdc-source"])
        assert schema == database and table in ("a", "b") and file.startswith("binlog.") and pos > 0
        lines = m.value().split(b"\n")
        assert lines[-1] == b""  # every line ends in a newline: values put together make a _bulk body
        (action, meta), = orjson.loads(lines[0]).items()
        assert meta["version_type"] == "external" and isinstance(meta["version"], int)
        assert len(lines) == (2 if action == "delete" else 3)
        values.append({"action": action, "index": meta["_index"], "id": meta["_id"]})
    deleted = [v for v in values if v["action"] == "delete"]
    assert [(v["index"], v["id"]) for v in deleted] == [(f"{index_prefix}-a", "4")]
    for m, v in zip(messages, values):
        assert m.key() == f"{v['index']}/{v['id']}".encode()
    # one document, one partition: the update of a/3 sits in the partition of its snapshot copy
    partitions_of_a3 = {m.partition() for m, v in zip(messages, values) if v["id"] == "3" and v["index"].endswith("-a")}
    assert len(partitions_of_a3) == 1
    # The reader's checkpoint moved past the writes only because Kafka acknowledged them.
    assert reader.position() is not None


def test_a_writer_refuses_a_format_version_it_does_not_know_naming_where_it_is(
        tmp_path, servers, kafka, database, index_prefix, es):
    """A message of a newer format (a reader upgraded before its writers) stops `cdc sink` with exit 2,
    naming the partition and offset, and nothing of it or after it is written or committed."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"t-{index_prefix}"
    admin = AdminClient({"bootstrap.servers": kafka})  # kept: a client destroyed before its result fails it
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka})
    index = f"{index_prefix}-a"
    line = b'{"index":{"_index":"%s","_id":"1","version":5,"version_type":"external"}}\n{"id":1}\n' % index.encode()
    producer.produce(topic, line, f"{index}/1".encode(), headers=[("cdc", b"2"), ("cdc-source", b'["s","a","binlog.000001",5]')])
    producer.produce(topic, line.replace(b'"1"', b'"2"'), f"{index}/2".encode(), headers=[("cdc", b"3")])
    producer.flush(30)
    rules = index_rules(database, index_prefix, "a")
    writer = sink(writer_setup(tmp_path / "writer", servers, rules, kafka, topic))
    code = writer.wait(timeout=120)
    assert code == 2, writer.text()[-3000:]
    assert re.search(rf"message {re.escape(topic)}/0@1 .*format version 3.*--to-offset 2", writer.text()), \
        writer.text()[-3000:]
    assert committed(kafka, f"g-{topic}", topic, 1) == 0  # the batch held the refused message: nothing committed
    assert "2" not in es_docs(es, index)


def test_a_column_added_while_the_reader_runs_is_mapped_before_a_writer_writes_it(
        tmp_path, servers, kafka, db, database, index_prefix, es):
    """ALTER TABLE ADD COLUMN while the reader streams: the reader puts the planned fields into Elasticsearch
    when it reads the new table definition, before it publishes the first document with the columns; the
    writer, started only after, finds them there (a DECIMAL is `keyword`, not the `text` dynamic mapping
    would make of its string; a DATETIME(6) `date`)."""
    db.execute("CREATE TABLE a (id INT PRIMARY KEY, v INT)", "INSERT INTO a VALUES (1, 1)")
    topic = f"t-{index_prefix}"
    rules = index_rules(database, index_prefix, "a")
    reader = reader_setup(tmp_path / "reader", servers, rules, kafka, topic)
    cdc = reader.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=60)
        db.execute("ALTER TABLE a ADD COLUMN d DECIMAL(10,2), ADD COLUMN at DATETIME(6)",
                   "INSERT INTO a VALUES (2, 2, 12.30, '2024-01-02 03:04:05.123456')",
                   "UPDATE a SET v = 5 WHERE id = 1")  # its document gets the new columns (null) too
        wait_for("the reader to map the new columns", lambda: "mapped d as keyword, at as date" in cdc.text(),
                 timeout=60)
        # Mapped in Elasticsearch by the reader alone: no writer has run yet.
        index = f"{index_prefix}-a"
        properties = next(iter(es.indices.get_mapping(index=index).values()))["mappings"]["properties"]
        assert properties["d"] == {"type": "keyword"} and properties["at"] == {"type": "date"}, properties
        writer = sink(writer_setup(tmp_path / "writer", servers, rules, kafka, topic))
        try:
            wait_until_equal(db, es, "a", index, ["id"])
        finally:
            assert writer.stop() == 0
    finally:
        assert cdc.stop() == 0
    properties = next(iter(es.indices.get_mapping(index=index).values()))["mappings"]["properties"]
    assert properties["d"] == {"type": "keyword"} and properties["at"] == {"type": "date"}, properties


def test_debezium_envelope_is_published_and_written_by_cdc_sink(tmp_path, servers, kafka, db, database,
                                                                 index_prefix, es):
    create_two_tables(db)
    topic = f"t-{index_prefix}"
    rules = index_rules(database, index_prefix, "a")
    reader = reader_setup(tmp_path / "reader", servers, rules, kafka, topic, snapshot__mode="never")
    _patch(reader, lambda c: c["kafka"].update(format="debezium"))
    cdc = reader.run()
    db.execute("INSERT INTO a VALUES (1, 10, 'x'), (2, 20, 'y')", "DELETE FROM a WHERE id = 2")
    writer = sink(writer_setup(tmp_path / "writer", servers, rules, kafka, topic))
    try:
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])
    finally:
        writer.stop()
        cdc.stop()
    values = [orjson.loads(m.value()) for m in read_topic(kafka, topic)]
    by_id: dict = {}
    for v in values:  # in order within a document's partition; partitions interleave freely
        by_id.setdefault(v["source"]["id"], []).append(v)
    # Row 2's insert is published too unless it shared a batch with its delete (the last write wins).
    assert [v["op"] for v in by_id["1"]] == ["u"] and [v["op"] for v in by_id["2"]] in (["u", "d"], ["d"])
    assert by_id["1"][0]["after"] == {"id": 1, "v": 10, "s": "x"} and by_id["2"][-1]["after"] is None
    assert by_id["1"][0]["source"]["table"] == "a" and by_id["1"][0]["source"]["db"] == database


def test_nothing_lost_when_reader_writers_broker_and_elasticsearch_fail_under_load(
        tmp_path, servers, kafka, db, database, index_prefix, es):
    """The issue's fault test: reader and writers SIGKILLed 5 times each under a write load, the
    broker restarted once, Elasticsearch unreachable for the writers for 30 s, a third writer
    joining, the indices blocked (429) while a writer is SIGKILLed; at the end every index equals
    its table, `cdc verify` passes and every partition is committed to its end."""
    import kafka_broker

    create_two_tables(db, 200)
    topic = f"t-{index_prefix}"
    partitions = 6
    rules = index_rules(database, index_prefix, "a", "b")
    reader = reader_setup(tmp_path / "reader", servers, rules, kafka, topic)
    es_host, es_port = servers.es_url.rsplit("//", 1)[1].split(":")
    proxy = FaultProxy(es_host, int(es_port))  # the writers' way to Elasticsearch, to cut
    wsetup = writer_setup(tmp_path / "writers", servers, rules, kafka, topic, es_url=f"http://127.0.0.1:{proxy.port}")
    group = f"g-{topic}"
    writers: list[CdcProcess] = []
    started: list[CdcProcess] = []  # every process, killed ones too, for the evidence at the end
    cdc = reader.run()
    started.append(cdc)
    load = WriteLoad(servers, database, rate=120).__enter__()
    try:
        cdc.wait_for_event("snapshot_done", timeout=60)
        writers = [sink(wsetup), sink(wsetup)]
        started.extend(writers)

        def progress() -> int:
            return committed(kafka, group, topic, partitions)

        # Both writers share the partitions.
        wait_for("two writers sharing the partitions",
                 lambda: all(assignments(w) and assignments(w)[-1] for w in writers), timeout=60)

        def writers_advance(timeout: float = 60) -> None:
            before = progress()
            wait_for("the writers to commit more offsets", lambda: progress() > before, timeout=timeout)

        def reader_advances() -> None:
            before = reader.position()
            wait_for("the reader's checkpoint to move", lambda: reader.position() != before, timeout=60)

        for round_ in range(5):
            # The reader, SIGKILLed mid-stream, restarted: it resumes from its checkpoint.
            reader_advances()
            cdc.stop(signal.SIGKILL)
            cdc = reader.process("run").start()
            started.append(cdc)
            cdc.wait_for_event("start", how="resume", timeout=60)
            # A writer, SIGKILLed mid-batch (alternately the first and the second), restarted.
            writers_advance()
            victim = round_ % 2
            writers[victim].stop(signal.SIGKILL)
            writers[victim] = sink(wsetup)
            started.append(writers[victim])
            if round_ == 1:
                # The broker restarted: the reader's unacknowledged messages are sent again, writers reconnect.
                kafka_broker.down()
                kafka_broker.up()
                reader_advances()
            if round_ == 2:
                # Elasticsearch unreachable for the writers for 30 s: they wait, then go on.
                proxy.cut()
                time.sleep(30)  # the outage's length is the test's input, not a wait for speed
                proxy.restore()
            if round_ == 3:
                # A third writer joins: the group rebalances over three members.
                third = sink(wsetup)
                writers.append(third)
                started.append(third)
                wait_for("the third writer to get partitions", lambda: assignments(third) and assignments(third)[-1],
                         timeout=60)
            if round_ == 4:
                # Issue 27 (0): the indices blocked (a full disk's flood-stage block answers 429), every
                # writer retrying mid-batch, then one of them SIGKILLed: the group rebalances while the
                # others hold paused partitions, and hands some of them back to the same writers.
                indices = f"{index_prefix}-a,{index_prefix}-b"
                es.indices.put_settings(index=indices, settings={"index.blocks.read_only_allow_delete": True})
                try:
                    retries = sum(w.text().count("retrying") for w in writers)
                    wait_for("the writers to retry against the block",
                             lambda: sum(w.text().count("retrying") for w in writers) >= retries + 2, timeout=60)
                    writers[0].stop(signal.SIGKILL)
                    writers[0] = sink(wsetup)
                    started.append(writers[0])
                    time.sleep(8)  # the rebalance happens while the survivors still retry
                finally:
                    es.indices.put_settings(index=indices, settings={"index.blocks.read_only_allow_delete": None})
        writers_advance(timeout=90)
        load.stop()
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=120)
        wait_until_equal(db, es, "b", f"{index_prefix}-b", ["k1", "k2"], timeout=60)
        code, report = verify(reader)
        assert code == 0 and report["summary"]["ok"], report
        s = report["summary"]
        assert (s["missing"], s["differing"], s["orphans"], s["rows"] > 200) == (0, 0, 0, True), s
        # Every partition read and committed to the end of the topic: none left paused by a rebalance.
        wait_for("the writers' offsets at the end of the topic",
                 lambda: committed_to_end(kafka, group, topic, range(partitions)), timeout=60)
        # The last assignment of the three writers splits the partitions between them.
        last = [set(assignments(w)[-1]) for w in writers[-3:]]
        assert all(last) and sum(map(len, last)) == partitions and set().union(*last) == set(range(partitions))
    finally:
        load.stop_event.set()
        proxy.restore()
        for w in writers:
            if w.proc is not None and w.proc.poll() is None:
                w.stop()
        if cdc.proc is not None and cdc.proc.poll() is None:
            cdc.stop()
        proxy.close()
    # No writer or reader stopped on an error of its own; the kills were ours.
    for proc in (cdc, *writers):
        assert '"level":"error"' not in proc.text() and "fatal" not in proc.text(), proc.text()[-3000:]
    # The faults reached cdc: the writers retried while Elasticsearch was cut off, partitions moved
    # between writers, and 6 reader and 9 writer processes ran (2 + 6 after SIGKILLs + a third writer).
    writer_logs = "".join(p.text() for p in started if p.args[0] == "sink")
    assert "retrying" in writer_logs and "revoked partitions" in writer_logs
    assert sum(p.args[0] == "run" for p in started) == 6 and sum(p.args[0] == "sink" for p in started) == 9


def test_a_message_too_large_for_the_broker_is_a_dead_letter_not_a_silent_skip(
        tmp_path, servers, kafka, db, database, index_prefix, es):
    db.execute("CREATE TABLE big (id INT PRIMARY KEY, t TEXT)")
    topic = f"t-{index_prefix}"
    rules = [{"schema": database, "table": "big", "index": f"{index_prefix}-big"}]
    reader = reader_setup(tmp_path / "reader", servers, rules, kafka, topic, snapshot__mode="never",
                          dead_letter__on_rejected="dead_letter")
    # librdkafka refuses a message above message.max.bytes before sending it (MSG_SIZE_TOO_LARGE)
    _patch(reader, lambda c: c["kafka"].update(producer={"message.max.bytes": 4000}))
    cdc = reader.run()
    writer = sink(writer_setup(tmp_path / "writer", servers, rules, kafka, topic))
    try:
        db.execute("INSERT INTO big VALUES (1, 'small'), (2, REPEAT('x', 6000)), (3, 'small too')")
        wait_for("the other rows in Elasticsearch",
                 lambda: sorted(es_docs(es, f"{index_prefix}-big")) == ["1", "3"], timeout=60)
        code, out = reader.command("dlq", "list", "--json")
        [entry] = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"doc_id"' in line]
        assert entry["doc_id"] == "2" and entry["table"] == "big" and entry["position"].startswith("binlog.")
        assert entry["status"] == 413
        db.execute("UPDATE big SET t = 'changed' WHERE id = 1")  # and the stream goes on
        wait_for("the stream to go on", lambda: es_docs(es, f"{index_prefix}-big")["1"]["t"] == "changed", timeout=60)
    finally:
        writer.stop()
        assert cdc.stop() == 0


def _a_reader_and_a_writer_behind_a_proxy(tmp_path, servers, kafka, db, database, index_prefix):
    """Table `a` (empty), a reader publishing its changes, and a writer whose way to Elasticsearch
    goes through a FaultProxy (to cut), both started: (topic, rules, reader, proxy, writer)."""
    create_two_tables(db)
    topic = f"t-{index_prefix}"
    rules = index_rules(database, index_prefix, "a")
    reader = reader_setup(tmp_path / "reader", servers, rules, kafka, topic, snapshot__mode="never")
    es_host, es_port = servers.es_url.rsplit("//", 1)[1].split(":")
    proxy = FaultProxy(es_host, int(es_port))
    wsetup = writer_setup(tmp_path / "writer", servers, rules, kafka, topic, es_url=f"http://127.0.0.1:{proxy.port}")
    return topic, rules, reader.run(), proxy, sink(wsetup)


def test_partitions_taken_from_a_writer_stuck_on_elasticsearch_are_written_by_the_next(
        tmp_path, servers, kafka, db, database, index_prefix, es):
    """A rebalance while a writer retries: it stops that write, commits nothing, and the new owner
    writes the batch from the last committed offset."""
    topic, rules, cdc, proxy, stuck = _a_reader_and_a_writer_behind_a_proxy(tmp_path, servers, kafka, db, database,
                                                                           index_prefix)
    helper = None
    try:
        wait_for("the first writer to own every partition", lambda: len((assignments(stuck) or [[]])[-1]) == 6)
        db.execute("INSERT INTO a VALUES (1, 1, 'x')")
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])  # the path works
        proxy.cut()  # Elasticsearch unreachable for this writer only
        db.execute("INSERT INTO a SELECT seq, seq, 'y' FROM seq_2_to_300")
        stuck.wait_for_log("retrying", timeout=60)
        helper = sink(writer_setup(tmp_path / "helper", servers, rules, kafka, topic))  # straight to Elasticsearch
        stuck.wait_for_log("revoked while writing a batch: stopping it", timeout=60)
        # The partitions are split between the two; the new writer writes its share of the batch the
        # first one gave up, while the first is still cut off (its share waits for Elasticsearch).
        wait_for("the new writer's share in Elasticsearch", lambda: len(es_docs(es, f"{index_prefix}-a")) > 1)
        assert assignments(helper)[-1] and assignments(stuck)[-1] and \
            set(assignments(helper)[-1]) | set(assignments(stuck)[-1]) == set(range(6))
        proxy.restore()
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=60)
        db.execute("UPDATE a SET v = -v")  # both writers go on, with their new share of the partitions
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=60)
    finally:
        proxy.restore()
        for w in (stuck, helper):
            if w is not None:
                assert w.stop() == 0, w.text()[-3000:]
        assert cdc.stop() == 0
        proxy.close()


def test_partitions_revoked_mid_batch_and_assigned_back_to_the_same_writer_are_read_to_the_end(
        tmp_path, servers, kafka, db, database, index_prefix, es):
    """Issue 27 (0): librdkafka keeps the pause flag of a partition that is revoked and assigned back
    to the same consumer (librdkafka #1849). A writer paused while writing a batch, revoked, and
    given some of those partitions back only after it stopped that write must read them to the end."""
    topic, _, cdc, proxy, writer = _a_reader_and_a_writer_behind_a_proxy(tmp_path, servers, kafka, db, database,
                                                                        index_prefix)
    group = f"g-{topic}"
    # Bare group members in this process. The range assignor orders members by id, which starts
    # with client.id: the writer's ("cdc-sink-...") sorts before theirs ("zz-..."), so it gets
    # 0,1,2 of two members and 0,1 of three: partitions it held paused come back, and only those.
    # An eager rebalance completes only when every member has rejoined, and a member rejoins only
    # once its application served the revocation in a poll: while `quiet` does not poll, the writer
    # is revoked at once but gets its partitions back seconds after it stopped its batch.
    members = [Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False,
                         "client.id": f"zz-{name}", "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
               for name in ("quiet", "joiner")]
    quiet, joiner = members

    def poll_until(what, done, *consumers, timeout=60):
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{writer.text()[-3000:]}"
            for c in consumers:
                c.poll(0.1)

    def read_to_end(partitions) -> bool:
        return committed_to_end(kafka, group, topic, partitions)

    try:
        wait_for("the writer to own every partition", lambda: len((assignments(writer) or [[]])[-1]) == 6)
        db.execute("INSERT INTO a VALUES (1, 1, 'x')")
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"])
        quiet.subscribe([topic], on_revoke=lambda c, ps: None)
        seen = len(assignments(writer))
        poll_until("the first rebalance", lambda: quiet.assignment() and len(assignments(writer)) > seen, quiet)
        assert assignments(writer)[-1] == [0, 1, 2], assignments(writer)
        proxy.cut()  # the writer's next batch waits for Elasticsearch, partitions 0,1,2 paused
        db.execute("INSERT INTO a SELECT seq, seq, 'y' FROM seq_2_to_300")
        writer.wait_for_log("retrying", timeout=60)
        seen = len(assignments(writer))
        joiner.subscribe([topic])
        poll_until("the writer's revocation", lambda: "revoked while writing a batch" in writer.text(), joiner,
                   timeout=30)
        time.sleep(3)  # the writer has stopped its batch and released its (then empty) assignment
        assert len(assignments(writer)) == seen, "the rebalance completed without the quiet member"
        poll_until("the writer's new assignment", lambda: len(assignments(writer)) > seen, quiet, joiner)
        assert assignments(writer)[-1] == [0, 1], assignments(writer)
        proxy.restore()
        # The two members keep their partitions (and read nothing into Elasticsearch): the writer's own
        # two are read and committed to the end, or nothing would ever move them.
        poll_until("the writer's partitions committed to their end", lambda: read_to_end([0, 1]), quiet, joiner)
        seen = len(assignments(writer))
        for c in members:
            c.close()
        members = []
        wait_for("the writer to own every partition again",
                 lambda: len(assignments(writer)) > seen and len(assignments(writer)[-1]) == 6, timeout=60)
        wait_until_equal(db, es, "a", f"{index_prefix}-a", ["id"], timeout=60)
        wait_for("every partition committed to its end", lambda: read_to_end(range(6)), timeout=60)
    finally:
        for c in members:
            c.close()
        proxy.restore()
        assert writer.stop() == 0, writer.text()[-3000:]
        assert cdc.stop() == 0
        proxy.close()


def test_documents_built_from_several_tables_through_kafka_under_kills(
        tmp_path, servers, kafka, db, database, index_prefix, es):
    """Issue 32 (2): a rule with children and lookups in Kafka mode. The reader rebuilds each
    document from MySQL (it has the connection) and publishes it whole; the writers stay MySQL-free.
    Under a random write load at every level, the reader is SIGKILLed twice and each of two
    writers once; every document ends equal to a build made here by plain SQL."""
    from test_relations import ThreeTableLoad, rules as relation_rules, seed, wait_equal

    seed(db)
    index = f"{index_prefix}-orders"
    topic = f"t-{index_prefix}"
    rules = relation_rules(database, index)
    reader = reader_setup(tmp_path / "reader", servers, rules, kafka, topic)
    wsetup = writer_setup(tmp_path / "writers", servers, rules, kafka, topic)
    _patch(wsetup, lambda c: c["mysql"].update(host="127.0.0.1", port=9))  # a writer that reached MySQL would fail
    cdc = reader.run()
    writers = [sink(wsetup), sink(wsetup)]
    try:
        wait_equal(db, es, index, proc=cdc)  # the snapshot's documents, through the broker
        with ThreeTableLoad(servers, database, seed=32) as load:
            for victim in ("reader", 0, "reader", 1):
                time.sleep(2)
                if victim == "reader":
                    cdc.stop(signal.SIGKILL)
                    cdc = reader.process("run").start()
                    cdc.wait_for_event("start", how="resume", timeout=60)
                else:
                    assert isinstance(victim, int)  # a writer's number
                    writers[victim].stop(signal.SIGKILL)
                    writers[victim] = sink(wsetup)
            time.sleep(2)
        assert load.statements > 50
        wait_equal(db, es, index, timeout=120, proc=cdc)
    finally:
        for w in writers:
            if w.proc is not None and w.proc.poll() is None:
                assert w.stop() == 0, w.text()[-3000:]
        assert cdc.stop() == 0, cdc.text()[-3000:]
    for proc in (cdc, *writers):
        assert '"level":"error"' not in proc.text(), proc.text()[-3000:]
