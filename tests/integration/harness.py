"""Run the real `cdc` command against the real servers, and compare Elasticsearch with MariaDB or MySQL."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml
from elasticsearch import helpers
from opensearchpy import OpenSearch
from opensearchpy import helpers as opensearch_helpers

# Every pytest process (xdist workers, and other engineers' runs on the shared servers) takes its
# own block of 1,000 ids, so no two concurrent readers ever share a server_id; replay uses id + 1.
_server_ids = iter(range(100_000 + (os.getpid() % 100_000) * 1_000, 100_000 + (os.getpid() % 100_000 + 1) * 1_000, 2))


# Run a test on both source servers: MariaDB 10.11 and MySQL 9.7 (the `source` fixture,
# tests/integration/conftest.py; its `source_servers` and `db` are then that server's).
both_sources = pytest.mark.parametrize("source", ["mariadb", "mysql"], indirect=True)
mysql_only = pytest.mark.parametrize("source", ["mysql"], indirect=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Admin:
    """An admin session on the source server (MariaDB or MySQL) for setting up and changing test data."""

    def __init__(self, endpoints, database: str | None = None):
        self.conn = pymysql.connect(
            host=endpoints.mariadb_host, port=endpoints.mariadb_port,
            user=endpoints.admin_user, password=endpoints.admin_password,
            database=database, autocommit=True, charset="utf8mb4",
        )
        self.mysql = "mariadb" not in self.conn.get_server_info().lower()

    def seq(self, n: int) -> str:
        """A table of the numbers 1..n in a column `seq`, for INSERT ... SELECT: MariaDB's sequence
        engine table, or on MySQL a recursive common table expression (its depth raised to n)."""
        if not self.mysql:
            return f"seq_1_to_{n}"
        self.execute(f"SET SESSION cte_max_recursion_depth = {max(n, 1000)}")
        return (f"(WITH RECURSIVE s (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < {n}) "
                f"SELECT seq FROM s) AS seq_1_to_{n}")

    def gtid_state(self) -> str:
        """The server's GTIDs so far: MariaDB domain-server-seq positions, MySQL's uuid:1-N set."""
        return self.execute("SELECT @@GLOBAL.gtid_executed" if self.mysql else "SELECT @@gtid_binlog_pos")[0][0]

    @property
    def replicas_statement(self) -> str:
        """What lists the binlog readers (where cdc looks for a clashing server_id)."""
        return "SHOW REPLICAS" if self.mysql else "SHOW SLAVE HOSTS"

    def execute(self, *statements: str, args=None):
        with self.conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql, args)
            return cur.fetchall()

    def query(self, sql: str, args=None) -> list[dict]:
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def close(self):
        try:
            self.conn.close()
        except Exception:  # already closed (e.g. the server was restarted under it)
            pass


@dataclass
class CdcProcess:
    """One `cdc` process; its JSON log lines are kept in a file."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def popen(self) -> subprocess.Popen:
        """The process, once `start` ran."""
        assert self.proc is not None, "not started"
        return self.proc

    def start(self) -> "CdcProcess":
        self._log = open(self.log_path, "ab")
        # Only the long-running commands take logging options.
        logging_flags = ["--log-format", "json", "--log-level", "DEBUG"] if self.args[0] in (
            "run", "replay", "snapshot") else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc", *self.args, *logging_flags],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        return self

    def logs(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line})
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, *needles: str, timeout: float = 60) -> None:
        """Wait until any of `needles` is in the log; fail at once if cdc exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if any(needle in text for needle in needles):
                return
            if self.proc and self.proc.poll() is not None:
                self._log.close()
                raise AssertionError(f"cdc exited with {self.proc.returncode} before logging {needles}:\n{text[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {needles} in cdc log:\n{self.text()[-4000:]}")

    def events(self, name: str, **fields: Any) -> list[dict]:
        """The JSON log records of `event` `name` (cdc/log.py lists them) whose fields match."""
        return [r for r in self.logs() if r.get("event") == name
                and all(r.get(k) == v for k, v in fields.items())]

    def wait_for_event(self, name: str, timeout: float = 60, **fields: Any) -> dict:
        """The first record of event `name` with these fields; fail at once if cdc exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name, **fields)
            if found:
                return found[0]
            if self.proc and self.proc.poll() is not None:
                self._log.close()
                raise AssertionError(f"cdc exited with {self.proc.returncode} before event {name} {fields}:\n"
                                     f"{self.text()[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for event {name} {fields} in cdc log:\n{self.text()[-4000:]}")

    def stopped(self) -> dict:
        """The last line of the run: counts of rows, transactions and actions, and the resume position."""
        [record] = self.events("stopped")
        return record

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_for_event("start", timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"cdc did not stop within {timeout}s after {sig}:\n{self.text()[-4000:]}")
        self._log.close()
        return code

    def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"cdc did not exit within {timeout}s:\n{self.text()[-4000:]}")
        self._log.close()
        return code


class CdcSetup:
    """A config + rules directory for one test."""

    def __init__(self, tmp_path: Path, servers, rules: list[dict], **overrides: Any):
        self.dir = tmp_path
        self.servers = servers
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "rules.yml").write_text(yaml.safe_dump({"rules": rules}))
        self.server_id = next(_server_ids)
        config: dict[str, Any] = {
            "mysql": {"host": servers.mariadb_host, "port": servers.mariadb_port, "user": servers.cdc_user,
                      "password": "${CDC_TEST_PASSWORD}", "server_id": self.server_id,
                      "read_timeout": 10, "heartbeat": 1},
            "elasticsearch": {"hosts": [servers.es_url], "request_timeout": 10},
            "checkpoint": {"path": "state/checkpoint.json", "min_interval": 0},
            "rules": "rules",
            "batch": {"max_interval": 0.2},
            "retry": {"initial_backoff": 0.2, "max_backoff": 2},
        }
        for dotted, value in overrides.items():
            section, _, key = dotted.partition("__")
            config.setdefault(section, {})[key] = value
        self.config_path = tmp_path / "cdc.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = {"CDC_TEST_PASSWORD": servers.cdc_password}
        self._runs = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "state" / "checkpoint.json"

    def checkpoint(self) -> dict | None:
        try:
            return json.loads(self.checkpoint_path.read_text())
        except FileNotFoundError:
            return None

    def saved(self) -> dict:
        """The checkpoint, where the test knows cdc saved one."""
        checkpoint = self.checkpoint()
        assert checkpoint is not None, f"no checkpoint at {self.checkpoint_path}"
        return checkpoint

    def position(self) -> tuple[str, int] | None:
        """The checkpoint's file/pos (other fields, e.g. snapshot bookkeeping, change on their own)."""
        saved = self.checkpoint()
        return (saved["file"], saved["pos"]) if saved else None

    def saved_position(self) -> tuple[str, int]:
        """`position`, where the test knows cdc saved a checkpoint."""
        saved = self.saved()
        return saved["file"], saved["pos"]

    def process(self, *args: str) -> CdcProcess:
        self._runs += 1
        return CdcProcess([*args, "--config", str(self.config_path)], self.dir / f"cdc-{self._runs}.log", self.env)

    def run(self) -> CdcProcess:
        proc = self.process("run").start()
        proc.wait_ready()
        # cdc logs where it starts just before it saves that first checkpoint;
        # tests that read the position right away must not see the gap.
        deadline = time.monotonic() + 10
        process = proc.proc
        assert process is not None  # started
        while not self.checkpoint_path.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc

    def output(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`cdc ARGS --config ...` with its stdout and stderr apart (a report on stdout, such as `--json`)."""
        return subprocess.run([sys.executable, "-m", "cdc", *args, "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env})

    def command(self, *args: str, timeout: float = 120) -> tuple[int, str]:
        proc = self.process(*args).start()
        code = proc.wait(timeout)
        return code, proc.text()


def binlog_position(db) -> tuple[str, int]:
    # MySQL 8.4 removed SHOW MASTER STATUS; MariaDB 10.11 has no SHOW BINARY LOG STATUS.
    file, pos = db.execute("SHOW BINARY LOG STATUS" if db.mysql else "SHOW MASTER STATUS")[0][:2]
    return file, int(pos)


def binlog_position_and_gtid(db) -> tuple[str, int, str]:
    """The end of the binlog and the GTID state there, in the form `cdc replay --from-gtid` takes."""
    if db.mysql:
        file, pos, _, _, gtid = db.execute("SHOW BINARY LOG STATUS")[0]
        return file, int(pos), gtid.replace("\n", "")
    file, pos = binlog_position(db)
    return file, pos, db.execute("SELECT BINLOG_GTID_POS(%s, %s)", args=(file, pos))[0][0]


def plain(value: Any) -> Any:
    """A MariaDB value as cdc indexes it, for the simple column types used in these tests."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def es_docs(es, index: str) -> dict[str, dict]:
    """The index's documents by id; `es` is an elasticsearch client or an opensearch-py one (which reads
    Elasticsearch too: the cluster tests read both engines with it)."""
    if not es.indices.exists(index=index):
        return {}
    opensearch = isinstance(es, OpenSearch)
    # A just-created index answers searches with 503 until its shard is active. (opensearch-py takes
    # a `timeout` for the request's own: the server's default, 30 s, then.)
    es.cluster.health(index=index, wait_for_status="yellow", **({} if opensearch else {"timeout": "30s"}))
    es.indices.refresh(index=index)
    # scan: a plain search returns at most 10,000 hits (index.max_result_window)
    scan = opensearch_helpers.scan if opensearch else helpers.scan
    return {hit["_id"]: hit["_source"] for hit in scan(es, index=index, query={"query": {"match_all": {}}})}


def db_docs(db, table: str, id_columns: list[str]) -> dict[str, dict]:
    out = {}
    for row in db.query(f"SELECT * FROM `{table}`"):
        doc_id = ":".join(str(row[c]) for c in id_columns)
        out[doc_id] = {k: plain(v) for k, v in row.items()}
    return out


def wait_until_equal(db, es, table: str, index: str, id_columns: list[str], timeout: float = 60) -> None:
    """Wait until the index holds exactly the table's rows (same ids, same values)."""
    deadline = time.monotonic() + timeout
    while True:
        want = db_docs(db, table, id_columns)
        try:
            have = es_docs(es, index)
        except Exception:
            have = {}
        if have == want:
            return
        if time.monotonic() > deadline:
            missing = sorted(set(want) - set(have))[:10]
            extra = sorted(set(have) - set(want))[:10]
            differ = [k for k in want if k in have and want[k] != have[k]][:5]
            raise AssertionError(
                f"{index} != {table} after {timeout}s: {len(want)} rows, {len(have)} docs; "
                f"missing {missing}, extra {extra}, differ "
                f"{[(k, want[k], have[k]) for k in differ]}")
        time.sleep(0.3)


def create_two_tables(db, rows: int = 0) -> None:
    """Tables `a` (simple key) and `b` (composite key), as WriteLoad writes them; `rows` rows in each."""
    db.execute("CREATE TABLE a (id INT PRIMARY KEY, v INT, s VARCHAR(20))",
               "CREATE TABLE b (k1 INT, k2 INT, amount DECIMAL(12,2), PRIMARY KEY (k1, k2))")
    if rows:
        db.execute(f"INSERT INTO a SELECT seq, seq * 2, CONCAT('s', seq) FROM {db.seq(rows)}")
        db.execute(f"INSERT INTO b SELECT seq DIV 10, seq MOD 10, seq / 4 FROM {db.seq(rows)}")


def index_rules(database: str, index_prefix: str, *tables: str) -> list[dict]:
    """One rule per table, each into its own index `<prefix>-<table>`."""
    return [{"schema": database, "table": t, "index": f"{index_prefix}-{t}"} for t in tables]


class WriteLoad:
    """A steady mix of inserts, updates, deletes and multi-row transactions on two tables."""

    def __init__(self, servers, database: str, rate: float = 150.0, seed: int = 7):
        self.admin = Admin(servers, database)
        self.rate = rate
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.ops = 0
        self.deleted_a = 0  # rows of `a` deleted so far, counted before the DELETE commits (never too few)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "WriteLoad":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        self.admin.close()
        if self.error:
            raise self.error

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self._one()
                self.ops += 1
                time.sleep(self.rng.expovariate(self.rate))
        except BaseException as exc:
            self.error = exc

    def _one(self) -> None:
        r = self.rng.random()
        k = self.rng.randrange(1, 400)
        if r < 0.45:
            self.admin.execute("INSERT INTO a (id, v, s) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE v = v + 1",
                               args=(k, self.rng.randrange(1000), f"s{k}"))
        elif r < 0.65:
            self.admin.execute("UPDATE a SET v = v + 1, s = CONCAT('u', v) WHERE id BETWEEN %s AND %s",
                               args=(k, k + 3))
        elif r < 0.75:
            self.deleted_a += 1  # before the commit: a reader that sees the delete sees it counted
            self.admin.execute("DELETE FROM a WHERE id = %s", args=(k,))
            self.deleted_a -= 1 - self.admin.conn.affected_rows()  # the row was gone already
        else:
            # a multi-statement transaction across both tables
            self.admin.execute("BEGIN")
            for line in range(self.rng.randrange(1, 6)):
                self.admin.execute("REPLACE INTO b (k1, k2, amount) VALUES (%s, %s, %s)",
                                   args=(k % 50, line, f"{self.rng.randrange(10**6)}.{self.rng.randrange(100):02d}"))
            if self.rng.random() < 0.3:
                self.admin.execute("DELETE FROM b WHERE k1 = %s AND k2 > 2", args=(k % 50,))
            self.admin.execute("COMMIT")


def matched(pattern: str, text: str, flags: int = 0) -> re.Match[str]:
    """`re.search` where the test expects a match (else an AssertionError showing the text's end)."""
    found = re.search(pattern, text, flags)
    assert found is not None, f"no {pattern!r} in:\n{text[-3000:]}"
    return found


def wait_for(what: str, check, timeout: float = 60, interval: float = 0.2):
    """`check()`'s first true value, polled until `timeout` (then an AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- the Kafka test broker
@contextlib.contextmanager
def kafka_lock(name: str, exclusive: bool):
    """A file lock in the broker's home: `.kafka-up.lock` around starting it (the warm-up in
    tests/conftest.py takes it too), `.kafka-tests.lock` shared by Kafka tests, exclusive for one
    that restarts the broker."""
    import kafka_broker

    kafka_broker.HOME.mkdir(parents=True, exist_ok=True)
    with open(kafka_broker.HOME / name, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def kafka_broker_up():
    """The test broker's bootstrap address, started once (under xdist: by the first worker that
    needs it, the others find it); stopped at the end if this started it."""
    import kafka_broker
    import pytest

    with kafka_lock(".kafka-up.lock", exclusive=True):
        was_running = kafka_broker.running()
        try:
            bootstrap = kafka_broker.up()
        except kafka_broker.BrokerError as exc:
            pytest.fail(f"could not start Kafka: {exc}", pytrace=False)
    yield bootstrap
    # Under xdist another worker may still use it; CI machines are thrown away after the run.
    if not was_running and not os.environ.get("CDC_KEEP_SERVERS") and not os.environ.get("PYTEST_XDIST_WORKER"):
        kafka_broker.down()
