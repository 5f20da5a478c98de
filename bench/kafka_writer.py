#!/usr/bin/env python3
"""One `cdc sink` writer draining a pre-filled topic, against another checkout's, side by side.

    .venv/bin/python bench/kafka_writer.py [--messages 200000] [--repeat 3] [--base /path/to/other/checkout]

A topic of --messages cdc-format messages (index actions of 10-field documents; format version 1
for a --base writer, this checkout's format for its own,
~410 bytes each, 12 partitions) is written by a producer in this process, once per
run (each run has its own topic and index). Then a writer (`cdc sink`, this
checkout's code, or --base's with PYTHONPATH) is started, and the clock runs from
process start until the group's committed offsets reach the end of every
partition (which it commits only once Elasticsearch acknowledged). Runs alternate
base and this checkout, --repeat times; medians are printed and written to
bench/results/kafka-writer.json. Only the writer is measured, so the reader and
MySQL play no part: it isolates what issue 32 is about (bench/kafka_catchup.py
measures the whole path beside single-process `cdc run`).

It uses the dev servers (scripts/servers.py's Elasticsearch, scripts/kafka_broker.py's
broker), starting them if they are not running.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import kafka_broker  # noqa: E402
import servers  # noqa: E402
import orjson  # noqa: E402
import yaml  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cdc.kafka import messages  # noqa: E402
from cdc.model import Action, ActionType, BinlogPosition  # noqa: E402

PARTITIONS = 12


def version_1(action: Action) -> bytes:
    """The message value of format version 1 (docs/kafka.md "Message format"), which every writer reads."""
    return orjson.dumps({"cdc": 1, "action": action.type.value, "index": action.index, "id": action.doc_id,
                         "routing": action.routing, "version": action.version, "pipeline": action.pipeline,
                         "source": {"schema": action.schema, "table": action.table, "file": action.position.file,
                                    "pos": action.position.pos}, "doc": action.doc})


def fill(bootstrap: str, topic: str, index: str, count: int, old_format: bool = False) -> None:
    """`old_format`: version 1 values, for a --base writer from before version 2; else this checkout's."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4"})
    position = BinlogPosition("binlog.000042", 1234)
    rng = random.Random(7)
    for i in range(count):
        doc = {"id": i, "customer_id": rng.randint(1, 10**6), "sku": f"SKU-{i:08d}", "qty": rng.randint(1, 9),
               "price": "12.50", "status": "paid", "note": "a note of some length here",
               "created": "2024-01-02T03:04:05", "updated": "2024-01-02T03:04:05.123456", "flag": True}
        action = Action(ActionType.INDEX, index, str(i), (42 << 32) + i, doc, schema="shop", table="orders",
                        position=position)
        while True:
            try:
                if old_format:
                    producer.produce(topic, version_1(action), messages.key(action))
                else:
                    producer.produce(topic, messages.encode(action), messages.key(action),
                                     headers=messages.headers(action))
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush()


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(code: Path | None, bootstrap: str, es_url: str, count: int, workdir: Path) -> dict:
    tag = uuid.uuid4().hex[:8]
    topic, index = f"bench-writer-{tag}", f"bench-writer-{tag}"
    fill(bootstrap, topic, index, count, old_format=code is not None)
    (workdir / "rules").mkdir(parents=True, exist_ok=True)
    (workdir / "rules" / "none.yml").write_text("rules: []\n")
    config = workdir / f"{tag}.yml"
    config.write_text(yaml.safe_dump({
        "mysql": {"host": "127.0.0.1", "user": "unused", "server_id": 9},  # a cdc-format writer reads no MySQL
        "elasticsearch": {"hosts": [es_url]}, "rules": "rules", "state_dir": str(workdir),
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic, "group_id": f"g-{topic}",
                  "partitions": PARTITIONS}}))
    env = dict(os.environ, **({"PYTHONPATH": str(code)} if code else {}))
    started = time.monotonic()
    writer = subprocess.Popen([sys.executable, "-m", "cdc", "sink", "--config", str(config), "--log-level", "WARNING"],
                              cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while committed(bootstrap, f"g-{topic}", topic) < count:
            if writer.poll() is not None:
                raise SystemExit(f"the writer exited with {writer.returncode}")
            time.sleep(0.2)
        seconds = time.monotonic() - started
        cpu = proc_cpu(writer.pid)
    finally:
        writer.terminate()
        writer.wait()
    subprocess.run(["curl", "-s", "-XDELETE", f"{es_url}/{index}"], capture_output=True)
    return {"code": str(code) if code else "this checkout", "seconds": round(seconds, 2),
            "messages_per_s": round(count / seconds), "cpu_us_per_message": round(cpu / count * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base", type=Path, help="another checkout (its cdc/ is run with PYTHONPATH)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "kafka-writer.json")
    args = parser.parse_args()
    es_url = servers.up().es_url
    bootstrap = kafka_broker.up()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        codes: list[Path | None] = [args.base, None] if args.base else [None]
        for i in range(args.repeat):
            for code in (codes if i % 2 == 0 else codes[::-1]):  # alternating which goes first
                run = one(code, bootstrap, es_url, args.messages, Path(tmp) / str(len(runs)))
                runs.append(run)
                print(json.dumps(run), flush=True)
    summary = {}
    for name in dict.fromkeys(r["code"] for r in runs):
        mine = [r for r in runs if r["code"] == name]
        summary[name] = {"messages_per_s": statistics.median(r["messages_per_s"] for r in mine),
                         "cpu_us_per_message": statistics.median(r["cpu_us_per_message"] for r in mine)}
    print(json.dumps(summary, indent=2))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"messages": args.messages, "runs": runs, "median": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
