"""Questions cdc asks the MySQL/MariaDB server over a normal connection (PyMySQL).

Start-up checks (each failure says how to fix it), the current binlog position,
the binlog files still on the server, and the table facts rules need (primary
keys, which text columns are MariaDB JSON).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import pymysql

from cdc.config import MysqlConfig
from cdc.errors import (PreflightError, SchemaChanged, SourceConnectionError, SourceError,
                        StartPositionError)
from cdc.model import BinlogPosition
from cdc.mysql.catalog import Catalog, ColumnInfo, TableChooser, TableInfo
from cdc.mysql.error_codes import (ER_BAD_FIELD, ER_COMMAND_FAILED, ER_SPECIFIC_ACCESS_DENIED,
                                   access_denied, connection_lost, error_code)
from cdc.mysql.pymysql_hooks import PacketResult, convert_row, install_pymysql_hooks, read_packet_rows

log = logging.getLogger("cdc.database")

T = TypeVar("T")



_FOREIGN_KEY = re.compile(r"CONSTRAINT `((?:[^`]|``)+)` FOREIGN KEY \(.*?\) REFERENCES `((?:[^`]|``)+)`[^\n]*?\)"
                          r"((?: ON (?:DELETE|UPDATE) (?:CASCADE|SET NULL|SET DEFAULT|RESTRICT|NO ACTION))*)")
_FK_ACTION = re.compile(r"ON (?:DELETE|UPDATE) (?:CASCADE|SET NULL|SET DEFAULT|RESTRICT|NO ACTION)")


def _text(value) -> str:
    # MySQL 8 returns some information_schema columns as bytes.
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


@dataclass(frozen=True)
class ServerInfo:
    version: str
    mariadb: bool
    server_id: int


@dataclass(frozen=True)
class PacketRows(Sequence[tuple]):
    """The rows of a SELECT as text-protocol packets; indexing gives a row as PyMySQL's cursor would."""

    packets: list[bytes]
    fields: tuple[tuple[str, int, int], ...]  # (name, field type, charset number) per column
    result: PacketResult  # its converters are PyMySQL's for these fields
    encoding: str

    def __len__(self) -> int:
        return len(self.packets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self.packets)))]
        return convert_row(self.result, self.packets[i], self.encoding)


class Database:
    def __init__(self, config: MysqlConfig):
        self.config = config
        install_pymysql_hooks()
        try:
            self.conn = pymysql.connect(
                host=config.host, port=config.port, user=config.user, password=config.password,
                connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
                autocommit=True, charset="utf8mb4",
                ssl=config.ssl_context(),
            )
        except pymysql.err.OperationalError as exc:
            msg = f"cannot connect to MySQL at {config.host}:{config.port} as {config.user!r}: {exc.args[-1]}"
            # A refused login is a set-up problem, everything else may pass.
            raise (PreflightError(msg) if access_denied(exc) else SourceConnectionError(msg)) from None
        except RuntimeError as exc:
            if "cryptography" not in str(exc):
                raise
            # PyMySQL logs a caching_sha2_password user (MySQL 8 and 9's default) in over TLS
            # when the server offers it, else with the server's RSA public key, which takes
            # the cryptography package (PyMySQL[rsa], one of cdc's dependencies).
            raise PreflightError(
                f"cannot log in to MySQL at {config.host}:{config.port} as {config.user!r}: the user authenticates "
                "with caching_sha2_password or sha256_password and the connection has no TLS, so PyMySQL needs "
                "the `cryptography` package to send the password under the server's RSA key. Install cdc with "
                "its dependencies (pip install 'PyMySQL[rsa]' brings it), or use TLS (mysql.ssl_ca)") from None
        version = self.scalar("SELECT VERSION()")
        self._consistency_logged = False  # say once which consistency method reads use
        self._session_set = False  # time zone and isolation level of consistent reads (`_consistent`)
        self.info = ServerInfo(
            version=version,
            mariadb=("mariadb" in version.lower()) if config.flavor == "auto" else config.flavor == "mariadb",
            server_id=int(self.scalar("SELECT @@server_id")),
        )
        # Which binlog history positions belong to. MariaDB has no server UUID, but
        # servers of one replication topology must have distinct server_ids.
        self.identity = (f"mariadb:{self.info.server_id}" if self.info.mariadb
                         else f"mysql:{self.scalar('SELECT @@server_uuid')}")

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
            if connection_lost(exc):
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

    # ------------------------------------------------------------------ consistent reads
    def consistent_read(self, sql: str, args: Sequence[Any] = ()) -> tuple[BinlogPosition, list[tuple]]:
        """One SELECT in a consistent snapshot, and the binlog position it is consistent with.

        For snapshots and `cdc verify`: the rows are the table as of that
        position, so a stream resumed there misses nothing and repeats nothing.
        Raises SchemaChanged for an unknown column (an ALTER since the caller
        planned the table), SourceError for other failures.
        """
        def work(cur) -> list[tuple]:
            cur.execute(sql, args)
            return list(cur.fetchall())

        return self._consistent(pymysql.cursors.Cursor, work)

    def consistent_read_raw(self, sql: str, args: Sequence[Any] = ()) -> tuple[BinlogPosition, "PacketRows"]:
        """`consistent_read`, with the rows left as the server's text-protocol row packets.

        For the snapshot's native row path (issue 13, cdc/copy/native.py): PyMySQL
        parses each packet into Python values (most of a snapshot's reading time);
        here it only frames them. `PacketRows` still gives any row as PyMySQL would
        (the last key of a chunk, and the Python path when the native one declines).
        """
        def work(cur: pymysql.cursors.Cursor) -> PacketRows:
            result = read_packet_rows(self.conn, cur.mogrify(sql, args))
            fields = tuple((f.name, f.type_code, f.charsetnr) for f in getattr(result, "fields", None) or ())
            return PacketRows(list(result.rows or ()), fields, result, self.conn.encoding)

        return self._consistent(pymysql.cursors.Cursor, work)

    def consistent_queries(self, work: Callable[[Callable[[str, Sequence[Any]], list[dict]]], T]
                           ) -> tuple[BinlogPosition, T]:
        """`work(query)` inside one consistent snapshot, and the binlog position it is consistent with.

        For documents built from several tables (cdc/rules/relations.py): every
        `query(sql, args)` (rows as dicts) sees the tables as of that one position.
        Errors as `consistent_read`; a lost connection is a SourceError too.
        """
        def with_cursor(cur) -> T:
            def query(sql: str, args: Sequence[Any]) -> list[dict]:
                cur.execute(sql, args)
                return list(cur.fetchall())
            return work(query)

        return self._consistent(pymysql.cursors.DictCursor, with_cursor)

    def _consistent(self, cursor_class: type, work: Callable[[Any], T]) -> tuple[BinlogPosition, T]:
        """`work(cursor)` in one REPEATABLE READ snapshot opened by `_begin_consistent`, then COMMIT."""
        try:
            cur: Any
            with self.conn.cursor(cursor_class) as cur:
                if not self._session_set:
                    # TIMESTAMP values as UTC, like the binlog gives them (pymysqlreplication uses
                    # utcfromtimestamp). Session settings: set once per connection (this one is never
                    # re-made), not per read: two round trips of a snapshot chunk's six (issue 13).
                    cur.execute("SET SESSION time_zone = '+00:00'")
                    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    self._session_set = True
                with self.conn.cursor() as plain:  # _begin_consistent reads SHOW results as tuples
                    position = self._begin_consistent(plain)
                try:
                    result = work(cur)
                finally:
                    cur.execute("COMMIT")
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == ER_BAD_FIELD:
                raise SchemaChanged(str(exc.args[-1])) from None
            raise SourceError(str(exc.args[-1] if exc.args else exc)) from None
        return position, result

    def _begin_consistent(self, cur) -> BinlogPosition:
        if self.info.mariadb:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            status = {name.lower(): value for name, value in cur.fetchall()}
            if not self._consistency_logged:
                log.info("snapshot consistency: MariaDB consistent snapshot with binlog_snapshot_position (no locks)")
                self._consistency_logged = True
            return BinlogPosition(status["binlog_snapshot_file"], int(status["binlog_snapshot_position"]))
        # MySQL has no binlog_snapshot_* variables: hold a global read lock only
        # while the snapshot starts and the position is read (Debezium's method).
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            try:
                cur.execute("SHOW BINARY LOG STATUS")
            except pymysql.err.ProgrammingError:
                cur.execute("SHOW MASTER STATUS")
            file, pos = cur.fetchone()[:2]
        finally:
            cur.execute("UNLOCK TABLES")
        if not self._consistency_logged:
            log.info("snapshot consistency: MySQL FLUSH TABLES WITH READ LOCK held while reading the position")
            self._consistency_logged = True
        return BinlogPosition(file, int(pos))

    # ------------------------------------------------------------------ positions
    def binary_log_status(self) -> dict:
        # MySQL 8.4 removed SHOW MASTER STATUS (dev.mysql.com/doc/refman/8.4/en/show-binary-log-status.html);
        # MariaDB 10.11 has only SHOW MASTER STATUS (and SHOW BINLOG STATUS).
        try:
            rows = self.rows("SHOW BINARY LOG STATUS")
        except pymysql.err.ProgrammingError:
            rows = self.rows("SHOW MASTER STATUS")
        except pymysql.err.OperationalError as exc:
            if error_code(exc) == ER_SPECIFIC_ACCESS_DENIED:
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

    def check_event_start(self, position: BinlogPosition) -> None:
        """Raise StartPositionError if no event starts at `position` (asked before anything is saved there).

        SHOW BINLOG EVENTS reads from the offset it is given, and refuses one inside an
        event with error 1220 ("Wrong offset or I/O error"); the end of the file is fine.
        Without the privilege to ask, the binlog stream finds out instead (error 1236).
        """
        try:
            self.rows("SHOW BINLOG EVENTS IN %s FROM %s LIMIT 1", (position.file, position.pos))
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == ER_COMMAND_FAILED:
                raise StartPositionError(not_an_event_start(position, str(exc.args[-1]))) from None
            log.debug("cannot check that an event starts at %s: %s", position, exc)

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
        for name, want, why in _REQUIRED:
            have = v.get(name)
            if have is None:
                problems.append(f"{name} is not supported by this server ({self.info.version}); "
                                "cdc needs MySQL >= 8.0.14 or MariaDB >= 10.5")
            elif have.upper() != want:
                problems.append(setting_fix(name, have, want, why))
        for name, bad, want, why in _REFUSED:
            have = v.get(name, "")
            if have.upper() == bad:
                problems.append(setting_fix(name, have, want, why))
        if not self.info.mariadb and v.get("gtid_mode", "OFF").upper() != "ON":
            warnings.append("gtid_mode is OFF: cdc works by file/position, but cannot follow a failover by GTID "
                            "(in my.cnf, under [mysqld]: gtid_mode = ON and enforce_gtid_consistency = ON)")
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

    def replica_ids(self) -> set[int] | None:
        """The server_ids of the readers the server lists (SHOW SLAVE HOSTS / SHOW REPLICAS); None if not allowed."""
        try:
            return {_listed_id(h) for h in self.rows("SHOW SLAVE HOSTS" if self.info.mariadb else "SHOW REPLICAS")}
        except pymysql.err.MySQLError:
            return None

    def _server_id_in_use(self) -> tuple[str | None, str | None]:
        sql = "SHOW SLAVE HOSTS" if self.info.mariadb else "SHOW REPLICAS"
        # A reader that just died (crash, SIGKILL) stays registered until the
        # server fails to send it a heartbeat, so give a stale entry a few
        # heartbeat periods to go away before calling it a clash.
        patience = max(5.0, 3 * self.config.heartbeat)
        deadline = time.monotonic() + patience
        said = False
        while True:
            try:
                hosts = self.rows(sql)
            except pymysql.err.MySQLError:
                return None, (f"could not run {sql} to check that server_id {self.config.server_id} is unused "
                              "(MariaDB: GRANT REPLICATION MASTER ADMIN; MySQL: REPLICATION SLAVE)")
            clash = [h for h in hosts if _listed_id(h) == self.config.server_id]
            if not clash:
                return None, None
            host = clash[0].get("Host") or "unknown host"
            if not said:
                # Not silent (a replay right after another one waits here for the first one's entry):
                # say what is awaited, for how long, and how to avoid it.
                log.info("server_id %d is listed in %s (%s); waiting up to %.0fs for the entry to go away: a "
                         "reader that just stopped stays listed until the server next fails to send it a "
                         "heartbeat (a replay can take another id with --server-id)", self.config.server_id, sql,
                         host, patience)
                said = True
            if time.monotonic() > deadline:
                return (f"server_id {self.config.server_id} is already used by a replica ({host}): two readers "
                        "with one id make the server drop one of them; give each cdc process its own "
                        "mysql.server_id"), None
            time.sleep(0.5)

    # ------------------------------------------------------------------ rules
    def catalog(self, chooser: TableChooser) -> Catalog:
        """The tables `chooser` (the rules) may name, from information_schema (a few queries per schema)."""
        schemas = [_text(r["name"]) for r in self.rows("SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA")]
        tables: dict[tuple[str, str], TableInfo] = {}
        for schema in sorted(chooser.schemas_among(schemas)):
            tables.update(self._schema_tables(schema, chooser))
        return Catalog(tuple(schemas), tables)

    def _schema_tables(self, schema: str, chooser: TableChooser) -> dict[tuple[str, str], TableInfo]:
        kinds = {_text(r["name"]): _text(r["type"]) for r in self.rows(
            "SELECT TABLE_NAME AS name, TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s",
            (schema,))}
        names = sorted(t for t in kinds if chooser.wants(schema, t))
        if not names:
            return {}
        where, args = "TABLE_SCHEMA=%s", [schema]
        if len(names) <= 500:  # else the whole schema: one query either way
            where += f" AND TABLE_NAME IN ({','.join(['%s'] * len(names))})"
            args += names
        columns: dict[str, list[ColumnInfo]] = {}
        for r in self.rows(
                "SELECT TABLE_NAME AS t, COLUMN_NAME AS name, DATA_TYPE AS dtype, COLUMN_TYPE AS ctype, "
                f"CHARACTER_SET_NAME AS cs, IS_NULLABLE AS nullable FROM information_schema.COLUMNS WHERE {where} "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION", args):
            columns.setdefault(_text(r["t"]), []).append(ColumnInfo(
                _text(r["name"]), _text(r["dtype"]).lower(), _text(r["ctype"]).lower(),
                _text(r["cs"]) if r["cs"] is not None else None, _text(r["nullable"]) == "YES"))
        keys: dict[str, list[str]] = {}
        for r in self.rows(
                f"SELECT TABLE_NAME AS t, COLUMN_NAME AS name FROM information_schema.KEY_COLUMN_USAGE WHERE {where} "
                "AND CONSTRAINT_NAME='PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION", args):
            keys.setdefault(_text(r["t"]), []).append(_text(r["name"]))
        unique: dict[str, dict[str, list[tuple[str, bool]]]] = {}  # table -> index -> (column, nullable)
        for r in self.rows(
                f"SELECT TABLE_NAME AS t, INDEX_NAME AS idx, COLUMN_NAME AS name, NULLABLE AS nullable "
                f"FROM information_schema.STATISTICS WHERE {where} AND NON_UNIQUE=0 "
                "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", args):
            unique.setdefault(_text(r["t"]), {}).setdefault(_text(r["idx"]), []).append(
                (_text(r["name"]), _text(r["nullable"] or "") == "YES"))
        json = self._mariadb_json_columns(schema) if self.info.mariadb else {}
        out = {}
        for name in names:
            cols = tuple(columns.get(name, ()))
            json_columns = frozenset(c.name for c in cols if c.data_type == "json") | json.get(name, frozenset())
            unique_keys = tuple(tuple(c for c, _ in index) for index in unique.get(name, {}).values()
                                if not any(nullable for _, nullable in index))
            out[(schema, name)] = TableInfo(schema, name, cols, tuple(keys.get(name, ())), json_columns,
                                            view="VIEW" in kinds[name].upper(), unique_keys=unique_keys)
        return out

    def leading_index_columns(self, schema: str, table: str) -> set[str]:
        """The columns that come first in some index of a table: `WHERE col IN (...)` can use an index."""
        return {_text(r["c"]) for r in self.rows(
            "SELECT COLUMN_NAME AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
            "AND SEQ_IN_INDEX=1", (schema, table))}

    def cascades_in_binlog(self) -> bool:
        """Whether the rows foreign-key cascades change are in the binlog: on MySQL 9.6 and later the
        SQL layer runs the cascades and logs their rows events (seen on 9.7.4), unless the read-only
        innodb_native_foreign_keys=ON leaves them to InnoDB; not on MariaDB or older MySQL."""
        if self.info.mariadb:
            return False
        return self.variables("innodb_native_foreign_keys").get("innodb_native_foreign_keys", "").upper() == "OFF"

    def cascading_foreign_keys(self, tables: list[tuple[str, str]]) -> list[str]:
        """Foreign keys whose ON DELETE/UPDATE changes rows of `tables` behind the binlog's back."""
        if self.cascades_in_binlog():
            return []
        wanted = set(tables)
        found = []
        for schema in sorted({s for s, _ in wanted}):
            # REFERENTIAL_CONSTRAINTS would say it directly, but MariaDB 10.11 shows it
            # (and TABLE_CONSTRAINTS) empty to a user with only global SELECT, while
            # KEY_COLUMN_USAGE and SHOW CREATE TABLE work: so find the child tables
            # here and read their rules from SHOW CREATE TABLE.
            children = sorted({_text(r["t"]) for r in self.rows(
                "SELECT DISTINCT TABLE_NAME AS t FROM information_schema.KEY_COLUMN_USAGE "
                "WHERE TABLE_SCHEMA=%s AND REFERENCED_TABLE_NAME IS NOT NULL", (schema,))} & {t for s, t in wanted
                                                                                          if s == schema})
            for child in children:
                rows = self.rows(f"SHOW CREATE TABLE `{schema}`.`{child.replace('`', '``')}`")
                ddl = _text(list(rows[0].values())[1]) if rows else ""
                for name, parent, actions in _FOREIGN_KEY.findall(ddl):
                    risky = [a.strip() for a in _FK_ACTION.findall(actions)
                             if a.split(" ", 2)[-1].upper() in ("CASCADE", "SET NULL", "SET DEFAULT")]
                    if risky:
                        found.append(f"{schema}.{child}: foreign key {name} to {parent} has {' and '.join(risky)}; "
                                     "rows it changes are not in the binlog (MariaDB, MySQL before 9.6 or with "
                                     "innodb_native_foreign_keys=ON), so their documents go stale. Delete/update "
                                     "child rows explicitly, or re-snapshot the table")
        return found

    def _mariadb_json_columns(self, schema: str) -> dict[str, frozenset[str]]:
        # MariaDB's JSON is LONGTEXT plus CHECK (json_valid(`col`)), so the binlog
        # and information_schema.COLUMNS both call it text (mariadb.com/kb/en/json-data-type).
        try:
            rows = self.rows(
                "SELECT TABLE_NAME AS t, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA=%s", (schema,))
        except pymysql.err.MySQLError:
            return {}
        found: dict[str, set[str]] = {}
        for row in rows:
            match = re.fullmatch(r"\s*json_valid\(`([^`]+)`\)\s*", _text(row["clause"] or ""), re.I)
            if match:
                found.setdefault(_text(row["t"]), set()).add(match.group(1))
        return {t: frozenset(c) for t, c in found.items()}


# Binlog settings cdc needs (name, value, why) and refuses (name, the value refused, the value to set, why).
_REQUIRED = (
    ("binlog_format", "ROW", "statement events cannot be turned into documents"),
    ("binlog_row_image", "FULL", "rows with columns left out would make partial documents"),
    ("binlog_row_metadata", "FULL", "the column names must travel in the binlog; MySQL's default is MINIMAL"),
)
_REFUSED = (
    ("binlog_row_value_options", "PARTIAL_JSON", "",
     "updates must carry whole JSON values, not diffs of them"),
    ("binlog_transaction_compression", "ON", "OFF",
     "the rows of compressed transactions (TRANSACTION_PAYLOAD events) cannot be decoded"),
    ("log_bin_compress", "ON", "OFF", "compressed events cannot be decoded"),
)
_EMPTY = "''"  # an empty value, as SET and my.cnf take it
# Settings a session can also change for itself (SET SESSION), which SET GLOBAL does not undo.
_SESSION_SETTINGS = frozenset({"binlog_format", "binlog_row_image", "binlog_row_value_options",
                               "binlog_transaction_compression"})


def setting_fix(name: str, have: str, want: str, why: str) -> str:
    """A binlog setting cdc cannot work with: what to set and why, the statement, and the my.cnf line."""
    return f"{name}={have}: set {name}={want or _EMPTY} ({why}). {how_to_set(name, want)}"


def how_to_set(name: str, want: str) -> str:
    """How to give a binlog setting the value cdc needs, now and after a restart (the my.cnf line)."""
    text = (f"On the server: SET GLOBAL {name} = '{want}'; and add this line to my.cnf under [mysqld], "
            f"so a restart keeps it: {name} = {want or _EMPTY}")
    if name in _SESSION_SETTINGS:
        text += " (client sessions opened before keep their own value until they reconnect)"
    return text


def _listed_id(host: dict) -> int:
    """A row of SHOW SLAVE HOSTS (MariaDB: Server_id) or SHOW REPLICAS (MySQL 8.4: Server_Id)."""
    return int(next((v for k, v in host.items() if k.lower() == "server_id"), 0))


def not_an_event_start(position: BinlogPosition, message: str) -> str:
    """Why `position` cannot be read from, and how to find one that can (issue 16: it is not a purge)."""
    return (f"the server cannot read the binlog at {position}: {message}. {position} is not the start of an "
            "event (the file is there; nothing was purged). Start at a transaction boundary: the End_log_pos of "
            f"a Xid/COMMIT event in SHOW BINLOG EVENTS IN '{position.file}' (mysqlbinlog prints it as '# at N' "
            "before the next event), or a position cdc printed: a checkpoint, or `last_commit` and the "
            "actions' `position` of `cdc replay --dry-run`.")
