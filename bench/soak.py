#!/usr/bin/env python3
"""A soak (issue 33): `cdc run` under a steady write load for an hour, SIGKILLed now and then, then verified.

    .venv/bin/python bench/soak.py [--minutes 60] [--rate 200] [--kill-every 600] [--mysql]

On bench/catchup.py's own servers (MariaDB 10.11 on 23306, or MySQL 9.7 with --mysql, and
Elasticsearch 8 on the bench's port; never the test servers). The load is the schema zoo's
(tests/integration/zoo.py: Sakila's 16 tables and the latin1, gbk, JSON, GEOMETRY and
`convert:` tables) at about `--rate` statements per second, each its own transaction, for
`--minutes`. `cdc run` streams it into one index per table; every `--kill-every` seconds
it is SIGKILLed and started again at once (it resumes from its checkpoint). Every 10 s the
bench records cdc's resident memory (VmRSS), CPU seconds, the bytes of binlog between the
server's position and cdc's checkpoint, and the statements written. At the end the load
stops, cdc catches up and is stopped with SIGTERM, and `cdc verify` must find every index
equal to its table (exit 0).

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

import yaml

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


def binlog_distance(conn, checkpoint: Path) -> int | None:
    try:
        saved = json.loads(checkpoint.read_text())
    except (OSError, ValueError):
        return None
    end = cu.master_position(conn)
    return cu.binlog_bytes(conn, cu.BinlogPosition(saved["file"], saved["pos"]), end)


class Load(threading.Thread):
    def __init__(self, ep, rate: float):
        super().__init__(daemon=True)
        self.conn = cu.admin_conn(ep, autocommit=True)
        self.rate = rate
        self.stop_event = threading.Event()
        self.statements = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"USE `{SCHEMA}`")
                started = time.monotonic()
                for statement in zoo.statements(seed=33, changes=10 ** 9):
                    if self.stop_event.is_set():
                        return
                    cur.execute(statement)
                    self.statements += 1
                    ahead = self.statements / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except BaseException as exc:  # reported at the end
            self.error = exc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=200, help="statements per second")
    parser.add_argument("--kill-every", type=float, default=600, metavar="SECONDS")
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
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=cu.STATE if cu.STATE.exists() else None))
    prefix = f"bench-soak-{work.name.rsplit('-', 1)[-1].lower()}"
    (work / "rules").mkdir()
    (work / "rules" / "zoo.yml").write_text(yaml.safe_dump({"rules": zoo.rules(SCHEMA, prefix)}, sort_keys=False))
    config = work / "cdc.yml"
    config.write_text(yaml.safe_dump({
        "mysql": {"host": ep.mariadb_host, "port": ep.mariadb_port, "user": ep.cdc_user,
                  "password": ep.cdc_password, "server_id": next(cu._server_ids)},
        "elasticsearch": {"hosts": [ep.es_url]},
        "checkpoint": {"path": str(work / "checkpoint.json")},
        "start": {"position": str(start)}, "snapshot": {"mode": "never"},
        "rules": str(work / "rules")}))
    config.chmod(0o600)
    checkpoint = work / "checkpoint.json"
    cmd = [sys.executable, "-m", "cdc", "run", "--config", str(config), "--log-format", "json"]
    env = {**os.environ, "PYTHONPATH": str(cu.ROOT)}

    def start_cdc(n: int) -> subprocess.Popen:
        return subprocess.Popen(cmd, stdout=open(work / f"cdc-{n}.log", "wb"), stderr=subprocess.STDOUT, env=env,
                                cwd=cu.ROOT)

    results: dict = {"command": " ".join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]]),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "server": cu.scalar(conn, "SELECT VERSION()"),
                     "work": str(work), "samples": [], "kills": [], "loadavg_start": os.getloadavg()}
    load = Load(ep, args.rate)
    runs = 1
    cdc = start_cdc(runs)
    load.start()
    t0 = time.monotonic()
    next_kill = t0 + args.kill_every
    cpu_before = 0.0  # CPU seconds of the processes killed so far
    last_cpu = 0.0
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(10)
            if cdc.poll() is not None:
                raise RuntimeError(f"cdc exited with {cdc.returncode}; see {work}/cdc-{runs}.log")
            if load.error:
                raise load.error
            rss, cpu = proc_stat(cdc.pid)
            last_cpu = cpu
            sample = {"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss, 1),
                      "cpu_s": round(cpu_before + cpu, 2), "statements": load.statements,
                      "behind_bytes": binlog_distance(conn, checkpoint), "run": runs}
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
    end = cu.master_position(conn)
    deadline = time.monotonic() + 600
    while binlog_distance(conn, checkpoint) and time.monotonic() < deadline:
        time.sleep(1)
    cdc.send_signal(signal.SIGTERM)
    results["exit_code"] = cdc.wait(120)
    results["caught_up_to"] = str(end)
    verify = subprocess.run([sys.executable, "-m", "cdc", "verify", "--config", str(config)], capture_output=True,
                            text=True, env=env, cwd=cu.ROOT, timeout=1800)
    results["verify"] = {"exit_code": verify.returncode, "output": verify.stdout[-4000:] + verify.stderr[-2000:]}
    results["loadavg_end"] = os.getloadavg()
    results["statements"] = load.statements
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")

    samples = results["samples"]
    rss = [s["rss_mb"] for s in samples]
    behind = [s["behind_bytes"] for s in samples if s["behind_bytes"] is not None]
    print(f"\n{results['server']}, {args.minutes:g} min at {args.rate:g} statements/s over {len(zoo.TABLES)} tables, "
          f"SIGKILL every {args.kill_every:g} s\n")
    print("| measure | value |\n|---|---|")
    print(f"| statements written (each its own transaction) | {load.statements:,} |")
    print(f"| cdc runs (SIGKILLs + 1) | {runs} |")
    print(f"| RSS MB: first sample, max, last | {rss[0]}, {max(rss)}, {rss[-1]} |")
    print(f"| binlog bytes behind the checkpoint: median, max | {sorted(behind)[len(behind) // 2]:,}, {max(behind):,} |")
    print(f"| cdc CPU seconds, all runs | {samples[-1]['cpu_s']} |")
    print(f"| last run's exit on SIGTERM | {results['exit_code']} |")
    print(f"| `cdc verify` exit code | {verify.returncode} |")
    return 0 if verify.returncode == 0 and results["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
