#!/usr/bin/env python3
"""The live stream's latency while `cdc rebuild` copies the same table (issue 31).

    .venv/bin/python bench/rebuild_latency.py [--rows 1000000] [--rate 1000] [--before 60] [--after 30]

On the bench's own servers (MariaDB 10.11 on 23306, Elasticsearch 8 on 29200, as bench/catchup.py).
The table is bench/snapshot.py's (about 200 bytes a row, 10 columns). `cdc run` copies it into
its index (an alias onto a versioned index), then streams a write load of `--rate` row
changes a second (transactions of 5 updates of existing rows and 5 inserts). After
`--before` seconds, `cdc rebuild --index` builds the next version of the index from a
consistent copy of the table while the daemon keeps streaming (and writes the same actions
into the new index too), verifies it and swaps the alias. The load goes on for `--after`
seconds past the swap.

Commit -> acknowledged is measured per transaction as in bench/soak.py: the load notes each
commit's GTID (`@@last_gtid`) and when COMMIT returned; a watcher notes when the daemon's
checkpoint (`min_interval: 0`: saved only after Elasticsearch acknowledged everything before
it) first reached that GTID. Reported before, during and after the rebuild. At the end the
daemon catches up and stops, and `cdc verify` compares the swapped-in index with the table.

Results: Markdown on stdout, JSON in bench/results/rebuild_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import catchup as cu  # noqa: E402  (sets the bench servers' ports first)
import snapshot as sb  # noqa: E402
import yaml  # noqa: E402

INDEX = "benchrb-items"


class Load(threading.Thread):
    """Transactions of 5 updates and 5 inserts, paced to `rate` row changes a second."""

    def __init__(self, ep, rate: float, first_new_id: int, existing: int):
        super().__init__(daemon=True)
        self.conn = cu.admin_conn(ep, autocommit=True)
        self.rate, self.next_id, self.existing = rate, first_new_id, existing
        self.stop_event = threading.Event()
        self.commits: list[tuple[int, float]] = []  # (GTID sequence number, when COMMIT returned)
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(31)
        started = time.monotonic()
        try:
            with self.conn.cursor() as cur:
                while not self.stop_event.is_set():
                    ids = rng.sample(range(1, self.existing + 1), 5)
                    cur.execute("BEGIN")
                    cur.execute(f"UPDATE {sb.SCHEMA}.{sb.TABLE} SET qty = qty + 1, note = %s WHERE id IN "
                                f"({', '.join(map(str, ids))})", (f"updated {rng.random():.6f}",))
                    cur.executemany(
                        f"INSERT INTO {sb.SCHEMA}.{sb.TABLE} (id, account_id, sku, qty, price, status, created_at, "
                        "flag, note, score) VALUES (%s, %s, %s, %s, %s, 'new', NOW(6), 1, 'live', %s)",
                        [(self.next_id + k, k, f"SKU-{k}", k, 1.5, k / 7) for k in range(5)])
                    cur.execute("COMMIT")
                    committed = time.time()
                    cur.execute("SELECT @@last_gtid")
                    self.commits.append((int(cur.fetchone()[0].rsplit("-", 1)[1]), committed))
                    self.next_id += 5
                    self.rows += 10
                    cu.pace(self.rows, self.rate, started)
        except BaseException as exc:  # reported at the end
            self.error = exc


def latencies(commits: list[tuple[int, float]], acked_at, lo: float, hi: float) -> dict:
    values, unacked = cu.ack_latencies(commits, acked_at, lo, hi)
    return {"transactions": len(values) + unacked, "never_acked": unacked,
            "p50_ms": cu._r(cu.pct(values, 50), 1000), "p99_ms": cu._r(cu.pct(values, 99), 1000),
            "max_ms": cu._r(max(values) if values else None, 1000)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=1000, help="row changes per second")
    parser.add_argument("--before", type=float, default=60, metavar="SECONDS")
    parser.add_argument("--after", type=float, default=30, metavar="SECONDS")
    parser.add_argument("--copy-rate", type=float, default=None, metavar="ROWS_PER_S",
                        help="snapshot.max_rows_per_second for `cdc rebuild` (its config only; the daemon's "
                             "own copy ran before the load, unthrottled)")
    parser.add_argument("--results", type=Path, default=cu.RESULTS / "rebuild_latency.json")
    args = parser.parse_args()

    ep = cu.servers.up()
    sb.load(ep, args.rows)
    conn = cu.admin_conn(ep, autocommit=True)
    existing = cu.scalar(conn, f"SELECT MAX(id) FROM {sb.SCHEMA}.{sb.TABLE}")
    es = sb.Elasticsearch(ep.es_url, request_timeout=60)
    left = list(es.indices.get(index=f"{INDEX}*"))  # earlier runs' versions, kept by their rebuilds
    if left:
        es.indices.delete(index=left)
    work = cu.STATE / f"rebuild-latency-{int(time.time())}"
    config = cu.write_config(work, ep, [{"schema": sb.SCHEMA, "table": sb.TABLE, "index": INDEX}])
    env = {**os.environ, "PYTHONPATH": str(cu.ROOT)}
    daemon = subprocess.Popen([sys.executable, "-m", "cdc", "run", "--config", str(config), "--log-format", "json"],
                              stdout=open(work / "run.log", "wb"), stderr=subprocess.STDOUT, env=env, cwd=cu.ROOT)
    deadline = time.monotonic() + 1800
    while "snapshot done" not in (work / "run.log").read_text(errors="replace"):
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"cdc run: {(work / 'run.log').read_text()[-2000:]}")
        time.sleep(0.5)
    cu.log("initial copy done; load starts")
    load = Load(ep, args.rate, existing + 1, existing)
    watcher = cu.CheckpointWatcher(work / "checkpoint.json")
    watcher.start()
    load.start()
    t_load = time.time()
    time.sleep(args.before)
    if args.copy_rate is not None:
        # Read by `cdc rebuild` only: the running daemon read the file at its start.
        settings = yaml.safe_load(config.read_text())
        settings.setdefault("snapshot", {})["max_rows_per_second"] = args.copy_rate
        config.write_text(yaml.safe_dump(settings))
    t_rebuild = time.time()
    cu.log("cdc rebuild starts")
    rebuild = subprocess.run([sys.executable, "-m", "cdc", "rebuild", "--config", str(config), "--index", INDEX,
                              "--json"], capture_output=True, text=True, env=env, cwd=cu.ROOT, timeout=3600)
    t_swapped = time.time()
    cu.log(f"cdc rebuild exited {rebuild.returncode} after {t_swapped - t_rebuild:.1f} s")
    time.sleep(args.after)
    load.stop_event.set()
    load.join(30)
    t_end = time.time()
    if load.error:
        raise load.error
    deadline = time.monotonic() + 300
    last = load.commits[-1][0]
    while watcher.acked_at(last) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    daemon.send_signal(signal.SIGTERM)
    exit_code = daemon.wait(120)
    watcher.stop.set()
    watcher.join()
    verify = subprocess.run([sys.executable, "-m", "cdc", "verify", "--config", str(config)], capture_output=True,
                            text=True, env=env, cwd=cu.ROOT, timeout=3600)
    result = {
        "command": " ".join([".venv/bin/python", "bench/rebuild_latency.py", *sys.argv[1:]]), "code": cu.git_head(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t_load)), "rows": args.rows,
        "rate": args.rate, "copy_rate": args.copy_rate, "achieved_rows_per_s": round(load.rows / (t_end - t_load), 1),
        "loadavg": os.getloadavg(), "rebuild_seconds": round(t_swapped - t_rebuild, 1),
        "rebuild_exit": rebuild.returncode, "rebuild_output": rebuild.stdout[-3000:] + rebuild.stderr[-3000:],
        "before": latencies(load.commits, watcher.acked_at, t_load + 5, t_rebuild),
        "during": latencies(load.commits, watcher.acked_at, t_rebuild, t_swapped),
        "after": latencies(load.commits, watcher.acked_at, t_swapped, t_end),
        "daemon_exit": exit_code, "verify_exit": verify.returncode, "verify_output": verify.stdout[-3000:],
        "work": str(work),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{args.rows:,} rows; load {result['achieved_rows_per_s']} row changes/s; `cdc rebuild` took "
          f"{result['rebuild_seconds']} s (exit {rebuild.returncode}); load average at the end "
          f"{result['loadavg'][0]:.1f}\n")
    print("| phase | transactions | commit -> acknowledged p50 / p99 / max (ms) | never acknowledged |\n|---|---|---|---|")
    for phase in ("before", "during", "after"):
        p = result[phase]
        print(f"| {phase} the rebuild | {p['transactions']:,} | {p['p50_ms']} / {p['p99_ms']} / {p['max_ms']} | "
              f"{p['never_acked']} |")
    print(f"\ndaemon exit on SIGTERM {exit_code}; `cdc verify` exit {verify.returncode}")
    return 0 if rebuild.returncode == 0 and exit_code == 0 and verify.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
