#!/usr/bin/env python3
"""Unit costs behind the snapshot work (issue 13), each on the bench's own servers (bench/snapshot.py).

    .venv/bin/python bench/costs.py statements   # MariaDB CPU per statement of a chunk's consistent read
    .venv/bin/python bench/costs.py request      # client CPU per 2,000-document bulk request: cdc's sink, urllib3
                                                 # (PYTHONPATH=DIR: the sink of the cdc in DIR/cdc)
    .venv/bin/python bench/costs.py documents [--rate N] [--mapped] [--per-request N] [--filter-path P]
                                                 # Elasticsearch CPU per document of 1M synthetic documents

`documents` sends 1,000,000 documents shaped like bench/snapshot.py's table
(4 in flight, bodies encoded before the clock starts, each with an external
version as cdc's are), optionally throttled to --rate documents/s and into an
index with the mappings cdc generates for that table (--mapped) instead of
dynamic ones.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import snapshot  # noqa: E402  (bench/snapshot.py: forces the bench's own servers and ports)
from catchup import server_pids  # noqa: E402

from elasticsearch import Elasticsearch  # noqa: E402

BULK_FIELDS = "errors,items.*.status,items.*.error"  # cdc.es.sink.BULK_RESPONSE_FIELDS
NDJSON = {"content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
          "accept": "application/vnd.elasticsearch+json; compatible-with=8"}
# What cdc/es/indices.py generates for bench/snapshot.py's table.
MAPPINGS = {"properties": {
    "id": {"type": "long"}, "account_id": {"type": "long"}, "qty": {"type": "long"}, "flag": {"type": "long"},
    "sku": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
    "note": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
    "price": {"type": "keyword"}, "status": {"type": "keyword"}, "created_at": {"type": "date"},
    "score": {"type": "double"}}}


def cpu_per_call(call, n: int) -> float:
    """Microseconds of this process's CPU per call."""
    started = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - started) / n * 1e6


def statements(ep) -> None:
    pid = server_pids()["mariadb"]
    conn = snapshot.admin(ep)
    cur = conn.cursor()
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def server_us(sql: list[str], n: int) -> float:
        before = snapshot.proc_cpu_seconds(pid)
        for _ in range(n):
            for one in sql:
                cur.execute(one)
                cur.fetchall()
        return (snapshot.proc_cpu_seconds(pid) - before) / n * 1e6

    select = (f"SELECT id, account_id, sku, qty, price, status, created_at, flag, note, score "
              f"FROM {snapshot.SCHEMA}.{snapshot.TABLE} WHERE id > 500000 ORDER BY id LIMIT ")
    snapshot.load(ep, 1_000_000)
    begin, status = "START TRANSACTION WITH CONSISTENT SNAPSHOT", "SHOW SESSION STATUS LIKE 'binlog_snapshot_%'"
    print(f"{begin} + COMMIT: {server_us([begin, 'COMMIT'], 2000):.0f} us of MariaDB CPU")
    print(f"the same with {status}: {server_us([begin, status, 'COMMIT'], 2000):.0f} us")
    for rows in (1000, 5000):
        print(f"a {rows}-row chunk's SELECT: {server_us([select + str(rows)], 100):.0f} us")
    conn.close()


def _body(index: str, first: int, count: int, version: int) -> bytes:
    lines = []
    for i in range(first, first + count):
        lines.append(orjson.dumps({"index": {"_index": index, "_id": str(i), "version": version,
                                             "version_type": "external"}}))
        lines.append(orjson.dumps({
            "id": i, "account_id": i % 5000, "sku": f"SKU-{i % 997}", "qty": i % 17,
            "price": f"{(i % 10000) / 100:.2f}", "status": ("new", "paid", "shipped")[i % 3],
            "created_at": f"2024-01-{1 + i // 86400:02d}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}",
            "flag": i % 2, "note": chr(97 + i % 26) * (60 + i % 60), "score": i / 7}))
    return b"\n".join(lines) + b"\n"


def request(ep) -> None:
    import urllib3

    from cdc.config import ElasticsearchConfig
    from cdc.es.sink import ElasticsearchSink
    from cdc.model import EncodedActions

    index = "bench-costs-request"
    es = Elasticsearch(ep.es_url, request_timeout=60)
    if es.indices.exists(index=index):
        es.indices.delete(index=index)
    version = [1]

    def body() -> bytes:  # a newer version each time: every item succeeds, as in a snapshot
        version[0] += 1
        return _body(index, 1, 2000, version[0])

    sink = ElasticsearchSink(ElasticsearchConfig(hosts=[ep.es_url]))
    bodies = [body() for _ in range(150)]
    sent = iter(bodies)
    us = cpu_per_call(lambda: sink.write(EncodedActions(next(sent), 2000, 2000 * 300, list)), len(bodies))
    import cdc

    print(f"cdc's sink (ElasticsearchSink.write of an encoded body, cdc from {Path(cdc.__file__).parent}): "
          f"{us:.0f} us of client CPU per request")
    host, port = ep.es_url.rsplit("//", 1)[1].split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1)
    bodies = [body() for _ in range(150)]
    sent = iter(bodies)
    us = cpu_per_call(lambda: pool.urlopen("PUT", f"/_bulk?filter_path={BULK_FIELDS}", body=next(sent),
                                           headers=NDJSON).data, len(bodies))
    print(f"urllib3 alone, the same request: {us:.0f} us")
    es.indices.delete(index=index)


def documents(ep, rate: float | None, mapped: bool, per_request: int, filter_path: str) -> None:
    pid = server_pids()["elasticsearch"]
    es = Elasticsearch(ep.es_url, request_timeout=60)
    index, total = "bench-costs-documents", 1_000_000
    if es.indices.exists(index=index):
        es.indices.delete(index=index)
    bodies = [_body(index, first, min(per_request, total - first + 1), 1 << 40)
              for first in range(1, total + 1, per_request)]
    if mapped:
        es.indices.create(index=index, mappings=MAPPINGS)
    before, started = snapshot.proc_cpu_seconds(pid), time.monotonic()
    lock = threading.Lock()

    def send(numbered: tuple[int, bytes]) -> None:
        n, body = numbered
        if rate:
            time.sleep(max(0.0, started + n * per_request / rate - time.monotonic()))
        if es.bulk(body=body, filter_path=filter_path).body.get("errors"):
            with lock:
                raise SystemExit("item errors")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, enumerate(bodies)))
    seconds, cpu = time.monotonic() - started, snapshot.proc_cpu_seconds(pid) - before
    print(f"{total / seconds:,.0f} docs/s over {seconds:.1f} s; Elasticsearch CPU {cpu:.1f} s = "
          f"{1e6 * cpu / total:.1f} us per document, {cpu / seconds:.2f} cores "
          f"({'cdc mappings' if mapped else 'dynamic mappings'}, {per_request} per request, filter_path={filter_path})")
    es.indices.delete(index=index)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("statements")
    sub.add_parser("request")
    docs = sub.add_parser("documents")
    docs.add_argument("--rate", type=float, help="documents per second (default: as fast as it takes them)")
    docs.add_argument("--mapped", action="store_true", help="into an index with cdc's generated mappings")
    docs.add_argument("--per-request", type=int, default=1000)
    docs.add_argument("--filter-path", default="errors")
    args = parser.parse_args()
    ep = snapshot.servers.up()
    if args.what == "statements":
        statements(ep)
    elif args.what == "request":
        request(ep)
    else:
        documents(ep, args.rate, args.mapped, args.per_request, args.filter_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
