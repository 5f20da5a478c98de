#!/usr/bin/env python3
"""Snapshot of wide rows: cdc's peak memory (and rate) copying a table of big TEXT rows.

    .venv/bin/python bench/snapshot_wide.py [--rows 5000] [--width 40000] [--repeat 2] [--baseline DIR]

A snapshot holds up to tables x (2 x concurrency + 1) chunks at once; with wide
rows a chunk of `snapshot.chunk_size` rows is big, which `snapshot.chunk_bytes`
bounds. Runs `cdc run` to "snapshot done" as bench/snapshot.py does (its servers,
its `run_cdc`), on a table `benchsnap.wide` of --rows rows of --width bytes, then
drops the table. With --baseline DIR, the cdc in DIR/cdc runs too, alternating.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import snapshot  # noqa: E402  (bench/snapshot.py: forces the bench's own servers and ports)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--width", type=int, default=40_000, help="bytes of text per row")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="also run the cdc in DIR/cdc")
    parser.add_argument("--results", type=Path, default=snapshot.ROOT / "bench" / "results" / "snapshot-wide.json")
    args = parser.parse_args()
    ep = snapshot.servers.up()
    conn = snapshot.admin(ep)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {snapshot.SCHEMA}")
        cur.execute(f"DROP TABLE IF EXISTS {snapshot.SCHEMA}.wide")
        cur.execute(f"CREATE TABLE {snapshot.SCHEMA}.wide (id BIGINT PRIMARY KEY, body MEDIUMTEXT NOT NULL)")
        cur.execute(f"USE {snapshot.SCHEMA}")  # seq_1_to_N (the Sequence engine) lives in the current database
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"INSERT INTO {snapshot.SCHEMA}.wide SELECT seq, REPEAT(CHAR(97 + seq MOD 26), {int(args.width)}) "
                    f"FROM seq_1_to_{int(args.rows)}")
        cur.execute(f"ANALYZE TABLE {snapshot.SCHEMA}.wide")
        cur.fetchall()
    snapshot.TABLE = "wide"
    codes = [("code", snapshot.ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    runs: dict[str, list[dict]] = {name: [] for name, _ in codes}
    try:
        for n in range(args.repeat):
            for k, (name, code) in enumerate(codes if n % 2 == 0 else codes[::-1]):
                run = snapshot.run_cdc(ep, args.rows, 50 + 10 * n + k, code)
                runs[name].append(run)
                print(f"run {n + 1} {name}: {run['rows_per_s']:.0f} rows/s ({run['seconds']:.1f} s), peak RSS "
                      f"{run['peak_rss_mb']:.0f} MB, CPU {run['cpu_seconds']:.1f} s", flush=True)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE {snapshot.SCHEMA}.wide")
        conn.close()
    medians = {name: {"peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
                      "rows_per_s": statistics.median(r["rows_per_s"] for r in rs)} for name, rs in runs.items()}
    result = {"command": " ".join(sys.argv), "rows": args.rows, "width": args.width, "runs": runs, "median": medians}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2))
    for name, m in medians.items():
        print(f"{name}: median peak RSS {m['peak_rss_mb']:.0f} MB, {m['rows_per_s']:.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
