"""`cdc sink` with `kafka.input: debezium` fed by a REAL Debezium connector (docs/kafka.md "Kafka mode").

Debezium's MariaDB connector runs in a Kafka Connect standalone worker
(scripts/kafka_connect.py, jars from Maven Central, cached in CDC_DEV_HOME;
the first run fetches about 45 MB) against the test MariaDB and the test
broker (scripts/kafka_broker.py). One test, one connector: Connect's start-up
and the snapshot are the slow part. It snapshots a table with a spread of
column types, then streams inserts, updates, deletes and primary-key changes
while `cdc sink` writes them to one index and `cdc run` (cdc's own snapshot
and binlog stream) writes the same table through the same rule to another.
The sink is SIGKILLed mid-stream once. At the end both indices hold the same
documents, `cdc verify` finds the sink's index equal to the table, and every
document's version orders the way the module docstring of
cdc/kafka/debezium.py says against the version `cdc run` gave it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from harness import Admin, CdcSetup, es_docs, free_port, kafka_broker_up, kafka_lock, wait_for

TABLE = """CREATE TABLE items (
  id INT PRIMARY KEY,
  name VARCHAR(50) CHARACTER SET utf8mb4,
  price DECIMAL(10,2),
  ts TIMESTAMP(3) NULL,
  dt DATETIME(6),
  dt0 DATETIME,
  d DATE,
  t TIME(6),
  j JSON,
  b VARBINARY(16),
  bin BINARY(4),
  bits BIT(12),
  flag BIT(1),
  s SET('a','b','c'),
  e ENUM('x','y','z'),
  f FLOAT,
  dbl DOUBLE,
  y YEAR,
  u BIGINT UNSIGNED,
  tiny TINYINT(1),
  txt TEXT,
  p POINT NULL
)"""
COLUMNS = ("id, name, price, ts, dt, dt0, d, t, j, b, bin, bits, flag, s, e, f, dbl, y, u, tiny, txt, p")
VALUES = "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, ST_GeomFromText(%s)"
SNAPSHOT_ROWS = 40


def row(i: int, rnd: random.Random) -> tuple:
    """A row with values across each type's range (negative TIME with a fraction, 2^64-1, BINARY padding...)."""
    maybe = (lambda v: None if rnd.random() < 0.1 else v)
    return (
        i, maybe(rnd.choice(["plain", "ünïcödé ✓", "", "quote ' and \\ back"]) + str(rnd.randint(0, 99))),
        maybe(f"{rnd.randint(-99999, 99999)}.{rnd.randint(0, 99):02d}"),
        maybe(f"20{rnd.randint(10, 37)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)} 0{rnd.randint(0, 9)}:1{rnd.randint(0, 9)}"
              f":2{rnd.randint(0, 9)}.{rnd.randint(0, 999):03d}"),
        maybe(f"{rnd.randint(1001, 9998)}-1{rnd.randint(0, 2)}-2{rnd.randint(0, 8)} 1{rnd.randint(0, 9)}:0{rnd.randint(0, 9)}"
              f":00.{rnd.randint(0, 999999):06d}"),
        maybe(f"19{rnd.randint(70, 99)}-0{rnd.randint(1, 9)}-0{rnd.randint(1, 9)} 23:59:59"),
        maybe(f"{rnd.randint(1000, 9999)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}"),
        maybe(f"{rnd.choice(['-', ''])}{rnd.randint(0, 838)}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}"
              f".{rnd.randint(0, 999999):06d}"),
        # one shape of JSON (a dynamic mapping takes the first it sees)
        maybe(rnd.choice(['{"a": 1, "b": [2.5, 3.25]}', '{"a": -7}', '{"n": {"k": "ü"}, "b": []}', '{}'])),
        maybe(bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, 16)))),
        maybe(rnd.choice([b"\x01\x00\x00\x00", b"abcd", b"\x00\x00\x00\x00", b"\xff\x00\xff\x00"])),
        maybe(rnd.randint(0, 4095)), maybe(rnd.randint(0, 1)),
        maybe(rnd.choice(["", "a", "b,c", "a,b,c"])), maybe(rnd.choice(["x", "y", "z"])),
        maybe(rnd.choice([0.1, -1.5, 3.4028e38, 1e-7, 12345.678])), maybe(rnd.uniform(-1e6, 1e6)),
        maybe(rnd.randint(1901, 2155)), maybe(rnd.choice([0, 1, 2**63, 2**64 - 1])), maybe(rnd.randint(-128, 127)),
        maybe("x" * rnd.randint(0, 300)),
        maybe(f"POINT({rnd.uniform(-180, 180):.6f} {rnd.uniform(-90, 90):.6f})"),
    )


class Changes:
    """A stream of inserts, updates (every column), deletes and primary-key changes, from a seed."""

    def __init__(self, servers, database: str, seed: int = 14):
        self.admin = Admin(servers, database)
        self.rnd = random.Random(seed)
        self.ids = set(range(1, SNAPSHOT_ROWS + 1))
        self.next_id = SNAPSHOT_ROWS + 1
        self.done = 0
        self.written: set[int] = set()  # rows the stream inserted or updated

    def one(self) -> None:
        rnd, admin = self.rnd, self.admin
        kind = rnd.random()
        if kind < 0.3 or len(self.ids) < 10:
            i, self.next_id = self.next_id, self.next_id + 1
            admin.execute(f"INSERT INTO items ({COLUMNS}) VALUES ({VALUES})", args=row(i, rnd))
            self.ids.add(i)
            self.written.add(i)
        elif kind < 0.75:
            i = rnd.choice(sorted(self.ids))
            values = row(i, rnd)[1:]
            sets = ", ".join(f"{c} = {'ST_GeomFromText(%s)' if c == 'p' else '%s'}" for c in COLUMNS.split(", ")[1:])
            admin.execute(f"UPDATE items SET {sets} WHERE id = %s", args=(*values, i))
            self.written.add(i)
        elif kind < 0.9:
            i = rnd.choice(sorted(self.ids))
            admin.execute("DELETE FROM items WHERE id = %s", args=(i,))
            self.ids.discard(i)
        else:  # a primary-key change: Debezium writes a delete of the old key and a create of the new one
            i = rnd.choice(sorted(self.ids))
            new, self.next_id = self.next_id, self.next_id + 1
            admin.execute("UPDATE items SET id = %s WHERE id = %s", args=(new, i))
            self.ids.discard(i)
            self.ids.add(new)
            self.written.add(new)
        self.done += 1

    def run(self, count: int) -> None:
        for _ in range(count):
            self.one()

    def until(self, stop: threading.Event) -> None:
        """Changes at a steady pace (a load, not a burst) until `stop` is set."""
        while not stop.wait(0.005):
            self.one()

    def close(self) -> None:
        self.admin.close()


@pytest.fixture(scope="module")
def broker():
    """The test broker (tests/integration/test_kafka.py takes it the same way, under the same locks)."""
    # Shared with the Kafka tests; only the one that restarts the broker runs alone.
    with kafka_broker_up() as bootstrap, kafka_lock(".kafka-tests.lock", exclusive=False):
        yield bootstrap


@pytest.fixture
def debezium_user(servers):
    """A MariaDB user with the privileges Debezium's MariaDB connector documents (and nothing more)."""
    user, password = "cdc_debezium", "cdc_debezium"
    admin = Admin(servers)
    admin.execute(f"CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'",
                  f"GRANT SELECT, RELOAD, SHOW DATABASES, LOCK TABLES, REPLICATION SLAVE, BINLOG MONITOR "
                  f"ON *.* TO '{user}'@'127.0.0.1'")
    admin.close()
    return user, password


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return max(0, offsets[0].offset)
    finally:
        consumer.close()


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peek-{uuid.uuid4().hex}"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    except KafkaException:  # the connector has not made the topic yet
        return 0
    finally:
        consumer.close()


def versions(es, index: str) -> dict[str, int]:
    from elasticsearch import helpers

    es.indices.refresh(index=index)
    return {hit["_id"]: hit["_version"] for hit in
            helpers.scan(es, index=index, query={"query": {"match_all": {}}, "version": True})}


def test_a_real_debezium_connector_feeds_cdc_sink(tmp_path, servers, broker, debezium_user, db, database,
                                                  index_prefix, es):
    import yaml
    from kafka_connect import Connect, mariadb_connector, without_schemas

    db.execute(TABLE)
    db.execute("CREATE TABLE gone (id INT PRIMARY KEY)", "INSERT INTO gone VALUES (1)")  # truncated at the end
    rnd = random.Random(7)
    for i in range(1, SNAPSHOT_ROWS + 1):
        db.execute(f"INSERT INTO items ({COLUMNS}) VALUES ({VALUES})", args=row(i, rnd))

    # Two connectors on the same tables: JSON with schemas, and without (the payload alone, and
    # TRUNCATE events sent, which Debezium skips by default).
    prefix, plain_prefix = f"dbz_{uuid.uuid4().hex[:8]}", f"dbzplain_{uuid.uuid4().hex[:8]}"
    topic, plain_topic = f"{prefix}.{database}.items", f"{plain_prefix}.{database}.items"
    user, password = debezium_user
    server_id = random.randint(900_000, 999_000)

    def connector(name: str, n: int) -> dict:
        return mariadb_connector(name, prefix=name, host=servers.mariadb_host, port=servers.mariadb_port, user=user,
                                 password=password, server_id=server_id + n, databases=[database],
                                 history=tmp_path / "connect" / f"history-{n}.dat")

    connect = Connect(tmp_path / "connect", broker, free_port(), connector(prefix, 0),
                      {**without_schemas(connector(plain_prefix, 1)), "skipped.operations": "none"})
    sink_index, plain_index, cdc_index = f"{index_prefix}-dbz", f"{index_prefix}-dbzplain", f"{index_prefix}-cdc"

    def sink_config(name: str, index: str, prefix: str) -> CdcSetup:
        (tmp_path / name).mkdir()
        setup = CdcSetup(tmp_path / name, servers, [{"schema": database, "table": "items", "index": index}])
        config = yaml.safe_load(setup.config_path.read_text())
        # A pattern, as README suggests for a connector's table topics (librdkafka's ^ convention).
        config["kafka"] = {"bootstrap_servers": broker, "input": "debezium", "group_id": f"g-{prefix}",
                           "topics": [rf"^{prefix}\.{database}\..*"],
                           # a SIGKILLed sink's partition moves after 3 s, not 45 s (the test broker
                           # allows 2 s: group.min.session.timeout.ms in scripts/kafka_broker.py)
                           "consumer": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 1000}}
        setup.config_path.write_text(yaml.safe_dump(config))
        return setup

    sink_setup, plain_setup = sink_config("sink", sink_index, prefix), sink_config("plain", plain_index, plain_prefix)
    group = f"g-{prefix}"
    (tmp_path / "cdc").mkdir()
    cdc_setup = CdcSetup(tmp_path / "cdc", servers, [{"schema": database, "table": "items", "index": cdc_index}])
    changes = Changes(servers, database)
    processes = []
    try:
        connect.start()
        # The snapshot's rows are on the topic: the stream starts after them.
        wait_for("Debezium's snapshots on the topics",
                 lambda: min(end_offset(broker, topic), end_offset(broker, plain_topic)) >= SNAPSHOT_ROWS, 60)
        cdc = cdc_setup.run()
        processes.append(cdc)
        # Its snapshot versions a row by the position of the read that copied it: let it finish
        # first, so that every streamed change reaches cdc's index through its binlog stream.
        cdc.wait_for_event("snapshot_done", timeout=60)
        sink = sink_setup.process("sink", "--log-format", "json").start()
        processes.append(sink)
        plain = plain_setup.process("sink", "--log-format", "json").start()
        processes.append(plain)
        changes.run(60)
        # SIGKILL the sink while changes stream in, once it has committed some of them.
        stop_load = threading.Event()
        load = threading.Thread(target=changes.until, args=(stop_load,), daemon=True)
        load.start()
        try:
            wait_for("the sink to commit streamed changes",
                     lambda: committed(broker, group, topic) > SNAPSHOT_ROWS + 100, 60, 0.1)
            sink.stop(signal.SIGKILL)
            killed_at = committed(broker, group, topic)
            before = changes.done
            wait_for("more changes while the sink is down", lambda: changes.done > before + 100, 30, 0.1)
        finally:
            stop_load.set()
            load.join(30)
        sink = sink_setup.process("sink", "--log-format", "json").start()
        processes.append(sink)
        changes.run(40)  # and more after the restart

        rows = len(db.query("SELECT id FROM items"))

        def same():
            have, want = es_docs(es, sink_index), es_docs(es, cdc_index)
            return len(want) == rows and have == want and have

        docs = wait_for("the sink's index to equal cdc run's", same, 90, 1.0)
        # Without schemas, the column kinds from information_schema decode the same values.
        wait_for("the schemaless sink's index to equal cdc run's", lambda: es_docs(es, plain_index) == docs, 60, 1.0)
        db.execute("TRUNCATE TABLE gone")
        truncated = plain.wait_for_event("truncate", timeout=60, table=f"{database}.gone")
        assert truncated["level"] == "warning" and truncated["position"].startswith("binlog.")
        assert committed(broker, group, topic) > killed_at
        assert f"topic(s): {prefix}.{database}.gone, {topic}," in processes[1].text()  # found by the pattern
        assert sorted(docs, key=int) == sorted((str(r["id"]) for r in db.query("SELECT id FROM items")), key=int)

        # `cdc verify`: the sink's index equals the table, row by row, as cdc's rules make documents.
        verified = subprocess.run([sys.executable, "-m", "cdc", "verify", "--config", str(sink_setup.config_path),
                                   "--json", "--log-format", "json"], capture_output=True, text=True, timeout=180,
                                  env={**os.environ, **sink_setup.env})
        report = json.loads(verified.stdout)
        assert verified.returncode == 0 and report["summary"]["ok"], report
        s = report["summary"]
        assert (s["missing"], s["differing"], s["orphans"], s["rows"]) == (0, 0, 0, rows), s

        # Versions: Debezium's streamed writes sit inside their binlog event, cdc's at its end; so for a
        # document last written by the stream, the sink's version is just below cdc's, in the same file.
        # (A row untouched since the snapshots has each snapshot's own position as its version.)
        ours, theirs = versions(es, sink_index), versions(es, cdc_index)
        streamed = sorted(changes.written & set(map(int, docs)))
        assert len(streamed) > 50
        for doc_id in map(str, streamed):
            assert theirs[doc_id] >> 32 == ours[doc_id] >> 32 and 0 < theirs[doc_id] - ours[doc_id] < 1 << 16, \
                (doc_id, ours[doc_id], theirs[doc_id])
        assert plain.popen.poll() is None  # the truncate stopped nothing
        killed = [p for p in processes if p.proc and p.proc.returncode == -signal.SIGKILL]
        assert len(killed) == 1
    finally:
        for proc in processes:
            if proc.proc and proc.proc.poll() is None:
                proc.stop()
        connect.stop()
        changes.close()
