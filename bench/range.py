#!/usr/bin/env python3
"""One cdc process over a backlog already in the bench's binlog, with its CPU per thread.

    .venv/bin/python bench/range.py catchup|dryrun CODE_DIR FROM TO ROWS [--python]

For measurements by hand between the side-by-side benches: `catchup` runs `cdc run`
from FROM until its checkpoint reaches TO (bench/catchup.py catchup_once, into a
fresh index dropped afterwards); `dryrun` runs `cdc replay --dry-run` over the range.
CODE_DIR is a checkout whose cdc/ runs (with its own `_native` build, if any);
`--python` leaves `row_path` out of the config (a tree from before the native row
path refuses the key). FROM and TO are FILE:POS of a backlog of bench/rowpath.py's
table (`bench_rowpath.items`), as its runs log them; ROWS is the row changes in it.

Prints one JSON line: rows/s, start-up, cdc's CPU seconds (utime + stime) and, for
`catchup`, MariaDB's and Elasticsearch's, then cdc's threads (user, system CPU
seconds, voluntary and involuntary context switches), read just before the stop.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import catchup as cu  # noqa: E402  (sets the bench servers' ports first)

cu.SCHEMA = "bench_rowpath"  # bench/rowpath.py's schema
# Ids of their own: a reader that just stopped stays listed on the server for a while,
# and cdc waits for an id to be free (bench processes otherwise count from one start).
cu._server_ids = itertools.count(20000 + os.getpid() % 5000 * 7)


def thread_cpu(pid: int) -> dict[str, tuple[float, float, int, int]]:
    """tid -> (user s, system s, voluntary, involuntary context switches) of each thread of `pid`."""
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines())
        threads[tid] = (int(stat[11]) / tick, int(stat[12]) / tick, int(status["voluntary_ctxt_switches"]),
                        int(status["nonvoluntary_ctxt_switches"]))
    return threads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("catchup", "dryrun"))
    parser.add_argument("code", type=Path)
    parser.add_argument("start")
    parser.add_argument("end")
    parser.add_argument("rows", type=int)
    parser.add_argument("--python", action="store_true", help="no row_path key in the config")
    args = parser.parse_args()
    position = lambda text: cu.BinlogPosition(text.rsplit(":", 1)[0], int(text.rsplit(":", 1)[1]))  # noqa: E731
    start, end = position(args.start), position(args.end)
    ep = cu.servers.up()
    run_dir = Path(tempfile.mkdtemp(prefix="range-", dir="/var/tmp/cdc-bench/runs"))
    code = cu.Code(run_dir, args.code.resolve())
    if not args.python:
        code.extra_config["row_path"] = "native"
    if args.what == "dryrun":
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = cu.dryrun_once(0, ep, code, run_dir, "range", start, end, args.rows)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["cdc_cpu_seconds"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
        print(json.dumps({k: result[k] for k in ("rows", "rows_per_s_total", "seconds_startup", "cdc_cpu_seconds")}))
        return 0
    threads: dict = {}
    proc_cpu = cu.proc_cpu

    def proc_cpu_and_threads(pid: int) -> float | None:
        # catchup_once reads cdc's CPU just before it stops cdc: the threads are read then too.
        try:
            if b"-m\0cdc\0run" in Path(f"/proc/{pid}/cmdline").read_bytes():
                threads.update(thread_cpu(pid))
        except OSError:
            pass
        return proc_cpu(pid)

    cu.proc_cpu = proc_cpu_and_threads
    from elasticsearch import Elasticsearch

    es = Elasticsearch(ep.es_url, request_timeout=120)
    result = cu.catchup_once(0, ep, es, code, run_dir, f"range-{int(time.time())}", start, end, args.rows, {}, 1800)
    es.indices.delete(index=result["index"], ignore_unavailable=True)
    print(json.dumps({k: result[k] for k in ("rows_per_s_total", "seconds_startup", "cdc_cpu_seconds",
                                             "server_cpu_seconds", "cdc_peak_rss_mb")}))
    for tid, (user, system, voluntary, involuntary) in threads.items():
        print(f"  thread {tid}: user {user:.2f} s, system {system:.2f} s, context switches {voluntary} + {involuntary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
