#!/usr/bin/env python3
"""Snapshot benchmark: copy a 1M-row table with `cdc run` (snapshot, then stop), next to mysqldump.

    .venv/bin/python bench/snapshot.py [--rows 1000000] [--repeat 2]

Reports rows/s and cdc's peak memory (VmHWM of the process), and, as a
reference point for reading the same table, `mysqldump` of it to /dev/null
(mysqldump only reads; cdc also converts and indexes, so expect it slower).
Runs on its own servers (ports 23306/29200, as bench/catchup.py).
"""

from __future__ import annotations

import argparse
import json
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


def run_cdc(ep, rows: int, n: int) -> dict:
    es = Elasticsearch(ep.es_url, request_timeout=60)
    index = f"benchsnap-{n}"
    if es.indices.exists(index=index):
        es.indices.delete(index=index)
    work = RUNS / f"snapshot-{int(time.time())}-{n}"
    (work / "rules").mkdir(parents=True)
    (work / "rules" / "r.yml").write_text(yaml.safe_dump({"rules": [
        {"schema": SCHEMA, "table": TABLE, "index": index}]}))
    config = work / "cdc.yml"
    config.write_text(yaml.safe_dump({
        "mysql": {"host": ep.mariadb_host, "port": ep.mariadb_port, "user": ep.cdc_user,
                  "password": "${BENCH_PW}", "server_id": 7000 + n},
        "elasticsearch": {"hosts": [ep.es_url]},
        "checkpoint": {"path": "checkpoint.json"}, "rules": "rules"}))
    config.chmod(0o600)
    log = open(work / "cdc.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cdc", "run", "--config", str(config), "--log-format", "json"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
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
    peak = max(peak, proc_kb(proc.pid, "VmHWM"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    log.close()
    es.indices.refresh(index=index)
    count = es.count(index=index)["count"]
    es.indices.delete(index=index)
    es.close()
    if count != rows:
        raise SystemExit(f"index has {count} documents, table {rows} rows")
    return {"seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": peak / 1024}


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
    args = parser.parse_args()
    ep = servers.up()
    load(ep, args.rows)
    cdc_runs, dump_runs = [], []
    for n in range(args.repeat):  # interleaved, so noise hits both alike
        dump_runs.append(run_mysqldump(ep, args.rows))
        cdc_runs.append(run_cdc(ep, args.rows, n))
        print(f"run {n + 1}: cdc {cdc_runs[-1]['rows_per_s']:.0f} rows/s, peak {cdc_runs[-1]['peak_rss_mb']:.0f} MB; "
              f"mysqldump {dump_runs[-1]['rows_per_s']:.0f} rows/s", flush=True)

    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    result = {"rows": args.rows, "cdc": cdc_runs, "mysqldump": dump_runs,
              "median": {"cdc_rows_per_s": median(cdc_runs, "rows_per_s"),
                         "cdc_peak_rss_mb": median(cdc_runs, "peak_rss_mb"),
                         "mysqldump_rows_per_s": median(dump_runs, "rows_per_s"),
                         "mysqldump_peak_rss_mb": median(dump_runs, "peak_rss_mb")}}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2))
    m = result["median"]
    print(f"\n| {args.rows:,} rows | rows/s (median of {args.repeat}) | peak memory |\n|---|---|---|\n"
          f"| cdc snapshot (read, convert, index) | {m['cdc_rows_per_s']:,.0f} | {m['cdc_peak_rss_mb']:.0f} MB |\n"
          f"| mysqldump to /dev/null (read only) | {m['mysqldump_rows_per_s']:,.0f} | "
          f"{m['mysqldump_peak_rss_mb']:.0f} MB |\n| ratio cdc / mysqldump | "
          f"{m['cdc_rows_per_s'] / m['mysqldump_rows_per_s']:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
