#!/usr/bin/env python3
"""Kafka mode's throughput beside single-process `cdc run`, on one backlog, in one run.

    .venv/bin/python bench/kafka_catchup.py [--rows 100000] [--repeat 3]

A backlog of --rows row changes (bench/catchup.py's generator: ~70% inserts,
20% updates, 10% deletes in transactions of 100-500 rows) is written once.
Then, --repeat times, alternating which goes first:

1. single-process `cdc run` into a fresh index: the clock runs from process
   start until the checkpoint reaches the backlog's end (bench/catchup.py's
   catch-up measurement, same code);
2. the Kafka reader (`cdc run` with `destination: kafka`) onto a fresh topic:
   from process start until its checkpoint reaches the backlog's end, which
   it saves only once the broker acknowledged every message before it;
3. one Kafka writer (`cdc sink`) from that topic into a fresh index: from
   process start until the group's committed offsets reach the end of every
   partition, which it commits only once Elasticsearch acknowledged.

With --debezium, a Debezium MariaDB connector (scripts/kafka_connect.py, Kafka
Connect standalone) also streams the backlog into its own topic while it is
written (snapshot.mode=no_data, 12 partitions like cdc's topic; it is stopped
before any measurement), and each repeat adds:

4. one `cdc sink` with `kafka.input: debezium` from that topic into a fresh
   index, measured as 3 (the rules are applied in the writer here), right
   before or after 3, alternating.

With --baseline DIR (and --debezium), the Debezium writer of the cdc in DIR/cdc
(a work tree of the code before a change) runs too, in each repeat beside the
code's two writers, the three taking turns at going first; --skip-single
leaves out phase 1 (the writers' ratios do not use it).

CPU seconds of cdc, Elasticsearch and the broker are read from /proc around
each phase; every index is compared with the table at the end (count, sum of
ids, sum of qty). It uses the bench's own MariaDB and Elasticsearch
in /var/tmp/cdc-bench-kafka (ports 24306 and 29210) and its own broker
(scripts/kafka_broker.py on port 29092): never the test servers, nor
bench/catchup.py's, which other runs may be using at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Servers of its own (not bench/catchup.py's, which another bench may be using: its backlog
# generator drops and refills bench.items). scripts/servers.py and kafka_broker.py read these
# at import, so they are imported here, before bench/catchup.py forces its own values.
KAFKA_BENCH_ENV = {"CDC_DEV_HOME": "/var/tmp/cdc-bench-kafka", "MARIADB_PORT": "24306", "ES_PORT": "29210",
                   "ES_TRANSPORT_PORT": "29310", "KAFKA_PORT": "29092"}
os.environ.update(KAFKA_BENCH_ENV)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
import kafka_broker  # noqa: E402
import servers  # noqa: E402  (imported first: bench/catchup.py then finds it configured as above)
import catchup as cu  # noqa: E402

os.environ.update(KAFKA_BENCH_ENV)  # for the cdc processes too (they do not read these; kept consistent)
import yaml  # noqa: E402
from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402


def write_config(workdir: Path, ep, index: str, start: str, code, topic: str | None) -> Path:
    path = cu.write_cdc_config(workdir, ep, index, start, code)
    if topic is not None:
        config = yaml.safe_load(path.read_text())
        config["destination"] = "kafka"
        config["kafka"] = {"bootstrap_servers": kafka_broker.bootstrap(), "topic": topic, "group_id": f"g-{topic}"}
        path.write_text(yaml.safe_dump(config))
    return path


def cpu_of(pids: dict[str, int | None]) -> dict[str, float | None]:
    return {name: cu.proc_cpu(pid) if pid else None for name, pid in pids.items()}


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    return {k: round(after[k] - before[k], 2) for k in before if before[k] is not None and after.get(k) is not None}


def broker_pid() -> int | None:
    try:
        return int((kafka_broker.KAFKA_DIR / "kafka.pid").read_text())
    except (OSError, ValueError):
        return None


def reader_once(i: int, ep, code, run_dir: Path, tag: str, start, end, rows: int, timeout: float) -> dict:
    topic = f"bench-{tag}-{i}"
    workdir = run_dir / f"kafka-reader-{i}"
    config = write_config(workdir, ep, f"{cu.INDEX_PREFIX}-{tag}-kafka-{i}", str(start), code, topic)
    pids = {**cu.server_pids(), "kafka": broker_pid()}
    before = cpu_of(pids)
    cdc = cu.Cdc(code, config, workdir / "cdc.log")
    t0 = cdc.started
    while True:
        cp = cu.read_checkpoint(workdir / "checkpoint.json")
        if cp and cu.BinlogPosition(cp["file"], cp["pos"]) >= end:
            t_done = time.time()
            break
        cdc.check_alive()
        if time.time() - t0 > timeout:
            cdc.stop()
            raise RuntimeError(f"kafka reader {i} did not reach {end} in {timeout}s")
        time.sleep(0.05)
    cdc_cpu = cu.proc_cpu(cdc.proc.pid)
    servers_cpu = cpu_delta(before, cpu_of(pids))
    exit_code, _ = cdc.stop()
    total = t_done - t0
    result = {"topic": topic, "config": str(config), "seconds_total": round(total, 3),
              "rows_per_s_total": round(rows / total, 1), "cdc_cpu_seconds": cdc_cpu,
              "server_cpu_seconds": servers_cpu, "exit_code": exit_code, "summary": cdc.summary(),
              "log_problems": cdc.problems()[:10]}
    cu.log(f"kafka reader {i}: {total:.1f}s, {result['rows_per_s_total']} rows/s, cdc {cdc_cpu} CPU s, "
           f"servers {servers_cpu}")
    return result


def topic_end(topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap(), "group.id": "bench-peek"})
    try:
        meta = AdminClient({"bootstrap.servers": kafka_broker.bootstrap()}).list_topics(topic, timeout=10)
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.topics[topic].partitions}
    finally:
        consumer.close()


def committed(topic: str, partitions: list[int], group: str | None = None) -> dict[int, int]:
    """The group's committed offsets; {} while the broker cannot say yet (a new broker's
    __consumer_offsets topic is made on first use: NOT_COORDINATOR until then)."""
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap(), "group.id": group or f"g-{topic}"})
    try:
        return {tp.partition: tp.offset for tp in
                consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)}
    except KafkaException:
        return {}
    finally:
        consumer.close()


def fresh_index(es, name: str) -> None:
    """The reader's index, emptied: deleted and made again with its mappings, settings and aliases
    (the reader made it before publishing; a writer run after another must not find its documents)."""
    for concrete, got in es.indices.get(index=name).body.items():
        index_settings = got["settings"]["index"]
        settings = {k: index_settings[k] for k in ("number_of_shards", "number_of_replicas", "refresh_interval")
                    if k in index_settings}
        es.indices.delete(index=concrete)
        es.indices.create(index=concrete, mappings=got["mappings"], settings=settings,
                          aliases=got.get("aliases") or None)


def writer_once(i: int, ep, es, code, run_dir: Path, tag: str, reader: dict, rows: int, truth: dict,
                timeout: float, debezium_topic: str | None = None, count: int = 1, label: str = "") -> dict:
    """3 (cdc's topic, the reader's config), or with `debezium_topic` 4 (the connector's topic);
    `count` writers in one group (--writers); `label` tells the --baseline code's runs apart."""
    topic = debezium_topic or reader["topic"]
    kind = ("dbz" if debezium_topic else "kafka") + label
    suffix = f"-x{count}" if count > 1 else ""
    index = f"{cu.INDEX_PREFIX}-{tag}-{kind}-{i}{suffix}"
    workdir = run_dir / f"{kind}-writer-{i}{suffix}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = Path(reader["config"])
    group = None
    if count > 1:  # its own group and index: the topic is read from the start again
        group = f"g-{kind}-{tag}-{i}{suffix}"
        settings = yaml.safe_load(config.read_text())
        settings["kafka"]["group_id"] = group
        config = workdir / "cdc.yml"
        config.write_text(yaml.safe_dump(settings))
        # The reader's rules name its index; the writers write where the messages say.
        index = None
        fresh_index(es, f"{cu.INDEX_PREFIX}-{tag}-kafka-{i}")
    if debezium_topic:
        group = f"g-{kind}-{tag}-{i}"
        config = write_config(workdir, ep, index, "binlog.000001:4", code, None)
        settings = yaml.safe_load(config.read_text())
        settings["kafka"] = {"bootstrap_servers": kafka_broker.bootstrap(), "input": "debezium",
                             "topics": [debezium_topic], "group_id": group}
        config.write_text(yaml.safe_dump(settings))
    end = topic_end(topic)
    messages = sum(end.values())
    pids = {**cu.server_pids(), "kafka": broker_pid()}
    before = cpu_of(pids)
    log_path = workdir / "cdc.log"
    outs = [open(workdir / f"cdc-{n}.log" if n else log_path, "wb") for n in range(count)]
    try:
        t0 = time.time()
        procs = [subprocess.Popen(code.command("sink", "--config", str(config), "--log-format", "json"),
                                  stdout=out, stderr=subprocess.STDOUT, cwd=code.dir) for out in outs]
        while True:
            done = committed(topic, list(end), group)
            if all(done.get(p, -1) >= offset for p, offset in end.items()):
                t_done = time.time()
                break
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"cdc sink exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.time() - t0 > timeout:
                for proc in procs:
                    proc.kill()
                raise RuntimeError(f"cdc sink {i} did not finish the topic in {timeout}s")
            time.sleep(0.1)
        cpus = [cu.proc_cpu(proc.pid) for proc in procs]
        cdc_cpu = round(sum(c for c in cpus if c), 2)
        servers_cpu = cpu_delta(before, cpu_of(pids))
        for proc in procs:
            proc.terminate()
        exit_code = max(proc.wait(60) for proc in procs)
    finally:
        for out in outs:
            out.close()
    total = t_done - t0
    if index is None:  # the reader's index, as its rules name it
        index = f"{cu.INDEX_PREFIX}-{tag}-kafka-{i}"
    have = cu.index_truth(es, index)
    result = {"index": index, "writers": count, "messages": messages, "seconds_total": round(total, 3),
              "rows_per_s_total": round(rows / total, 1), "messages_per_s": round(messages / total, 1),
              "cdc_cpu_seconds": cdc_cpu, "server_cpu_seconds": servers_cpu,
              "cdc_cpu_ms_per_message": round(cdc_cpu * 1000 / messages, 4) if cdc_cpu else None,
              "es_cpu_ms_per_message": (round(servers_cpu["elasticsearch"] * 1000 / messages, 4)
                                        if "elasticsearch" in servers_cpu else None),
              "exit_code": exit_code, "log": str(log_path), "es": have, "db": truth, "correct": have == truth}
    cu.log(f"{kind} writer {i}: {messages} messages in {total:.1f}s = {result['messages_per_s']}/s, cdc {cdc_cpu} "
           f"CPU s, servers {servers_cpu}, index {'==' if result['correct'] else '!='} table")
    return result


class DebeziumFeed:
    """A Debezium MariaDB connector streaming the backlog into `<prefix>.bench.items` while it is written."""

    def __init__(self, ep, run_dir: Path, tag: str):
        from kafka_connect import Connect, mariadb_connector

        self.prefix = f"benchdbz{tag.replace('-', '')}"
        self.topic = f"{self.prefix}.{cu.SCHEMA}.{cu.TABLE}"
        self.marker_topic = f"{self.prefix}.{cu.SCHEMA}.marker"
        self.conn = cu.admin_conn(ep, autocommit=True)
        with self.conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS 'cdc_debezium'@'127.0.0.1' IDENTIFIED BY 'cdc_debezium'")
            cur.execute("GRANT SELECT, RELOAD, SHOW DATABASES, LOCK TABLES, REPLICATION SLAVE, BINLOG MONITOR "
                        "ON *.* TO 'cdc_debezium'@'127.0.0.1'")
        settings = mariadb_connector(
            self.prefix, prefix=self.prefix, host=ep.mariadb_host, port=ep.mariadb_port, user="cdc_debezium",
            password="cdc_debezium", server_id=987_654, databases=[cu.SCHEMA], history=run_dir / "connect" / "history")
        settings.update({"snapshot.mode": "no_data", "topic.creation.default.partitions": "12"})
        from kafka_broker import bootstrap
        self.connect = Connect(run_dir / "connect", bootstrap(), 29083, settings).start()
        self.mark()  # streaming has begun once this change is on the topic: the backlog comes after it

    def mark(self, timeout: float = 600) -> None:
        """Change the marker row until the connector publishes the change (it reads the binlog in order).

        Changed again every 10 s: a change made before the connector read its start position
        (while its task starts) is never published.
        """
        consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap(), "group.id": f"peek-{time.time()}",
                             "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000})
        consumer.subscribe([f"^{self.marker_topic.replace('.', '[.]')}$"])
        deadline = time.time() + timeout
        want, changed = None, 0.0
        try:
            while time.time() < deadline:
                if time.time() - changed > 10:
                    with self.conn.cursor() as cur:
                        cur.execute(f"UPDATE `{cu.SCHEMA}`.marker SET n = n + 1 WHERE id = 1")
                        cur.execute(f"SELECT n FROM `{cu.SCHEMA}`.marker WHERE id = 1")
                        want, changed = cur.fetchone()[0], time.time()
                msg = consumer.poll(1.0)
                if msg is None or msg.error() or msg.value() is None:
                    continue
                after = json.loads(msg.value())["payload"]["after"]
                if after and after["n"] >= want:
                    return
        finally:
            consumer.close()
        raise RuntimeError(f"Debezium did not publish marker {want} within {timeout}s:\n{self.connect.tail()}")

    def close(self) -> None:
        self.connect.stop()
        self.conn.close()


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--results", type=Path, default=cu.RESULTS / "kafka.json")
    parser.add_argument("--writers", default="1",
                        help="comma-separated writer counts, each measured in its own group, e.g. 1,2,4 "
                             "(1 always comes first: it is the kafka_writer the ratios use)")
    parser.add_argument("--debezium", action="store_true",
                        help="also measure cdc sink reading a Debezium connector's topic of the same backlog")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="with --debezium: also measure the Debezium writer of the cdc in DIR/cdc (a work tree of "
                             "the code before), each repeat beside the code's, the writers' order rotating")
    parser.add_argument("--skip-single", action="store_true",
                        help="leave out single-process `cdc run` (the writers' ratios do not use it)")
    args = parser.parse_args()

    ep = servers.up()
    kafka_broker.up()
    es = cu.Elasticsearch(ep.es_url, request_timeout=120)
    tag = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(KAFKA_BENCH_ENV["CDC_DEV_HOME"]) / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in es.indices.get(index=f"{cu.INDEX_PREFIX}-*", expand_wildcards="open").body:
        es.indices.delete(index=name)
    conn = cu.admin_conn(ep)
    code = cu.Code(run_dir)
    if args.baseline and not args.debezium:
        parser.error("--baseline compares Debezium writers: it needs --debezium")
    base = cu.Code(run_dir, args.baseline.resolve(), name="baseline") if args.baseline else None
    cu.setup_schema(conn)
    feed = DebeziumFeed(ep, run_dir, tag) if args.debezium else None
    start = cu.master_position(conn)
    cu.log(f"writing a backlog of {args.rows} row changes from {start}")
    backlog = cu.generate_backlog(conn, args.rows)
    end = cu.end_on_marker_commit(conn)
    if feed is not None:
        feed.mark()  # the connector has published the whole backlog
        feed.close()  # and uses no CPU during the measurements
        cu.log(f"Debezium published the backlog to {feed.topic}: {sum(topic_end(feed.topic).values())} messages")
    truth = cu.table_truth(conn)
    rows = backlog["rows"]
    timeout = max(600, rows / 50)
    counts = sorted({1, *(int(n) for n in args.writers.split(","))})
    single, readers, writers, dbz_writers, base_dbz_writers = [], [], [], [], []
    more_writers: dict[int, list[dict]] = {n: [] for n in counts if n > 1}
    # One uncounted run of each first: the bench's servers may have just started (cold JVMs).
    cu.log("warm-up (not counted)")
    if not args.skip_single:
        cu.catchup_once(0, ep, es, code, run_dir, tag, start, end, rows, truth, timeout, label="-warmup")
    warm_reader = reader_once(0, ep, code, run_dir, tag, start, end, rows, timeout)
    writer_once(0, ep, es, code, run_dir, tag, warm_reader, rows, truth, timeout)
    if feed is not None:
        writer_once(0, ep, es, code, run_dir, tag, warm_reader, rows, truth, timeout, feed.topic)
    if base is not None:
        writer_once(0, ep, es, base, run_dir, tag, warm_reader, rows, truth, timeout, feed.topic, label="-base")
    for i in range(1, args.repeat + 1):
        def run_single() -> None:
            single.append(cu.catchup_once(i, ep, es, code, run_dir, tag, start, end, rows, truth, timeout))

        def run_reader() -> None:
            readers.append(reader_once(i, ep, code, run_dir, tag, start, end, rows, timeout))

        for step in ([run_single, run_reader] if i % 2 else [run_reader, run_single]):
            if step is run_reader or not args.skip_single:
                step()
        def run_writer() -> None:
            writers.append(writer_once(i, ep, es, code, run_dir, tag, readers[-1], rows, truth, timeout))

        def run_dbz_writer() -> None:
            assert feed is not None
            dbz_writers.append(writer_once(i, ep, es, code, run_dir, tag, readers[-1], rows, truth, timeout,
                                           feed.topic))

        def run_base_dbz_writer() -> None:
            assert feed is not None and base is not None
            base_dbz_writers.append(writer_once(i, ep, es, base, run_dir, tag, readers[-1], rows, truth, timeout,
                                                feed.topic, label="-base"))

        steps = [run_writer] if feed is None else [run_writer, run_dbz_writer] if i % 2 else [run_dbz_writer,
                                                                                             run_writer]
        if base is not None:  # each of the three first, second and third once in three repeats
            steps = [run_writer, run_dbz_writer, run_base_dbz_writer]
            steps = steps[(i - 1) % 3:] + steps[:(i - 1) % 3]
        for step in steps:
            step()
        for n in more_writers:
            more_writers[n].append(writer_once(i, ep, es, code, run_dir, tag, readers[-1], rows, truth, timeout,
                                               count=n))
    conn.close()
    for r in single:  # keep the file small: catchup's per-run detail is in its own logs
        r.pop("es", None), r.pop("db", None), r.pop("checkpoint_progress", None), r.pop("cdc_rss_mb_samples", None)
    results = {
        "command": f".venv/bin/python bench/kafka_catchup.py {' '.join(sys.argv[1:])}".strip(),
        "cdc_code_sha256_16": code.sha256, "git_head": code.head, "backlog": backlog, "loadavg": os.getloadavg(),
        "single": single, "kafka_reader": readers, "kafka_writer": writers,
        "median": {"single_rows_per_s": median(single, "rows_per_s_total"),
                   "kafka_reader_rows_per_s": median(readers, "rows_per_s_total"),
                   "kafka_writer_rows_per_s": median(writers, "rows_per_s_total"),
                   "kafka_writer_messages_per_s": median(writers, "messages_per_s"),
                   "writer_cpu_ms_per_message": median(writers, "cdc_cpu_ms_per_message"),
                   "es_cpu_ms_per_message": median(writers, "es_cpu_ms_per_message")},
        "ratios_reader_to_single": [round(r["rows_per_s_total"] / s["rows_per_s_total"], 3)
                                    for r, s in zip(readers, single)],
        "ratios_writer_to_single": [round(w["rows_per_s_total"] / s["rows_per_s_total"], 3)
                                    for w, s in zip(writers, single)],
        "all_correct": all(s["correct"] for s in single) and all(
            w["correct"] for w in writers + dbz_writers + base_dbz_writers
            + [r for runs in more_writers.values() for r in runs]),
    }
    for n, runs in more_writers.items():
        results[f"kafka_writers_{n}"] = runs
        results["median"][f"kafka_writers_{n}_rows_per_s"] = median(runs, "rows_per_s_total")
        results["median"][f"kafka_writers_{n}_cpu_ms_per_message"] = median(runs, "cdc_cpu_ms_per_message")
        results[f"ratios_writers_{n}_to_one"] = [round(r["rows_per_s_total"] / w["rows_per_s_total"], 3)
                                                 for r, w in zip(runs, writers)]
    if feed is not None:
        results["debezium_writer"] = dbz_writers
        results["median"].update({
            "debezium_writer_rows_per_s": median(dbz_writers, "rows_per_s_total"),
            "debezium_writer_messages_per_s": median(dbz_writers, "messages_per_s"),
            "debezium_writer_cpu_ms_per_message": median(dbz_writers, "cdc_cpu_ms_per_message"),
            "debezium_es_cpu_ms_per_message": median(dbz_writers, "es_cpu_ms_per_message")})
        results["ratios_debezium_writer_to_writer"] = [round(d["rows_per_s_total"] / w["rows_per_s_total"], 3)
                                                       for d, w in zip(dbz_writers, writers)]
    if base is not None:
        results["baseline_code"] = {"source": str(base.source), "sha256_16": base.sha256}
        results["debezium_writer_baseline"] = base_dbz_writers
        results["median"].update({
            "baseline_debezium_writer_rows_per_s": median(base_dbz_writers, "rows_per_s_total"),
            "baseline_debezium_writer_cpu_ms_per_message": median(base_dbz_writers, "cdc_cpu_ms_per_message")})
        results["ratios_baseline_debezium_writer_to_writer"] = [
            round(d["rows_per_s_total"] / w["rows_per_s_total"], 3) for d, w in zip(base_dbz_writers, writers)]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in results.items()
                      if k in ("command", "backlog", "median", "all_correct") or k.startswith("ratios_")}, indent=2))
    return 0 if results["all_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
