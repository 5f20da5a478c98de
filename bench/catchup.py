#!/usr/bin/env python3
"""Throughput and latency of `cdc run` against real MariaDB and Elasticsearch.

    .venv/bin/python bench/catchup.py [--rows 200000] [--repeat 3] [--latency-seconds 30] [--charset latin1]

Two measurements:

1. Backlog catch-up. A backlog of --rows row changes (about 70% inserts, 20%
   updates, 10% deletes) is written first, then `cdc run` starts at the backlog's
   first position with an empty checkpoint. The clock runs from process start
   until the checkpoint file reaches the backlog's end: cdc saves a checkpoint
   only once Elasticsearch has acknowledged every action up to it, so that is
   the moment the whole backlog is durable in the index. The same backlog is
   replayed --repeat times into fresh indexes. For comparison, the same range is
   read by pymysqlreplication alone (decode only: the ceiling cdc can reach with
   that library) and by `cdc replay --dry-run` (cdc's read-and-convert path with
   Elasticsearch left out). With --baseline DIR, the cdc in DIR/cdc runs the
   same backlog too, alternating with the code measured, and the report
   compares the two (medians, ratios).

2. Latency under steady load. `cdc run` follows the binlog end while a writer
   commits rows at a steady rate; a poller searches Elasticsearch every 100 ms
   to see when each row becomes searchable, and the checkpoint file shows when
   its commit was acknowledged.

The bench uses its own servers (scripts/servers.py with the ports and state
directory below), never the default ones that the integration tests restart.
cdc runs from a copy of cdc/ taken when the bench starts, so every number in
one run is of one version of the code even if the work tree changes meanwhile.
Results go to stdout as Markdown and to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent

# servers.py reads these at import time. They are forced rather than defaulted:
# other people's tests stop and restart the servers on the default ports, and an
# inherited MARIADB_PORT must never point the bench (which drops tables) at them.
BENCH_ENV = {
    "CDC_DEV_HOME": "/var/tmp/cdc-bench",
    "MARIADB_PORT": "23306",
    "ES_PORT": "29200",
    "ES_TRANSPORT_PORT": "29300",
    "MYSQL_PORT": "23307",  # MySQL 9.7 (bench/rowpath.py --mysql)
}
os.environ.update(BENCH_ENV)
sys.path.insert(0, str(ROOT / "scripts"))

import pymysql  # noqa: E402
import servers  # noqa: E402
import yaml  # noqa: E402
from elasticsearch import ApiError, Elasticsearch, NotFoundError  # noqa: E402
from pymysqlreplication import BinLogStreamReader  # noqa: E402
from pymysqlreplication.event import XidEvent  # noqa: E402
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent  # noqa: E402

STATE = Path(BENCH_ENV["CDC_DEV_HOME"]) / "runs"
RESULTS = ROOT / "bench" / "results"
SCHEMA, TABLE = "bench", "items"
INDEX_PREFIX = "bench-items"
# Latency rows get ids far above the backlog's, so a poll can ask for "id > x".
LATENCY_ID_BASE = 1_000_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BinlogPosition(NamedTuple):
    """FILE:POS; tuples order correctly because binlog file names have fixed-width numbers.

    Defined here rather than imported from cdc, so the bench does not depend on
    cdc's internals (only on its command line, config and checkpoint file).
    """

    file: str
    pos: int

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

TABLE_DDL = f"""
CREATE TABLE `{SCHEMA}`.`{TABLE}` (
  id         BIGINT        NOT NULL PRIMARY KEY,
  account_id INT           NOT NULL,
  qty        INT           NOT NULL,
  status     TINYINT       NOT NULL,
  sku        VARCHAR(64)   NOT NULL,
  price      DECIMAL(12,2) NOT NULL,
  updated_at DATETIME(6)   NOT NULL,
  note       TEXT,
  attrs      JSON,
  t_commit   DOUBLE
) ENGINE=InnoDB
"""
INSERT_SQL = (f"INSERT INTO `{SCHEMA}`.`{TABLE}` (id, account_id, qty, status, sku, price, updated_at, note, attrs,"
              " t_commit) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
UPDATE_SQL = (f"UPDATE `{SCHEMA}`.`{TABLE}` SET qty = qty + 1, status = %s, price = %s, updated_at = %s, note = %s"
              " WHERE id = %s")
DELETE_SQL = f"DELETE FROM `{SCHEMA}`.`{TABLE}` WHERE id = %s"
# The table's default charset (--charset; bench/rowpath.py --charsets): its VARCHAR and TEXT
# columns' (MariaDB's JSON stays utf8mb4). None: the server's, utf8mb4 on the bench servers.
CHARSET: str | None = None
# Appended to every note (--charset): accented letters, so the text is not all ASCII.
NOTE_TEXT = ""
ACCENTED = " Crème brûlée à 5 €, déjà vu"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- small helpers


def admin_conn(ep, autocommit: bool = False) -> pymysql.Connection:
    return pymysql.connect(host=ep.mariadb_host, port=ep.mariadb_port, user=ep.admin_user,
                           password=ep.admin_password, autocommit=autocommit, charset="utf8mb4")


def scalar(conn, sql: str, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    return row[0] if row else None


def master_position(conn) -> BinlogPosition:
    with conn.cursor() as cur:
        # MySQL 8.4 and later have no SHOW MASTER STATUS, MariaDB has no SHOW BINARY LOG STATUS.
        cur.execute("SHOW MASTER STATUS" if "mariadb" in conn.get_server_info().lower() else "SHOW BINARY LOG STATUS")
        file, pos = cur.fetchone()[:2]
    return BinlogPosition(file, int(pos))


def binlog_bytes(conn, start: BinlogPosition, end: BinlogPosition) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        sizes = {row[0]: int(row[1]) for row in cur.fetchall()}
    total = 0
    for name in sorted(sizes):
        if start.file <= name <= end.file:
            lo = start.pos if name == start.file else 0
            hi = end.pos if name == end.file else sizes[name]
            total += hi - lo
    return total


def gtid_seq(state: str | None, domain: str = "0") -> int | None:
    """The sequence number of one domain in a MariaDB GTID state like '0-1-42'."""
    for part in (state or "").split(","):
        bits = part.strip().split("-")
        if len(bits) == 3 and bits[0] == domain:
            return int(bits[2])
    return None


def read_checkpoint(path: Path) -> dict | None:
    # cdc replaces the file atomically (write-temp + rename), so a read never sees half of it.
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process in seconds (works for servers owned by other users)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def server_pids() -> dict[str, int | None]:
    _, run_dir = servers.es_dirs(servers.resolve_es_version())
    return {"mariadb": servers._pid_alive(servers.MARIADB_PID), "elasticsearch": servers._pid_alive(run_dir / "es.pid")}


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def log_ts(line: dict) -> float | None:
    """cdc's JSON 'ts' (UTC, millisecond precision) as epoch seconds."""
    ts = line.get("ts")
    if not ts:
        return None
    base, _, frac = ts.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(frac or 0) / 1000


def read_log(path: Path) -> list[dict]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append({"msg": raw, "level": "raw"})
    return out


# --------------------------------------------------------------------------- cdc process


# A block of 100 per bench process: a cdc left over from an earlier, aborted bench
# run keeps its id registered with the server, and cdc refuses to share one.
_server_ids = iter(range(7100 + 100 * (os.getpid() % 20), 7900 + 100 * (os.getpid() % 20)))


class Code:
    """The copy of cdc/ that every cdc process of this run executes."""

    def __init__(self, run_dir: Path, source: Path = ROOT, wait_quiet: float = 0, name: str = "code"):
        # Others commit to this work tree while it is in use; a copy taken
        # mid-edit can be a state that never existed in any commit. So wait (up
        # to wait_quiet seconds) until no file in cdc/ is newer than the last
        # commit, and record what was newer if that never happened. A copy made
        # earlier (source) lets several runs measure the very same code.
        self.source = source
        self.name = name
        self.newer_than_head: list[str] | None = None
        if source == ROOT:
            deadline = time.time() + wait_quiet
            while uncommitted_looking() and time.time() < deadline:
                time.sleep(2)
            self.newer_than_head = uncommitted_looking()
            if self.newer_than_head:
                log(f"warning: cdc/ files newer than the last commit (probably being edited): {self.newer_than_head}")
        self.dir = run_dir / name
        shutil.copytree(source / "cdc", self.dir / "cdc", ignore=shutil.ignore_patterns("__pycache__"))
        digest = hashlib.sha256()
        for path in sorted((self.dir / "cdc").rglob("*.py")):
            digest.update(path.relative_to(self.dir).as_posix().encode() + b"\0" + path.read_bytes())
        self.sha256 = digest.hexdigest()[:16]
        self.head = git_head()
        # Streaming only. Versions of cdc with snapshots copy the whole table
        # before streaming by default, and that copy would be measured as latency.
        self.extra_config: dict = {}
        if self.accepts({"snapshot": {"mode": "never"}}, run_dir):
            self.extra_config["snapshot"] = {"mode": "never"}

    def command(self, *args: str) -> list[str]:
        # `-m cdc` from this directory finds the copy first (sys.path[0] is the
        # working directory; the editable install's finder comes after it).
        return [sys.executable, "-m", "cdc", *args]

    def accepts(self, extra: dict, run_dir: Path) -> bool:
        probe = run_dir / "probe"
        (probe / "rules").mkdir(parents=True, exist_ok=True)
        (probe / "rules" / "r.yml").write_text(yaml.safe_dump(
            {"rules": [{"schema": SCHEMA, "table": TABLE, "index": "probe"}]}))
        (probe / "cdc.yml").write_text(yaml.safe_dump({"mysql": {"user": "x", "server_id": 1}, "rules": "rules",
                                                       **extra}))
        out = subprocess.run(self.command("check-config", "--config", str(probe / "cdc.yml")), cwd=self.dir,
                             capture_output=True, text=True)
        return out.returncode == 0


def _head_file() -> Path:
    git = ROOT / ".git"
    common = git
    if git.is_file():  # a work tree of its own (git worktree): "gitdir: <its directory>", refs in the common one
        git = Path(git.read_text().split(":", 1)[1].strip())
        common = (git / (git / "commondir").read_text().strip()).resolve() if (git / "commondir").exists() else git
    head = (git / "HEAD").read_text().strip()
    return common / head[5:] if head.startswith("ref: ") else git / "HEAD"


def git_head() -> str | None:
    """The commit checked out, read from .git without running git."""
    try:
        return _head_file().read_text().strip()
    except OSError:
        return None


def uncommitted_looking() -> list[str]:
    """cdc/ files modified after the last commit: a hint (by mtime) that the tree is not that commit."""
    try:
        committed = _head_file().stat().st_mtime
    except OSError:
        return []
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cdc").rglob("*.py") if p.stat().st_mtime > committed)


def write_cdc_config(workdir: Path, ep, index: str, start_position: str, code: Code) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules").mkdir(exist_ok=True)
    (workdir / "rules" / "rules.yml").write_text(
        yaml.safe_dump({"rules": [{"schema": SCHEMA, "table": TABLE, "index": index}]}))
    config = {
        "mysql": {"host": ep.mariadb_host, "port": ep.mariadb_port, "user": ep.cdc_user,
                  "password": ep.cdc_password, "server_id": next(_server_ids)},
        "elasticsearch": {"hosts": [ep.es_url]},
        # min_interval 0: the checkpoint file is the bench's only view of "acknowledged",
        # and the default 1 s throttle would add up to a second of measurement error.
        # Batching is left at cdc's defaults.
        "checkpoint": {"path": str(workdir / "checkpoint.json"), "min_interval": 0},
        "start": {"position": start_position},
        "rules": str(workdir / "rules"),
        **code.extra_config,
    }
    path = workdir / "cdc.yml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)  # it holds a password; cdc warns about world-readable ones
    return path


class Cdc:
    """One `cdc run` subprocess with its JSON log in a file."""

    def __init__(self, code: Code, config: Path, log_path: Path):
        self.config = config
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.time()
        self.proc = subprocess.Popen(code.command("run", "--config", str(config), "--log-format", "json"),
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=code.dir)

    def logs(self) -> list[dict]:
        return read_log(self.log_path)

    def ready_at(self) -> float | None:
        for line in self.logs():
            if "starting at" in line.get("msg", "") or "resuming from" in line.get("msg", ""):
                return log_ts(line)
        return None

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"cdc exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 60) -> tuple[int, float]:
        t = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            log(f"cdc did not stop within {timeout}s of SIGTERM; killed")
        self._log.close()
        return code, time.time() - t

    def problems(self) -> list[dict]:
        return [line for line in self.logs() if line.get("level") in ("warning", "error", "critical", "raw")]

    def summary(self) -> str | None:
        for line in reversed(self.logs()):
            if line.get("msg", "").startswith("stopped:"):
                return line["msg"]
        return None


# --------------------------------------------------------------------------- backlog


def setup_schema(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{SCHEMA}`")
        cur.execute(f"DROP TABLE IF EXISTS `{SCHEMA}`.`{TABLE}`")
        cur.execute(TABLE_DDL + (f" DEFAULT CHARSET={CHARSET}" if CHARSET else ""))
        # A table outside the rules, used to end the backlog on a known commit.
        cur.execute(f"CREATE TABLE IF NOT EXISTS `{SCHEMA}`.marker (id INT PRIMARY KEY, n BIGINT NOT NULL)")
        cur.execute(f"INSERT IGNORE INTO `{SCHEMA}`.marker VALUES (1, 0)")
    conn.commit()


def row_values(rng: random.Random, row_id: int, t_commit: float | None = None) -> tuple:
    return (
        row_id,
        rng.randint(1, 100_000),
        rng.randint(0, 1000),
        rng.randint(0, 5),
        f"SKU-{row_id:010d}-{rng.randbytes(8).hex()}",
        f"{rng.randint(0, 10**9) / 100:.2f}",
        datetime.datetime.now(),
        rng.randbytes(50).hex() + NOTE_TEXT,  # 100 characters (and NOTE_TEXT)
        json.dumps({"color": rng.choice(["red", "green", "blue"]), "size": rng.randint(1, 50),
                    "tags": [rng.choice("abcdefgh") for _ in range(3)]}),
        t_commit,
    )


def generate_backlog(conn, total: int, seed: int = 42) -> dict:
    """Write `total` row changes; every update and delete hits an existing row (checked by rowcount)."""
    rng = random.Random(seed)
    live: list[int] = []  # ids currently in the table; swap-remove keeps deletes O(1)
    next_id = 1
    counts = {"insert": 0, "update": 0, "delete": 0, "transactions": 0}
    done = 0
    t0 = time.time()
    with conn.cursor() as cur:
        while done < total:
            size = min(rng.randint(100, 500), total - done)
            n_upd = min(round(size * 0.2), len(live))
            n_del = min(round(size * 0.1), len(live))
            n_ins = size - n_upd - n_del  # the first transactions have nothing to update yet
            inserts = [row_values(rng, next_id + k) for k in range(n_ins)]
            cur.executemany(INSERT_SQL, inserts)  # PyMySQL turns this into one multi-row INSERT
            assert cur.rowcount == n_ins, (cur.rowcount, n_ins)
            live.extend(range(next_id, next_id + n_ins))
            next_id += n_ins
            if n_upd:
                # One statement per row, as an OLTP application would send them.
                updates = [(rng.randint(0, 5), f"{rng.randint(0, 10**9) / 100:.2f}", datetime.datetime.now(),
                            rng.randbytes(50).hex() + NOTE_TEXT, rng.choice(live)) for _ in range(n_upd)]
                cur.executemany(UPDATE_SQL, updates)
                assert cur.rowcount == n_upd, (cur.rowcount, n_upd)
            if n_del:
                victims = []
                for _ in range(n_del):
                    k = rng.randrange(len(live))
                    live[k], live[-1] = live[-1], live[k]
                    victims.append(live.pop())
                cur.executemany(DELETE_SQL, [(v,) for v in victims])
                assert cur.rowcount == n_del, (cur.rowcount, n_del)
            conn.commit()
            counts["insert"] += n_ins
            counts["update"] += n_upd
            counts["delete"] += n_del
            counts["transactions"] += 1
            done += size
    counts["rows"] = done
    counts["seconds"] = round(time.time() - t0, 2)
    counts["next_id"] = next_id
    return counts


def end_on_marker_commit(conn) -> BinlogPosition:
    """Finish with a commit whose end is SHOW MASTER STATUS, in the same binlog file.

    If the last backlog transaction made the server rotate, the status would show
    the start of a new file, which cdc never checkpoints (it only saves commit
    positions), so the bench would wait forever. A commit after the rotation
    gives a position cdc does reach.
    """
    while True:
        before = master_position(conn)
        with conn.cursor() as cur:
            cur.execute(f"UPDATE `{SCHEMA}`.marker SET n = n + 1 WHERE id = 1")
        conn.commit()
        after = master_position(conn)
        if after.file == before.file:
            return after


def table_truth(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), COALESCE(SUM(id), 0), COALESCE(SUM(qty), 0) FROM `{SCHEMA}`.`{TABLE}`"
                    f" WHERE id < {LATENCY_ID_BASE}")
        count, sum_id, sum_qty = cur.fetchone()
    conn.commit()
    return {"count": int(count), "sum_id": int(sum_id), "sum_qty": int(sum_qty)}


def index_truth(es: Elasticsearch, index: str) -> dict:
    es.indices.refresh(index=index)
    resp = es.search(index=index, size=0, track_total_hits=True,
                     aggs={"sum_id": {"sum": {"field": "id"}}, "sum_qty": {"sum": {"field": "qty"}}})
    return {"count": int(resp["hits"]["total"]["value"]),
            "sum_id": int(round(resp["aggregations"]["sum_id"]["value"])),
            "sum_qty": int(round(resp["aggregations"]["sum_qty"]["value"]))}


# --------------------------------------------------------------------------- catch-up


def catchup_once(i: int, ep, es, code: Code, run_dir: Path, tag: str, start: BinlogPosition,
                 end: BinlogPosition, rows: int, truth: dict, timeout: float, label: str = "") -> dict:
    index = f"{INDEX_PREFIX}-{tag}-catchup-{i}{label}"
    workdir = run_dir / f"catchup-{i}{label}"
    config = write_cdc_config(workdir, ep, index, str(start), code)
    checkpoint_path = workdir / "checkpoint.json"
    pids = server_pids()
    cpu0 = {name: proc_cpu(pid) for name, pid in pids.items() if pid}
    cdc = Cdc(code, config, workdir / "cdc.log")
    t0 = cdc.started
    progress: list[tuple[float, str]] = []  # (time, checkpoint) each time it moves
    rss_kb: list[tuple[float, int]] = []
    last, last_rss_sample = None, 0.0
    deadline = t0 + timeout
    while True:
        now = time.time()
        cp = read_checkpoint(checkpoint_path)
        position = BinlogPosition(cp["file"], cp["pos"]) if cp else None
        if position != last:
            progress.append((now, str(position)))
            last = position
        if position is not None and position >= end:
            t_done = now
            break
        cdc.check_alive()
        if now - last_rss_sample >= 0.5:
            rss = proc_status_kb(cdc.proc.pid, "VmRSS")
            if rss:
                rss_kb.append((now - t0, rss))
            last_rss_sample = now
        if now > deadline:
            cdc.stop()
            raise RuntimeError(f"catch-up {i} did not reach {end} in {timeout}s (checkpoint {position})")
        time.sleep(0.05)
    # Read CPU and peak memory before SIGTERM, so shutdown work is not counted.
    cdc_cpu = proc_cpu(cdc.proc.pid)
    peak_rss = proc_status_kb(cdc.proc.pid, "VmHWM")
    server_cpu = {}
    for name, before in cpu0.items():
        after = proc_cpu(pids[name])
        if before is not None and after is not None:
            server_cpu[name] = round(after - before, 2)
    code, stop_seconds = cdc.stop()
    ready = cdc.ready_at()
    total = t_done - t0
    gaps = [b[0] - a[0] for a, b in zip(progress[1:], progress[2:])]
    have = index_truth(es, index)
    # Elasticsearch's own account of the time it spent, to set against the wall time.
    prim = es.indices.stats(index=index, metric="bulk,indexing,refresh,merge")["_all"]["primaries"]
    result = {
        "index": index,
        "log": str(cdc.log_path),
        "seconds_total": round(total, 3),
        "seconds_startup": round(ready - t0, 3) if ready else None,
        "seconds_after_startup": round(t_done - ready, 3) if ready else None,
        "rows_per_s_total": round(rows / total, 1),
        "rows_per_s_after_startup": round(rows / (t_done - ready), 1) if ready else None,
        "cdc_cpu_seconds": round(cdc_cpu, 2) if cdc_cpu is not None else None,
        "cdc_cpu_cores": round(cdc_cpu / total, 2) if cdc_cpu is not None else None,
        "server_cpu_seconds": server_cpu,
        "cdc_peak_rss_mb": round(peak_rss / 1024, 1) if peak_rss else None,
        "cdc_rss_mb_samples": [(round(t, 1), round(kb / 1024, 1)) for t, kb in rss_kb],
        "checkpoints_seen": len(progress) - 1,
        "checkpoint_gap_s_p50": _r(pct(gaps, 50)),
        "longest_checkpoint_gap_s": round(max(gaps), 3) if gaps else None,
        "checkpoint_progress": [(round(t - t0, 2), p) for t, p in progress],
        "es_bulk_seconds": round(prim.get("bulk", {}).get("total_time_in_millis", 0) / 1000, 2),
        "es_bulk_requests": prim.get("bulk", {}).get("total_operations"),
        "es_refresh_seconds": round(prim["refresh"]["total_time_in_millis"] / 1000, 2),
        "es_merge_seconds": round(prim["merges"]["total_time_in_millis"] / 1000, 2),
        "exit_code": code,
        "stop_seconds": round(stop_seconds, 2),
        "summary": cdc.summary(),
        "log_problems": cdc.problems()[:20],
        "es": have,
        "db": truth,
        "correct": have == truth,
    }
    log(f"catch-up {i}{label}: {total:.1f}s total ({result['seconds_startup']}s start-up), "
        f"{result['rows_per_s_total']} rows/s, cdc {result['cdc_cpu_cores']} cores, "
        f"peak RSS {result['cdc_peak_rss_mb']} MB, index {'==' if result['correct'] else '!='} table "
        f"{have} vs {truth}")
    return result


def dryrun_once(i: int, ep, code: Code, run_dir: Path, tag: str, start: BinlogPosition, end: BinlogPosition,
                rows: int, label: str = "") -> dict:
    """`cdc replay --dry-run` over the range: cdc's read and convert path, Elasticsearch left out."""
    workdir = run_dir / f"dryrun-{i}{label}"
    config = write_cdc_config(workdir, ep, f"{INDEX_PREFIX}-{tag}-dryrun", str(start), code)
    log_path = workdir / "cdc.log"
    t0 = time.time()
    with open(log_path, "wb") as err:
        out = subprocess.run(
            code.command("replay", "--config", str(config), "--from-position", str(start), "--to-position", str(end),
                         "--dry-run", "--server-id", str(next(_server_ids)), "--log-format", "json"),
            stdout=subprocess.PIPE, stderr=err, cwd=code.dir, timeout=max(600, rows / 50))
    t_exit = time.time()
    if out.returncode != 0:
        raise RuntimeError(f"cdc replay --dry-run exited with {out.returncode}:\n{log_path.read_text()[-3000:]}")
    summary = json.loads(out.stdout.decode().strip().splitlines()[-1])
    ready = next((log_ts(line) for line in read_log(log_path) if line.get("msg", "").startswith("replaying from")),
                 None)
    result = {"seconds_total": round(t_exit - t0, 3), "seconds_startup": round(ready - t0, 3) if ready else None,
              "rows": summary.get("rows"), "rows_per_s_total": round(rows / (t_exit - t0), 1),
              "rows_per_s_after_startup": round(rows / (t_exit - ready), 1) if ready else None,
              "log": str(log_path)}
    log(f"dry-run {i}{label}: {result['rows']} rows in {t_exit - t0:.2f}s = {result['rows_per_s_total']} rows/s")
    return result


def decode_once(i: int, ep, start: BinlogPosition, end: BinlogPosition) -> dict:
    """pymysqlreplication alone over the same range: the decode ceiling for cdc."""
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    stream = BinLogStreamReader(
        connection_settings={"host": ep.mariadb_host, "port": ep.mariadb_port,
                             "user": ep.cdc_user, "passwd": ep.cdc_password},
        server_id=next(_server_ids), blocking=False, resume_stream=True,
        log_file=start.file, log_pos=start.pos,
        # The same schema filter and event set cdc asks for that matter here.
        only_schemas=[SCHEMA], only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent],
    )
    rows = values = 0
    reached = False
    try:
        for event in stream:
            if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)) and event.table == TABLE:
                for row in event.rows:  # .rows decodes the event
                    images = ((row["before_values"], row["after_values"]) if isinstance(event, UpdateRowsEvent)
                              else (row["values"],))
                    for image in images:
                        for _ in image.values():
                            values += 1
                    rows += 1
            if BinlogPosition(stream.log_file, event.packet.log_pos) >= end:
                reached = True
                break
    finally:
        stream.close()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    result = {"seconds": round(seconds, 3), "rows": rows, "values": values, "reached_end": reached,
              "rows_per_s": round(rows / seconds, 1), "cpu_seconds": round(cpu, 2)}
    log(f"decode {i}: {rows} rows in {seconds:.2f}s = {result['rows_per_s']} rows/s (reached end: {reached})")
    return result


# --------------------------------------------------------------------------- latency


class SearchPoller(threading.Thread):
    """Records when each latency row first shows up in a search.

    A hit's time is when the response arrived, so a row's measured latency can
    be up to one poll interval plus one search late, never early. `seen_after`
    keeps the other bound: when the poll before the one that found the row was
    sent (the row was not searchable then, or that poll would have found it).
    The truth lies between the two; `--search-interval` narrows the gap.
    """

    def __init__(self, es: Elasticsearch, index: str, first_id: int, interval: float = 0.1):
        super().__init__(name="search-poller", daemon=True)
        self.es, self.index, self.interval = es, index, interval
        self.seen: dict[int, float] = {}
        self.seen_after: dict[int, float] = {}
        self.watermark = first_id - 1  # every id <= watermark has been seen
        self.stop = threading.Event()
        self.polls = 0
        self.poll_seconds: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        previous_sent = time.time()
        while not self.stop.is_set():
            sent = time.time()
            try:
                resp = self.es.search(index=self.index, query={"range": {"id": {"gt": self.watermark}}},
                                      sort=[{"id": {"order": "asc", "unmapped_type": "long"}}], size=10_000, source=False, track_total_hits=False,
                                      filter_path="hits.hits._id")
                hits = resp.body.get("hits", {}).get("hits", [])
            except NotFoundError:
                hits = []  # cdc creates the index with its first bulk
            except ApiError as exc:  # e.g. 503 while the new index's shard is still being allocated
                self.errors.append(str(exc)[:200])
                hits = []
            received = time.time()
            self.polls += 1
            self.poll_seconds.append(received - sent)
            for hit in hits:
                if int(hit["_id"]) not in self.seen:
                    self.seen[int(hit["_id"])] = received
                    self.seen_after[int(hit["_id"])] = previous_sent
            previous_sent = sent
            while self.watermark + 1 in self.seen:
                self.watermark += 1
            self.stop.wait(max(0.0, sent + self.interval - time.time()))


class CheckpointWatcher(threading.Thread):
    """Records when the checkpoint's GTID sequence moves (= those commits are acknowledged)."""

    def __init__(self, path: Path, interval: float = 0.01):
        super().__init__(name="checkpoint-watcher", daemon=True)
        self.path, self.interval = path, interval
        self.times: list[float] = []
        self.seqs: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            cp = read_checkpoint(self.path)
            seq = gtid_seq(cp.get("gtid")) if cp else None
            if seq is not None and (not self.seqs or seq > self.seqs[-1]):
                self.times.append(time.time())
                self.seqs.append(seq)
            self.stop.wait(self.interval)

    def acked_at(self, seq: int) -> float | None:
        k = bisect.bisect_left(self.seqs, seq)
        return self.times[k] if k < len(self.times) else None


def write_config(work: Path, ep, rules: list[dict], **extra) -> Path:
    """`work`/rules/rules.yml and `work`/cdc.yml for the bench servers, with the checkpoint saved after every
    acknowledged batch (min_interval 0: the checkpoint file is these benches' view of "acknowledged", and the
    default 1 s throttle would hide up to a second); `extra`: more top-level config keys."""
    (work / "rules").mkdir(parents=True, exist_ok=True)
    (work / "rules" / "rules.yml").write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    config = work / "cdc.yml"
    config.write_text(yaml.safe_dump({
        "mysql": {"host": ep.mariadb_host, "port": ep.mariadb_port, "user": ep.cdc_user,
                  "password": ep.cdc_password, "server_id": next(_server_ids)},
        "elasticsearch": {"hosts": [ep.es_url]},
        "checkpoint": {"path": str(work / "checkpoint.json"), "min_interval": 0},
        "rules": str(work / "rules"), **extra}))
    config.chmod(0o600)  # it holds a password; cdc warns about world-readable ones
    return config


def pace(done: float, rate: float, started: float) -> None:
    """Sleep until `done` units of work at `rate` a second since `started` (monotonic) are due: an absolute
    schedule, so a slow moment is made up for, not dropped."""
    ahead = done / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)


def ack_latencies(commits: list[tuple[int, float]], acked_at, lo: float, hi: float) -> tuple[list[float], int]:
    """(commit -> acknowledged seconds, count never acknowledged) of the `commits` (GTID sequence number, when
    COMMIT returned) made in [lo, hi); `acked_at` is CheckpointWatcher.acked_at."""
    values, unacked = [], 0
    for seq, committed in commits:
        if lo <= committed < hi:
            at = acked_at(seq)
            if at is None:
                unacked += 1
            else:
                values.append(max(0.0, at - committed))
    return values, unacked


class RssSampler(threading.Thread):
    """cdc's resident memory once a second, to tell a steady state from growth."""

    def __init__(self, pid: int, interval: float = 1.0):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.time()
        while not self.stop.is_set():
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb:
                self.samples.append((round(time.time() - t0, 1), round(kb / 1024, 1)))
            self.stop.wait(self.interval)

    def slope_mb_per_min(self) -> float | None:
        """Least-squares slope, skipping the first 5 s (imports, first batches, allocator warm-up)."""
        pts = [(t, mb) for t, mb in self.samples if t >= 5]
        if len(pts) < 3:
            return None
        mt = statistics.fmean(t for t, _ in pts)
        mm = statistics.fmean(mb for _, mb in pts)
        den = sum((t - mt) ** 2 for t, _ in pts)
        return round(60 * sum((t - mt) * (mb - mm) for t, mb in pts) / den, 2) if den else None


def latency_run(ep, es, code: Code, run_dir: Path, tag: str, seconds: float, rate: int, rows_per_tx: int,
                refresh: str, label: str = "", search_interval: float = 0.1) -> dict:
    code_name = code.name  # `code` is reused below for the exit code
    index = f"{INDEX_PREFIX}-{tag}-latency-{refresh.replace('default', 'd')}{label}".lower()
    workdir = run_dir / f"latency-{refresh}{label}"
    if refresh != "default":
        # Created up front only to change the refresh interval; mappings stay dynamic, as cdc leaves them.
        es.indices.create(index=index, settings={"index": {"refresh_interval": refresh}})
    config = write_cdc_config(workdir, ep, index, "end", code)
    # cdc's own latency histograms, scraped at the end: they split the end-to-end
    # figure into "before cdc read the commit" and "cdc's part".
    metrics_port = _free_port()
    raw = yaml.safe_load(config.read_text())
    raw["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": metrics_port}
    config.write_text(yaml.safe_dump(raw))
    cdc = Cdc(code, config, workdir / "cdc.log")
    deadline = time.time() + 60
    while cdc.ready_at() is None:
        cdc.check_alive()
        if time.time() > deadline:
            cdc.stop()
            raise RuntimeError("cdc did not start within 60 s")
        time.sleep(0.05)
    rss_start = proc_status_kb(cdc.proc.pid, "VmRSS")
    cpu_start = proc_cpu(cdc.proc.pid)
    pids = server_pids()
    server_cpu0 = {name: proc_cpu(pid) for name, pid in pids.items() if pid}

    conn = admin_conn(ep, autocommit=True)  # each INSERT is its own transaction
    seq0 = gtid_seq(scalar(conn, "SELECT @@gtid_binlog_pos"))
    first_id = LATENCY_ID_BASE + 1
    poller = SearchPoller(es, index, first_id, search_interval)
    watcher = CheckpointWatcher(workdir / "checkpoint.json")
    rss = RssSampler(cdc.proc.pid)
    poller.start()
    watcher.start()
    rss.start()

    rng = random.Random(7)
    committed: dict[int, float] = {}  # id -> when COMMIT returned to the client
    commit_durations: list[float] = []
    tx_commit_times: list[float] = []  # per transaction, in commit (= GTID) order
    tick = 0.01
    interval = rows_per_tx / rate  # seconds between transactions
    next_id = first_id
    t_begin = time.time()
    with conn.cursor() as cur:
        while True:
            t_tick = time.time()
            if t_tick - t_begin >= seconds:
                break
            # Pace on an absolute schedule: a slow tick is made up for, not dropped.
            due = int((t_tick - t_begin) / interval) + 1
            while len(tx_commit_times) < due:
                ids = list(range(next_id, next_id + rows_per_tx))
                t_commit = time.time()
                rows = [row_values(rng, i, t_commit) for i in ids]
                if rows_per_tx == 1:
                    cur.execute(INSERT_SQL, rows[0])
                else:
                    cur.executemany(INSERT_SQL, rows)
                t_done = time.time()
                commit_durations.append(t_done - t_commit)
                tx_commit_times.append(t_done)
                for i in ids:
                    committed[i] = t_done
                next_id += rows_per_tx
            time.sleep(max(0.0, t_tick + tick - time.time()))
    t_end = time.time()
    seq_last = gtid_seq(scalar(conn, "SELECT @@gtid_binlog_pos"))
    conn.close()
    n_tx = len(tx_commit_times)
    # GTIDs map to our transactions only if nothing else wrote to the server meanwhile.
    gtids_ok = seq0 is not None and seq_last == seq0 + n_tx
    last_id = next_id - 1

    drain_deadline = time.time() + 30
    while time.time() < drain_deadline:
        if poller.watermark >= last_id and (not gtids_ok or (watcher.seqs and watcher.seqs[-1] >= seq_last)):
            break
        time.sleep(0.1)
    for thread in (poller, watcher, rss):
        thread.stop.set()
        thread.join()
    rss_end = proc_status_kb(cdc.proc.pid, "VmRSS")
    cpu_end = proc_cpu(cdc.proc.pid)
    t_measured = time.time()
    histograms = _scrape_latency(metrics_port)
    server_cores = {}
    for name, before in server_cpu0.items():
        after = proc_cpu(pids[name])
        if before is not None and after is not None:
            server_cores[name] = round((after - before) / (t_measured - t_begin), 2)
    code, _ = cdc.stop()

    searchable = [poller.seen[i] - t for i, t in committed.items() if i in poller.seen]
    searchable_lower = [max(0.0, poller.seen_after[i] - t) for i, t in committed.items() if i in poller.seen]
    acked: list[float] = []
    if gtids_ok:
        for n, t in enumerate(tx_commit_times):
            at = watcher.acked_at(seq0 + n + 1)
            if at is not None:
                acked.append(at - t)

    def stats(values: list[float]) -> dict:
        return {"n": len(values), "p50": _r(pct(values, 50)), "p90": _r(pct(values, 90)),
                "p99": _r(pct(values, 99)), "max": _r(max(values) if values else None)}

    result = {
        "index": index,
        "code": code_name,
        "refresh_interval": refresh,
        "log": str(cdc.log_path),
        "seconds": round(t_end - t_begin, 2),
        "target_rows_per_s": rate,
        "rows_per_transaction": rows_per_tx,
        "rows_written": len(committed),
        "achieved_rows_per_s": round(len(committed) / (t_end - t_begin), 1),
        "commit_call_ms_p50": _r(pct(commit_durations, 50), 1000),
        "commit_call_ms_p99": _r(pct(commit_durations, 99), 1000),
        "commit_to_searchable_s": stats(searchable),
        "commit_to_searchable_lower_bound_s": stats(searchable_lower),
        "search_interval_s": search_interval,
        "never_seen": len(committed) - len(searchable),
        "commit_to_acknowledged_s": stats(acked) if gtids_ok else None,
        # Cumulative bucket counts {le: count} of cdc's own histograms (absent in older code).
        "cdc_histograms": histograms,
        "gtids_contiguous": gtids_ok,
        "search_polls": poller.polls,
        "search_poll_ms_p50": _r(pct(poller.poll_seconds, 50), 1000),
        "search_poll_ms_p99": _r(pct(poller.poll_seconds, 99), 1000),
        "search_errors": poller.errors[:5],
        "cdc_rss_mb_start": round(rss_start / 1024, 1) if rss_start else None,
        "cdc_rss_mb_end": round(rss_end / 1024, 1) if rss_end else None,
        "cdc_rss_growth_mb_per_min": rss.slope_mb_per_min(),
        "cdc_rss_mb_samples": rss.samples,
        # Averaged from the writer's start to the end of the drain wait.
        "cdc_cpu_cores": round((cpu_end - cpu_start) / (t_measured - t_begin), 2) if cpu_end and cpu_start else None,
        "server_cpu_cores": server_cores,
        "exit_code": code,
        "summary": cdc.summary(),
        "log_problems": cdc.problems()[:20],
    }
    s, a = result["commit_to_searchable_s"], result["commit_to_acknowledged_s"] or {}
    log(f"latency {code_name} (refresh {refresh}): {result['achieved_rows_per_s']} rows/s; searchable p50 {s['p50']}s "
        f"p99 {s['p99']}s (lower bound p99 {result['commit_to_searchable_lower_bound_s']['p99']}s); acknowledged p50 {a.get('p50')}s p99 {a.get('p99')}s; never seen {result['never_seen']}; "
        f"cdc RSS {result['cdc_rss_mb_start']} -> {result['cdc_rss_mb_end']} MB")
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape_latency(port: int) -> dict:
    import urllib.request

    out: dict = {}
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError as exc:
        return {"error": str(exc)}
    for line in text.splitlines():
        for name in ("cdc_commit_to_acknowledged_seconds", "cdc_read_to_acknowledged_seconds"):
            if line.startswith(name + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out.setdefault(name, {})[le] = float(line.rsplit(" ", 1)[1])
    return out


def _r(value: float | None, scale: float = 1.0) -> float | None:
    return None if value is None else round(value * scale, 3)


# --------------------------------------------------------------------------- report


def versions(conn, es, code: Code) -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown")
    return {
        "mariadb": scalar(conn, "SELECT VERSION()"),
        # The integ-test-zip distribution answers GET / with 405, so ask the node.
        "elasticsearch": next(iter(es.nodes.info(node_id="_local")["nodes"].values()))["version"],
        "python": platform.python_version(),
        "mysql-replication": importlib.metadata.version("mysql-replication"),
        "PyMySQL": importlib.metadata.version("PyMySQL"),
        "elasticsearch-py": importlib.metadata.version("elasticsearch"),
        "orjson": importlib.metadata.version("orjson"),
        "cdc": importlib.metadata.version("cdc"),
        "cdc_commit_at_start": code.head,
        "cdc_code_sha256_16": code.sha256,
        "cdc_files_newer_than_commit": code.newer_than_head,
        "cdc_copied_from": str(code.source),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
    }


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def catchup_medians(runs: list[dict], dryruns: list[dict], decodes: list[dict]) -> dict:
    median = {key: median_of(runs, key) for key in
              ("seconds_total", "seconds_startup", "seconds_after_startup", "rows_per_s_total",
               "rows_per_s_after_startup", "cdc_cpu_seconds", "cdc_cpu_cores", "cdc_peak_rss_mb",
               "es_bulk_seconds")}
    median["dryrun_rows_per_s_after_startup"] = median_of(dryruns, "rows_per_s_after_startup")
    median["decode_rows_per_s"] = median_of(decodes, "rows_per_s")
    median["decode_seconds"] = median_of(decodes, "seconds")
    median["ratio_total"] = round(median["rows_per_s_total"] / median["decode_rows_per_s"], 3)
    median["ratio_after_startup"] = (round(median["rows_per_s_after_startup"] / median["decode_rows_per_s"], 3)
                                     if median["rows_per_s_after_startup"] else None)
    median["ratio_dryrun"] = (round(median["dryrun_rows_per_s_after_startup"] / median["decode_rows_per_s"], 3)
                              if median["dryrun_rows_per_s_after_startup"] else None)
    return median


# What --baseline compares: (result list, key, True if higher is better).
COMPARED = (
    ("catchup", "rows_per_s_after_startup", True),
    ("catchup", "rows_per_s_total", True),
    ("catchup", "seconds_after_startup", False),
    ("catchup", "cdc_cpu_seconds", False),
    ("catchup", "cdc_peak_rss_mb", False),
    ("dryrun", "rows_per_s_after_startup", True),
)


def compare(base_runs: list[dict], runs: list[dict], base_dryruns: list[dict], dryruns: list[dict]) -> dict:
    """Medians of the baseline and of the code measured, their ratio (code / baseline), and per-repeat ratios."""
    lists = {"catchup": (base_runs, runs), "dryrun": (base_dryruns, dryruns)}
    out = {}
    for kind, key, _ in COMPARED:
        base, new = lists[kind]
        b, n = median_of(base, key), median_of(new, key)
        pairs = [round(y[key] / x[key], 3) for x, y in zip(base, new) if x.get(key) and y.get(key) is not None]
        out[f"{kind}.{key}"] = {"baseline": b, "code": n, "ratio": round(n / b, 3) if b and n is not None else None,
                                "per_repeat_ratios": pairs}
    return out


def markdown(results: dict) -> str:
    out = [f"Command: `{results['command']}`", ""]
    b = results.get("backlog")
    if b:
        out += [f"Backlog: {b['rows']} row changes ({b['insert']} inserts, {b['update']} updates, {b['delete']} "
                f"deletes) in {b['transactions']} transactions, {b['binlog_mb']} MB of binlog, "
                f"{b['start']} .. {b['end']}", ""]
        runs, dec, dry = results["catchup"], results["decode"], results["dryrun"]
        out += ["| run | cdc total s | start-up s | cdc rows/s (total) | cdc rows/s (excl. start-up) | "
                "cdc CPU cores | peak RSS MB | ES bulk s | dry-run rows/s (excl. start-up) | decode-only rows/s | "
                "index == table |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, (r, d, y) in enumerate(zip(runs, dec, dry), 1):
            out.append(f"| {n} | {r['seconds_total']} | {r['seconds_startup']} | {r['rows_per_s_total']} | "
                       f"{r['rows_per_s_after_startup']} | {r['cdc_cpu_cores']} | {r['cdc_peak_rss_mb']} | "
                       f"{r['es_bulk_seconds']} | {y['rows_per_s_after_startup']} | {d['rows_per_s']} | "
                       f"{'yes' if r['correct'] else 'NO'} |")
        m = results["median"]
        out.append(f"| **median** | {m['seconds_total']} | {m['seconds_startup']} | {m['rows_per_s_total']} | "
                   f"{m['rows_per_s_after_startup']} | {m['cdc_cpu_cores']} | {m['cdc_peak_rss_mb']} | "
                   f"{m['es_bulk_seconds']} | {m['dryrun_rows_per_s_after_startup']} | {m['decode_rows_per_s']} | |")
        out += ["", f"cdc / decode-only (excl. start-up, medians): {m['ratio_after_startup']}; "
                f"including start-up: {m['ratio_total']}; cdc dry-run / decode-only: {m['ratio_dryrun']}", ""]
    comparison = results.get("comparison")
    if comparison:
        base_runs, runs = results["baseline"]["catchup"], results["catchup"]
        base_dry, dry = results["baseline"]["dryrun"], results["dryrun"]
        out += [f"Baseline: {results['baseline_code']['source']} (sha256 {results['baseline_code']['sha256_16']}); "
                f"code: {results['versions']['cdc_copied_from']} (sha256 {results['versions']['cdc_code_sha256_16']})",
                "",
                "| repeat | first | baseline rows/s (excl. start-up) | code rows/s (excl. start-up) | "
                "baseline CPU s | code CPU s | baseline dry-run rows/s | code dry-run rows/s | index == table |",
                "|---|---|---|---|---|---|---|---|---|"]
        for n, (b, r, bd, d) in enumerate(zip(base_runs, runs, base_dry, dry), 1):
            out.append(f"| {n} | {'baseline' if b['order'] == 1 else 'code'} | {b['rows_per_s_after_startup']} | "
                       f"{r['rows_per_s_after_startup']} | {b['cdc_cpu_seconds']} | {r['cdc_cpu_seconds']} | "
                       f"{bd['rows_per_s_after_startup']} | {d['rows_per_s_after_startup']} | "
                       f"{'yes' if b['correct'] and r['correct'] else 'NO'} |")
        out += ["", "| median | baseline | code | code / baseline | per-repeat ratios |", "|---|---|---|---|---|"]
        for kind, key, _ in COMPARED:
            c = comparison[f"{kind}.{key}"]
            out.append(f"| {kind} {key} | {c['baseline']} | {c['code']} | {c['ratio']} | "
                       f"{', '.join(map(str, c['per_repeat_ratios']))} |")
        out.append("")
    for lat in results.get("latency", []):
        s, a = lat["commit_to_searchable_s"], lat["commit_to_acknowledged_s"] or {}
        out += [f"Latency of {lat.get('code', 'code')}, refresh_interval {lat['refresh_interval']}: {lat['rows_written']} rows at "
                f"{lat['achieved_rows_per_s']} rows/s ({lat['rows_per_transaction']} row(s) per transaction) "
                f"for {lat['seconds']} s", "",
                "| measure | n | p50 s | p90 s | p99 s | max s |", "|---|---|---|---|---|---|",
                f"| commit -> searchable | {s['n']} | {s['p50']} | {s['p90']} | {s['p99']} | {s['max']} |",
                f"| commit -> acknowledged (checkpoint) | {a.get('n')} | {a.get('p50')} | {a.get('p90')} | "
                f"{a.get('p99')} | {a.get('max')} |",
                f"| cdc CPU cores | {lat.get('cdc_cpu_cores')} | | | | |", ""]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="row changes in the backlog")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--latency-rate", type=int, default=1000, help="rows per second written")
    parser.add_argument("--latency-rows-per-tx", type=int, default=1)
    parser.add_argument("--latency-refresh", default="default",
                        help="comma-separated index refresh intervals to test, e.g. default,200ms")
    parser.add_argument("--latency-repeat", type=int, default=1,
                        help="latency runs per refresh interval (with --baseline: of each code, alternating)")
    parser.add_argument("--search-interval", type=float, default=0.1, metavar="SECONDS",
                        help="how often the latency poller searches for new rows (its resolution)")
    parser.add_argument("--charset", help="the table's default charset, e.g. latin1 (its notes then hold accented "
                                          "letters); default: the server's (utf8mb4)")
    parser.add_argument("--skip-catchup", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--code", type=Path, default=ROOT, metavar="DIR",
                        help="measure the cdc package in DIR/cdc (default: this work tree, copied at start)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="wait up to this long for cdc/ to match the last commit before copying it")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the cdc package in DIR/cdc on the same backlog, alternating with --code "
                             "(which goes first swaps every repeat), and compare the two")
    args = parser.parse_args()
    global CHARSET, NOTE_TEXT
    if args.charset:
        CHARSET, NOTE_TEXT = args.charset, ACCENTED

    ep = servers.up()
    es = Elasticsearch(ep.es_url, request_timeout=120)
    tag = time.strftime("%Y%m%d-%H%M%S")
    run_dir = STATE / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    # Old bench indexes only cost heap and disk on the bench's own cluster.
    for name in es.indices.get(index=f"{INDEX_PREFIX}-*", expand_wildcards="open").body:
        es.indices.delete(index=name)
    conn = admin_conn(ep)
    code = Code(run_dir, args.code.resolve(), args.wait_quiet)
    base = Code(run_dir, args.baseline.resolve(), name="baseline") if args.baseline else None
    results: dict = {
        "command": " ".join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT))
                             else sys.executable, os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run_dir),
        "versions": versions(conn, es, code),
        "cdc_extra_config": code.extra_config,
        **({"baseline_code": {"source": str(base.source), "sha256_16": base.sha256,
                              "extra_config": base.extra_config}} if base else {}),
        "loadavg_start": os.getloadavg(),
    }
    log(f"versions: {results['versions']}; load average {results['loadavg_start']}")

    if not args.skip_catchup:
        setup_schema(conn)
        start = master_position(conn)
        log(f"writing a backlog of {args.rows} row changes from {start}")
        backlog = generate_backlog(conn, args.rows)
        end = end_on_marker_commit(conn)
        truth = table_truth(conn)
        backlog.update(start=str(start), end=str(end), binlog_mb=round(binlog_bytes(conn, start, end) / 2**20, 1))
        results["backlog"] = backlog
        log(f"backlog: {backlog}")
        runs, decodes, dryruns = [], [], []
        base_runs: list[dict] = []
        base_dryruns: list[dict] = []
        timeout = max(600, args.rows / 50)
        # Interleave the three (and the baseline) so slow phases of a noisy machine hit them alike.
        for i in range(1, args.repeat + 1):
            pairs = [(code, runs, dryruns, "")]
            if base:
                pairs.append((base, base_runs, base_dryruns, "-baseline"))
                if i % 2:
                    pairs.reverse()  # the baseline first in odd repeats, second in even ones
            for order, (c, out, _, label) in enumerate(pairs, 1):
                out.append(catchup_once(i, ep, es, c, run_dir, tag, start, end, backlog["rows"], truth, timeout,
                                        label))
                out[-1]["order"] = order
            decodes.append(decode_once(i, ep, start, end))
            for c, _, out, label in pairs:
                out.append(dryrun_once(i, ep, c, run_dir, tag, start, end, backlog["rows"], label))
        results["catchup"], results["decode"], results["dryrun"] = runs, decodes, dryruns
        results["median"] = catchup_medians(runs, dryruns, decodes)
        all_runs, all_dryruns = runs + base_runs, dryruns + base_dryruns
        if base:
            base_median = catchup_medians(base_runs, base_dryruns, decodes)
            results["baseline"] = {"catchup": base_runs, "dryrun": base_dryruns, "median": base_median}
            results["comparison"] = compare(base_runs, runs, base_dryruns, dryruns)
        results["all_correct"] = (all(r["correct"] for r in all_runs)
                                  and all(d["rows"] == backlog["rows"] and d["reached_end"] for d in decodes)
                                  and all(y["rows"] == backlog["rows"] for y in all_dryruns))

    if not args.skip_latency:
        if args.skip_catchup:
            setup_schema(conn)
        results["latency"] = []
        for refresh in args.latency_refresh.split(","):
            for i in range(1, args.latency_repeat + 1):
                # With a baseline, the two alternate (old, new, new, old, ...) like the catch-up runs.
                order = [code] if base is None else ([base, code] if i % 2 else [code, base])
                for c in order:
                    setup_schema(conn)  # an empty table: every run writes the same ids
                    results["latency"].append(latency_run(
                        ep, es, c, run_dir, tag, args.latency_seconds, args.latency_rate, args.latency_rows_per_tx,
                        refresh.strip(), label=f"-{c.name}-{i}", search_interval=args.search_interval))
    conn.close()
    results["loadavg_end"] = os.getloadavg()
    # If this differs from cdc_commit_at_start, the work tree moved during the run;
    # the numbers are still all of the copy taken at the start (cdc_code_sha256_16).
    results["cdc_commit_at_end"] = git_head()
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(markdown(results))
    print(f"\nresults: {os.path.relpath(args.results, ROOT)}; logs and configs: {run_dir}")
    return 0 if results.get("all_correct", True) else 1


if __name__ == "__main__":
    sys.exit(main())
