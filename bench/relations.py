#!/usr/bin/env python3
"""Documents from several tables (issue 15): documents/s of rebuilds, and MySQL reads per change.

    .venv/bin/python bench/relations.py [--orders 2000] [--lines 20] [--repeat 3]

A child-heavy schema: orders, each with `--lines` order lines (children) and
their product (a lookup), and a customer (a lookup). Measured in-process on the
rebuild stage the daemon uses (cdc/stream/rebuild.py: MySQL consistent reads,
assembly, bulk writes into Elasticsearch), each row a median of `--repeat`
alternating runs:

* build: every order rebuilt (as a snapshot or a lookup referenced by all of
  them would), side by side with the same rule without children and lookups
  (root rows only), so the ratio is what the joins cost;
* child changes: updates of random order lines, in batches of 200 changes as the
  pipeline delivers them: documents/s and MySQL reads per change;
* a lookup change: one customer referenced by orders/10 orders.

Runs on the bench servers (ports 23306/29200, as bench/snapshot.py), in its own
database `t15_bench` and fresh index names.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.update({"CDC_DEV_HOME": "/var/tmp/cdc-bench", "MARIADB_PORT": "23306", "ES_PORT": "29200",
                   "ES_TRANSPORT_PORT": "29300"})
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import pymysql  # noqa: E402
import servers  # noqa: E402
import yaml  # noqa: E402

from cdc.config import BatchConfig, ElasticsearchConfig, MysqlConfig, RetryConfig  # noqa: E402
from cdc.es.destination import Destination  # noqa: E402
from cdc.model import BinlogPosition, Column, ColumnKind, Op, RowChange  # noqa: E402
from cdc.mysql.server import Database  # noqa: E402
from cdc.rules import ActionBuilder, RuleSet, load_rules, resolve_rules  # noqa: E402
from cdc.stream.delivery import BulkWriter  # noqa: E402
from cdc.stream.rebuild import Rebuild  # noqa: E402

SCHEMA = "t15_bench"


def load(ep, orders: int, lines: int) -> None:
    conn = pymysql.connect(host=ep.mariadb_host, port=ep.mariadb_port, user=ep.admin_user,
                           password=ep.admin_password, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCHEMA}")
        cur.execute(f"CREATE DATABASE {SCHEMA}")
        cur.execute(f"USE {SCHEMA}")
        cur.execute("CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), email VARCHAR(80))")
        cur.execute("CREATE TABLE products (id INT PRIMARY KEY, sku VARCHAR(20), name VARCHAR(80))")
        cur.execute("CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, status VARCHAR(20), "
                    "total DECIMAL(10,2), KEY (customer_id))")
        cur.execute("CREATE TABLE order_lines (order_id INT, line INT, product_id INT, qty INT, price DECIMAL(8,2), "
                    "PRIMARY KEY (order_id, line), KEY (product_id))")
        cur.execute("INSERT INTO customers SELECT seq, CONCAT('c', seq), CONCAT('c', seq, '@x') FROM seq_1_to_%d"
                    % max(10, orders // 10))
        cur.execute("INSERT INTO products SELECT seq, CONCAT('SKU', seq), CONCAT('product ', seq) FROM seq_1_to_200")
        # Customer 1 has orders/10 orders (the lookup change); the others spread.
        cur.execute("INSERT INTO orders SELECT seq, IF(seq %% 10 = 0, 1, 2 + seq %% %d), 'new', seq / 3 "
                    "FROM seq_1_to_%d" % (max(10, orders // 10) - 1, orders))
        cur.execute("INSERT INTO order_lines SELECT o.seq, l.seq, 1 + (o.seq * l.seq) %% 200, l.seq, 1.25 "
                    "FROM seq_1_to_%d o, seq_1_to_%d l" % (orders, lines))
    conn.close()


RULE = {"schema": SCHEMA, "table": "orders", "index": "x",
        "lookups": {"customer": {"table": "customers", "key": "customer_id", "include": ["name", "email"]}},
        "children": {"lines": {"table": "order_lines", "key": "order_id",
                               "include": ["line", "product_id", "qty", "price"],
                               "lookups": {"product": {"table": "products", "key": "product_id",
                                                       "include": ["sku", "name"]}}}}}


def resolved(db: Database, index: str, relations: bool):
    rule = dict(RULE, index=index)
    if not relations:
        rule = {k: v for k, v in rule.items() if k not in ("lookups", "children")}
        rule["lookups"] = {}  # a relational rule with no relations: the same code path, root rows only
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yml"
        path.write_text(yaml.safe_dump({"rules": [rule]}))
        rules = load_rules(path)
    resolution = resolve_rules(rules, db.catalog(rules))
    assert not resolution.problems, resolution.problems
    return resolution.rules.rules[0]


def stage(ep, rule) -> Rebuild:
    config = MysqlConfig(host=ep.mariadb_host, port=ep.mariadb_port, user=ep.admin_user,
                         password=ep.admin_password, server_id=9)
    return Rebuild([rule], lambda: Database(config), RetryConfig(max_attempts=3))


def line_changes(count: int, orders: int, lines: int, seed: int, position: BinlogPosition) -> list[RowChange]:
    rng = random.Random(seed)
    columns = tuple(Column(c, ColumnKind.INTEGER) for c in ("order_id", "line", "product_id", "qty"))
    out = []
    for _ in range(count):
        order, line = rng.randint(1, orders), rng.randint(1, lines)
        row = {"order_id": order, "line": line, "product_id": 1, "qty": 1}
        out.append(RowChange(Op.UPDATE, SCHEMA, "order_lines", columns, row, row, position, 0))
    return out


def run(ep, db, es_url: str, args, relations: bool, run_no: int) -> dict:
    index = f"t15-bench-{'rel' if relations else 'root'}-{run_no}-{int(time.time())}"
    rule = resolved(db, index, relations)
    sink = Destination(ElasticsearchConfig(hosts=[es_url]))
    sink.check()
    writer = BulkWriter(sink, BatchConfig(), RetryConfig(max_attempts=5))
    rebuild = stage(ep, rule)
    builder = rebuild.builder(ActionBuilder(RuleSet([])))
    position = BinlogPosition("binlog.000001", 4)  # before any read: no read is refused as too old
    out: dict = {}
    try:
        # 1. every order
        ids = list(range(1, args.orders + 1))
        columns = (Column("id", ColumnKind.INTEGER),)
        requests = [a for i in ids for a in builder.actions(
            RowChange(Op.INSERT, SCHEMA, "orders", columns, None, {"id": i}, position, 0))]
        started = time.perf_counter()
        rebuild.deliver(requests, writer.write, writer.refuse)
        out["build_docs_per_s"] = args.orders / (time.perf_counter() - started)
        out["build_reads"] = dict(rebuild.reads, statements=rebuild.statements)
        if relations:
            # 2. child changes, 200 per delivery
            before = dict(rebuild.reads, statements=rebuild.statements)
            changes = line_changes(args.changes, args.orders, args.lines, run_no, position)
            docs = rebuild.documents
            started = time.perf_counter()
            for i in range(0, len(changes), 200):
                rebuild.deliver([a for c in changes[i:i + 200] for a in builder.actions(c)], writer.write,
                                writer.refuse)
            elapsed = time.perf_counter() - started
            out["child_docs_per_s"] = (rebuild.documents - docs) / elapsed
            out["child_changes_per_s"] = len(changes) / elapsed
            out["child_reads_per_change"] = sum(rebuild.reads[k] - before[k] for k in rebuild.reads) / len(changes)
            out["child_statements_per_change"] = (rebuild.statements - before["statements"]) / len(changes)
            # 3. one lookup change reaching orders/10 roots
            before, docs = dict(rebuild.reads, statements=rebuild.statements), rebuild.documents
            change = RowChange(Op.UPDATE, SCHEMA, "customers", (Column("id", ColumnKind.INTEGER),), {"id": 1},
                               {"id": 1}, position, 0)
            started = time.perf_counter()
            rebuild.deliver(builder.actions(change), writer.write, writer.refuse)
            out["lookup_roots"] = rebuild.documents - docs
            out["lookup_seconds"] = time.perf_counter() - started
            out["lookup_reads"] = sum(rebuild.reads[k] - before[k] for k in rebuild.reads)
            out["lookup_statements"] = rebuild.statements - before["statements"]
    finally:
        rebuild.close()
        try:
            sink.client.indices.delete(index=index)  # type: ignore[attr-defined]
        except Exception:
            pass
        sink.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ep = servers.up()
    load(ep, args.orders, args.lines)
    db = Database(MysqlConfig(host=ep.mariadb_host, port=ep.mariadb_port, user=ep.admin_user,
                              password=ep.admin_password, server_id=9))
    results: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(args.repeat):
        for relations in (False, True):  # alternating, side by side
            results[relations].append(run(ep, db, ep.es_url, args, relations, i))
            print(f"run {i} {'relations' if relations else 'root only'}: {results[relations][-1]}", flush=True)
    db.close()

    def median(relations: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[relations])

    rel, root = median(True, "build_docs_per_s"), median(False, "build_docs_per_s")
    print(f"\n{args.orders} orders x {args.lines} lines, medians of {args.repeat}:")
    print(f"build, root rows only:        {root:8.0f} documents/s")
    print(f"build, with lines+lookups:    {rel:8.0f} documents/s ({rel / root:.2f}x root only)")
    print(f"  reads per build of {args.orders}: {results[True][0]['build_reads']}")
    print(f"child changes:                {median(True, 'child_changes_per_s'):8.0f} changes/s, "
          f"{median(True, 'child_docs_per_s'):.0f} documents/s, "
          f"{median(True, 'child_reads_per_change'):.3f} consistent reads and "
          f"{median(True, 'child_statements_per_change'):.3f} statements per change (batches of 200)")
    print(f"one lookup change:            {results[True][0]['lookup_roots']} roots in "
          f"{median(True, 'lookup_seconds'):.2f}s, {results[True][0]['lookup_reads']} consistent reads, "
          f"{results[True][0]['lookup_statements']} statements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
