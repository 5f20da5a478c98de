"""Reading the binlog through pymysqlreplication (with cdc/mysql/replication_hooks.py, its hooks into the
library's internals, the only modules that import it).

`BinlogSource.events(start)` yields `RowChange`, `Commit`, `Rollback`,
`StreamRestarted` and `Heartbeat` values, and translates the library's errors
into cdc's. It guards against the library's traps (python-mysql-replication
1.0.x, binlogstream.py):

* Its silent reconnect on errors 2006/2013 resumes from the latest *event*
  (or position 4, or the original GTID set), which can be mid-transaction:
  rows whose TABLE_MAP is not seen again are dropped without a word. We turn
  it off and reconnect ourselves from the last commit.
* A rows event whose TABLE_MAP was never seen is silently dropped, so we must
  never start inside a transaction: the first commit seen before any
  transaction start means the start position was mid-transaction.
* Unknown event types are silently dropped by default; we ask for them and stop
  on those that carry data we would otherwise lose (compressed transactions).

It also saves the library work: a TABLE_MAP event whose bytes this connection has
already parsed reuses that parse, and each transaction's GTID,
BEGIN and XID events are framed by cdc, not the library (both in cdc/mysql/replication_hooks.py).
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import socket
import threading
import time
from typing import Callable, Iterator, Sequence

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import NONE_SOURCE
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    NotImplementedEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.gtid import Gtid, GtidSet
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    PartialUpdateRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from cdc.config import MysqlConfig, RetryConfig
from cdc.errors import (PurgedPositionError, SourceConnectionError, SourceError, StartPositionError,
                        UnsupportedEventError)
from cdc.model import (
    BinlogPosition,
    Commit,
    Heartbeat,
    Op,
    Rollback,
    RowChange,
    RowsData,
    SourceEvent,
    StartPoint,
    StreamRestarted,
)
from cdc.mysql.server import Database, how_to_set, not_an_event_start
from cdc.mysql.error_codes import ER_BINLOG_FATAL, connection_lost, error_code
from cdc.mysql.pymysql_hooks import install_pymysql_hooks
from cdc.mysql.replication_hooks import (STREAM_EVENTS, FramedEvent, FramedRows, Framer, Shape, TableMaps,
                                         full_image, install_library_hooks, shape_of, time2_columns)
from cdc.retry import Attempts

log = logging.getLogger("cdc.source")

# How a stop on an event cdc will not index ends: the event stays in the binlog.
_STUCK = ("The binlog keeps this event, so cdc stops here at every start: once the setting is fixed, rebuild "
          "the index with `cdc run --resnapshot` (copies the tables again, then streams from the end of the binlog).")
# Event types that hold row data the library cannot decode. Each would be
# dropped as NotImplementedEvent, taking the transaction's rows (and for MySQL's
# TRANSACTION_PAYLOAD even its XID) with it.
#   40       MySQL TRANSACTION_PAYLOAD_EVENT (binlog_transaction_compression=ON)
#   165-171  MariaDB *_COMPRESSED_EVENT (log_bin_compress=ON)
#   26       INCIDENT_EVENT: the server itself says events were lost
_FATAL_EVENT_TYPES = {
    40: ("a compressed transaction (TRANSACTION_PAYLOAD, written with binlog_transaction_compression=ON by the "
         "server or a session): its rows cannot be decoded; set binlog_transaction_compression=OFF. "
         f"{how_to_set('binlog_transaction_compression', 'OFF')}. {_STUCK}"),
    26: "an INCIDENT event (the server lost binlog events); re-snapshot the tables",
    **{t: "a compressed event (log_bin_compress=ON): its rows cannot be decoded; set log_bin_compress=OFF. "
          f"{how_to_set('log_bin_compress', 'OFF')}. {_STUCK}" for t in range(165, 172)},
}

_DML = re.compile(r"^\s*(/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE|LOAD\s+DATA)\b", re.I | re.S)
# Table definitions whose Shape is kept; a miss costs one event what every event used to cost.
_SHAPES_LIMIT = 256


class GtidTracker:
    """The server's GTID state as of the last commit read (MariaDB and MySQL forms)."""

    def __init__(self, initial: str | None, mariadb: bool):
        self.mariadb = mariadb
        self._pending: str | None = None
        if mariadb:
            self._domains: dict[str, str] = {}
            for gtid in filter(None, (g.strip() for g in (initial or "").split(","))):
                self._domains[gtid.split("-", 1)[0]] = gtid
        else:
            self._set = GtidSet(initial or "")

    def begin(self, gtid: str) -> None:
        self._pending = gtid

    def commit(self) -> None:
        if self._pending is None:
            return
        if self.mariadb:
            self._domains[self._pending.split("-", 1)[0]] = self._pending
        elif not self._next_of_its_server(self._pending):
            gtid = Gtid(self._pending)
            # Already in the set when a replay re-reads it; merging would raise on overlap.
            if gtid not in self._set:
                self._set.merge_gtid(gtid)
        self._pending = None

    def _next_of_its_server(self, gtid: str) -> bool:
        """Add GTID (`uuid:gno`) in place if its GNO is the one after its server's last: the common case.

        The library's merge (gtid.py GtidSet.merge_gtid, Gtid.__add__) deep-copies the server's
        Gtid and re-sorts its intervals for every transaction: a fifth of MySQL's CPU per row
        change on an OLTP load. Its intervals are sorted, right-open and disjoint, so a GNO equal
        to the last interval's end is in no interval and only extends that one, which is what the
        merge would give. Anything else (another server, a gap, a replay) takes the library's path.
        """
        sid, _, gno = gtid.rpartition(":")
        for existing in self._set.gtids:
            if existing.sid == sid:
                intervals = existing.intervals
                if intervals and gno.isascii() and gno.isdigit() and intervals[-1][1] == int(gno):
                    intervals[-1] = (intervals[-1][0], intervals[-1][1] + 1)
                    return True
                return False
        return False

    def discard(self) -> None:
        self._pending = None

    @property
    def state(self) -> str | None:
        if self.mariadb:
            return ",".join(self._domains[d] for d in sorted(self._domains, key=int)) or None
        text = str(self._set)
        return text or None


class BinlogSource:
    """Streams one server's binlog, reconnecting from the last commit on connection loss."""

    def __init__(
        self,
        config: MysqlConfig,
        mariadb: bool,
        tables: frozenset[tuple[str, str]] | set[tuple[str, str]],  # a TableFilter (rules) or a plain set
        retry: RetryConfig,
        stop: threading.Event | None = None,
        end: BinlogPosition | None = None,
        prepare: Callable[[RowsData], Sequence[RowChange]] | None = None,
        identity: str | None = None,
    ):
        self.config = config
        # The server the stream reads (Database.identity): a reconnect that finds another one at the
        # configured address (a failover behind a virtual IP, a proxy or DNS) stops (`_same_server`).
        self.identity = identity
        # The native row path (cdc/rules/rowpath.py): rows events go to it undecoded
        # (`RowsData`), on this reader thread, and it gives back their row changes.
        self.prepare = prepare
        self.mariadb = mariadb
        self.tables = tables
        self.schemas = sorted({s for s, _ in tables})
        self.retry = retry
        install_library_hooks()
        install_pymysql_hooks()  # the binlog connections share the query connections' TLS context
        self.stop = stop or threading.Event()
        self.end = end
        self._stream: BinLogStreamReader | None = None
        # Set by close(): the consumer is done (stopping, or stopped by an error of its own), so
        # the read that the closed socket breaks is no lost connection to log and reconnect.
        self._closed = threading.Event()
        # id(the library's column list) -> (that list, its Shape). With TABLE_MAP
        # reuse, all events of one table definition share one list. Holding the
        # list keeps its id from passing to another while the entry lives.
        self._shapes: dict[int, tuple[list, Shape]] = {}

    # ------------------------------------------------------------------ connection
    def _open(self, start: StartPoint) -> BinLogStreamReader:
        settings = {
            "host": self.config.host,
            "port": self.config.port,
            "user": self.config.user,
            "passwd": self.config.password,
            "connect_timeout": self.config.connect_timeout,
            "read_timeout": self.config.read_timeout,
        }
        if self.config.ssl_ca or self.config.ssl_cert:
            settings["ssl"] = self.config.ssl_context()
        kwargs = dict(
            connection_settings=settings,
            server_id=self.config.server_id,
            blocking=True,
            only_events=list(STREAM_EVENTS),
            filter_non_implemented_events=False,
            only_schemas=self.schemas or None,
            slave_heartbeat=self.config.heartbeat,
            # Shown in SHOW SLAVE HOSTS, so a server_id clash names the other process.
            report_slave={"hostname": f"cdc pid {os.getpid()} on {socket.gethostname()}"[:60],
                          "username": "", "password": "", "port": 0},
            enable_logging=False,
        )
        if start.by_gtid:
            # MariaDB takes the GTID state through @slave_connect_state; with
            # is_mariadb=True the library ignores file/pos, which is what we want here.
            kwargs.update(auto_position=start.gtid, is_mariadb=self.mariadb)
        else:
            assert start.position is not None
            # is_mariadb must stay False for file/pos: with True the library sends
            # position 4 and an empty file name (binlogstream.py __set_mariadb_settings).
            kwargs.update(resume_stream=True, log_file=start.position.file, log_pos=start.position.pos)
        return BinLogStreamReader(**kwargs)

    def close(self) -> None:
        """Stop reading for good; safe from another thread (wakes a blocked read, which then ends quietly)."""
        self._closed.set()
        self._close_stream()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                # close() alone does not wake a recv() blocked in the reader
                # thread; shutdown() does, so a stop is not delayed to the next heartbeat.
                sock = getattr(getattr(stream, "_stream_connection", None), "_sock", None)
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                stream.close()
            except Exception:  # closing a dead socket can fail; nothing to save there
                pass

    # ------------------------------------------------------------------ reading
    def events(self, start: StartPoint) -> Iterator[SourceEvent]:
        """Yield events from `start` until `stop` is set (or `end` is passed).

        Connection loss is retried with backoff from the last commit yielded,
        preceded by a `StreamRestarted` so the consumer drops the open transaction.
        """
        attempts = Attempts(self.retry)
        resume = start
        restarted = False
        while not (self.stop.is_set() or self._closed.is_set()):
            committed: list[StartPoint] = []
            try:
                if restarted:
                    self._same_server(resume)
                for event in self._read(resume, committed):
                    attempts.succeeded()
                    yield event
                return
            except SourceConnectionError as exc:
                # We closed the socket ourselves: to stop on a signal, or because the pipeline
                # stopped (a rejected document with on_rejected: stop). Not a lost connection.
                if self.stop.is_set() or self._closed.is_set():
                    return
                if committed:
                    resume = committed[-1]
                delay = attempts.failed()
                if delay is None:
                    raise
                log.warning("binlog connection lost (%s); reconnecting from %s in %.1fs (attempt %d)",
                            exc, resume.position or resume.gtid, delay, attempts.count,
                            extra={"event": "reconnect", "position": str(resume.position), "gtid": resume.gtid})
                if self.stop.wait(delay):
                    return
                yield StreamRestarted(resume.position or BinlogPosition("", 0))
                restarted = True
            finally:
                self._close_stream()

    def _same_server(self, resume: StartPoint) -> None:
        """Before a reconnect: stop if another server now answers at the address (its file/pos mean nothing).

        A failover behind one address (a virtual IP, a proxy, DNS) gives the reconnect the new
        primary, whose binlog files are not the old one's: read by the old file and position it
        said "purged" (seen on MySQL 9.7), or could have sent events from another place. `cdc run`
        started again sees the other server in its checkpoint and resumes by GTID with a new
        version epoch (cdc/app/start.py), which a reconnect in the middle of a batch cannot do.
        """
        if self.identity is None:
            return
        db = Database(self.config)  # a lost connection again: SourceConnectionError, retried by `events`
        try:
            now = db.identity
        finally:
            db.close()
        if now != self.identity:
            raise SourceError(
                f"the server at {self.config.host}:{self.config.port} is {now} now, not {self.identity}, whose "
                f"binlog cdc was reading (a failover, or the address moved to another server). cdc stops rather "
                f"than read it at the old server's {resume.position}: started again (systemd's Restart=on-failure "
                "does that), it resumes there by GTID from its checkpoint, with a new version epoch.")
    def _read(self, start: StartPoint, committed: list[StartPoint]) -> Iterator[SourceEvent]:
        gtids = GtidTracker(start.gtid, self.mariadb)
        try:
            stream = self._stream = self._open(start)
        except pymysql.err.MySQLError as exc:
            raise self._translate(exc, start) from None
        parsed_table_maps: dict[bytes, dict] = {}  # this connection's, for _table_map_event_init
        framer = Framer(self.tables) if self.prepare is not None else None
        prepare = self.prepare
        self._shapes.clear()
        in_transaction = False
        seen_boundary = False
        # By GTID the server picks the file; its first (fake) rotate names it.
        file = start.position.file if start.position and not start.by_gtid else ""

        def commit(end: BinlogPosition, timestamp: int) -> Commit:
            # A commit is the only place a reconnect may resume from.
            gtids.commit()
            # Only the latest commit is a resume point; keep one, not one per transaction.
            state = gtids.state
            committed[:] = [StartPoint(end, state)]
            return Commit(end, state, timestamp)

        while not self.stop.is_set():
            if type(stream.table_map) is not TableMaps:  # new, or replaced by a plain dict at a rotate
                stream.table_map = TableMaps(parsed_table_maps, stream.table_map, framer)
            try:
                event = stream.fetchone()
            except pymysql.err.MySQLError as exc:
                raise self._translate(exc, start) from None
            except (OSError, EOFError) as exc:
                raise SourceConnectionError(f"binlog read failed: {exc}") from None
            if event is None:  # only without blocking=True, or after close()
                raise SourceConnectionError("binlog stream ended")
            file = stream.log_file or file
            if event.__class__ is FramedRows:  # a rows event of a table cdc reads, framed by Framer
                end = BinlogPosition(file, event.log_pos)
                if self._past_end(end) and not in_transaction:
                    return
                if not seen_boundary:
                    raise self._mid_transaction(start)
                assert prepare is not None
                yield from prepare(self._framed(event, end))
                continue
            # The library's class of the event; for a boundary event framed by cdc (_frame_boundary),
            # the class it stands for. One path for both: the checks below are on `kind`.
            kind = event.kind if event.__class__ is FramedEvent else event.__class__
            end = BinlogPosition(file, event.packet.log_pos)

            if issubclass(kind, RotateEvent):
                file = event.next_binlog
                # A rotate outside a transaction is a safe resume point in the new file.
                if not in_transaction and event.timestamp != 0:
                    yield commit(BinlogPosition(file, event.position), event.timestamp)
                continue
            if issubclass(kind, HeartbeatLogEvent):
                yield Heartbeat(time.time())
                continue
            if self._past_end(end) and not in_transaction:
                return
            if issubclass(kind, MariadbGtidEvent):
                gtids.begin(event.gtid)
                seen_boundary = True
                # FL_STANDALONE (bit 0): no COMMIT follows (DDL); the statement itself ends it.
                in_transaction = not (event.flags & 0x01)
                continue
            if issubclass(kind, GtidEvent):
                gtids.begin(event.gtid)
                seen_boundary = True
                continue
            query = upper = ""
            if issubclass(kind, QueryEvent):
                query = event.query.strip() if isinstance(event.query, str) else event.query.decode(errors="replace")
                upper = query.upper()
            # XID ends InnoDB transactions; a COMMIT query ends those of other engines.
            if issubclass(kind, XidEvent) or upper == "COMMIT" or upper.startswith("XA COMMIT"):
                if not seen_boundary:
                    raise self._mid_transaction(start)
                in_transaction = False
                yield commit(end, event.timestamp)
                if self._past_end(end):
                    return
                continue
            if issubclass(kind, QueryEvent):
                if upper == "BEGIN":
                    in_transaction = True
                    seen_boundary = True
                elif upper == "ROLLBACK" or upper.startswith("XA ROLLBACK"):
                    in_transaction = False
                    gtids.discard()
                    yield Rollback(end)
                elif _DML.match(query) and (schema := self._statement_schema(event, query)) is not None:
                    raise UnsupportedEventError(
                        f"statement-format change at {end} in schema {schema}: "
                        f"{query[:200]!r}. A session changed binlog_format; cdc needs ROW for every write. "
                        f"Fix the client, and set binlog_format=ROW. {how_to_set('binlog_format', 'ROW')}. {_STUCK}")
                elif not in_transaction:
                    # DDL and other standalone statements end their own (implicit) transaction.
                    seen_boundary = True
                    yield commit(end, event.timestamp)
                    if self._past_end(end):
                        return
                continue
            if issubclass(kind, NotImplementedEvent):
                reason = _FATAL_EVENT_TYPES.get(event.event_type)
                if reason:
                    raise UnsupportedEventError(f"binlog event type {event.event_type} at {end} is {reason}")
                continue
            if issubclass(kind, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
                if (event.schema, event.table) not in self.tables:
                    continue
                if issubclass(kind, PartialUpdateRowsEvent):  # a table of the rules: its update is a diff
                    raise UnsupportedEventError(
                        f"partial JSON update at {end} on {event.schema}.{event.table} (written with "
                        "binlog_row_value_options=PARTIAL_JSON by the server or a session): the update carries "
                        "a diff of the JSON value, not the value: set binlog_row_value_options=''. "
                        f"{how_to_set('binlog_row_value_options', '')}. {_STUCK}")
                if not seen_boundary:
                    raise self._mid_transaction(start)
                yield from self._rows(event, end)

    def _rows(self, event, end: BinlogPosition) -> Iterator[RowChange]:
        known = self._shapes.get(id(event.columns))
        if known is not None and known[0] is event.columns:
            shape = known[1]
        else:
            if len(self._shapes) >= _SHAPES_LIMIT:
                self._shapes.clear()
            shape = shape_of(event.columns)
            self._shapes[id(event.columns)] = (event.columns, shape)
        if shape.names_missing:
            raise UnsupportedEventError(
                f"rows event for {event.schema}.{event.table} at {end} has no column names: it was written with "
                "binlog_row_metadata other than FULL; set binlog_row_metadata=FULL. "
                f"{how_to_set('binlog_row_metadata', 'FULL')}. {_STUCK}")
        op = Op.INSERT if isinstance(event, WriteRowsEvent) else Op.DELETE if isinstance(event, DeleteRowsEvent) else Op.UPDATE
        if self.prepare is not None and self._whole_rows(event, op):
            yield from self.prepare(self._raw(event, op, shape, end))
            return
        yield from self._decoded(event, op, shape, end)

    def _whole_rows(self, event, op: Op) -> bool:
        count = len(event.columns)
        # Nothing pushed back into the packet wrapper (packet.py unread): the rows are its packet's tail.
        return (not getattr(event.packet, "_BinLogPacketWrapper__data_buffer", b"") and event.number_of_columns == count and full_image(event.columns_present_bitmap, count)
                and (op is not Op.UPDATE or full_image(event.columns_present_bitmap2, count)))

    def _raw(self, event, op: Op, shape: Shape, end: BinlogPosition) -> RowsData:
        """The event's rows as bytes, and a way to decode them through the library after all.

        The library parses rows lazily (row_event.py `rows`): its __init__ stops after the
        columns-present bitmaps, so what is left of the packet is the rows, which we take.
        `decode` rewinds the packet (pymysql protocol.py MysqlPacket.rewind) and lets the
        library read them; not packet.py `unread`, whose buffer the library's own DECIMAL
        reader appends to. The event keeps only its own table's map, so a later
        TABLE_MAP cannot change it.
        """
        packet = event.packet
        raw = packet.packet
        at, read_bytes = raw._position, packet.read_bytes
        body = packet.read(event.event_size - packet.read_bytes)
        event.table_map = {event.table_id: event.table_map[event.table_id]}

        def decode() -> list[RowChange]:
            raw.rewind(at)
            packet.read_bytes = read_bytes
            return list(self._decoded(event, op, shape, end))

        return RowsData(op, event.schema, event.table, shape.columns, shape.readers, bytes(body), end,
                        event.timestamp, decode)

    def _framed(self, event: FramedRows, end: BinlogPosition) -> RowsData:
        """A framed rows event as `RowsData`; `decode` has the library frame and decode it after all."""
        op, shape, table_id = event.op, event.shape, event.table.table_id

        def decode() -> list[RowChange]:
            return list(self._decoded(event.library_event(table_id), op, shape, end))

        return RowsData(op, event.table.schema, event.table.table, shape.columns, shape.readers, event.body, end,
                        event.timestamp, decode)

    def _decoded(self, event, op: Op, shape: Shape, end: BinlogPosition) -> Iterator[RowChange]:
        # One tuple for every row (and every event) of a table definition: rules.ColumnMaps relies on it.
        columns, time2 = shape.columns, shape.time2
        before: dict | None
        after: dict | None
        for i, row in enumerate(event.rows):
            if op is Op.UPDATE:
                before = _fix_times(_fix_nones(row["before_values"], row.get("before_none_sources"), event, end),
                                    event, time2)
                after = _fix_times(_fix_nones(row["after_values"], row.get("after_none_sources"), event, end),
                                   event, time2)
            else:
                values = _fix_times(_fix_nones(row["values"], row.get("none_sources"), event, end), event, time2)
                before, after = (values, None) if op is Op.DELETE else (None, values)
            yield RowChange(op, event.schema, event.table, columns, before, after, end, event.timestamp, i)

    def _statement_schema(self, event, query: str) -> str | None:
        """The schema of the rules a DML statement logged as a statement may change, or None.

        Its default schema (the session's USE), the databases MySQL lists as accessed
        (Q_UPDATED_DB_NAMES), or a schema of the rules its text qualifies a table with: a session
        without a default database writes `UPDATE shop.t ...` with an empty one.
        """
        named = [event.schema.decode(errors="replace")] if event.schema else []
        named += [n.decode(errors="replace") if isinstance(n, bytes) else str(n)
                  for n in getattr(event, "mts_accessed_db_names", None) or ()]
        for schema in self.schemas:
            if schema in named or re.search(rf"(?<![\w$])`?{re.escape(schema)}`?\s*\.", query):
                return schema
        return None

    def _past_end(self, position: BinlogPosition) -> bool:
        return self.end is not None and position >= self.end

    # ------------------------------------------------------------------ errors
    def _mid_transaction(self, start: StartPoint) -> SourceError:
        return SourceError(
            f"start position {start.position} is inside a transaction: rows before it in the same "
            "transaction would be lost. Start at a transaction boundary (an XID/COMMIT end position, "
            "e.g. from SHOW BINLOG EVENTS or a checkpoint).")

    def _translate(self, exc: pymysql.err.MySQLError, start: StartPoint) -> SourceError:
        code = error_code(exc)
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        if code == ER_BINLOG_FATAL:
            return binlog_fatal(message, start)
        if connection_lost(exc):
            return SourceConnectionError(f"MySQL error {code}: {message}")
        return SourceError(f"MySQL error {code}: {message}")


# Error 1236 texts (MariaDB sql/sql_repl.cc, MySQL sql/rpl_binlog_sender.cc) for a start
# position that is not the start of an event: the server reads an event header there
# and finds a length or type that makes no sense. The file itself is there.
_NOT_AN_EVENT = ("truncated in the middle of event", "impossible position", "bogus data in log event",
                 "exceeded max_allowed_packet", "event too small", "wrong offset")
# ... and for a position or GTID state the server no longer has.
_GONE = ("could not find first log file", "purged", "not in the master's binlog", "not in the source's binlog",
         "could not find gtid state")


def binlog_fatal(message: str, start: StartPoint) -> SourceError:
    """Error 1236: the server will not send the binlog from `start`. Say why, and what fixes it."""
    text = message.lower()
    where = start.position if not start.by_gtid else f"GTID state {start.gtid}"
    if start.position is not None and not start.by_gtid and any(s in text for s in _NOT_AN_EVENT):
        return StartPositionError(not_an_event_start(start.position, f"{message} (error 1236)"))
    if any(s in text for s in _GONE):
        return PurgedPositionError(
            f"the server cannot send the binlog from {where}: {message} (error 1236). The binlog there was "
            "purged: rebuild the index with `cdc run --resnapshot` (copies every table again, then streams "
            "from the current position), or `snapshot.mode: when_needed` to do that by itself.")
    return PurgedPositionError(
        f"the server cannot send the binlog from {where}: {message} (error 1236). The position is no longer "
        "readable on this server; if its binlog was purged, rebuild the index with `cdc run --resnapshot`.")


def _fix_nones(values: dict, none_sources: dict | None, event, end: BinlogPosition) -> dict:
    """Tell apart the library's different Nones (row_event.py records why in none_sources)."""
    if not none_sources:
        return values
    for name, source in none_sources.items():
        if source == NONE_SOURCE.EMPTY_SET:
            values[name] = set()
        elif source in _ZERO_DATE_SOURCES:
            # A zero or partly zero date. PyMySQL returns these as text, so hand the
            # converter the same text: both paths then write null and count it.
            values[name] = "0000-00-00"
        elif source == NONE_SOURCE.COLS_BITMAP:
            raise UnsupportedEventError(
                f"row of {event.schema}.{event.table} at {end} lacks column {name!r}: it was written with "
                "binlog_row_image other than FULL (MINIMAL, or NOBLOB for an unchanged BLOB or TEXT column, by "
                "the server or a session); cdc will not index partial documents: set binlog_row_image=FULL. "
                f"{how_to_set('binlog_row_image', 'FULL')}. {_STUCK}")
    return values


_ZERO_DATE_SOURCES = (NONE_SOURCE.OUT_OF_DATE_RANGE, NONE_SOURCE.OUT_OF_DATETIME_RANGE,
                      NONE_SOURCE.OUT_OF_DATETIME2_RANGE)


def _fix_times(values: dict, event, time2: tuple | None = None) -> dict:
    """Undo the library's mirrored fraction of negative TIME(1..6) values.

    row_event.py __read_time2 (1.0.17) negates the whole-second part but reads
    the fraction as stored, which for negative values is its complement: it
    returns -01:30:00.750000 for -01:30:00.25 (observed on MariaDB 10.11 for
    every fsp). The whole seconds are right, so the true fraction is 1s minus
    the one returned. tests/unit/test_values.py checks the library still does this.
    `time2` is `time2_columns(event.columns)`, if the caller has it already.
    """
    for column in time2_columns(event.columns) if time2 is None else time2:
        value = values.get(column.name)
        if isinstance(value, datetime.timedelta) and value < datetime.timedelta(0):
            seconds, micros = divmod(-value // datetime.timedelta(microseconds=1), 1_000_000)
            if micros:
                values[column.name] = -datetime.timedelta(seconds=seconds, microseconds=1_000_000 - micros)
    return values
