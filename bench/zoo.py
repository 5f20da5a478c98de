#!/usr/bin/env python3
"""The schema zoo on both row paths, side by side in one run (issue 28).

    .venv/bin/python bench/zoo.py [--changes 60000] [--repeat 3] [--mysql]

The tables a new user brings (tests/integration/zoo.py): Sakila's 16 tables, a latin1
table, a gbk table, a JSON table, a GEOMETRY/POINT table and a table whose rule uses
every `convert:`, with that module's seeded random load (inserts, some multi-row;
updates of one column; deletes) spread over all 21 tables. On bench/catchup.py's servers
(own ports, never the test servers): MariaDB 10.11, or with --mysql MySQL 9.7.

Over the same binlog range, alternating the order every repeat, a child process decodes
and converts every row change (`BinlogSource` + the row path + each action's document
JSON, as bench/rowpath.py's `convert`: no threads, no Elasticsearch) with
`row_path: python` and with `row_path: native`, and reports CPU µs per row change, and
the row path each table took. Results: Markdown on stdout, JSON in bench/results/zoo.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
import catchup as cu  # noqa: E402  (sets the bench servers' ports first)
import zoo  # noqa: E402

SCHEMA = "bench_zoo"


def child(args: argparse.Namespace) -> None:
    """In its own process: decode + convert the range on one path, print one JSON line."""
    import threading

    import yaml

    from cdc.config import MysqlConfig, RetryConfig
    from cdc.model import BinlogPosition, RowChange, StartPoint
    from cdc.mysql.server import Database
    from cdc.mysql.source import BinlogSource
    from cdc.rules import ActionBuilder, load_rules, resolved_or_stop
    from cdc.rules.rowpath import RowPath, row_count
    from cdc.rules.values import ValueOptions

    config = MysqlConfig(host=args.host, port=args.port, user=args.user, password=args.password,
                         server_id=args.server_id)
    rules_file = Path(tempfile.mkdtemp()) / "zoo.yml"
    rules_file.write_text(yaml.safe_dump({"rules": zoo.rules(SCHEMA, "bench-zoo")}, sort_keys=False))
    rules = load_rules(rules_file)
    db = Database(config)
    try:
        rules = resolved_or_stop(rules, db.catalog(rules))
    finally:
        db.close()
    path = RowPath(ActionBuilder(rules, 0, ValueOptions()), args.child)
    start, end = BinlogPosition.parse(args.start), BinlogPosition.parse(args.end)
    source = BinlogSource(config, args.source != "mysql", {(SCHEMA, t) for t in zoo.TABLES},
                          RetryConfig(max_attempts=1), stop=threading.Event(), end=end,
                          prepare=path.prepare if args.child == "native" else None)
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows = actions = doc_bytes = 0
    for event in source.events(StartPoint(start)):
        if isinstance(event, RowChange):
            rows += row_count(event)
            for action in path.actions(event):
                actions += 1
                doc = action.doc_json
                doc_bytes += len(doc) if doc else 0
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({"rows": rows, "actions": actions, "doc_bytes": doc_bytes, "seconds": round(seconds, 3),
                      "cpu_us_per_row": round(cpu / rows * 1e6, 2), "rows_per_s": round(rows / seconds, 1),
                      "tables": path.tables}))


def run_child(ep, mode: str, start, end) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--host", ep.mariadb_host,
           "--port", str(ep.mariadb_port), "--user", ep.admin_user, "--password", ep.admin_password,
           "--server-id", str(next(cu._server_ids)), "--start", str(start), "--end", str(end), "--source", ep.source,
           "--schema", SCHEMA]
    out = subprocess.run(cmd, cwd=cu.ROOT, capture_output=True, text=True, timeout=3600,
                         env={"PYTHONPATH": str(cu.ROOT), "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise RuntimeError(f"zoo {mode} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cu.log(f"{mode}: {result['rows']} rows, {result['rows_per_s']} rows/s, {result['cpu_us_per_row']} µs CPU/row")
    return result


def main() -> int:
    global SCHEMA
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mysql", action="store_true", help="the source is MySQL 9.7 instead of MariaDB")
    parser.add_argument("--results", type=Path, default=cu.RESULTS / "zoo.json")
    parser.add_argument("--schema", default=SCHEMA, help="the bench's database (two runs at once need two)")
    parser.add_argument("--child", choices=("python", "native"))
    for name in ("host", "user", "password", "start", "end", "source"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--port", type=int)
    parser.add_argument("--server-id", type=int)
    args = parser.parse_args()
    SCHEMA = args.schema
    if args.child:
        child(args)
        return 0

    if args.mysql:
        ep = cu.servers.mysql_up()
    else:  # MariaDB alone: nothing here needs Elasticsearch
        cu.servers.mariadb_up()
        ep = cu.servers.endpoints("8")
    conn = cu.admin_conn(ep, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{SCHEMA}`")
        cur.execute(f"CREATE DATABASE `{SCHEMA}`")
        cur.execute(f"USE `{SCHEMA}`")
        cur.execute("SET SESSION time_zone = '+00:00'")
        for statement in zoo.ddl():
            cur.execute(statement)
        start = cu.master_position(conn)
        t0 = time.time()
        for statement in zoo.statements(seed=28, changes=args.changes):
            cur.execute(statement)
        end = cu.master_position(conn)
    cu.log(f"backlog: {args.changes} changes over {len(zoo.TABLES)} tables in {time.time() - t0:.0f}s, "
           f"{start} .. {end}")
    results: dict = {"command": " ".join([".venv/bin/python", "bench/zoo.py", *sys.argv[1:]]),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": ep.source,
                     "server": cu.scalar(conn, "SELECT VERSION()"), "start": str(start), "end": str(end),
                     "loadavg_start": __import__("os").getloadavg(), "runs": []}
    for i in range(args.repeat):
        for mode in (("python", "native") if i % 2 == 0 else ("native", "python")):
            result = run_child(ep, mode, start, end)
            result.update(repeat=i, mode=mode)
            results["runs"].append(result)
    results["loadavg_end"] = __import__("os").getloadavg()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results["runs"] if r["mode"] == mode)

    native_paths = next(r["tables"] for r in results["runs"] if r["mode"] == "native")
    print(f"\n{results['server']}, {results['runs'][0]['rows']} row changes over {len(zoo.TABLES)} tables, "
          f"median of {args.repeat}\n")
    print("| decode and convert only | python | native | ratio |\n|---|---|---|---|")
    print(f"| CPU µs per row change | {med('python', 'cpu_us_per_row')} | {med('native', 'cpu_us_per_row')} | "
          f"{med('python', 'cpu_us_per_row') / med('native', 'cpu_us_per_row'):.1f}× |")
    print(f"| rows/s | {med('python', 'rows_per_s'):,.0f} | {med('native', 'rows_per_s'):,.0f} | |")
    python_tables = {t: p for t, p in native_paths.items() if p != "native"}
    print(f"\nRow path of the native runs: {len(native_paths) - len(python_tables)} of {len(native_paths)} tables "
          f"native" + (f"; python: {python_tables}" if python_tables else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
