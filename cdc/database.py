"""Questions cdc asks the MySQL/MariaDB server over a normal connection (PyMySQL).

Start-up checks (each failure says how to fix it), the current binlog position,
the binlog files still on the server, and the table facts rules need (primary
keys, which text columns are MariaDB JSON).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace

import pymysql

from .config import MysqlConfig
from .errors import PreflightError, PurgedPositionError, SourceConnectionError
from .model import BinlogPosition
from .rules import Rule, RuleSet

log = logging.getLogger("cdc.database")


@dataclass(frozen=True)
class ServerInfo:
    version: str
    mariadb: bool
    server_id: int


class Database:
    def __init__(self, config: MysqlConfig):
        self.config = config
        try:
            self.conn = pymysql.connect(
                host=config.host, port=config.port, user=config.user, password=config.password,
                connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
                autocommit=True, charset="utf8mb4",
                ssl={"ca": config.ssl_ca} if config.ssl_ca else None,
            )
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            msg = f"cannot connect to MySQL at {config.host}:{config.port} as {config.user!r}: {exc.args[-1]}"
            # 1045 access denied is a set-up problem, everything else may pass.
            raise (PreflightError(msg) if code == 1045 else SourceConnectionError(msg)) from None
        version = self.scalar("SELECT VERSION()")
        self.info = ServerInfo(
            version=version,
            mariadb=("mariadb" in version.lower()) if config.flavor == "auto" else config.flavor == "mariadb",
            server_id=int(self.scalar("SELECT @@server_id")),
        )

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass

    def rows(self, sql: str, args=None) -> list[dict]:
        try:
            with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] >= 2000:
                raise SourceConnectionError(f"MySQL connection lost: {exc.args[-1]}") from None
            raise

    def scalar(self, sql: str, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
            return row[0] if row else None

    def variables(self, *names: str) -> dict[str, str]:
        placeholders = ",".join(["%s"] * len(names))
        rows = self.rows(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({placeholders})", names)
        return {r["Variable_name"].lower(): str(r["Value"]) for r in rows}

    # ------------------------------------------------------------------ positions
    def binary_log_status(self) -> dict:
        # MySQL 8.4 removed SHOW MASTER STATUS (dev.mysql.com/doc/refman/8.4/en/show-binary-log-status.html);
        # MariaDB 10.11 has only SHOW MASTER STATUS (and SHOW BINLOG STATUS).
        try:
            rows = self.rows("SHOW BINARY LOG STATUS")
        except pymysql.err.ProgrammingError:
            rows = self.rows("SHOW MASTER STATUS")
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in (1227,):
                raise PreflightError(
                    f"user {self.config.user!r} may not read the binlog position: "
                    "GRANT REPLICATION CLIENT ON *.* TO the cdc user") from None
            raise
        if not rows:
            raise PreflightError("the binary log is off: start the server with log_bin (log-bin=binlog)")
        return rows[0]

    def current_position(self) -> tuple[BinlogPosition, str | None]:
        """The end of the binlog now, with the matching GTID state."""
        status = self.binary_log_status()
        position = BinlogPosition(status["File"], int(status["Position"]))
        if self.info.mariadb:
            return position, self.gtid_at(position)
        gtid = (status.get("Executed_Gtid_Set") or "").replace("\n", "") or None
        return position, gtid

    def gtid_at(self, position: BinlogPosition) -> str | None:
        """MariaDB's GTID state at a file/pos (BINLOG_GTID_POS); None on MySQL or if unknown."""
        if not self.info.mariadb:
            return None
        value = self.scalar("SELECT BINLOG_GTID_POS(%s, %s)", (position.file, position.pos))
        return value or None

    def binlog_files(self) -> list[str]:
        return [r["Log_name"] for r in self.rows("SHOW BINARY LOGS")]

    def check_position_available(self, position: BinlogPosition) -> None:
        files = self.binlog_files()
        if position.file not in files:
            raise PurgedPositionError(
                f"binlog file {position.file} (position {position}) is no longer on the server "
                f"(oldest is {files[0] if files else 'none'}): changes after it are lost to cdc. "
                "Rebuild the index from a snapshot, then start from the current position "
                "(remove the checkpoint and set start.position).")

    # ------------------------------------------------------------------ checks
    def preflight(self, reads_binlog: bool = True) -> list[str]:
        """Check the server is set up for CDC. Raise with every problem; return warnings.

        `reads_binlog=False` (a snapshot copy beside a running daemon) skips the server_id check.
        """
        problems: list[str] = []
        warnings: list[str] = []
        names = ["log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata",
                 "binlog_row_value_options", "binlog_transaction_compression", "log_bin_compress",
                 "gtid_mode"]
        v = self.variables(*names)
        if v.get("log_bin", "OFF").upper() != "ON":
            problems.append("log_bin is OFF: start the server with log-bin=<name> (the binlog is cdc's source)")
        expected = {"binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
        for name, want in expected.items():
            have = v.get(name)
            if have is None:
                problems.append(f"{name} is not supported by this server ({self.info.version}); "
                                "cdc needs MySQL >= 8.0.14 or MariaDB >= 10.5")
            elif have.upper() != want:
                problems.append(f"{name}={have}: set {name}={want} (SET GLOBAL {name}='{want}' and in my.cnf)")
        if v.get("binlog_row_value_options", "").upper() == "PARTIAL_JSON":
            problems.append("binlog_row_value_options=PARTIAL_JSON: set it to '' so JSON updates carry whole values")
        if v.get("binlog_transaction_compression", "OFF").upper() == "ON":
            problems.append("binlog_transaction_compression=ON: set it OFF (compressed transactions cannot be read)")
        if v.get("log_bin_compress", "OFF").upper() == "ON":
            problems.append("log_bin_compress=ON: set it OFF (compressed events cannot be read)")
        if not self.info.mariadb and v.get("gtid_mode", "OFF").upper() != "ON":
            warnings.append("gtid_mode is OFF: cdc works by file/position, but cannot follow a failover by GTID")
        problems.extend(self._check_grants())
        if self.info.server_id == self.config.server_id:
            problems.append(f"mysql.server_id={self.config.server_id} is the server's own server_id: "
                            "choose a number no other server or replica uses")
        clash, note = self._server_id_in_use() if reads_binlog else (None, None)
        if clash:
            problems.append(clash)
        if note:
            warnings.append(note)
        if problems:
            raise PreflightError("the MySQL server is not ready for cdc:\n  - " + "\n  - ".join(problems))
        return warnings

    def _check_grants(self) -> list[str]:
        grants = " ".join(r[0] if isinstance(r, tuple) else next(iter(r.values()))
                          for r in self.rows("SHOW GRANTS")).upper()
        if "ALL PRIVILEGES ON *.*" in grants:
            return []
        missing = []
        if "REPLICATION SLAVE" not in grants and "REPLICATION REPLICA" not in grants:
            missing.append("REPLICATION SLAVE")
        if not any(p in grants for p in ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER")):
            missing.append("REPLICATION CLIENT")
        if not re.search(r"GRANT [^`]*\bSELECT\b", grants):
            missing.append("SELECT")
        if missing:
            return [f"user {self.config.user!r} lacks {', '.join(missing)}: "
                    f"GRANT {', '.join(missing)} ON *.* TO the cdc user"]
        return []

    def _server_id_in_use(self) -> tuple[str | None, str | None]:
        sql = "SHOW SLAVE HOSTS" if self.info.mariadb else "SHOW REPLICAS"
        # A reader that just died (crash, SIGKILL) stays registered until the
        # server fails to send it a heartbeat, so give a stale entry a few
        # heartbeat periods to go away before calling it a clash.
        deadline = time.monotonic() + max(5.0, 3 * self.config.heartbeat)
        while True:
            try:
                hosts = self.rows(sql)
            except pymysql.err.MySQLError:
                return None, (f"could not run {sql} to check that server_id {self.config.server_id} is unused "
                              "(MariaDB: GRANT REPLICATION MASTER ADMIN; MySQL: REPLICATION SLAVE)")
            clash = [h for h in hosts if int(h.get("Server_id", 0)) == self.config.server_id]
            if not clash:
                return None, None
            if time.monotonic() > deadline:
                host = clash[0].get("Host") or "unknown host"
                return (f"server_id {self.config.server_id} is already used by a replica ({host}): two readers "
                        "with one id make the server drop one of them; give each cdc process its own "
                        "mysql.server_id"), None
            time.sleep(0.5)

    # ------------------------------------------------------------------ rules
    def resolve_rules(self, rules: RuleSet) -> RuleSet:
        """Check each rule against the schema and fill in id columns and JSON columns."""
        problems: list[str] = []
        resolved: list[Rule] = []
        for rule in rules.rules:
            columns = self.rows(
                "SELECT COLUMN_NAME AS name, DATA_TYPE AS type, COLUMN_KEY AS ckey FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (rule.schema, rule.table))
            if not columns:
                problems.append(f"{rule.source}: table {rule.name} does not exist (or the cdc user cannot see it)")
                continue
            names = [c["name"] for c in columns]
            id_columns = rule.id_columns
            if id_columns:
                unknown = [c for c in id_columns if c not in names]
                if unknown:
                    problems.append(f"{rule.source}: id column(s) {', '.join(unknown)} not in {rule.name} "
                                    f"(columns: {', '.join(names)})")
                    continue
            else:
                pk = [r["name"] for r in self.rows(
                    "SELECT COLUMN_NAME AS name FROM information_schema.KEY_COLUMN_USAGE "
                    "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s AND CONSTRAINT_NAME='PRIMARY' "
                    "ORDER BY ORDINAL_POSITION", (rule.schema, rule.table))]
                if not pk:
                    problems.append(f"{rule.source}: table {rule.name} has no primary key; "
                                    "name the column(s) that identify a row with `id:`")
                    continue
                id_columns = tuple(pk)
            json_columns = frozenset(c["name"] for c in columns if c["type"].lower() == "json")
            if self.info.mariadb:
                json_columns |= self._mariadb_json_columns(rule.schema, rule.table)
            resolved.append(replace(rule, id_columns=id_columns, json_columns=json_columns))
        if problems:
            raise PreflightError("rules do not match the database:\n  - " + "\n  - ".join(problems))
        return rules.replace(resolved)

    def _mariadb_json_columns(self, schema: str, table: str) -> frozenset[str]:
        # MariaDB's JSON is LONGTEXT plus CHECK (json_valid(`col`)), so the binlog
        # and information_schema.COLUMNS both call it text (mariadb.com/kb/en/json-data-type).
        try:
            rows = self.rows(
                "SELECT CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA=%s AND TABLE_NAME=%s", (schema, table))
        except pymysql.err.MySQLError:
            return frozenset()
        found = set()
        for row in rows:
            match = re.fullmatch(r"\s*json_valid\(`([^`]+)`\)\s*", row["clause"] or "", re.I)
            if match:
                found.add(match.group(1))
        return frozenset(found)


