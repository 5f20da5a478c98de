#!/usr/bin/env python3
"""cdc against go-mysql-elasticsearch on one backlog, side by side in one run (issue 19).

    .venv/bin/python bench/gomysql.py [--rows 150000] [--repeat 3] [--charset latin1] [--mysql]

go-mysql-elasticsearch is built (once, cached) by bench/gomysql_build.sh from the
commits its go.mod pins. It sends `_type`, which Elasticsearch 8 refuses, so
everything here writes to an Elasticsearch 7.17 of the bench's own (scripts/
servers.py es7_up on port 29201 under CDC_DEV_HOME=/var/tmp/cdc-bench, 1 GB heap)
and reads the bench's own MariaDB (port 23306), never the test servers.

The backlog is bench/catchup.py's table and generator (BIGINT key, INTs, TINYINT,
VARCHAR, DECIMAL, DATETIME(6), TEXT, JSON, DOUBLE; 70% inserts in multi-row
statements, 20% single-row updates, 10% single-row deletes) in its own schema
`bench_gomysql`. After a warm-up run of cdc and one of go-mysql-elasticsearch (a
cold JVM indexes at a third of its warm speed), each repeat runs, in an order
that rotates every repeat:

* `go-mysql-elasticsearch`: river config with bulk_size = 1000, mysqldump = ""
  (no dump: it streams from master.info), flush_bulk_time left at its 200 ms
  default, a non-empty stat_path, and a master.info holding the backlog's start.
  Done when Elasticsearch has executed one operation per row change (the index's
  indexing stats: index_total + delete_total = backlog rows; an update is one
  partial `update`, an insert one `index`, a delete one `delete`). Its own
  master.info is no usable signal: it saves a position at most every 3 s (on a
  commit 3 s after the last save, or a rotation or DDL) and writes the file at
  most once a second, so after the last commit of a backlog it can stay behind
  until the next write; the bench records when (and whether) it reached the end.
* `cdc native` / `cdc python`: `cdc run` with row_path native / python and
  batch.max_actions = 1000 (the same bulk size; batch.concurrency left at its
  default), done when its checkpoint reaches the backlog's end (bench/catchup.py
  catchup_once).

Each run gets a fresh index, created by the tool itself (both leave the index at
Elasticsearch's defaults: 1 shard, refresh_interval 1 s; the bench records the
settings). Per run: rows/s over the wall time from process start (and from the
end of start-up: go-mysql-elasticsearch's "start sync binlog" line, cdc's
"starting at"), CPU seconds of the process (utime + stime from /proc/PID/stat,
read before it is stopped) per row change, peak RSS (VmHWM) and whether the
final index equals the table (count, sum of id, sum of qty; a mismatch is
reported, never retried away). `bulk direct`: cdc's bulk lines of the same
backlog, made once beforehand, sent to `_bulk` by a minimal HTTP client with 1
and with 4 requests in flight: the rate this Elasticsearch takes the changes at.

Results: Markdown on stdout, JSON in bench/results/gomysql.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The bench's own Elasticsearch 7.17 (servers.py reads ES7_PORT at import time).
os.environ["ES7_PORT"] = "29201"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import rowpath as rp  # noqa: E402  (imports catchup, which sets the bench servers' ports)

cu = rp.cu
# Its own schema: catchup.py and rowpath.py (run by others) drop and fill theirs.
_old_schema = cu.SCHEMA
cu.SCHEMA = "bench_gomysql"
for _name in ("TABLE_DDL", "INSERT_SQL", "UPDATE_SQL", "DELETE_SQL"):
    setattr(cu, _name, getattr(cu, _name).replace(f"`{_old_schema}`.", f"`{cu.SCHEMA}`."))

BUILD = Path(__file__).resolve().parent / "gomysql_build.sh"
BULK_SIZE = 1000
ES7_HEAP = "-Xms1g -Xmx1g"


def build() -> tuple[Path, str]:
    out = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, env={**os.environ})
    if out.returncode != 0:
        raise RuntimeError(f"gomysql_build.sh failed:\n{out.stderr[-3000:]}")
    binary = Path(out.stdout.strip().splitlines()[-1])
    return binary, (binary.parent.parent / "build.ok").read_text().strip()


def es7_up() -> str:
    before = os.environ.get("ES_JAVA_OPTS")
    os.environ["ES_JAVA_OPTS"] = ES7_HEAP
    try:
        return cu.servers.es7_up().url
    finally:
        if before is None:
            os.environ.pop("ES_JAVA_OPTS", None)
        else:
            os.environ["ES_JAVA_OPTS"] = before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_master_info(path: Path) -> cu.BinlogPosition | None:
    """bin_name / bin_pos from go-mysql-elasticsearch's master.info (TOML, replaced atomically)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    name = re.search(r'bin_name\s*=\s*"([^"]*)"', text)
    pos = re.search(r"bin_pos\s*=\s*(\d+)", text)
    return cu.BinlogPosition(name.group(1), int(pos.group(1))) if name and pos else None


class Es7:
    """The Elasticsearch client, with index stats asked without the `bulk` metric (8.x only; 7.17 refuses it).

    bench/catchup.py's catchup_once asks for it and reads it with a default.
    """

    def __init__(self, client):
        self._client = client
        self.indices = _Es7Indices(client.indices)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


class _Es7Indices:
    def __init__(self, indices):
        self._indices = indices

    def stats(self, index: str, metric: str):
        return self._indices.stats(index=index, metric=",".join(m for m in metric.split(",") if m != "bulk"))

    def __getattr__(self, name: str):
        return getattr(self._indices, name)


def es_ops(es, index: str) -> dict | None:
    """Operations Elasticsearch executed on the index's primaries (None before it exists)."""
    try:
        prim = es.indices.stats(index=index, metric="indexing")["_all"]["primaries"]["indexing"]
    except cu.NotFoundError:
        return None
    return {"index_total": prim["index_total"], "delete_total": prim["delete_total"],
            "index_failed": prim["index_failed"]}


def index_settings(es, index: str) -> dict:
    # keyed by the concrete index: cdc's name is an alias onto NAME_v1 (docs/rules.md "Creating indices")
    s = next(iter(es.indices.get_settings(index=index, include_defaults=True).values()))
    merged = {**s.get("defaults", {}).get("index", {}), **s["settings"]["index"]}
    return {k: merged.get(k) for k in ("number_of_shards", "number_of_replicas", "refresh_interval")}


def gomysql_once(i: int, binary: Path, ep, es, es_url: str, run_dir: Path, run_id: str, start, end, rows: int,
                 truth: dict, timeout: float) -> dict:
    index = f"{cu.INDEX_PREFIX}-gomysql-{run_id}-go-{i}"
    workdir = run_dir / f"go-{i}"
    data_dir = workdir / "var"
    data_dir.mkdir(parents=True)
    master_info = data_dir / "master.info"
    master_info.write_text(f'bin_name = "{start.file}"\nbin_pos = {start.pos}\n')
    config = workdir / "river.toml"
    config.write_text(f"""
my_addr = "{ep.mariadb_host}:{ep.mariadb_port}"
my_user = "{ep.cdc_user}"
my_pass = "{ep.cdc_password}"
my_charset = "utf8mb4"
es_addr = "{es_url.split('://', 1)[1]}"
data_dir = "{data_dir}"
stat_addr = "127.0.0.1:{free_port()}"
stat_path = "/metrics"
server_id = {next(cu._server_ids)}
flavor = "{'mysql' if ep.source == 'mysql' else 'mariadb'}"
mysqldump = ""
bulk_size = {BULK_SIZE}

[[source]]
schema = "{cu.SCHEMA}"
tables = ["{cu.TABLE}"]

[[rule]]
schema = "{cu.SCHEMA}"
table = "{cu.TABLE}"
index = "{index}"
""")
    log_path = workdir / "go-mysql-elasticsearch.log"
    log_file = open(log_path, "wb")
    t0 = time.time()
    proc = subprocess.Popen([str(binary), "-config", str(config)], stdout=log_file, stderr=subprocess.STDOUT,
                            cwd=workdir)
    ready = t_done = master_at_end = None
    ops: dict | None = None
    rss_kb: list[tuple[float, int]] = []
    last_rss = last_change = t0
    last_total = -1
    stalled = False
    while True:
        now = time.time()
        if proc.poll() is not None:
            raise RuntimeError(f"go-mysql-elasticsearch exited with {proc.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        if ready is None and b"start sync binlog" in log_path.read_bytes():
            ready = now
        position = read_master_info(master_info)
        if master_at_end is None and position is not None and position >= end:
            master_at_end = now
        ops = es_ops(es, index)
        total = ops["index_total"] + ops["delete_total"] if ops else 0
        if total != last_total:
            last_total, last_change = total, now
        if total >= rows:
            t_done = now
            break
        if now - last_rss >= 0.5:
            rss = cu.proc_status_kb(proc.pid, "VmRSS")
            if rss:
                rss_kb.append((now - t0, rss))
            last_rss = now
        # No operation for 30 s once it has begun: it will not finish (an error it only logs).
        if (total and now - last_change > 30) or now - t0 > timeout:
            stalled = True
            t_done = now
            break
        time.sleep(0.05)
    cpu = cu.proc_cpu(proc.pid)
    peak = cu.proc_status_kb(proc.pid, "VmHWM")
    # A few seconds' grace for its saved position (recorded, not part of the time).
    grace = time.time() + 5
    while master_at_end is None and time.time() < grace:
        position = read_master_info(master_info)
        if position is not None and position >= end:
            master_at_end = time.time()
        time.sleep(0.1)
    master_before_stop = read_master_info(master_info)
    log_before_stop = log_path.read_text(errors="replace")
    proc.send_signal(signal.SIGTERM)
    try:
        exit_code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        exit_code = proc.wait()
    log_file.close()
    master_after_stop = read_master_info(master_info)
    have = cu.index_truth(es, index)
    # Errors logged while it ran (its shutdown logs a few "context canceled" ones of its own).
    errors = [line for line in log_before_stop.splitlines() if "[error]" in line or "[fatal]" in line]
    total_s = t_done - t0
    result = {
        "index": index,
        "log": str(log_path),
        "finished": not stalled,
        "seconds_total": round(total_s, 3),
        "seconds_startup": round(ready - t0, 3) if ready else None,
        "seconds_after_startup": round(t_done - ready, 3) if ready else None,
        "rows_per_s_total": round(rows / total_s, 1),
        "rows_per_s_after_startup": round(rows / (t_done - ready), 1) if ready else None,
        "cpu_seconds": round(cpu, 2) if cpu is not None else None,
        "cpu_us_per_row": round(cpu / rows * 1e6, 2) if cpu is not None else None,
        "cpu_cores": round(cpu / total_s, 2) if cpu is not None else None,
        "peak_rss_mb": round(peak / 1024, 1) if peak else None,
        "rss_mb_samples": [(round(t, 1), round(kb / 1024, 1)) for t, kb in rss_kb],
        "es_ops": ops,
        "master_info_reached_end_s": round(master_at_end - t0, 3) if master_at_end else None,
        "master_info_before_stop": str(master_before_stop) if master_before_stop else None,
        "master_info_after_stop": str(master_after_stop) if master_after_stop else None,
        "exit_code": exit_code,
        "log_errors": len(errors),
        "log_errors_first": errors[:5],
        "settings": index_settings(es, index),
        "es": have,
        "db": truth,
        "correct": have == truth,
    }
    cu.log(f"go-mysql-elasticsearch {i}: {total_s:.1f}s total ({result['seconds_startup']}s start-up), "
           f"{result['rows_per_s_total']} rows/s, {result['cpu_us_per_row']} µs CPU/row, peak RSS "
           f"{result['peak_rss_mb']} MB, master.info at end after {result['master_info_reached_end_s']}s "
           f"(after stop: {master_after_stop}), {len(errors)} logged errors, index "
           f"{'==' if result['correct'] else '!='} table {have} vs {truth}")
    return result


def cdc_once(i: int, ep7, es, code, run_dir: Path, run_id: str, mode: str, start, end, rows: int, truth: dict,
             timeout: float) -> dict:
    code.extra_config["row_path"] = mode
    code.extra_config["batch"] = {"max_actions": BULK_SIZE}
    result = cu.catchup_once(i, ep7, es, code, run_dir, f"gomysql-{run_id}", start, end, rows, truth, timeout,
                             label=f"-{mode}")
    cpu = result.get("cdc_cpu_seconds")
    result["cpu_us_per_row"] = round(cpu / rows * 1e6, 2) if cpu is not None else None
    result["settings"] = index_settings(es, result["index"])
    # The same keys as the go runs, for the table.
    result["cpu_seconds"], result["peak_rss_mb"] = cpu, result.get("cdc_peak_rss_mb")
    result["finished"] = True
    return result


def bulk_direct(i: int, ep7, es_url: str, code, run_dir: Path, run_id: str, start, end, rows: int,
                concurrencies: tuple[int, ...]) -> dict[int, dict]:
    """cdc's bulk lines of the backlog, made once (grouped by batch.max_actions as a batch groups them), then sent."""
    index_base = f"{cu.INDEX_PREFIX}-gomysql-{run_id}-direct-{i}"
    # The copy of this script taken at the start: bench/rowpath.py in the work tree may since
    # have moved on to a cdc newer than the copy measured.
    data = rp.make_bodies(run_dir / "bench" / Path(__file__).name, ep7, code, start, end, run_dir / f"bulk-{i}.bin",
                          index_base)
    bodies = rp.read_bodies(data)
    results = {}
    for concurrency in concurrencies:
        index = f"{index_base}-{concurrency}"
        seconds, errors = rp.send_bodies(es_url, [b.replace(index_base.encode(), index.encode()) for b in bodies],
                                         concurrency)
        results[concurrency] = {"seconds": round(seconds, 3), "requests": len(bodies), "bytes": len(data),
                                "rows_per_s": round(rows / seconds, 1), "errors": errors[:3], "index": index}
        cu.log(f"bulk direct {i}, {concurrency} in flight: {len(bodies)} requests, {len(data) / 1e6:.1f} MB in "
               f"{seconds:.2f}s = {results[concurrency]['rows_per_s']} rows/s"
               f"{'; ERRORS ' + str(errors[:1]) if errors else ''}")
    return results


def sample_docs(es, index: str, ids: list[int]) -> dict:
    """The documents of a few rows as each tool wrote them (what a user's queries see)."""
    out = {}
    for doc_id in ids:
        try:
            out[str(doc_id)] = es.get(index=index, id=str(doc_id))["_source"]
        except cu.NotFoundError:
            out[str(doc_id)] = None
    return out


def med(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def drop(es, index: str) -> None:
    try:  # the concrete indices: Elasticsearch does not delete through an alias (cdc's names are aliases)
        es.indices.delete(index=",".join(es.indices.get(index=index)))
    except cu.NotFoundError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-bulk-direct", action="store_true")
    parser.add_argument("--charset", help="the table's default charset, e.g. latin1 (as bench/catchup.py --charset)")
    parser.add_argument("--mysql", action="store_true", help="the source is MySQL 9.7 (its binary JSON column) "
                                                             "instead of MariaDB")
    parser.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                        help="wait up to this long for cdc/ to match the last commit before copying it")
    parser.add_argument("--results", default=str(cu.RESULTS / "gomysql.json"))
    parser.add_argument("--code", type=Path, help="checkout (with its own _native build) whose cdc/ is measured "
                                                  "(default: this tree)")
    # the child process's arguments (rowpath.convert_child, on this bench's schema)
    parser.add_argument("--child", choices=rp.MODES)
    for name in ("host", "user", "password", "start", "end", "bulk_out", "bulk_index"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name)
    parser.add_argument("--port", type=int)
    parser.add_argument("--server-id", type=int)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.child:
        # The bulk bodies grouped in requests of the same size as the runs' (BULK_SIZE, not cdc's default).
        import cdc.config

        class SameBatch(cdc.config.BatchConfig):
            max_actions: int = BULK_SIZE

        cdc.config.BatchConfig = SameBatch  # type: ignore[misc]
        rp.convert_child(args)
        return 0

    binary, built = build()
    cu.log(f"go-mysql-elasticsearch: {binary} ({built})")
    if args.charset:  # the table's default charset (a latin1 table: MariaDB's upstream default)
        cu.CHARSET, cu.NOTE_TEXT = args.charset, cu.ACCENTED
    if args.mysql:
        ep = cu.servers.mysql_up()  # the bench's MySQL 9.7 (port 23307)
    else:
        cu.servers.mariadb_up()
        ep = cu.servers.endpoints("8")  # the MariaDB half; the Elasticsearch half is replaced by 7.17's
    es_url = es7_up()
    import dataclasses
    ep7 = dataclasses.replace(ep, es_url=es_url, es_version=cu.servers.ES7_VERSION)
    es = Es7(cu.Elasticsearch(es_url, request_timeout=120))
    for name in es.indices.get(index=f"{cu.INDEX_PREFIX}-gomysql-*", expand_wildcards="open"):
        es.indices.delete(index=name)
    run_dir = Path(tempfile.mkdtemp(prefix="gomysql-", dir=cu.STATE if cu.STATE.exists() else None))
    run_id = run_dir.name.rsplit("-", 1)[-1].lower()
    code = (cu.Code(run_dir, args.code.resolve(), name="code") if args.code
            else cu.Code(run_dir, wait_quiet=args.wait_quiet))
    shutil.copytree(Path(__file__).resolve().parent, run_dir / "bench", ignore=shutil.ignore_patterns("__pycache__",
                                                                                                    "results"))
    (run_dir / "scripts").mkdir()  # catchup.py imports servers.py from ../scripts
    shutil.copy2(cu.ROOT / "scripts" / "servers.py", run_dir / "scripts" / "servers.py")
    conn = cu.admin_conn(ep7)
    cu.setup_schema(conn)
    start = cu.master_position(conn)
    backlog = cu.generate_backlog(conn, args.rows)
    end = cu.end_on_marker_commit(conn)
    truth = cu.table_truth(conn)
    with conn.cursor() as cur:  # the first row and the last one written (an update or an insert)
        cur.execute(f"SELECT MIN(id), (SELECT id FROM `{cu.SCHEMA}`.`{cu.TABLE}` ORDER BY updated_at DESC LIMIT 1)"
                    f" FROM `{cu.SCHEMA}`.`{cu.TABLE}`")
        sample_ids = [int(v) for v in cur.fetchone()]
        cur.execute(f"SELECT * FROM `{cu.SCHEMA}`.`{cu.TABLE}` WHERE id IN ({sample_ids[0]}, {sample_ids[1]})")
        sample_rows = [[str(v) for v in row] for row in cur.fetchall()]
    conn.commit()
    backlog.update(start=str(start), end=str(end),
                   binlog_mb=round(cu.binlog_bytes(conn, start, end) / 2**20, 1))
    cu.log(f"backlog {backlog}")
    node = next(iter(es.nodes.info(node_id="_local")["nodes"].values()))
    results: dict = {
        "command": " ".join([os.path.relpath(sys.executable, cu.ROOT), os.path.relpath(__file__, cu.ROOT),
                             *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run_dir),
        "go_mysql_elasticsearch": {"binary": str(binary), "build": built, "bulk_size": BULK_SIZE},
        "versions": {"mariadb": cu.scalar(conn, "SELECT VERSION()"), "elasticsearch": node["version"],
                     "es_heap": ES7_HEAP, "cdc_commit": code.head, "cdc_code_sha256_16": code.sha256,
                     "cdc_files_newer_than_commit": code.newer_than_head, "cpus": os.cpu_count()},
        "loadavg_start": os.getloadavg(),
        "backlog": backlog,
        "sample_rows": sample_rows,
        "runs": {"go-mysql-elasticsearch": [], "cdc native": [], "cdc python": []},
        "bulk_direct": {1: [], 4: []},
    }
    timeout = max(900, args.rows / 100)
    # Warm the JVM (and the page cache of the binlog) before anything is measured: one
    # run of each tool (a first try with one cdc run left the next go run at a third
    # of its later speed).
    results["warm_up"] = []
    for warm in (cdc_once(0, ep7, es, code, run_dir, run_id, "native", start, end, backlog["rows"], truth, timeout),
                 gomysql_once(0, binary, ep7, es, es_url, run_dir, run_id, start, end, backlog["rows"], truth,
                              timeout)):
        results["warm_up"].append({k: warm[k] for k in ("index", "seconds_total", "rows_per_s_total", "correct")})
        drop(es, warm["index"])
    servers = {"elasticsearch": cu.servers._pid_alive(cu.servers.ES7_DIR / "run" / "es.pid"),
               "mariadb": cu.servers._pid_alive(cu.servers.MARIADB_PID)}
    kinds = list(results["runs"])
    for i in range(1, args.repeat + 1):
        order = kinds[i - 1:] + kinds[:i - 1]  # each kind goes first once in three repeats
        for kind in order:
            cpu0 = {name: cu.proc_cpu(pid) for name, pid in servers.items() if pid}
            if kind == "go-mysql-elasticsearch":
                run = gomysql_once(i, binary, ep7, es, es_url, run_dir, run_id, start, end, backlog["rows"],
                                   truth, timeout)
            else:
                run = cdc_once(i, ep7, es, code, run_dir, run_id, kind.split()[1], start, end, backlog["rows"],
                               truth, timeout)
            # The servers' CPU from before the start to after the final check (ES's share of the machine).
            run["server_cpu_seconds"] = {name: round(cu.proc_cpu(servers[name]) - before, 2)
                                         for name, before in cpu0.items() if before is not None}
            run["order"] = order.index(kind) + 1
            if i == 1:
                run["sample_docs"] = sample_docs(es, run["index"], sample_ids)
            run["loadavg"] = os.getloadavg()
            run["es_cpu_seconds"] = run["server_cpu_seconds"].get("elasticsearch")
            results["runs"][kind].append(run)
            Path(args.results).write_text(json.dumps(results, indent=2, default=str) + "\n")  # so far
            drop(es, run["index"])
        if not args.no_bulk_direct:
            direct = bulk_direct(i, ep7, es_url, code, run_dir, run_id, start, end, backlog["rows"], (1, 4))
            for n, r in direct.items():
                results["bulk_direct"][n].append(r)
                drop(es, r["index"])
    conn.close()
    results["loadavg_end"] = os.getloadavg()
    results["cdc_commit_at_end"] = cu.git_head()
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    go = results["runs"]["go-mysql-elasticsearch"]
    results["median"] = {kind: {key: med(runs, key) for key in (
        "rows_per_s_total", "rows_per_s_after_startup", "seconds_startup", "cpu_seconds", "cpu_us_per_row",
        "peak_rss_mb", "es_cpu_seconds")} for kind, runs in results["runs"].items()}
    results["median"]["bulk direct"] = {n: med(r, "rows_per_s") for n, r in results["bulk_direct"].items()}
    g = results["median"]["go-mysql-elasticsearch"]
    results["ratio_cdc_to_go"] = {
        kind: {key: (round(results["median"][kind][key] / g[key], 2)
                     if g[key] and results["median"][kind][key] else None)
               for key in ("rows_per_s_total", "rows_per_s_after_startup", "cpu_us_per_row", "peak_rss_mb")}
        for kind in ("cdc native", "cdc python")}
    # Each repeat's own ratio (its runs ran back to back, under about the same load), then their median:
    # steadier than the ratio of medians on a machine whose load swings 3x within minutes.
    results["paired_ratio_cdc_to_go"] = {
        kind: {key: round(statistics.median(r[key] / g_run[key] for r, g_run in zip(results["runs"][kind], go)), 2)
               for key in ("rows_per_s_total", "rows_per_s_after_startup", "cpu_us_per_row")}
        for kind in ("cdc native", "cdc python")}
    results["index_equals_table"] = {kind: [r["correct"] for r in runs] for kind, runs in results["runs"].items()}

    table = ["| measure | go-mysql-elasticsearch | cdc native | cdc python | native / go | python / go |",
             "|---|---|---|---|---|---|"]
    for key, name in (("rows_per_s_total", "rows/s, from process start"),
                      ("rows_per_s_after_startup", "rows/s, after start-up"),
                      ("seconds_startup", "start-up s"),
                      ("cpu_us_per_row", "CPU µs per row change"),
                      ("es_cpu_seconds", "Elasticsearch CPU s per run"),
                      ("peak_rss_mb", "peak RSS MB")):
        vals = [results["median"][k][key] for k in kinds]
        ratios = [round(results["median"][k][key] / results["median"][kinds[0]][key], 2)
                  if results["median"][k][key] and results["median"][kinds[0]][key] else None
                  for k in ("cdc native", "cdc python")]
        table.append(f"| {name} | {' | '.join(str(v) for v in vals)} | "
                     f"{' | '.join('' if r is None else str(r) for r in ratios)} |")
    for key, name in (("rows_per_s_total", "rows/s from process start, median of each repeat's ratio"),
                      ("rows_per_s_after_startup", "rows/s after start-up, median of each repeat's ratio")):
        table.append(f"| {name} | | | | {results['paired_ratio_cdc_to_go']['cdc native'][key]} | "
                     f"{results['paired_ratio_cdc_to_go']['cdc python'][key]} |")
    table.append(f"| index == table, each run | {' | '.join(str(results['index_equals_table'][k]) for k in kinds)}"
                 " | | |")
    if not args.no_bulk_direct:
        bd = results["median"]["bulk direct"]
        table.append(f"| bulk direct (cdc's lines, pre-generated): rows/s with 1 / 4 in flight | {bd[1]} / {bd[4]}"
                     " | | | | |")
    table.append(f"| go-mysql-elasticsearch: master.info at the end, s after start (each run) | "
                 f"{[r['master_info_reached_end_s'] for r in go]} | | | | |")
    results["markdown"] = "\n".join(table)
    Path(args.results).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(results["markdown"])
    print(f"\nbacklog {backlog}\nresults: {args.results}; logs: {run_dir}")
    return 0 if all(all(v) for v in results["index_equals_table"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
