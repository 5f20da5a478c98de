#!/usr/bin/env python3
"""The native row path against the Python path, side by side in one run (issue 19).

    .venv/bin/python bench/rowpath.py [--rows 150000] [--repeat 3] [--catchup]

On bench/catchup.py's servers (own ports, never the test servers) and its table
(10 columns: BIGINT, INT, TINYINT, VARCHAR, DECIMAL, DATETIME(6), TEXT, JSON,
DOUBLE) and backlog (70% inserts in multi-row statements, 20% single-row
updates, 10% single-row deletes), it measures over the same binlog range,
alternating the order of the paths in every repeat:

* `library`: pymysqlreplication alone decoding every row (catchup.py decode_once);
* `convert python` / `convert native`: decode and convert only, in one process:
  `BinlogSource` + the row path + every action's document JSON, as the pipeline
  makes them (no threads, no Elasticsearch); rows/s, CPU µs per row change and
  peak RSS of that process;
* `dry-run python` / `dry-run native`: `cdc replay --dry-run` (the whole
  read-and-convert pipeline with its threads; Elasticsearch left out), with
  `row_path` set in its config; rows/s and CPU µs per row change;
* with --catchup, `catch-up python` / `catch-up native`: `cdc run` from the
  backlog's start until the checkpoint reaches its end (catchup.py catchup_once),
  and `bulk direct`: the same actions, made once beforehand and grouped as a
  batch groups them (`batch.max_actions` per request, the last action per
  document), sent as pre-generated `_bulk` bodies (cdc's `encode_bulk`) into a
  fresh index by a minimal HTTP client with cdc's default `batch.concurrency`
  requests in flight, after Elasticsearch was warmed up by a first catch-up:
  the rate Elasticsearch itself takes these changes at.

`--baseline DIR` adds `catch-up before`: the native path of the cdc/ in DIR (an
older checkout with its own `_native` build), alternating with this code's
native catch-up in every repeat; `--catchup-only` skips the library, convert
and dry-run measures (and, with --baseline, the Python path's catch-up).

`--dryrun-baseline DIR` adds `dry-run before`: `cdc replay --dry-run` (native) with the cdc/ of DIR (an
older checkout with its own `_native` build), alternating with this code's native dry run in every
repeat, both against the library's decode of the same range (issue 28); `--native-only` leaves
out the Python path's convert and dry run.

`--mysql` reads the backlog from MySQL 9.7 instead (scripts/servers.py mysql_up on the bench's
port), where the table's JSON column is MySQL's binary JSON (issue 28).

`--charsets utf8mb4,latin1` measures instead `convert` and `dry-run` of both paths on one
backlog per charset (the table's default charset, catchup.py --charset: the VARCHAR and TEXT
columns; every note then has accented letters), the charsets alternating in every repeat.

`--profile` adds a cProfile of `convert native` (top functions by own time).
Results: Markdown on stdout, JSON in bench/results/rowpath.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import catchup as cu  # noqa: E402  (sets the bench servers' ports first)
from cdc.config import BatchConfig  # noqa: E402

MODES = ("python", "native")

# Its own schema on the bench servers: bench/catchup.py (run by others at the same time)
# drops and fills `bench`.`items`, which would end up in this bench's indices.
cu.SCHEMA = "bench_rowpath"
for _name in ("TABLE_DDL", "INSERT_SQL", "UPDATE_SQL", "DELETE_SQL"):
    setattr(cu, _name, getattr(cu, _name).replace("`bench`.", f"`{cu.SCHEMA}`."))


def convert_child(args: argparse.Namespace) -> None:
    """Runs in its own process (cwd: the copied code): decode + convert the range, print one JSON line."""
    import threading

    import dataclasses

    from cdc.config import BatchConfig, MysqlConfig, RetryConfig
    from cdc.es.sink import encode_bulk
    from cdc.model import BinlogPosition, RowChange, StartPoint
    from cdc.mysql.server import Database
    from cdc.mysql.source import BinlogSource
    from cdc.rules import ActionBuilder, Rule, RuleSet, resolved_or_stop
    from cdc.rules.rowpath import RowPath, row_count
    from cdc.rules.values import ValueOptions

    config = MysqlConfig(host=args.host, port=args.port, user=args.user, password=args.password,
                         server_id=args.server_id)
    rules = RuleSet([Rule(cu.SCHEMA, cu.TABLE, "bench", None)])
    db = Database(config)
    try:
        rules = resolved_or_stop(rules, db.catalog(rules))
    finally:
        db.close()
    path = RowPath(ActionBuilder(rules, 0, ValueOptions()), args.child)
    start, end = BinlogPosition.parse(args.start), BinlogPosition.parse(args.end)
    source = BinlogSource(config, args.source != "mysql", {(cu.SCHEMA, cu.TABLE)}, RetryConfig(max_attempts=1),
                          stop=threading.Event(), end=end, prepare=path.prepare if args.child == "native" else None)
    batch: dict = {}
    bodies = open(args.bulk_out, "wb") if args.bulk_out else None

    def flush() -> None:
        if batch:
            body = encode_bulk(list(batch.values()))
            bodies.write(len(body).to_bytes(8, "little") + body)
            batch.clear()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows = actions = doc_bytes = 0
    for event in source.events(StartPoint(start)):
        if isinstance(event, RowChange):
            rows += row_count(event)
            for action in path.actions(event):
                actions += 1
                doc = action.doc_json  # what the bulk body carries
                doc_bytes += len(doc) if doc else 0
                if bodies is not None:
                    batch.pop(action.key, None)
                    batch[action.key] = dataclasses.replace(action, index=args.bulk_index)
                    if len(batch) >= BatchConfig().max_actions:
                        flush()
    if bodies is not None:
        flush()
        bodies.close()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
        sys.stderr.write(out.getvalue())
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of the grown bench
    # process reported its parent's peak (146-150 MB from the second repeat on, both paths).
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"rows": rows, "actions": actions, "doc_bytes": doc_bytes, "seconds": round(seconds, 3),
                      "cpu_seconds": round(cpu, 3), "rows_per_s": round(rows / seconds, 1),
                      "cpu_us_per_row": round(cpu / rows * 1e6, 2), "peak_rss_mb": round(peak, 1),
                      "tables": path.tables}))


def convert_once(ep, code: cu.Code, mode: str, start, end, profile: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--host", ep.mariadb_host,
           "--port", str(ep.mariadb_port), "--user", ep.admin_user, "--password", ep.admin_password,
           "--server-id", str(next(cu._server_ids)), "--start", str(start), "--end", str(end), "--source", ep.source]
    if profile:
        cmd.append("--profile")
    out = subprocess.run(cmd, cwd=code.dir, capture_output=True, text=True, timeout=1800,
                         env={"PYTHONPATH": str(code.dir), "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise RuntimeError(f"convert {mode} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if profile:
        result["profile"] = out.stderr[-6000:]
    cu.log(f"convert {mode}: {result['rows']} rows, {result['rows_per_s']} rows/s, "
           f"{result['cpu_us_per_row']} µs CPU/row, peak RSS {result['peak_rss_mb']} MB")
    return result


def read_bodies(data: bytes) -> list[bytes]:
    """The bulk bodies the convert child wrote with --bulk-out (each after its 8-byte length)."""
    bodies, at = [], 0
    while at < len(data):
        n = int.from_bytes(data[at:at + 8], "little")
        bodies.append(data[at + 8:at + 8 + n])
        at += 8 + n
    return bodies


def send_bodies(es_url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[str]]:
    """`bodies` sent as they are by a minimal HTTP client, `concurrency` in flight: (seconds, errors)."""
    import http.client
    import re
    import threading
    import urllib.parse

    url = urllib.parse.urlsplit(es_url)
    todo = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def send() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        while True:
            with lock:
                if not todo:
                    break
                body = todo.pop()
            conn.request("POST", "/_bulk?filter_path=errors,items.*.error.type", body,
                         {"Content-Type": "application/x-ndjson"})
            reply = conn.getresponse().read()
            # Only version conflicts are expected: requests in flight together may carry
            # writes of one document, and the older one loses (409), as it should.
            kinds = set(re.findall(rb'"type":"(\w+)"', reply))
            if kinds - {b"version_conflict_engine_exception"} or b'"errors"' not in reply:
                errors.append(reply[:300].decode(errors="replace"))
        conn.close()

    workers = [threading.Thread(target=send) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0, errors


def make_bodies(script: Path, ep, code: cu.Code, start, end, path: Path, index: str) -> bytes:
    """The backlog's bulk bodies for `index`, as `script`'s native convert child (`--child native
    --bulk-out`, convert_child) writes them with `code`'s cdc: the file's bytes (the file is removed)."""
    cmd = [sys.executable, str(script), "--child", "native", "--host", ep.mariadb_host,
           "--port", str(ep.mariadb_port), "--user", ep.admin_user, "--password", ep.admin_password,
           "--server-id", str(next(cu._server_ids)), "--start", str(start), "--end", str(end), "--source", ep.source,
           "--bulk-out", str(path), "--bulk-index", index]
    out = subprocess.run(cmd, cwd=code.dir, capture_output=True, text=True, timeout=1800,
                         env={"PYTHONPATH": str(code.dir), "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise RuntimeError(f"bulk bodies failed:\n{out.stderr[-3000:]}")
    data = path.read_bytes()
    path.unlink()
    return data


def bulk_direct(i: int, ep, code: cu.Code, run_dir: Path, start, end, rows: int, concurrency: int) -> dict:
    """Pre-generated bulk bodies of the backlog straight into Elasticsearch: its own ingest rate."""
    index = f"{cu.INDEX_PREFIX}-{run_dir.name.lower()}-direct-{i}-{concurrency}"
    data = make_bodies(Path(__file__).resolve(), ep, code, start, end, run_dir / f"bulk-{i}.bin", index)
    bodies = read_bodies(data)
    seconds, errors = send_bodies(ep.es_url, bodies, concurrency)
    result = {"seconds": round(seconds, 3), "requests": len(bodies), "bytes": len(data),
              "rows_per_s": round(rows / seconds, 1), "errors": errors[:3], "index": index}
    cu.log(f"bulk direct {i}, {concurrency} in flight: {len(bodies)} requests, {len(data) / 1e6:.1f} MB in {seconds:.2f}s = "
           f"{result['rows_per_s']} rows/s{'; ERRORS ' + str(errors[:1]) if errors else ''}")
    return result


def dryrun_once(i: int, ep, code: cu.Code, run_dir: Path, mode: str, start, end, rows: int,
                label: str = "") -> dict:
    code.extra_config["row_path"] = mode
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = cu.dryrun_once(i, ep, code, run_dir, "rowpath", start, end, rows, label=f"-{mode}{label}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["cpu_seconds"] = round(cpu, 3)
    result["cpu_us_per_row"] = round(cpu / rows * 1e6, 2)
    return result


def med(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def charsets_main(args: argparse.Namespace) -> int:
    """--charsets: convert and dry-run of both paths, per charset, side by side in one run."""
    ep = cu.servers.up()
    run_dir = Path(tempfile.mkdtemp(prefix="rowpath-", dir=cu.STATE if cu.STATE.exists() else None))
    code = cu.Code(run_dir, args.code.resolve(), name="code") if args.code else cu.Code(run_dir, wait_quiet=0)
    conn = cu.admin_conn(ep)
    charsets = args.charsets.split(",")
    cu.NOTE_TEXT = cu.ACCENTED
    ranges = {}
    for charset in charsets:  # a backlog each; the binlog keeps each range's table definition
        cu.CHARSET = charset
        cu.setup_schema(conn)
        start = cu.master_position(conn)
        backlog = cu.generate_backlog(conn, args.rows)
        ranges[charset] = (start, cu.end_on_marker_commit(conn))
        cu.log(f"{charset}: backlog {backlog} from {start} to {ranges[charset][1]}")
    results: dict = {"command": " ".join(sys.argv), "rows": args.rows, "note_text": cu.NOTE_TEXT,
                     "code": {"head": code.head, "sha256": code.sha256, "newer_than_head": code.newer_than_head},
                     **{c: {"convert": {m: [] for m in MODES}, "dryrun": {m: [] for m in MODES}} for c in charsets}}
    for i in range(args.repeat):
        order = MODES if i % 2 == 0 else tuple(reversed(MODES))
        for charset in charsets if i % 2 == 0 else list(reversed(charsets)):
            start, end = ranges[charset]
            for mode in order:
                results[charset]["convert"][mode].append(convert_once(ep, code, mode, start, end))
            for mode in order:
                results[charset]["dryrun"][mode].append(dryrun_once(i, ep, code, run_dir, mode, start, end, args.rows))
    columns = [(c, m) for c in charsets for m in MODES]
    table = ["| median of " + str(args.repeat) + " | " + " | ".join(f"{c} {m}" for c, m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, kind, key in (("convert only: CPU µs per row change", "convert", "cpu_us_per_row"),
                            ("convert only: rows/s", "convert", "rows_per_s"),
                            ("`cdc replay --dry-run`: CPU µs per row change", "dryrun", "cpu_us_per_row"),
                            ("`cdc replay --dry-run`: rows/s", "dryrun", "rows_per_s_total")):
        table.append(f"| {name} | " + " | ".join(str(med(results[c][kind][m], key)) for c, m in columns) + " |")
    paths = {c: results[c]["convert"]["native"][-1]["tables"] for c in charsets}
    table.append("| row path of the native runs | " + " | ".join(
        f"{'; '.join(paths[c].values())}" if m == "native" else "" for c, m in columns) + " |")
    results["table"] = table
    Path(args.results).write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(table))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--catchup", action="store_true", help="also cdc run into Elasticsearch, both paths")
    parser.add_argument("--mysql", action="store_true", help="the source is MySQL 9.7 instead of MariaDB")
    parser.add_argument("--charset", help="the table's default charset for the whole run, e.g. latin1 "
                                          "(catchup.py --charset; --charsets compares several)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--baseline", type=Path, help="older checkout: its native catch-up side by side")
    parser.add_argument("--catchup-only", action="store_true")
    parser.add_argument("--dryrun-baseline", type=Path, help="older checkout: its native dry run side by side")
    parser.add_argument("--native-only", action="store_true", help="no Python path convert or dry run")
    parser.add_argument("--code", type=Path, help="checkout whose cdc/ is measured (default: this tree)")
    parser.add_argument("--results", default=str(cu.RESULTS / "rowpath.json"))
    parser.add_argument("--charsets", help="comma-separated table charsets to compare, e.g. utf8mb4,latin1")
    # the child process's arguments
    parser.add_argument("--child", choices=MODES)
    for name in ("host", "user", "password", "start", "end", "source"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--port", type=int)
    parser.add_argument("--bulk-out")
    parser.add_argument("--bulk-index")
    parser.add_argument("--server-id", type=int)
    args = parser.parse_args()
    if args.child:
        convert_child(args)
        return 0
    if args.charsets:
        return charsets_main(args)

    if args.charset:
        cu.CHARSET, cu.NOTE_TEXT = args.charset, cu.ACCENTED
    ep = cu.servers.up()
    if args.mysql:
        ep = cu.servers.mysql_up()
    run_dir = Path(tempfile.mkdtemp(prefix="rowpath-", dir=cu.STATE if cu.STATE.exists() else None))
    run_id = run_dir.name.rsplit("-", 1)[-1].lower()  # index names of this run only
    code = cu.Code(run_dir, args.code.resolve(), name="code") if args.code else cu.Code(run_dir, wait_quiet=0)
    base = cu.Code(run_dir, args.baseline.resolve(), name="baseline") if args.baseline else None
    dry_base = (cu.Code(run_dir, args.dryrun_baseline.resolve(), name="dryrun-baseline")
                if args.dryrun_baseline else None)
    if dry_base is not None:
        dry_base.extra_config["row_path"] = "native"
    modes = ("native",) if args.native_only else MODES
    # Bytecode compiled up front, as an installed cdc has it (pip compiles on install): else each
    # process would compile what earlier ones did not (PYTHONDONTWRITEBYTECODE, or modules no convert
    # child imported), a start-up cost of the copy, not of cdc.
    for copy in (code, base, dry_base):
        if copy is not None:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(copy.dir / "cdc")], check=True,
                           stdout=subprocess.DEVNULL)
    if base is not None:
        base.extra_config["row_path"] = "native"
        args.catchup = True
    conn = cu.admin_conn(ep)
    cu.setup_schema(conn)
    start = cu.master_position(conn)
    backlog = cu.generate_backlog(conn, args.rows)
    end = cu.end_on_marker_commit(conn)
    truth = cu.table_truth(conn)
    cu.log(f"backlog {backlog} from {start} to {end}")
    results: dict = {"command": " ".join(sys.argv), "rows": args.rows, "backlog": backlog, "start": str(start),
                     "end": str(end), "code": {"head": code.head, "sha256": code.sha256,
                                               "newer_than_head": code.newer_than_head},
                     "baseline": {"dir": str(args.baseline), "sha256": base.sha256} if base else None,
                     "dryrun_baseline": ({"dir": str(args.dryrun_baseline), "sha256": dry_base.sha256}
                                         if dry_base else None),
                     "catchup_before": [], "dryrun_before": [],
                     "library": [], "convert": {m: [] for m in MODES}, "dryrun": {m: [] for m in MODES},
                     "catchup": {m: [] for m in MODES},
                     "bulk_direct": {n: [] for n in (1, BatchConfig().concurrency)}}
    es = cu.Elasticsearch(ep.es_url, request_timeout=120) if args.catchup else None

    def tidy() -> None:
        # Every measurement leaves an index of 60,000 documents; dozens of them on the bench
        # cluster's 512 MB heap slowed later measurements (found at 87 indices). Dropped
        # after each, so every run meets the same cluster.
        if es is not None:
            for name in es.indices.get(index=f"{cu.INDEX_PREFIX}-*", expand_wildcards="open").body:
                es.indices.delete(index=name)

    tidy()
    if es is not None:  # a cold JVM runs at a third of its warm speed: warm it with one run first
        code.extra_config["row_path"] = "python"
        cu.catchup_once(0, ep, es, code, run_dir, f"rowpath-{run_id}-warm", start, end, args.rows, truth,
                        timeout=1800)
        tidy()
    for i in range(args.repeat):
        order = modes if i % 2 == 0 else tuple(reversed(modes))
        if not args.catchup_only:
            results["library"].append(cu.decode_once(i, ep, start, end))
            for mode in order:
                results["convert"][mode].append(convert_once(ep, code, mode, start, end))
            if dry_base is not None and i % 2 == 0:
                results["dryrun_before"].append(dryrun_once(i, ep, dry_base, run_dir, "native", start, end,
                                                            args.rows, label="before"))
            for mode in order:
                results["dryrun"][mode].append(dryrun_once(i, ep, code, run_dir, mode, start, end, args.rows))
            if dry_base is not None and i % 2 == 1:
                results["dryrun_before"].append(dryrun_once(i, ep, dry_base, run_dir, "native", start, end,
                                                            args.rows, label="before"))
        if base is not None and i % 2 == 0:
            results["catchup_before"].append(cu.catchup_once(i + 1, ep, es, base, run_dir, f"rowpath-{run_id}",
                                                             start, end, args.rows, truth, timeout=1800,
                                                             label="-before"))
            tidy()
        if es is not None:
            for concurrency in (1, BatchConfig().concurrency):
                results["bulk_direct"][concurrency].append(
                    bulk_direct(i, ep, code, run_dir, start, end, args.rows, concurrency))
                tidy()
            for mode in order:
                if args.catchup_only and mode == "python" and base is not None:
                    continue  # before / after on the native path only
                code.extra_config["row_path"] = mode
                results["catchup"][mode].append(cu.catchup_once(i + 1, ep, es, code, run_dir, f"rowpath-{run_id}",
                                                                start, end, args.rows, truth, timeout=1800,
                                                                label=f"-{mode}"))
                tidy()
        if base is not None and i % 2 == 1:
            results["catchup_before"].append(cu.catchup_once(i + 1, ep, es, base, run_dir, f"rowpath-{run_id}",
                                                             start, end, args.rows, truth, timeout=1800,
                                                             label="-before"))
            tidy()
    if args.profile:
        results["profile_native"] = convert_once(ep, code, "native", start, end, profile=True)["profile"]

    lib = med(results["library"], "rows_per_s")
    table = ["| measure | python | native | native / python |", "|---|---|---|---|"]

    def row(name: str, runs: dict, key: str, ratio: bool = True) -> None:
        p, n = med(runs.get("python", []), key), med(runs["native"], key)
        table.append(f"| {name} | {p} | {n} | {round(n / p, 2) if ratio and p and n else ''} |")

    if base is not None:
        for key in ("rows_per_s_total", "cdc_cpu_seconds", "cdc_peak_rss_mb"):
            b, n = med(results["catchup_before"], key), med(results["catchup"]["native"], key)
            table.append(f"| catch-up {key}: before (baseline, native) / this code (native) | {b} | {n} | "
                         f"{round(n / b, 2) if b and n else ''} |")
        table.append(f"| catch-up before: index == table in every run | "
                     f"{all(r['correct'] for r in results['catchup_before'])} | | |")

    if dry_base is not None:
        for name, key in (("rows/s (process start to exit)", "rows_per_s_total"),
                          ("CPU µs per row change", "cpu_us_per_row"), ("start-up seconds", "seconds_startup"),
                          ("rows/s after start-up", "rows_per_s_after_startup")):
            b, n = med(results["dryrun_before"], key), med(results["dryrun"]["native"], key)
            table.append(f"| `cdc replay --dry-run` native {name}: before (baseline) / this code | {b} | {n} | "
                         f"{round(n / b, 2) if b and n else ''} |")
        for name, runs in (("before (baseline)", results["dryrun_before"]), ("this code", results["dryrun"]["native"])):
            # each repeat's dry run against that repeat's library decode, then the median of those
            ratios = [r["rows_per_s_total"] / lib_run["rows_per_s"] for r, lib_run in zip(runs, results["library"])]
            table.append(f"| dry run {name} / library decode: median of rows/s ratios per repeat "
                         f"{[round(x, 2) for x in ratios]} | | | {round(statistics.median(ratios), 2)} |")
    row("convert only: rows/s", results["convert"], "rows_per_s")
    row("convert only: CPU µs per row change", results["convert"], "cpu_us_per_row")
    row("convert only: peak RSS MB", results["convert"], "peak_rss_mb")
    row("`cdc replay --dry-run`: rows/s", results["dryrun"], "rows_per_s_total")
    row("`cdc replay --dry-run`: CPU µs per row change", results["dryrun"], "cpu_us_per_row")
    if es is not None:
        row("catch-up into Elasticsearch: rows/s", results["catchup"], "rows_per_s_total")
        row("catch-up: cdc CPU seconds", results["catchup"], "cdc_cpu_seconds")
        row("catch-up: peak RSS MB", results["catchup"], "cdc_peak_rss_mb")
        n_catch = med(results["catchup"]["native"], "rows_per_s_total")
        for concurrency, runs in results["bulk_direct"].items():
            direct = med(runs, "rows_per_s")
            table.append(f"| `_bulk` direct, pre-generated bodies, {concurrency} in flight: rows/s | {direct} | | |")
            if direct and n_catch:
                table.append(f"| native catch-up / `_bulk` direct ({concurrency} in flight) | | | "
                             f"{round(n_catch / direct, 2)} |")
        for mode in MODES:
            table.append(f"| catch-up {mode}: index == table in every run | "
                         f"{all(r['correct'] for r in results['catchup'][mode])} | | |")
    table.append(f"| library decode only (stock pymysqlreplication): rows/s | {lib} | | |")
    n_conv = med(results["convert"]["native"], "rows_per_s")
    if lib and n_conv:
        table.append(f"| native convert / library decode | | | {round(n_conv / lib, 2)} |")
    n_dry = med(results["dryrun"]["native"], "rows_per_s_total")
    if lib and n_dry:
        table.append(f"| native dry run (process start to exit) / library decode | | | {round(n_dry / lib, 2)} |")
    results["table"] = table
    Path(args.results).write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(table))
    if args.profile:
        print("\n```\n" + results["profile_native"] + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
