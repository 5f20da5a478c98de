#!/usr/bin/env python3
"""Does a long-running `cdc run` grow? RSS, malloc and Python object counts under a steady write load.

    .venv/bin/python bench/memory.py [--minutes 6] [--rate 1000] [--code LABEL=DIR ...] [--rounds 1] [--frames 0]

A writer commits --rate single-row INSERTs per second (one transaction each,
like bench/catchup.py's latency test) while `cdc run` streams them into a fresh
index. cdc runs under bench/memhook.py, which every --probe-every seconds
records RSS, glibc malloc's in-use/free bytes, pymalloc blocks and gc object
counts by type, and with --frames N > 0 dumps tracemalloc snapshots. The bench
samples RSS every 2 s and reports the least-squares growth after the first
minute (start-up and warm-up), plus what grew between the probe at about
minute 1 and the last one.

Several --code LABEL=DIR (each DIR holding a cdc/ package) are run in turn,
--rounds times (A, B, A, B, ...), so a fix and its baseline see the same
machine. /metrics is enabled and scraped every 5 s, as Prometheus would
(--no-metrics leaves it off). The table has bench/catchup.py's columns.
Uses its own servers: CDC_DEV_HOME=/var/tmp/cdc-mem, MariaDB 24306, ES 24200.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Forced, not defaulted: this bench drops tables and must never touch others' servers.
os.environ.update({"CDC_DEV_HOME": "/var/tmp/cdc-mem", "MARIADB_PORT": "24306", "ES_PORT": "24200",
                   "ES_TRANSPORT_PORT": "24300"})
sys.path.insert(0, str(ROOT / "scripts"))

import pymysql  # noqa: E402
import servers  # noqa: E402
import yaml  # noqa: E402
from elasticsearch import Elasticsearch  # noqa: E402

RUNS = Path("/var/tmp/cdc-mem/runs")
SCHEMA, TABLE = "membench", "items"
METRICS_PORT = 24108


def log(msg: str) -> None:
    print(f"[memory {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    mt = statistics.fmean(t for t, _ in points)
    mv = statistics.fmean(v for _, v in points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return round(60 * sum((t - mt) * (v - mv) for t, v in points) / den, 3) if den else None


def gtid_seq(state: str | None) -> int | None:
    for part in (state or "").split(","):
        bits = part.strip().split("-")
        if len(bits) == 3 and bits[0] == "0":
            return int(bits[2])
    return None


def admin(ep) -> pymysql.connections.Connection:
    return pymysql.connect(host=ep.mariadb_host, port=ep.mariadb_port, user=ep.admin_user,
                           password=ep.admin_password, autocommit=True)


def setup(ep) -> None:
    conn = admin(ep)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
        cur.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{TABLE}")
        # The columns of bench/catchup.py's table, so the two benches decode the same kinds of values.
        cur.execute(f"""CREATE TABLE {SCHEMA}.{TABLE} (
            id BIGINT PRIMARY KEY, account_id INT NOT NULL, qty INT NOT NULL, status TINYINT NOT NULL,
            sku VARCHAR(64) NOT NULL, price DECIMAL(12,2) NOT NULL, updated_at DATETIME(6) NOT NULL,
            note TEXT, attrs JSON, t_commit DOUBLE)""")
    conn.close()


class Writer(threading.Thread):
    """Single-row autocommit INSERTs on an absolute schedule (a slow moment is made up, not dropped)."""

    def __init__(self, ep, rate: int, first_id: int):
        super().__init__(name="writer", daemon=True)
        self.ep, self.rate, self.next_id = ep, rate, first_id
        self.stop = threading.Event()
        self.count = 0
        self.last_seq: int | None = None

    def run(self) -> None:
        conn = admin(self.ep)
        rng = random.Random(1)
        sql = (f"INSERT INTO {SCHEMA}.{TABLE} (id, account_id, qty, status, sku, price, updated_at, note, attrs, "
               "t_commit) VALUES (%s, %s, %s, %s, %s, %s, NOW(6), %s, %s, %s)")
        t0 = time.time()
        with conn.cursor() as cur:
            while not self.stop.is_set():
                due = int((time.time() - t0) * self.rate) + 1
                while self.count < due and not self.stop.is_set():
                    cur.execute(sql, (self.next_id, rng.randint(1, 10**5), rng.randint(0, 999), rng.randint(0, 5),
                                      f"SKU-{self.next_id:010d}", f"{rng.randint(0, 10**8) / 100:.2f}",
                                      rng.randbytes(50).hex(),
                                      json.dumps({"color": rng.choice(["red", "green", "blue"]),
                                                  "size": rng.randint(1, 50)}), time.time()))
                    self.next_id += 1
                    self.count += 1
                time.sleep(0.01)
            cur.execute("SELECT @@gtid_binlog_pos")
            self.last_seq = gtid_seq(cur.fetchone()[0])
        conn.close()


def copy_code(label: str, source: Path, run_dir: Path) -> tuple[Path, str]:
    dest = run_dir / f"code-{label}"
    shutil.copytree(source / "cdc", dest / "cdc", ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted((dest / "cdc").rglob("*.py")):
        digest.update(path.relative_to(dest).as_posix().encode() + b"\0" + path.read_bytes())
    return dest, digest.hexdigest()[:16]


def compare_snapshots(first: Path, last: Path, frames: int, top: int = 15) -> list[dict]:
    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
               tracemalloc.Filter(False, "*/bench/memhook.py")]
    a = tracemalloc.Snapshot.load(str(first)).filter_traces(filters)
    b = tracemalloc.Snapshot.load(str(last)).filter_traces(filters)
    out = []
    for stat in b.compare_to(a, "traceback" if frames > 1 else "lineno")[:top]:
        out.append({"size_diff_kb": round(stat.size_diff / 1024, 1), "count_diff": stat.count_diff,
                    "size_kb": round(stat.size / 1024, 1),
                    "where": [f"{f.filename.split('site-packages/')[-1].split('/code-')[-1]}:{f.lineno}"
                              for f in stat.traceback][:frames]})
    return out


def one_run(ep, es, label: str, code_dir: Path, run_dir: Path, minutes: float, rate: int, frames: int,
            probe_every: float, server_id: int, first_id: int, metrics: bool, checkpoint_interval: float) -> dict:
    work = run_dir / f"{label}-{server_id}"
    (work / "rules").mkdir(parents=True)
    index = f"membench-{label}-{server_id}".lower()
    (work / "rules" / "rules.yml").write_text(yaml.safe_dump(
        {"rules": [{"schema": SCHEMA, "table": TABLE, "index": index}]}))
    config = {
        "mysql": {"host": ep.mariadb_host, "port": ep.mariadb_port, "user": ep.cdc_user,
                  "password": ep.cdc_password, "server_id": server_id},
        "elasticsearch": {"hosts": [ep.es_url]},
        "checkpoint": {"path": str(work / "checkpoint.json"), "min_interval": checkpoint_interval},
        "start": {"position": "end"},
        "snapshot": {"mode": "never"},
        "rules": str(work / "rules"),
        "metrics": {"enabled": metrics, "port": METRICS_PORT},
    }
    (work / "cdc.yml").write_text(yaml.safe_dump(config))
    (work / "cdc.yml").chmod(0o600)
    env = dict(os.environ, CDC_MEMHOOK_DIR=str(work / "probes"), CDC_MEMHOOK_EVERY=str(probe_every),
               CDC_MEMHOOK_FRAMES=str(frames))
    logf = open(work / "cdc.log", "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "memhook.py"), "run", "--config",
                             str(work / "cdc.yml"), "--log-format", "json"],
                            cwd=code_dir, env=env, stdout=logf, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while "starting at" not in (work / "cdc.log").read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"cdc did not start:\n{(work / 'cdc.log').read_text()[-2000:]}")
        time.sleep(0.1)
    conn = admin(ep)
    with conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        seq0 = gtid_seq(cur.fetchone()[0])
    conn.close()
    writer = Writer(ep, rate, first_id)
    t0 = time.time()
    cpu0 = cpu_s(proc.pid)
    load0 = os.getloadavg()
    writer.start()
    samples: list[tuple[float, float]] = []
    lags: list[int] = []
    scrapes = scrape_errors = 0
    next_scrape = 0.0
    while time.time() - t0 < minutes * 60:
        if proc.poll() is not None:
            raise RuntimeError(f"cdc exited:\n{(work / 'cdc.log').read_text()[-2000:]}")
        now = time.time() - t0
        kb = rss_kb(proc.pid)
        if kb:
            samples.append((round(now, 1), round(kb / 1024, 2)))
        if now >= next_scrape:
            next_scrape = now + 5
            if metrics:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=2) as resp:
                        resp.read()
                    scrapes += 1
                except OSError:
                    scrape_errors += 1
            try:
                seq = gtid_seq(json.loads((work / "checkpoint.json").read_text()).get("gtid"))
            except (OSError, ValueError):
                seq = None
            if seq is not None and seq0 is not None:
                lags.append(seq0 + writer.count - seq)  # transactions written but not yet checkpointed
        time.sleep(2)
    writer.stop.set()
    writer.join()
    elapsed = time.time() - t0
    cpu1 = cpu_s(proc.pid)
    # Drain: wait until the checkpoint holds the writer's last transaction.
    drained = False
    for _ in range(300):
        try:
            seq = gtid_seq(json.loads((work / "checkpoint.json").read_text()).get("gtid"))
        except (OSError, ValueError):
            seq = None
        if seq is not None and writer.last_seq is not None and seq >= writer.last_seq:
            drained = True
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    logf.close()
    probes = [json.loads(line) for line in (work / "probes" / "probes.jsonl").read_text().splitlines()]
    after_warmup = [(t, mb) for t, mb in samples if t >= 60]
    result = {
        "label": label, "index": index, "minutes": round(elapsed / 60, 2), "transactions": writer.count,
        "tx_per_s": round(writer.count / elapsed, 1), "drained": drained, "exit_code": code,
        "cdc_cpu_cores": round((cpu1 - cpu0) / elapsed, 2) if cpu0 is not None and cpu1 is not None else None,
        "loadavg_start": load0, "loadavg_end": os.getloadavg(),
        "lag_tx_max": max(lags) if lags else None, "lag_tx_median": statistics.median(lags) if lags else None,
        "metrics_scrapes": scrapes, "metrics_scrape_errors": scrape_errors,
        "rss_mb_start": samples[0][1] if samples else None, "rss_mb_end": samples[-1][1] if samples else None,
        "rss_mb_per_min_after_1min": slope_per_min(after_warmup),
        "rss_mb_per_min_second_half": slope_per_min([p for p in samples if p[0] >= elapsed / 2]),
        "rss_mb_samples": samples, "log": str(work / "cdc.log"), "probes": probes,
    }
    # Bytes as MB; pymalloc arenas are 1 MiB each, so their count is MB already.
    for key in ("malloc_in_use", "malloc_free", "pymalloc_arenas", "pymalloc_blocks", "gc_objects", "traced_bytes"):
        pts = [(p["t"], p[key] / (2**20 if key in ("malloc_in_use", "malloc_free", "traced_bytes") else 1))
               for p in probes if key in p and p["t"] >= 55]
        result[f"{key}_per_min_after_1min"] = slope_per_min(pts)
    first = next((p for p in probes if p["t"] >= 55), None)
    last = probes[-1] if probes else None
    if first and last and first is not last:
        growth = {k: last["types"].get(k, 0) - v for k, v in first["types"].items()}
        growth.update({k: v for k, v in last["types"].items() if k not in first["types"]})
        result["gc_types_growth"] = dict(sorted(((k, v) for k, v in growth.items() if v), key=lambda kv: -abs(kv[1]))[:15])
        result["probe_span_s"] = [first["t"], last["t"]]
        if frames:
            result["tracemalloc_top"] = compare_snapshots(work / "probes" / f"snap-{first['n']:03d}.bin",
                                                          work / "probes" / f"snap-{last['n']:03d}.bin", frames)
    log(f"{label}: {result['tx_per_s']} tx/s for {result['minutes']} min, cdc {result['cdc_cpu_cores']} cores, "
        f"RSS {result['rss_mb_start']} -> {result['rss_mb_end']} MB, "
        f"{result['rss_mb_per_min_after_1min']} MB/min after minute 1 "
        f"({result['rss_mb_per_min_second_half']} in the second half); malloc in use "
        f"{result['malloc_in_use_per_min_after_1min']} MB/min, pymalloc arenas "
        f"{result['pymalloc_arenas_per_min_after_1min']} MB/min, free {result['malloc_free_per_min_after_1min']} MB/min, "
        f"gc objects {result['gc_objects_per_min_after_1min']}/min; drained {drained}; load {result['loadavg_end']}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--rate", type=int, default=1000, help="single-row transactions per second")
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR",
                        help="a cdc/ package to measure (repeatable); default: this work tree")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--frames", type=int, default=0, help="tracemalloc frames (0: no tracing)")
    parser.add_argument("--probe-every", type=float, default=30)
    parser.add_argument("--no-metrics", action="store_true", help="leave /metrics off (as bench/catchup.py does)")
    parser.add_argument("--checkpoint-min-interval", type=float, default=1.0,
                        help="checkpoint.min_interval (cdc's default 1; bench/catchup.py uses 0)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "memory.json")
    args = parser.parse_args()

    ep = servers.up()
    es = Elasticsearch(ep.es_url, request_timeout=60)
    run_dir = RUNS / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    for name in es.indices.get(index="membench-*", expand_wildcards="open").body:
        es.indices.delete(index=name)
    setup(ep)
    variants = []
    for spec in args.code or [f"tree={ROOT}"]:
        label, _, directory = spec.partition("=")
        code_dir, sha = copy_code(label, Path(directory).resolve(), run_dir)
        variants.append((label, code_dir, sha))
    log(f"variants: {[(v[0], v[2]) for v in variants]}; run dir {run_dir}")
    results = {"command": " ".join([".venv/bin/python", "bench/memory.py", *sys.argv[1:]]),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run_dir": str(run_dir),
               "variants": {label: sha for label, _, sha in variants}, "runs": []}
    server_id, first_id = 7900, 1
    for _ in range(args.rounds):
        for label, code_dir, _ in variants:
            result = one_run(ep, es, label, code_dir, run_dir, args.minutes, args.rate, args.frames,
                             args.probe_every, server_id, first_id, not args.no_metrics,
                             args.checkpoint_min_interval)
            results["runs"].append(result)
            server_id += 1
            first_id += result["transactions"] + 1
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, default=str) + "\n")
    for r in results["runs"]:
        print(json.dumps({k: v for k, v in r.items() if k not in ("rss_mb_samples", "probes")}, indent=1,
                         default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
