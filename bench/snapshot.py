#!/usr/bin/env python3
"""Snapshot benchmark: copy a 1M-row table with `cdc run` (snapshot, then stop), next to mysqldump.

    .venv/bin/python bench/snapshot.py [--rows 1000000] [--repeat 2] [--code DIR] [--baseline DIR]

Reports rows/s and cdc's peak memory (VmHWM of the process), and, as a
reference point for reading the same table, `mysqldump` of it to /dev/null
(mysqldump only reads; cdc also converts and indexes, so expect it slower).
cdc's rate is given twice: over the whole process (start-up included) and over
the snapshot itself (its first and last log lines' timestamps), which is what
raw `_bulk` below is timed over too.
As the ceiling on the indexing side, the very documents cdc wrote are read
back and sent again with raw `_bulk` requests (2,000 documents each, as cdc's
`batch.max_actions` makes its requests; 4 in flight, as `snapshot.concurrency`;
bodies encoded before the clock starts) into a new index: the rate
the cluster takes these documents at when nothing else has to happen; then
once more with the external version each was written with, as cdc's
requests carry one (what Elasticsearch takes of cdc's very actions).
With --baseline DIR, the cdc in DIR/cdc runs too, alternating with --code; --baseline-snapshot
KEY=V gives the baseline its own snapshot settings (alone: the same code, e.g.
`--baseline-snapshot bulk_settings=false` for cdc without bulk-load settings, side by side).
Runs on its own servers (ports 23306/29200, as bench/catchup.py).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Forced, not defaulted: the bench drops tables and must never touch the dev/test servers.
os.environ.update({"CDC_DEV_HOME": "/var/tmp/cdc-bench", "MARIADB_PORT": "23306", "ES_PORT": "29200",
                   "ES_TRANSPORT_PORT": "29300"})
sys.path.insert(0, str(ROOT / "scripts"))

import pymysql  # noqa: E402
import servers  # noqa: E402
from catchup import server_pids  # noqa: E402  (bench/ is the script's directory)
import yaml  # noqa: E402
from elasticsearch import Elasticsearch  # noqa: E402

RUNS = Path("/var/tmp/cdc-bench/runs")
SCHEMA, TABLE = "benchsnap", "items"


def admin(ep) -> pymysql.connections.Connection:
    return pymysql.connect(host=ep.mariadb_host, port=ep.mariadb_port, user=ep.admin_user,
                           password=ep.admin_password, autocommit=True)


def load(ep, rows: int) -> None:
    conn = admin(ep)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
        cur.execute(f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='{SCHEMA}' "
                    f"AND TABLE_NAME='{TABLE}'")
        if cur.fetchone()[0]:
            cur.execute(f"SELECT COUNT(*) FROM {SCHEMA}.{TABLE}")
            if cur.fetchone()[0] == rows:
                return  # reuse: generating 1M rows takes a while
            cur.execute(f"DROP TABLE {SCHEMA}.{TABLE}")
        # ~10 columns of the usual kinds, ~200 bytes a row.
        cur.execute(f"""CREATE TABLE {SCHEMA}.{TABLE} (
            id BIGINT PRIMARY KEY, account_id INT NOT NULL, sku VARCHAR(32) NOT NULL, qty INT NOT NULL,
            price DECIMAL(12,2) NOT NULL, status ENUM('new','paid','shipped') NOT NULL,
            created_at DATETIME(6) NOT NULL, flag TINYINT(1) NOT NULL, note VARCHAR(120), score DOUBLE)""")
        cur.execute(f"USE {SCHEMA}")  # seq_1_to_N (the Sequence engine) lives in the current database
        cur.execute("SET SESSION sql_log_bin = 0")  # the snapshot reads the table, not the binlog
        for start in range(1, rows + 1, 100_000):
            end = min(start + 99_999, rows)
            cur.execute(f"""INSERT INTO {SCHEMA}.{TABLE}
                SELECT seq, seq MOD 5000, CONCAT('SKU-', seq MOD 997), seq MOD 17, (seq MOD 10000) / 100,
                       ELT(1 + seq MOD 3, 'new', 'paid', 'shipped'),
                       TIMESTAMP('2024-01-01') + INTERVAL seq SECOND, seq MOD 2,
                       REPEAT(CHAR(97 + seq MOD 26), 60 + seq MOD 60), seq / 7
                FROM seq_{start}_to_{end}""")
    conn.close()


def proc_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15, in clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_cdc(ep, rows: int, n: int, code: Path = ROOT, raw: bool = False, snapshot: dict | None = None) -> dict:
    """One `cdc run` of the table to "snapshot done"; `snapshot`: settings for its config's `snapshot:`."""
    es = Elasticsearch(ep.es_url, request_timeout=60)
    index = f"benchsnap-{n}"
    drop(es, index)
    work = RUNS / f"snapshot-{int(time.time())}-{n}"
    (work / "rules").mkdir(parents=True)
    (work / "rules" / "r.yml").write_text(yaml.safe_dump({"rules": [
        {"schema": SCHEMA, "table": TABLE, "index": index}]}))
    config = work / "cdc.yml"
    config.write_text(yaml.safe_dump({
        "mysql": {"host": ep.mariadb_host, "port": ep.mariadb_port, "user": ep.cdc_user,
                  "password": "${BENCH_PW}", "server_id": 7000 + 100 * (os.getpid() % 10) + n},
        "elasticsearch": {"hosts": [ep.es_url]},
        "checkpoint": {"path": "checkpoint.json"}, "rules": "rules", **({"snapshot": snapshot} if snapshot else {})}))
    config.chmod(0o600)
    log = open(work / "cdc.log", "wb")
    servers_before = server_cpu()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cdc", "run", "--config", str(config), "--log-format", "json"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=code,
                            env={**os.environ, "BENCH_PW": ep.cdc_password})
    peak = 0
    while True:
        peak = max(peak, proc_kb(proc.pid, "VmHWM"))
        if "snapshot done" in (work / "cdc.log").read_text(errors="replace"):
            break
        if proc.poll() is not None:
            raise SystemExit(f"cdc exited {proc.returncode}: {(work / 'cdc.log').read_text()[-2000:]}")
        time.sleep(0.2)
    seconds = time.monotonic() - t0
    snapshot_seconds = logged_snapshot_seconds(work / "cdc.log")
    cpu = proc_cpu_seconds(proc.pid)  # all of cdc's threads, start-up included
    servers_cpu = server_cpu(servers_before)
    peak = max(peak, proc_kb(proc.pid, "VmHWM"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    log.close()
    es.indices.refresh(index=index)
    count = es.count(index=index)["count"]
    raw_result = raw_bulk(es, index, n) if raw else None
    raw_versioned = raw_bulk(es, index, n, versioned=True) if raw else None
    drop(es, index)
    es.close()
    if count != rows:
        raise SystemExit(f"index has {count} documents, table {rows} rows")
    return {"seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": peak / 1024, "code": str(code),
            "snapshot_seconds": snapshot_seconds, "snapshot_rows_per_s": rows / snapshot_seconds,
            "cpu_seconds": cpu, "cpu_us_per_row": 1e6 * cpu / rows, "server_cpu_seconds": servers_cpu,
            "raw_bulk": raw_result,
            "raw_bulk_versioned": raw_versioned}


def drop(es: Elasticsearch, name: str) -> None:
    """Delete `name`: an alias onto a versioned index (cdc's default, indices.aliases) or a plain index;
    Elasticsearch refuses to delete an index by an alias's name."""
    if es.indices.exists(index=name):
        es.indices.delete(index=list(es.indices.get(index=name)))


def logged_snapshot_seconds(path: Path) -> float:
    """From cdc's "snapshot of T into I" line to its "snapshot done" line (JSON log timestamps):
    the snapshot without the process's start-up, as raw `_bulk` is timed without its client's."""
    from datetime import datetime

    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]

    def at(line: dict) -> float:
        return datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()

    start = next(at(line) for line in lines if line["msg"].startswith("snapshot of ") and " into " in line["msg"])
    done = next(at(line) for line in lines if line["msg"].startswith("snapshot done"))
    return done - start


def raw_bulk(es: Elasticsearch, source: str, n: int, per_request: int = 2000, in_flight: int = 4,
             versioned: bool = False) -> dict:
    """The documents of `source` sent again by plain `_bulk` into a new index; the clock covers only the sending.

    `versioned`: each with the external version cdc wrote it with (its `_version` in `source`), as
    cdc's own requests carry one: what Elasticsearch takes of cdc's very actions, sent ready-made.
    """
    from elasticsearch import helpers
    import orjson

    target = f"benchsnap-raw-{n}"
    if es.indices.exists(index=target):
        es.indices.delete(index=target)
    bodies, lines, docs = [], [], 0
    for hit in helpers.scan(es, index=source, size=5000, query={"query": {"match_all": {}}, "version": versioned}):
        meta = {"_index": target, "_id": hit["_id"]}
        if versioned:
            meta.update(version=hit["_version"], version_type="external")
        lines.append(orjson.dumps({"index": meta}))
        lines.append(orjson.dumps(hit["_source"]))
        docs += 1
        if len(lines) >= 2 * per_request:
            bodies.append(b"\n".join(lines) + b"\n")
            lines = []
    if lines:
        bodies.append(b"\n".join(lines) + b"\n")

    def send(body: bytes) -> None:
        resp = es.bulk(body=body, filter_path="errors")
        if resp.body.get("errors"):
            raise SystemExit("raw _bulk had item errors")

    servers_before = server_cpu()
    t0 = time.monotonic()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(send, bodies))
    seconds = time.monotonic() - t0
    servers_cpu = server_cpu(servers_before)
    es.indices.refresh(index=target)
    count = es.count(index=target)["count"]
    es.indices.delete(index=target)
    if count != docs:
        raise SystemExit(f"raw _bulk index has {count} documents of {docs}")
    return {"seconds": seconds, "docs_per_s": docs / seconds, "docs": docs, "per_request": per_request,
            "in_flight": in_flight, "server_cpu_seconds": servers_cpu}


def server_cpu(since: dict[str, float] | None = None) -> dict[str, float]:
    """CPU seconds of the bench's MariaDB and Elasticsearch processes (spent after `since`, if given):
    with cdc's own, where the two cores went during a step."""
    now = {name: proc_cpu_seconds(pid) for name, pid in server_pids().items() if pid}
    return {name: round(now[name] - (since or {}).get(name, 0.0), 2) for name in now}


def run_mysqldump(ep, rows: int) -> dict:
    t0 = time.monotonic()
    proc = subprocess.Popen(["mysqldump", "-h", ep.mariadb_host, "-P", str(ep.mariadb_port), "-u", ep.admin_user,
                             f"-p{ep.admin_password}", "--single-transaction", "--quick", SCHEMA, TABLE],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, proc_kb(proc.pid, "VmHWM"))
        time.sleep(0.05)
    if proc.returncode:
        raise SystemExit(f"mysqldump failed: {proc.stderr.read().decode()[-500:]}")
    seconds = time.monotonic() - t0
    return {"seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": peak / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "snapshot.json")
    parser.add_argument("--code", type=Path, default=ROOT, metavar="DIR", help="run the cdc package in DIR/cdc")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the cdc in DIR/cdc, alternating with --code (which goes first swaps)")
    parser.add_argument("--snapshot", action="append", default=[], metavar="KEY=V",
                        help="a snapshot setting for both codes' config, e.g. chunk_size=5000 (repeatable)")
    parser.add_argument("--baseline-snapshot", action="append", default=[], metavar="KEY=V",
                        help="a snapshot setting for the baseline only, e.g. bulk_settings=false; without "
                             "--baseline, the baseline is --code itself")
    args = parser.parse_args()

    def settings_of(options: list[str]) -> dict:
        return {key: yaml.safe_load(value) for key, value in (option.split("=", 1) for option in options)}

    settings = settings_of(args.snapshot)
    base_settings = {**settings, **settings_of(args.baseline_snapshot)}
    if args.baseline_snapshot and not args.baseline:
        args.baseline = args.code
    ep = servers.up()
    load(ep, args.rows)
    cdc_runs, dump_runs, base_runs = [], [], []
    for n in range(args.repeat):  # interleaved, so noise hits all alike
        dump_runs.append(run_mysqldump(ep, args.rows))
        order = [("code", args.code.resolve())]
        if args.baseline:
            order.append(("baseline", args.baseline.resolve()))
            if n % 2 == 0:
                order.reverse()
        for k, (name, code) in enumerate(order):
            run = run_cdc(ep, args.rows, 10 * n + k, code, raw=(name == "code"),
                          snapshot=settings if name == "code" else base_settings)
            (cdc_runs if name == "code" else base_runs).append(run)
            raw = run["raw_bulk"]
            print(f"run {n + 1} {name}: cdc {run['rows_per_s']:.0f} rows/s ({run['snapshot_rows_per_s']:.0f} over the "
                  f"snapshot alone), peak {run['peak_rss_mb']:.0f} MB, "
                  f"CPU {run['cpu_seconds']:.1f} s ({run['cpu_us_per_row']:.0f} us/row)"
                  + (f"; raw _bulk {raw['docs_per_s']:.0f} docs/s, versioned "
                     f"{run['raw_bulk_versioned']['docs_per_s']:.0f}" if raw else ""), flush=True)
        print(f"run {n + 1}: mysqldump {dump_runs[-1]['rows_per_s']:.0f} rows/s", flush=True)

    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    result = {"rows": args.rows, "command": " ".join(sys.argv), "cdc": cdc_runs, "baseline": base_runs,
              "mysqldump": dump_runs,
              "median": {"cdc_rows_per_s": median(cdc_runs, "rows_per_s"),
                         "cdc_snapshot_rows_per_s": median(cdc_runs, "snapshot_rows_per_s"),
                         "cdc_over_raw_bulk_per_run": statistics.median(r["rows_per_s"] / r["raw_bulk"]["docs_per_s"]
                                                                        for r in cdc_runs),
                         "cdc_snapshot_over_raw_bulk_per_run": statistics.median(
                             r["snapshot_rows_per_s"] / r["raw_bulk"]["docs_per_s"] for r in cdc_runs),
                         "cdc_peak_rss_mb": median(cdc_runs, "peak_rss_mb"),
                         "raw_bulk_docs_per_s": statistics.median(r["raw_bulk"]["docs_per_s"] for r in cdc_runs),
                         "raw_bulk_versioned_docs_per_s": statistics.median(r["raw_bulk_versioned"]["docs_per_s"]
                                                                            for r in cdc_runs),
                         **({"baseline_rows_per_s": median(base_runs, "rows_per_s"),
                             "baseline_snapshot_rows_per_s": median(base_runs, "snapshot_rows_per_s"),
                             "baseline_peak_rss_mb": median(base_runs, "peak_rss_mb")} if base_runs else {}),
                         "mysqldump_rows_per_s": median(dump_runs, "rows_per_s"),
                         "mysqldump_peak_rss_mb": median(dump_runs, "peak_rss_mb")}}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2))
    m = result["median"]
    print(f"\n| {args.rows:,} rows | rows/s (median of {args.repeat}) | peak memory |\n|---|---|---|\n"
          f"| cdc snapshot (read, convert, index) | {m['cdc_rows_per_s']:,.0f} | {m['cdc_peak_rss_mb']:.0f} MB |\n"
          f"| mysqldump to /dev/null (read only) | {m['mysqldump_rows_per_s']:,.0f} | "
          f"{m['mysqldump_peak_rss_mb']:.0f} MB |\n| ratio cdc / mysqldump | "
          f"{m['cdc_rows_per_s'] / m['mysqldump_rows_per_s']:.2f} | |\n"
          f"| raw _bulk of the same documents | {m['raw_bulk_docs_per_s']:,.0f} | |\n"
          f"| ratio cdc / raw _bulk | {m['cdc_rows_per_s'] / m['raw_bulk_docs_per_s']:.2f} "
          f"(median per run {m['cdc_over_raw_bulk_per_run']:.2f}) | |\n"
          f"| cdc, the snapshot alone (from its log) | {m['cdc_snapshot_rows_per_s']:,.0f} | |\n"
          f"| ratio cdc snapshot alone / raw _bulk | {m['cdc_snapshot_rows_per_s'] / m['raw_bulk_docs_per_s']:.2f} "
          f"(median per run {m['cdc_snapshot_over_raw_bulk_per_run']:.2f}) | |\n"
          f"| raw _bulk, with cdc's external versions | {m['raw_bulk_versioned_docs_per_s']:,.0f} | |\n"
          f"| ratio cdc / raw _bulk with versions | {m['cdc_rows_per_s'] / m['raw_bulk_versioned_docs_per_s']:.2f} | |"
          + (f"\n| baseline cdc | {m['baseline_rows_per_s']:,.0f} | {m['baseline_peak_rss_mb']:.0f} MB |"
             f"\n| ratio cdc / baseline | {m['cdc_rows_per_s'] / m['baseline_rows_per_s']:.2f} | |"
             f"\n| baseline, the snapshot alone | {m['baseline_snapshot_rows_per_s']:,.0f} | |"
             if base_runs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
