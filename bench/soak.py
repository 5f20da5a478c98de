#!/usr/bin/env python3
"""A soak (issue 33): `cdc run` under a steady write load for an hour, with faults, then verified.

    .venv/bin/python bench/soak.py [--minutes 60] [--rate 2000] [--statements-per-tx 10]
        [--kill-every 300] [--es-restart-at 25] [--mariadb-restart-at 45] [--mysql]

On bench/catchup.py's own servers (MariaDB 10.11 on 23306, or MySQL 9.7 with --mysql, and
Elasticsearch 8 on the bench's port; never the test servers). The load is the schema zoo's
(tests/integration/zoo.py: Sakila's 16 tables and the latin1, gbk, JSON, GEOMETRY and
`convert:` tables): about `--rate` row changes per second (inserts, some of 3 rows, one-column
updates and deletes), `--statements-per-tx` statements to a transaction, for `--minutes`.
`cdc run` streams it into one index per table. Faults:

* every `--kill-every` seconds cdc is SIGKILLed and started again at once (it resumes from
  its checkpoint);
* at `--es-restart-at` minutes Elasticsearch is stopped and started again (a node restart;
  cdc waits it out), and at `--mariadb-restart-at` minutes the database server is (cdc
  reconnects from its last commit; the load reconnects too and drops the transaction it
  was in).

Every 10 s the bench records cdc's resident memory (VmRSS), CPU seconds, the bytes of binlog
between the server's position and cdc's checkpoint, and the rows written. Commit ->
acknowledged latency is measured per transaction (MariaDB only): the load notes each
commit's GTID (`@@last_gtid`) and when COMMIT returned; a watcher notes when cdc's
checkpoint (saved with `min_interval: 0`, only after Elasticsearch acknowledged everything
before it) first reached that GTID. Reported per 10-minute window, a kill's or a restart's
downtime included. At the end the load stops, cdc catches up and is stopped with SIGTERM, and
`cdc verify` must find every index equal to its table (exit 0): no document lost, stale or
extra.

Results: Markdown on stdout, JSON (with every sample) in bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymysql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
import catchup as cu  # noqa: E402  (sets the bench servers' ports first)
import zoo  # noqa: E402

SCHEMA = "bench_soak"


def proc_stat(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of a process."""
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:")) / 1024
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / cu.CLK_TCK


class Reconnecting:
    """An admin connection that reconnects after the server restarts (the sampler's view of positions)."""

    def __init__(self, ep):
        self.ep = ep
        self.conn = None

    def call(self, fn):
        try:
            if self.conn is None:
                self.conn = cu.admin_conn(self.ep, autocommit=True)
            return fn(self.conn)
        except pymysql.err.Error:  # the server is restarting: no sample this time
            self.conn = None
            return None


def binlog_distance(conn, checkpoint: Path) -> int | None:
    try:
        saved = json.loads(checkpoint.read_text())
    except (OSError, ValueError):
        return None
    end = cu.master_position(conn)
    return cu.binlog_bytes(conn, cu.BinlogPosition(saved["file"], saved["pos"]), end)


class Load(threading.Thread):
    """The zoo's statements, `per_tx` to a transaction, paced to `rate` row changes a second.

    A transaction cut by a server restart is dropped (rolled back, or committed: cdc's view and the
    table agree either way) and the load reconnects; the statements generator's idea of which keys
    exist may then be off, which only turns a later update or delete into one of 0 rows.
    """

    def __init__(self, ep, rate: float, per_tx: int, gtids: bool):
        super().__init__(daemon=True)
        self.ep, self.rate, self.per_tx, self.gtids = ep, rate, per_tx, gtids
        self.stop_event = threading.Event()
        self.rows = 0
        self.transactions = 0
        self.dropped = 0  # transactions cut by a server restart
        self.drop_errors: list[str] = []
        self.commits: list[tuple[int, float]] = []  # (GTID sequence number, when COMMIT returned)
        self.error: BaseException | None = None

    def _connect(self):
        while not self.stop_event.is_set():
            try:
                conn = cu.admin_conn(self.ep, autocommit=True)
                with conn.cursor() as cur:
                    cur.execute(f"USE `{SCHEMA}`")
                return conn
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
                time.sleep(0.5)
        return None

    def run(self) -> None:
        try:
            statements = zoo.statements(seed=33, changes=10 ** 9)
            conn = self._connect()
            started = time.monotonic()
            while conn is not None and not self.stop_event.is_set():
                batch = [next(statements) for _ in range(self.per_tx)]
                try:
                    with conn.cursor() as cur:
                        cur.execute("BEGIN")
                        rows = 0
                        for statement in batch:
                            rows += cur.execute(statement)
                        cur.execute("COMMIT")
                        committed = time.time()
                        if self.gtids:
                            cur.execute("SELECT @@last_gtid")
                            gtid = cur.fetchone()[0]
                            self.commits.append((int(gtid.rsplit("-", 1)[1]), committed))
                except pymysql.err.Error as exc:  # a restart cut it (lost connection, server shutting down)
                    self.dropped += 1
                    self.drop_errors.append(repr(exc)[:200])
                    conn.close() if conn.open else None
                    conn = self._connect()
                    continue
                self.rows += rows
                self.transactions += 1
                cu.pace(self.rows, self.rate, started)
        except BaseException as exc:  # reported at the end
            self.error = exc


class Faults(threading.Thread):
    """Restarts Elasticsearch and the database server at their times, beside the kills of the main loop."""

    def __init__(self, t0: float, plan: list[tuple[float, str]], mysql: bool):
        super().__init__(daemon=True)
        self.t0, self.plan, self.mysql = t0, sorted(plan), mysql
        self.done: list[dict] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for at, what in self.plan:
                time.sleep(max(0.0, self.t0 + at - time.monotonic()))
                began = time.monotonic() - self.t0
                if what == "elasticsearch":
                    cu.servers.es_down()
                    cu.servers.es_up()
                elif self.mysql:
                    cu.servers.mysql_down()
                    cu.servers.mysql_up()
                else:
                    cu.servers.mariadb_down()
                    cu.servers.mariadb_up()
                self.done.append({"what": what, "down_at": round(began, 1),
                                  "up_at": round(time.monotonic() - self.t0, 1)})
                cu.log(f"soak restart {self.done[-1]}")
        except BaseException as exc:
            self.error = exc


def recoveries(results: dict, acked_at) -> list[dict]:
    """Per fault: the longest commit -> acknowledged of the transactions committed from the fault until 60 s
    after it ended, and how long after the fault began commits were acknowledged within 1 s again."""
    t0 = results["t0_epoch"]
    faults = [("SIGKILL of cdc", k["t"], k["t"]) for k in results["kills"]]
    faults += [(f"{r['what']} restart", r["down_at"], r["up_at"]) for r in results["restarts"]]
    out = []
    for what, began, ended in sorted(faults, key=lambda f: f[1]):
        after = [(committed, acked_at(seq)) for seq, committed in results["commits"]
                 if t0 + began <= committed < t0 + ended + 60]
        waits = [at - committed for committed, at in after if at is not None]
        normal = next((committed - t0 - began for committed, at in after
                       if committed >= t0 + ended and at is not None and at - committed < 1.0), None)
        out.append({"fault": what, "at_s": began, "down_s": round(ended - began, 1),
                    "longest_wait_s": cu._r(max(waits) if waits else None),
                    "acknowledged_within_1s_again_after_s": cu._r(normal),
                    "never_acked": sum(1 for _, at in after if at is None)})
    return out


def windows(results: dict, window_s: float, acked_at) -> list[dict]:
    """Per window of the run: RSS range, rows written, and commit -> acknowledged p50/p99/max."""
    out = []
    n = max(1, round(results["seconds"] / window_s))  # a last few seconds join the last window
    t0 = results["t0_epoch"]
    for w in range(n):
        lo, hi = w * window_s, (w + 1) * window_s if w < n - 1 else float("inf")
        samples = [s for s in results["samples"] if lo <= s["t"] < hi]
        latencies, unacked = cu.ack_latencies(results["commits"], acked_at, t0 + lo, t0 + hi)
        events = [k["t"] for k in results["kills"] if lo <= k["t"] < hi]
        events += [f"{r['what']} {r['down_at']}-{r['up_at']}" for r in results["restarts"] if lo <= r["down_at"] < hi]
        rss = [s["rss_mb"] for s in samples]
        out.append({
            "window": f"{lo / 60:g}-{round(min(hi, results['seconds']) / 60, 1):g} min",
            "rss_mb_min": min(rss) if rss else None, "rss_mb_max": max(rss) if rss else None,
            "transactions": len(latencies) + unacked,
            "ack_s_p50": cu._r(cu.pct(latencies, 50)), "ack_s_p99": cu._r(cu.pct(latencies, 99)),
            "ack_s_max": cu._r(max(latencies) if latencies else None), "never_acked": unacked,
            "faults": events,
        })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=2000, help="row changes per second")
    parser.add_argument("--statements-per-tx", type=int, default=10)
    parser.add_argument("--kill-every", type=float, default=300, metavar="SECONDS")
    parser.add_argument("--es-restart-at", type=float, default=25, metavar="MINUTES", help="negative: none")
    parser.add_argument("--mariadb-restart-at", type=float, default=45, metavar="MINUTES", help="negative: none")
    parser.add_argument("--window", type=float, default=10, metavar="MINUTES")
    parser.add_argument("--warmup", type=float, default=60, metavar="SECONDS",
                        help="load before the measured run, until cdc has also caught up once")
    parser.add_argument("--mysql", action="store_true")
    parser.add_argument("--results", type=Path, default=cu.RESULTS / "soak.json")
    args = parser.parse_args()

    ep = cu.servers.up()
    if args.mysql:
        ep = cu.servers.mysql_up()
    conn = cu.admin_conn(ep, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{SCHEMA}`")
        cur.execute(f"CREATE DATABASE `{SCHEMA}`")
        cur.execute(f"USE `{SCHEMA}`")
        for statement in zoo.ddl():
            cur.execute(statement)
    start = cu.master_position(conn)
    server = cu.scalar(conn, "SELECT VERSION()")
    conn.close()
    positions = Reconnecting(ep)
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=cu.STATE if cu.STATE.exists() else None))
    prefix = f"bench-soak-{work.name.rsplit('-', 1)[-1].lower()}"
    config = cu.write_config(work, ep, zoo.rules(SCHEMA, prefix), start={"position": str(start)},
                             snapshot={"mode": "never"})
    checkpoint = work / "checkpoint.json"
    cmd = [sys.executable, "-m", "cdc", "run", "--config", str(config), "--log-format", "json"]
    env = {**os.environ, "PYTHONPATH": str(cu.ROOT)}

    def start_cdc(n: int) -> subprocess.Popen:
        return subprocess.Popen(cmd, stdout=open(work / f"cdc-{n}.log", "wb"), stderr=subprocess.STDOUT, env=env,
                                cwd=cu.ROOT)

    results: dict = {"command": " ".join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]]),
                     "code": cu.git_head(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "server": server,
                     "work": str(work), "samples": [], "kills": [], "loadavg_start": os.getloadavg()}
    gtids = not args.mysql  # @@last_gtid and a domain-server-seq checkpoint are MariaDB's
    load = Load(ep, args.rate, args.statements_per_tx, gtids)
    watcher = cu.CheckpointWatcher(checkpoint)
    runs = 1
    cdc = start_cdc(runs)
    load.start()
    watcher.start()
    # Warm-up, outside the measured hour: cdc creates the 21 indices with their first documents
    # (seconds each on a busy machine), so the first minute says more about index creation than
    # about streaming. Measuring starts once cdc has been at the head of the binlog.
    warmup_end = time.monotonic() + args.warmup
    while True:
        time.sleep(1)
        if cdc.poll() is not None:
            raise RuntimeError(f"cdc exited with {cdc.returncode} during the warm-up; see {work}/cdc-1.log")
        behind = positions.call(lambda c: binlog_distance(c, checkpoint))
        if time.monotonic() >= warmup_end and behind is not None and behind < 1_000_000:
            break
    results["warmup_s"] = round(time.monotonic() - warmup_end + args.warmup, 1)
    results["rss_mb_after_warmup"] = round(proc_stat(cdc.pid)[0], 1)
    rows_at_t0 = load.rows
    t0 = time.monotonic()
    results["t0_epoch"] = time.time()
    plan = [(m * 60, what) for m, what in ((args.es_restart_at, "elasticsearch"),
                                           (args.mariadb_restart_at, "database")) if m >= 0]
    faults = Faults(t0, plan, args.mysql)
    faults.start()
    next_kill = t0 + args.kill_every
    cpu_before = 0.0  # CPU seconds of the processes killed so far
    last_cpu = 0.0
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(10)
            if cdc.poll() is not None:
                raise RuntimeError(f"cdc exited with {cdc.returncode}; see {work}/cdc-{runs}.log")
            for thread in (load, faults):
                if thread.error:
                    raise thread.error
            rss, cpu = proc_stat(cdc.pid)
            last_cpu = cpu
            sample = {"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss, 1),
                      "cpu_s": round(cpu_before + cpu, 2), "rows": load.rows, "transactions": load.transactions,
                      "behind_bytes": positions.call(lambda c: binlog_distance(c, checkpoint)), "run": runs}
            results["samples"].append(sample)
            cu.log(f"soak {sample}")
            if time.monotonic() >= next_kill:
                cdc.send_signal(signal.SIGKILL)
                cdc.wait()
                cpu_before += last_cpu
                results["kills"].append({"t": sample["t"], "checkpoint": json.loads(checkpoint.read_text())})
                runs += 1
                cdc = start_cdc(runs)
                next_kill = time.monotonic() + args.kill_every
    finally:
        load.stop_event.set()
        load.join(60)
        faults.join(600)
    results["seconds"] = round(time.monotonic() - t0, 1)
    end = positions.call(cu.master_position)
    deadline = time.monotonic() + 900
    while positions.call(lambda c: binlog_distance(c, checkpoint)) != 0 and time.monotonic() < deadline:
        time.sleep(1)
    results["caught_up_after_s"] = round(time.monotonic() - t0 - results["seconds"], 1)
    cdc.send_signal(signal.SIGTERM)
    results["exit_code"] = cdc.wait(120)
    watcher.stop.set()
    watcher.join()
    results["caught_up_to"] = str(end)
    verify = subprocess.run([sys.executable, "-m", "cdc", "verify", "--config", str(config), "--json"],
                            capture_output=True, text=True, env=env, cwd=cu.ROOT, timeout=1800)
    results["verify"] = {"exit_code": verify.returncode, "output": verify.stdout[-20000:] + verify.stderr[-2000:]}
    results["loadavg_end"] = os.getloadavg()
    results["rows"], results["transactions"], results["dropped_transactions"] = load.rows, load.transactions, load.dropped
    results["drop_errors"] = load.drop_errors
    results["restarts"] = faults.done
    results["commits"] = load.commits
    results["windows"] = windows(results, args.window * 60, watcher.acked_at)
    results["recoveries"] = recoveries(results, watcher.acked_at)
    results["acks"] = list(zip(watcher.seqs, watcher.times))  # for later analysis: when each GTID was acked
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")

    samples = results["samples"]
    behind = [s["behind_bytes"] for s in samples if s["behind_bytes"] is not None]
    print(f"\n{server}, {results['seconds'] / 60:.1f} min at {args.rate:g} row changes/s "
          f"({args.statements_per_tx} statements a transaction) over {len(zoo.TABLES)} tables, "
          f"SIGKILL every {args.kill_every:g} s, restarts {faults.done}\n")
    print("| measure | value |\n|---|---|")
    print(f"| row changes written (warm-up included), transactions (cut by a restart) | {load.rows:,}, "
          f"{load.transactions:,} ({load.dropped}); measured part {(load.rows - rows_at_t0) / results['seconds']:.0f}"
          f" rows/s |")
    rss = [s["rss_mb"] for s in samples]
    print(f"| cdc RSS MB: after the {results['warmup_s']} s warm-up, peak, last sample | "
          f"{results['rss_mb_after_warmup']}, {max(rss)}, {rss[-1]} |")
    print(f"| cdc runs (SIGKILLs + 1) | {runs} |")
    print(f"| binlog bytes behind the checkpoint: median, max | {sorted(behind)[len(behind) // 2]:,}, {max(behind):,} |")
    print(f"| cdc CPU seconds, all runs | {samples[-1]['cpu_s']} |")
    print(f"| caught up after the load stopped | {results['caught_up_after_s']} s |")
    print(f"| last run's exit on SIGTERM | {results['exit_code']} |")
    print(f"| `cdc verify` exit code | {verify.returncode} |\n")
    print("| window | faults (s from start) | transactions | commit -> acknowledged p50 / p99 / max (s) "
          "| never acknowledged | RSS MB min-max |\n|---|---|---|---|---|---|")
    for w in results["windows"]:
        print(f"| {w['window']} | {', '.join(map(str, w['faults'])) or '-'} | {w['transactions']:,} | "
              f"{w['ack_s_p50']} / {w['ack_s_p99']} / {w['ack_s_max']} | {w['never_acked']} | "
              f"{w['rss_mb_min']}-{w['rss_mb_max']} |")
    print("\n| fault | at (s) | down (s) | longest commit -> acknowledged after it (s) | acknowledged within 1 s "
          "again after (s) | never acknowledged |\n|---|---|---|---|---|---|")
    for r in results["recoveries"]:
        print(f"| {r['fault']} | {r['at_s']} | {r['down_s']} | {r['longest_wait_s']} | "
              f"{r['acknowledged_within_1s_again_after_s']} | {r['never_acked']} |")
    return 0 if verify.returncode == 0 and results["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
