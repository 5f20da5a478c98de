"""Reading the binlog: the only module that imports pymysqlreplication.

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
already parsed reuses that parse (see `_TableMaps`), and each transaction's GTID,
BEGIN and XID events are framed by cdc, not the library (see `_frame_boundary`).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Iterator, Sequence

import pymysql
import pymysqlreplication.binlogstream as _binlogstream
import pymysqlreplication.json_binary as _json_binary
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import NONE_SOURCE
from pymysqlreplication.constants.CHARSET import charset_by_name
from pymysqlreplication.event import (
    BinLogEvent,
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    NotImplementedEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.exceptions import StatusVariableMismatch
from pymysqlreplication.gtid import Gtid, GtidSet
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    PartialUpdateRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from cdc.config import MysqlConfig, RetryConfig
from cdc.errors import (PurgedPositionError, SourceConnectionError, SourceError, StartPositionError,
                        UnsupportedEventError)
from cdc.model import (
    BinlogPosition,
    Column,
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
from cdc.mysql import charsets
from cdc.mysql.catalog import TableInfo
from cdc.mysql.server import Database, how_to_set, not_an_event_start
from cdc.mysql.error_codes import ER_BINLOG_FATAL, connection_lost, error_code
from cdc.mysql.types import GEOMETRY_TYPES, STRING_CODES, FieldType, kind_of_field_type
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



# ---------------------------------------------------------------------- TABLE_MAP reuse
# The server writes a TABLE_MAP event before the rows of every statement: once
# per transaction for a multi-row INSERT, but once per row for single-row
# UPDATEs and DELETEs. The library parses each one afresh (column types,
# metadata, names, charsets, and two Table objects), which was about a sixth of
# all samples in a catch-up profile. The result depends only on the event's
# bytes after the common header (table id, schema and table names, column
# types and metadata, and with binlog_row_metadata=FULL the column names and
# charsets) and on the stream's settings, which are fixed per connection. So
# an event whose bytes this connection has seen before takes the earlier
# result; a changed table (ALTER TABLE) has other bytes and is parsed anew.
# Only cdc's streams are affected: the hook below passes every other
# TableMapEvent straight to the library.
_TABLE_MAP_CACHE_LIMIT = 4096  # distinct table definitions per connection; past it, start over
# Per-event state that is not part of the parse (or must not be kept alive by the cache).
_NOT_CACHED = frozenset({"packet", "table_map", "_ctl_connection"})


class _TableMaps(dict):
    """A stream's table id -> Table map that also carries the connection's parsed TABLE_MAP events.

    The library replaces its map with a plain dict at every rotate; `_read`
    puts this back before the next event is parsed.
    """

    def __init__(self, parsed: dict[bytes, dict], tables: dict | None = None, framer: _Framer | None = None):
        super().__init__(tables or {})
        self.parsed = parsed
        # The stream's rows-event framing (native row path only; see _Framer).
        self.framer = framer


# The library's own __init__ (also if this module is imported again).
_parse_table_map = getattr(TableMapEvent.__init__, "__wrapped__", TableMapEvent.__init__)


def _table_map_event_init(self, from_packet, event_size, table_map, ctl_connection, **kwargs):
    parsed = table_map.parsed if isinstance(table_map, _TableMaps) else None
    # freeze_schema reads the table map; without the optional metadata the
    # library asks information_schema for the names. Neither depends on the bytes alone.
    if parsed is None or kwargs.get("freeze_schema") or not kwargs.get("optional_meta_data"):
        _parse_table_map(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
        _exact_charsets(self)
        return
    data = from_packet.packet.get_all_data()
    # Skip the OK byte and the 19-byte header (timestamp, position, ...), and the
    # CRC32 trailer, which covers the header: what is left describes the table.
    key = data[20:len(data) - 4] if kwargs.get("use_checksum") else data[20:]
    known = parsed.get(key)
    if known is not None:
        self.__dict__.update(known)
        # After the copy, so this event's own header, packet and connection win.
        BinLogEvent.__init__(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
        table_map[self.table_id] = self.table_obj
        return
    _parse_table_map(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
    _exact_charsets(self)
    if self._processed and self.optional_metadata.column_name_list:
        if len(parsed) >= _TABLE_MAP_CACHE_LIMIT:
            parsed.clear()
        parsed[key] = {k: v for k, v in self.__dict__.items() if k not in _NOT_CACHED}


_table_map_event_init.__wrapped__ = _parse_table_map  # type: ignore[attr-defined]

# The library's own reader of one QUERY event status variable (also if this module is imported again).
_read_status_var = getattr(QueryEvent._read_status_vars_value_for_key, "__wrapped__",
                           QueryEvent._read_status_vars_value_for_key)


def _status_var(self, key: int) -> None:
    """QueryEvent's reader of one status variable (KEY, VALUE), past keys the library does not know.

    The library raises StatusVariableMismatch for a key newer than it (event.py): MySQL 9.7 writes
    0x15 in DML logged as a statement (binlog_format STATEMENT or MIXED), which then failed the
    event before cdc saw its query. The block's length is in the post-header, so the rest of it is
    skipped instead; cdc reads only the schema and the query after it.
    """
    start = self.__dict__.setdefault("_status_vars_at", self.packet.read_bytes - 1)  # the first key's byte
    try:
        _read_status_var(self, key)
    except StatusVariableMismatch:
        self.packet.read(start + self.status_vars_length - self.packet.read_bytes)


_status_var.__wrapped__ = _read_status_var  # type: ignore[attr-defined]

# The library's names (constants/CHARSET.py `Charset.encoding`) of the charsets it renames.
_LIBRARY_ENCODINGS = {"cp1252": "latin1", "koi8_r": "koi8r", "koi8_u": "koi8u"}


def _exact_charsets(event) -> None:
    """Text columns whose charset cdc decodes as the server does (cdc/mysql/charsets.py) get its codec.

    The library decodes a text value with `column.character_set_name` as a Python codec
    name (row_event.py __read_string, after PyMySQL's charset names): cp1252 for latin1,
    Python's utf16 (little-endian) for utf16, ... A name of cdc's codecs makes it decode
    them as the server converts them, and tells `_reader` which table the native path reads.
    """
    if not getattr(event, "_processed", False) or not getattr(event, "columns", None):
        return
    kind = "mariadb" if event.dbms == "mariadb" else "mysql"
    for column in event.columns:
        name = getattr(column, "character_set_name", None)
        if column.type in STRING_CODES and isinstance(name, str):
            codec = charsets.codec_name(kind, _LIBRARY_ENCODINGS.get(name, name))
            if codec is not None:
                column.character_set_name = codec

# Field types of the dates and times MySQL keeps inside binary JSON as opaque values
# (sql-common/json_binary.cc serialize_opaque: the field type, then the packed value).
_JSON_DATES = frozenset({FieldType.DATE, FieldType.NEWDATE, FieldType.DATETIME, FieldType.DATETIME2,
                         FieldType.TIMESTAMP, FieldType.TIMESTAMP2})
_JSON_TIMES = frozenset({FieldType.TIME, FieldType.TIME2})
_library_parse_opaque = getattr(_json_binary.parse_opaque, "__wrapped__", _json_binary.parse_opaque)


def _json_opaque(data: bytes):
    """json_binary.py parse_opaque, but a date or time as the text MySQL gives it (a JSON string).

    The library reads these into datetime objects: a DATETIME became "2024-01-02T03:04:05", a
    negative TIME lost its sign, and a TIME of 24 hours or more (or a zero date part) raised, which
    stopped cdc. A SELECT, and so a snapshot and `cdc verify`, get MySQL's own text
    (sql-common/json_dom.cc Json_wrapper::to_string: my_date_to_str, my_datetime_to_str and
    my_time_to_str with 6 fractional digits): "2024-01-02", "2024-01-02 03:04:05.000000",
    "-01:30:00.250000", "838:59:59.000000". It is returned as bytes, the library's type for a JSON
    string, so values.py writes it as a string and never parses it as JSON text.
    native/src/jsonb.rs writes the same.
    """
    if len(data) >= 2 and data[0] in _JSON_DATES | _JSON_TIMES:
        length, n = _json_binary.decode_variable_length(data[1:])
        body = data[1 + n:1 + n + length]
        if len(body) < 8:  # MySQL always writes 8 bytes; the native path declines such a value too
            raise ValueError(f"a date or time in binary JSON of {len(body)} bytes, not 8")
        packed = int.from_bytes(body[:8], "little", signed=True)
        return (json_time_text(packed) if data[0] in _JSON_TIMES
                else json_datetime_text(packed, date_only=data[0] in (FieldType.DATE, FieldType.NEWDATE))
                ).encode()
    return _library_parse_opaque(data)


_json_opaque.__wrapped__ = _library_parse_opaque  # type: ignore[attr-defined]


def json_datetime_text(packed: int, date_only: bool) -> str:
    """MySQL's text of a packed DATETIME (my_time.cc TIME_from_longlong_datetime_packed, my_datetime_to_str)."""
    v = abs(packed)
    whole, us = v >> 24, v % (1 << 24)
    ymd, hms = whole >> 17, whole % (1 << 17)
    year, month, day = (ymd >> 5) // 13, (ymd >> 5) % 13, ymd % (1 << 5)
    if date_only:
        return f"{year:04d}-{month:02d}-{day:02d}"
    return f"{year:04d}-{month:02d}-{day:02d} {hms >> 12:02d}:{(hms >> 6) % 64:02d}:{hms % 64:02d}.{us:06d}"


def json_time_text(packed: int) -> str:
    """MySQL's text of a packed TIME (my_time.cc TIME_from_longlong_time_packed, my_time_to_str)."""
    v = abs(packed)
    whole, us = v >> 24, v % (1 << 24)
    hour, minute, second = (whole >> 12) % (1 << 10), (whole >> 6) % 64, whole % 64
    return f"{'-' if packed < 0 else ''}{hour:02d}:{minute:02d}:{second:02d}.{us:06d}"


# The library versions whose internals the hooks below were written against
# (setup.cfg pins the same range); another version stops cdc at start-up
# instead of silently losing the guards.
_SUPPORTED_LIBRARY = ((1, 0, 17), (1, 1, 0))


def install_library_hooks() -> None:
    """Change the library's behaviour where cdc needs it; idempotent, checked against its version.

    * Its own reconnect is turned off (see the module docstring): it reads the
      module global MYSQL_EXPECTED_ERROR_CODES at call time, so emptying it is enough.
    * TABLE_MAP events already parsed on this connection are reused (`_TableMaps`).
    * Rows events of the native row path's tables are framed by cdc (`_Framer`), and so are
      transaction boundaries (`_frame_boundary`).
    * A QUERY event's status variables the library does not know are skipped (`_status_var`).
    * Dates and times inside MySQL's binary JSON are read as MySQL writes them (`_json_opaque`).
    """
    installed = _library_version()
    low, high = _SUPPORTED_LIBRARY
    if not (low <= installed < high) or not hasattr(_binlogstream, "MYSQL_EXPECTED_ERROR_CODES"):
        raise SourceError(
            f"mysql-replication {'.'.join(map(str, installed))} is installed; cdc was written and tested against "
            f">= {'.'.join(map(str, low))}, < {'.'.join(map(str, high))} (setup.cfg): reinstall cdc with its pins")
    _binlogstream.MYSQL_EXPECTED_ERROR_CODES = []
    _json_binary.parse_opaque = _json_opaque
    TableMapEvent.__init__ = _table_map_event_init
    QueryEvent._read_status_vars_value_for_key = _status_var
    # fetchone calls the module's global by name; only streams whose table map carries
    # a _Framer (the native row path's) take the framing, all others get the library's wrapper.
    _binlogstream.BinLogPacketWrapper = _packet_wrapper


def _library_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(p) for p in re.findall(r"\d+", version("mysql-replication"))[:3])


# Table definitions whose _Shape is kept; a miss costs one event what every event used to cost.
_SHAPES_LIMIT = 256


@dataclass(frozen=True)
class _Shape:
    """What `_rows` needs of a table definition, worked out once per definition rather than per event."""

    columns: tuple[Column, ...]
    names_missing: bool
    time2: tuple  # the library's TIME(1..6) columns, for _fix_times
    # How the native row path reads each column (cdc/rules/rowpath.py); None for a
    # column it leaves to the library.
    readers: tuple[tuple | None, ...] = ()


def _shape(library_columns) -> _Shape:
    return _Shape(tuple(Column(c.name, kind_of_field_type(c.type, c.character_set_name), getattr(c, "bits", None),
                               unsigned_64=c.type == FieldType.LONGLONG and bool(getattr(c, "unsigned", False)))
                        for c in library_columns),
                  any(c.name is None for c in library_columns), _time2_columns(library_columns),
                  tuple(_reader_or_none(c) for c in library_columns))


_INT_BYTES = {FieldType.TINY: 1, FieldType.SHORT: 2, FieldType.INT24: 3, FieldType.LONG: 4, FieldType.LONGLONG: 8}
_TEXT_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8"})  # pymysql decodes these as strict UTF-8
_SIMPLE_READERS = {FieldType.FLOAT: "float", FieldType.DOUBLE: "double", FieldType.DATE: "date",
                   FieldType.DATETIME: "datetime_old", FieldType.TIMESTAMP: "timestamp_old",
                   FieldType.TIME: "time_old", FieldType.YEAR: "year"}


def _reader(c) -> tuple | None:
    """How the native row path reads a library column: (reader, a, b, c, labels), mirroring
    row_event.py __read_values_name; None for what it leaves to the library (charsets cdc has no
    table for (`_exact_charsets`), types the library does not read)."""
    t = c.type
    if t in _INT_BYTES:
        return ("int", _INT_BYTES[t], int(bool(c.unsigned)), 0, None)
    if t in _SIMPLE_READERS:
        return (_SIMPLE_READERS[t], 0, 0, 0, None)
    if t == FieldType.NEWDECIMAL:
        return ("decimal", c.precision, c.decimals, 0, None)
    if t == FieldType.JSON:  # MySQL's binary JSON (native/src/jsonb.rs)
        return ("json_binary", c.length_size, 0, 0, None)
    if t in (FieldType.DATETIME2, FieldType.TIMESTAMP2, FieldType.TIME2):
        name = {FieldType.DATETIME2: "datetime2", FieldType.TIMESTAMP2: "timestamp2", FieldType.TIME2: "time2"}[t]
        return (name, c.fsp, 0, 0, None)
    if t == FieldType.ENUM:
        return ("enum", c.size, 0, 0, list(c.enum_values) if c.enum_values else None)
    if t == FieldType.SET:
        return ("set", c.size, 0, 0, list(c.set_values) if c.set_values else None)
    if t == FieldType.BIT:
        return ("bit", c.bits, c.bytes, 0, None)
    if t == FieldType.GEOMETRY:  # every geometry type; b: geo_point, set by compile_plan for POINT columns
        return ("geometry", c.length_size, 0, 0, None)
    if t in (FieldType.VARCHAR, FieldType.STRING, FieldType.BLOB):
        prefix = c.length_size if t == FieldType.BLOB else 2 if c.max_length > 255 else 1
        if c.character_set_name in _TEXT_CHARSETS:
            return ("text", prefix, 0, 0, None)
        native = charsets.native_name(c.character_set_name)
        if native is not None:  # given by _exact_charsets: native/src/charset.rs reads the same table
            return (f"text:{native}", prefix, 0, 0, None)
        if c.character_set_name == "binary":
            return ("binary", prefix, 0, 0, None)
    return None


def _reader_or_none(c) -> tuple | None:
    try:
        return _reader(c)
    except AttributeError:  # a column without the metadata its type needs: left to the library
        return None


# information_schema DATA_TYPE -> the type code a TABLE_MAP gives the column (MySQL 5.6+ and
# MariaDB 10.1+ temporal formats), for `schema_readers`.
_SCHEMA_CODES = {
    "tinyint": FieldType.TINY, "smallint": FieldType.SHORT, "mediumint": FieldType.INT24, "int": FieldType.LONG,
    "integer": FieldType.LONG, "bigint": FieldType.LONGLONG, "decimal": FieldType.NEWDECIMAL,
    "float": FieldType.FLOAT, "double": FieldType.DOUBLE, "real": FieldType.DOUBLE, "date": FieldType.DATE,
    "datetime": FieldType.DATETIME2, "timestamp": FieldType.TIMESTAMP2, "time": FieldType.TIME2,
    "year": FieldType.YEAR, "char": FieldType.STRING, "binary": FieldType.STRING, "varchar": FieldType.VARCHAR,
    "varbinary": FieldType.VARCHAR, "enum": FieldType.ENUM, "set": FieldType.SET, "bit": FieldType.BIT,
    "json": FieldType.JSON,
    **{t: FieldType.BLOB for t in ("tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob",
                                    "longblob")},
}


_SIZES = re.compile(r"\((\d+)(?:,(\d+))?\)")  # "decimal(10,2)", "datetime(6)", "bit(5)"


def schema_readers(table: TableInfo, mariadb: bool) -> tuple[tuple | None, ...]:
    """How the native row path would read each column of `table`, worked out from information_schema
    instead of a TABLE_MAP (for `cdc check`): `_reader` of stand-ins for the library's columns."""
    dbms = "mariadb" if mariadb else "mysql"
    columns = []
    for info in table.columns:
        # Geometry types are GEOMETRY in a TABLE_MAP; a type cdc does not know gets no reader (None).
        code = _SCHEMA_CODES.get(info.data_type, FieldType.GEOMETRY if info.data_type in GEOMETRY_TYPES else None)
        charset = None
        if code in STRING_CODES:
            known = charset_by_name(info.charset, dbms) if info.charset else None
            charset = known.encoding if known else info.charset or "binary"
        sizes = _SIZES.search(info.column_type)
        numbers = [int(n) for n in sizes.groups() if n] if sizes else []
        labels = info.column_type.count("','") + 1
        bits = numbers[0] if numbers and code == FieldType.BIT else 1
        columns.append(SimpleNamespace(
            type=code, character_set_name=charset, unsigned="unsigned" in info.column_type,
            precision=numbers[0] if numbers else 10, decimals=numbers[1] if len(numbers) > 1 else 0,
            fsp=numbers[0] if numbers and code != FieldType.NEWDECIMAL else 0, bits=bits, bytes=(bits + 7) // 8,
            size=(1 if labels < 256 else 2) if code == FieldType.ENUM else (labels + 7) // 8, enum_values=None,
            set_values=None, length_size=4, max_length=300))
    _exact_charsets(SimpleNamespace(_processed=True, columns=columns, dbms=dbms))
    return tuple(_reader_or_none(c) for c in columns)


@functools.lru_cache(maxsize=256)
def _full_bitmap(count: int) -> bytes:
    """The columns-present bitmap of a FULL row image of `count` columns, unused high bits 0 (as MariaDB writes it)."""
    return ((1 << count) - 1).to_bytes((count + 7) // 8, "little")


@functools.lru_cache(maxsize=256)
def _full_bitmaps(count: int) -> tuple[bytes, bytes]:
    """The two forms of a FULL row image's columns-present bitmap: unused high bits 0 (MariaDB) or 1
    (MySQL 9.7 sets every bit). The library reads both alike (its null bitmap is as long either way)."""
    return _full_bitmap(count), b"\xff" * ((count + 7) // 8)


def _full_image(bitmap: bytes, count: int) -> bool:
    """Every column of `count` is in the row image (binlog_row_image=FULL)."""
    if bitmap == _full_bitmap(count):
        return True
    return all(bitmap[i // 8] >> (i % 8) & 1 for i in range(count))


# ---------------------------------------------------------------------- rows events framed here
# With the native row path, a rows event of a table cdc reads is framed here and
# its rows handed to native code as bytes: the library's per-event Python work
# (BinLogPacketWrapper with its 17 arguments, RowsEvent.__init__ and its filters,
# BinLogEvent.__init__ asking the connection for the DBMS) was about a third of a
# native catch-up's GIL time (issue 19, py-spy). The library still reads every
# packet, and frames everything else but transaction boundaries (framed below):
# TABLE_MAP (which fills the table map read here), rotations, heartbeats, queries.
# Anything unusual in a rows event (extra row data, more than 250 columns, a
# partial row image, a size that does not add up, checksums to verify) is left
# to the library as before, and so is every event of a table without column
# names, so the error is the same.
# Layout (MySQL source, libbinlogevents rows_event.h; MariaDB log_event.h): the
# 19-byte common header, a post-header of table id (6 bytes) and flags (2), in
# v2 events a 2-byte extra-data length that counts itself, then the column count
# (length-coded), the columns-present bitmap(s) (a second one for updates), rows.
_ROWS_EVENT_TYPES = {23: (Op.INSERT, 8), 24: (Op.UPDATE, 8), 25: (Op.DELETE, 8),  # v1 (MariaDB)
                     30: (Op.INSERT, 10), 31: (Op.UPDATE, 10), 32: (Op.DELETE, 10)}  # v2 (MySQL 5.6+)
# After the packet's OK byte: timestamp, event type, server id, event size, next event's position.
_EVENT_HEADER = struct.Struct("<IBIII")
_TABLES_FRAMED_LIMIT = 1024  # table definitions whose framing decision is kept; past it, start over


class _FramedRows:
    """A rows event framed by `_Framer` instead of the library (what `fetchone` returns for it).

    `fetchone` reads `event_type`, `log_pos`, `timestamp` and `event` of what the
    packet wrapper gives it, and returns `event` if its class is one the stream
    asked for (`_open` adds this class to `only_events`).
    """

    __slots__ = ("event_type", "timestamp", "log_pos", "op", "table", "shape", "body", "_library")

    def __init__(self, op: Op, event_type: int, timestamp: int, log_pos: int, table, shape: _Shape, body: bytes,
                 library: tuple):
        self.op, self.event_type, self.timestamp, self.log_pos = op, event_type, timestamp, log_pos
        self.table, self.shape, self.body = table, shape, body
        self._library = library

    @property
    def event(self) -> "_FramedRows":
        # What fetchone returns. A property, not `self.event = self`: that reference cycle
        # left every framed event (and its packet's bytes) to the cyclic collector, which
        # freed 170,000 objects per 100,000 row changes of a catch-up (issue 19).
        return self

    def library_event(self, table_id: int):
        """The same event as the library frames it, for `RowsData.decode` (the packet was not read here)."""
        packet, args = self._library
        # Only this event's table, so a later TABLE_MAP cannot change it.
        event = _library_packet_wrapper(packet, {table_id: self.table}, *args).event
        if event is None:
            raise SourceError(f"the library did not frame the rows event of {self.table.schema}.{self.table.table}")
        return event


_TABLE_MAP_EVENT = 19


class _KnownTableMap:
    """A TABLE_MAP event this connection has parsed before (`_TableMaps.parsed`), without the library's wrapper.

    `fetchone` puts `event.get_table()` into its table map and, as cdc does not ask
    for TABLE_MAP events, reads on; that is all it does with one.
    """

    __slots__ = ("event_type", "timestamp", "log_pos", "table_id", "_table")

    def __init__(self, data: bytes, table_id: int, table):
        self.timestamp, self.event_type, _server_id, _size, self.log_pos = _EVENT_HEADER.unpack_from(data, 1)
        self.table_id, self._table = table_id, table

    @property
    def event(self) -> "_KnownTableMap":
        return self  # a property for the reason _FramedRows.event gives

    def get_table(self):
        return self._table


class _Framer:
    """One stream's rows-event framing: which tables it frames and how their rows are read."""

    def __init__(self, tables):
        self.tables = tables
        # id(the library's Table) -> (that Table, its _Shape or None when the library frames it).
        # With TABLE_MAP reuse every event of one table definition has the same Table.
        self.known: dict[int, tuple[object, _Shape | None]] = {}

    def frame(self, packet, table_map: dict, use_checksum: bool, post_header_lengths, args: tuple) -> _FramedRows | None:
        data = packet.get_all_data()
        kind = _ROWS_EVENT_TYPES.get(data[5]) if len(data) > 31 else None
        if kind is None:
            return None
        op, known = kind
        timestamp, event_type, _server_id, event_size, log_pos = _EVENT_HEADER.unpack_from(data, 1)
        if event_size + 1 != len(data):
            return None
        declared = known
        if post_header_lengths and 0 < event_type <= len(post_header_lengths):
            declared = post_header_lengths[event_type - 1]
        if declared < known or known == 10 and data[28:30] != b"\x02\x00":
            return None  # a malformed post-header (the library says so), or extra row data it reads
        table_id = int.from_bytes(data[20:26], "little")
        table = table_map.get(table_id)
        if table is None:
            return None  # a table the stream filtered out: the library drops the event, as before
        seen = self.known.get(id(table))
        if seen is None or seen[0] is not table:
            if len(self.known) >= _TABLES_FRAMED_LIMIT:
                self.known.clear()
            shape = None
            if (table.schema, table.table) in self.tables:
                shape = _shape(table.columns)
                if shape.names_missing:
                    shape = None
            seen = self.known[id(table)] = (table, shape)
        shape = seen[1]
        if shape is None:
            return None
        at = 20 + declared
        count = data[at]
        if count != len(shape.columns):  # also >= 251: a longer length-coded count
            return None
        at += 1
        width = (count + 7) // 8
        full = _full_bitmaps(count)
        if data[at:at + width] not in full:
            return None
        at += width
        if op is Op.UPDATE:
            if data[at:at + width] not in full:
                return None
            at += width
        end = len(data) - 4 if use_checksum else len(data)
        if at > end:
            return None
        return _FramedRows(op, event_type, timestamp, log_pos, table, shape, data[at:end], (packet, args))


# ---------------------------------------------------------------------- transaction boundaries framed here
# Every transaction brings a GTID event (MySQL also a BEGIN query) and an XID
# event around its rows. On an OLTP load of one row change per transaction the
# library's work for these (BinLogPacketWrapper with its 17 arguments, the
# event's __init__, BinLogEvent.__init__ asking the connection for the DBMS) was
# most of the CPU per row change: cProfile of 28,811 single-row transactions on
# MariaDB, 1.76 s of 3.7 s in fetchone against 0.09 s decoding rows natively.
# So cdc frames them too, for every stream of `_read` (Python or native row
# path), into a `_FramedEvent` carrying what `_read` uses. Only an event laid
# out exactly as documented is framed, with the values the library would give;
# anything else (a short or oversized event, a query other than BEGIN, a status
# variable the library would read differently, checksums to verify) goes to the
# library as before. Layouts, after the 19-byte common header (timestamp, type,
# server id, event size, next position, flags) and before a CRC32 trailer:
# * XID_EVENT (16): the 8-byte XID, no post-header (MySQL libbinlogevents
#   control_events.h `Xid_event`; MariaDB log_event.h `Xid_log_event`).
# * MariaDB GTID_EVENT (162, log_event.h `Gtid_log_event`, GTID_HEADER_LEN 19):
#   sequence number (8), domain id (4), flags2 (1: FL_STANDALONE = 1, ...), then a
#   commit id (8) with FL_GROUP_COMMIT_ID or 6 unused bytes, then XA/extra fields.
#   The GTID's server id is the common header's (as event.py MariadbGtidEvent takes it).
# * MySQL GTID_LOG_EVENT (33) and ANONYMOUS_GTID_LOG_EVENT (34) (control_events.h
#   `Gtid_event`, POST_HEADER_LENGTH 42): gtid flags (1), source UUID (16), GNO (8),
#   logical-clock type (1), last_committed (8), sequence_number (8), then commit
#   timestamps, transaction length and server versions. The library reads 26 or 42
#   of them (event.py GtidEvent); an anonymous one it does not parse
#   (NotImplementedEvent), and `_read` only checks its type. GTID_TAGGED_LOG_EVENT (42,
#   MySQL 9.x), a serialized format, stays with the library.
# * QUERY_EVENT (2) (statement_events.h `Query_event`, QUERY_HEADER_LEN 13):
#   thread id (4), execution time (4), schema length (1), error code (2), status
#   variables length (2), then any longer post-header the format description
#   declares, the status variables, the schema, a NUL, and the query to the end.
#   Framed only when the query is exactly BEGIN.
# MySQL: https://dev.mysql.com/doc/dev/mysql-server/latest/ classmysql_1_1binlog_1_1event_1_1
#   {Xid__event,Gtid__event,Query__event}.html; MariaDB: https://mariadb.com/kb/en/gtid_event/,
#   https://mariadb.com/kb/en/xid_event/, https://mariadb.com/kb/en/query_event/.
_XID_EVENT, _QUERY_EVENT, _GTID_LOG_EVENT, _ANONYMOUS_GTID_LOG_EVENT, _MARIADB_GTID_EVENT = 16, 2, 33, 34, 162
# Event type -> the library's class for it (packet.py __event_map), which the framed event stands for.
_BOUNDARY_EVENTS: dict[int, type] = {
    _XID_EVENT: XidEvent, _QUERY_EVENT: QueryEvent, _GTID_LOG_EVENT: GtidEvent,
    _ANONYMOUS_GTID_LOG_EVENT: NotImplementedEvent, _MARIADB_GTID_EVENT: MariadbGtidEvent}
_MARIADB_GTID = struct.Struct("<QIB")  # sequence number, domain id, flags2
_QUERY_POST_HEADER = struct.Struct("<IIBHH")
_BEGIN = b"BEGIN"
# Status variable key -> its value's length as event.py QueryEvent._read_status_vars_value_for_key
# reads it: a fixed length, or _PREFIXED (a length byte, then that many bytes), or _INVOKER (two
# such: user, host). Keys it reads as empty although a server writes a value (0x02 CATALOG, 0x0A,
# 0x0E, 0x0F), and the list of schema names (0x0C), are `_STATUS_VAR_DOUBTS`: such an event goes to
# the library. A key the library does not know at all takes `_status_var`'s path: the rest of the
# block is skipped.
_PREFIXED, _INVOKER = -1, -2
_STATUS_VAR_LENGTHS = {
    0x00: 4, 0x01: 8, 0x03: 4, 0x04: 6, 0x05: _PREFIXED, 0x06: _PREFIXED, 0x07: 2, 0x08: 2, 0x09: 8,
    0x0B: _INVOKER, 0x0D: 3, 0x10: 1, 0x11: 8, 0x12: 2, 0x13: 1, 0x14: 1, 0x80: 3, 0x81: 8}
_STATUS_VAR_DOUBTS = frozenset({0x02, 0x0A, 0x0C, 0x0E, 0x0F})


class _FramedEvent:
    """A transaction-boundary event framed by `_frame_boundary` instead of the library.

    `kind` is the library class it stands for (XidEvent, MariadbGtidEvent, GtidEvent,
    QueryEvent for BEGIN, NotImplementedEvent for an anonymous GTID): `_read` dispatches
    on it as on the class of the library's events, so both take one path. It has the
    attributes `_read` reads of that class (`timestamp`, `packet.log_pos`, `gtid`,
    `flags`, `query`, `event_type`) and what `fetchone` reads (see `_FramedRows`).
    """

    __slots__ = ("kind", "event_type", "timestamp", "log_pos", "gtid", "flags", "query")

    def __init__(self, kind: type, event_type: int, timestamp: int, log_pos: int, gtid: str | None = None,
                 flags: int = 0, query: str | None = None):
        self.kind, self.event_type, self.timestamp, self.log_pos = kind, event_type, timestamp, log_pos
        self.gtid, self.flags, self.query = gtid, flags, query

    @property
    def event(self) -> "_FramedEvent":
        return self  # a property for the reason _FramedRows.event gives

    @property
    def packet(self) -> "_FramedEvent":
        return self  # `_read` reads the end position of a library event as event.packet.log_pos

    def __repr__(self) -> str:
        return f"<_FramedEvent {self.kind.__name__} {self.gtid or self.query or ''} at {self.log_pos}>"


def _frame_boundary(data: bytes, kind: type, use_checksum: bool, post_header_lengths) -> _FramedEvent | None:
    """The event in DATA (OK byte, common header, body) as a `_FramedEvent`, or None for the library."""
    timestamp, event_type, server_id, event_size, log_pos = _EVENT_HEADER.unpack_from(data, 1)
    end = len(data) - 4 if use_checksum else len(data)
    size = end - 20  # post-header and payload
    if event_size + 1 != len(data) or size < 0:
        return None
    if event_type == _XID_EVENT:
        return _FramedEvent(kind, event_type, timestamp, log_pos) if size == 8 else None
    if event_type == _MARIADB_GTID_EVENT:
        if size < 19:
            return None
        seq_no, domain_id, flags = _MARIADB_GTID.unpack_from(data, 20)
        return _FramedEvent(kind, event_type, timestamp, log_pos, f"{domain_id}-{server_id}-{seq_no}", flags)
    if event_type == _GTID_LOG_EVENT or event_type == _ANONYMOUS_GTID_LOG_EVENT:
        if size < 42:
            return None
        gtid = None
        if event_type == _GTID_LOG_EVENT:  # event.py GtidEvent.gtid: the UUID's 8-4-4-4-12 hex digits, ':', GNO
            sid = data[21:37].hex()
            gtid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}:{int.from_bytes(data[37:45], 'little')}"
        return _FramedEvent(kind, event_type, timestamp, log_pos, gtid)
    if event_type == _QUERY_EVENT and data.endswith(_BEGIN, 0, end) and _query_begins(data, end, post_header_lengths):
        return _FramedEvent(kind, event_type, timestamp, log_pos, query="BEGIN")
    return None


def _query_begins(data: bytes, end: int, post_header_lengths) -> bool:
    """The QUERY event in DATA (its body ending at END) is BEGIN as the library reads it (event.py QueryEvent)."""
    size = end - 20
    if size < 13:
        return False
    _thread, _time, schema_length, _error, status_length = _QUERY_POST_HEADER.unpack_from(data, 20)
    declared = 13
    if post_header_lengths and len(post_header_lengths) >= _QUERY_EVENT:
        declared = post_header_lengths[_QUERY_EVENT - 1]  # BinLogEvent._advance_to_payload
    if declared < 13:  # the library raises MalformedBinLogEvent (a longer one than the event fails below)
        return False
    at = 20 + declared
    status_end = at + status_length
    # The library's walk over the status variables (its loop in QueryEvent.__init__); it
    # must land on the block's end, or it reads the schema and query from elsewhere.
    if status_end > end:
        return False  # the library reads the schema and query from past the event
    while at < status_end:  # ends on status_end: a value running past it returns below
        key = data[at]
        at += 1
        length = _STATUS_VAR_LENGTHS.get(key)
        if length is None:
            if key in _STATUS_VAR_DOUBTS:
                return False
            at = status_end  # unknown to the library: `_status_var` skips the rest
        elif length >= 0:
            at += length
        else:
            for _ in range(1 if length == _PREFIXED else 2):
                if at >= status_end:
                    return False  # the library would read the length past the block
                at += 1 + data[at]
        if at > status_end:
            return False
    query_at = status_end + schema_length + 1  # the schema, then a NUL the library skips unread
    return end - query_at == len(_BEGIN)


# The library's own wrapper (also if this module is imported again).
_library_packet_wrapper = getattr(BinLogPacketWrapper, "__wrapped__", BinLogPacketWrapper)


def _packet_wrapper(from_packet, table_map, ctl_connection, mysql_version, use_checksum, allowed_events, only_tables,
                    ignored_tables, only_schemas, ignored_schemas, freeze_schema, ignore_decode_errors,
                    verify_checksum, optional_meta_data, enable_logging, use_column_name_cache=False,
                    post_header_lengths=None):
    """`BinLogPacketWrapper` as binlogstream.py `fetchone` calls it: in `_read`'s streams, TABLE_MAP events
    seen before answered by `_KnownTableMap`, transaction boundaries framed by `_frame_boundary`, and
    cdc's rows events framed by `_Framer`."""
    args = (ctl_connection, mysql_version, use_checksum, allowed_events, only_tables, ignored_tables, only_schemas,
            ignored_schemas, freeze_schema, ignore_decode_errors, verify_checksum, optional_meta_data,
            enable_logging, use_column_name_cache, post_header_lengths)
    if type(table_map) is _TableMaps and not verify_checksum:
        data = from_packet.get_all_data()
        event_type = data[5] if len(data) > 20 else None
        if event_type == _TABLE_MAP_EVENT:
            if optional_meta_data and not freeze_schema:
                # The conditions of _table_map_event_init's reuse, and the same key.
                known = table_map.parsed.get(data[20:len(data) - 4] if use_checksum else data[20:])
                if known is not None:
                    return _KnownTableMap(data, known["table_id"], known["table_obj"])
        elif event_type in _BOUNDARY_EVENTS:
            kind = _BOUNDARY_EVENTS[event_type]
            # Framed only if the stream asked for the library's class (else the library drops the
            # event) and for _FramedEvent (else fetchone drops it): what _read sees is unchanged.
            if kind in allowed_events and _FramedEvent in allowed_events:
                boundary = _frame_boundary(data, kind, use_checksum, post_header_lengths)
                if boundary is not None:
                    return boundary
        elif table_map.framer is not None:
            framed = table_map.framer.frame(from_packet, table_map, use_checksum, post_header_lengths, args)
            if framed is not None:
                return framed
    return _library_packet_wrapper(from_packet, table_map, *args)


_packet_wrapper.__wrapped__ = _library_packet_wrapper  # type: ignore[attr-defined]


# The event classes `_read` asks its stream for (only_events): the library drops all others
# (TABLE_MAP events still fill its table map), and so does cdc's framing (`_packet_wrapper`).
_STREAM_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, PartialUpdateRowsEvent, XidEvent, QueryEvent,
                  GtidEvent, MariadbGtidEvent, RotateEvent, HeartbeatLogEvent, NotImplementedEvent, _FramedRows,
                  _FramedEvent)

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
        self.stop = stop or threading.Event()
        self.end = end
        self._stream: BinLogStreamReader | None = None
        # Set by close(): the consumer is done (stopping, or stopped by an error of its own), so
        # the read that the closed socket breaks is no lost connection to log and reconnect.
        self._closed = threading.Event()
        # id(the library's column list) -> (that list, its _Shape). With TABLE_MAP
        # reuse, all events of one table definition share one list. Holding the
        # list keeps its id from passing to another while the entry lives.
        self._shapes: dict[int, tuple[list, _Shape]] = {}

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
            only_events=list(_STREAM_EVENTS),
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
        framer = _Framer(self.tables) if self.prepare is not None else None
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
            if type(stream.table_map) is not _TableMaps:  # new, or replaced by a plain dict at a rotate
                stream.table_map = _TableMaps(parsed_table_maps, stream.table_map, framer)
            try:
                event = stream.fetchone()
            except pymysql.err.MySQLError as exc:
                raise self._translate(exc, start) from None
            except (OSError, EOFError) as exc:
                raise SourceConnectionError(f"binlog read failed: {exc}") from None
            if event is None:  # only without blocking=True, or after close()
                raise SourceConnectionError("binlog stream ended")
            file = stream.log_file or file
            if event.__class__ is _FramedRows:  # a rows event of a table cdc reads, framed by _Framer
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
            kind = event.kind if event.__class__ is _FramedEvent else event.__class__
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
            shape = _shape(event.columns)
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
        return (not getattr(event.packet, "_BinLogPacketWrapper__data_buffer", b"") and event.number_of_columns == count and _full_image(event.columns_present_bitmap, count)
                and (op is not Op.UPDATE or _full_image(event.columns_present_bitmap2, count)))

    def _raw(self, event, op: Op, shape: _Shape, end: BinlogPosition) -> RowsData:
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

    def _framed(self, event: _FramedRows, end: BinlogPosition) -> RowsData:
        """A framed rows event as `RowsData`; `decode` has the library frame and decode it after all."""
        op, shape, table_id = event.op, event.shape, event.table.table_id

        def decode() -> list[RowChange]:
            return list(self._decoded(event.library_event(table_id), op, shape, end))

        return RowsData(op, event.table.schema, event.table.table, shape.columns, shape.readers, event.body, end,
                        event.timestamp, decode)

    def _decoded(self, event, op: Op, shape: _Shape, end: BinlogPosition) -> Iterator[RowChange]:
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


def _time2_columns(library_columns) -> tuple:
    return tuple(c for c in library_columns if c.type == FieldType.TIME2 and getattr(c, "fsp", 0))


def _fix_times(values: dict, event, time2: tuple | None = None) -> dict:
    """Undo the library's mirrored fraction of negative TIME(1..6) values.

    row_event.py __read_time2 (1.0.17) negates the whole-second part but reads
    the fraction as stored, which for negative values is its complement: it
    returns -01:30:00.750000 for -01:30:00.25 (observed on MariaDB 10.11 for
    every fsp). The whole seconds are right, so the true fraction is 1s minus
    the one returned. tests/unit/test_values.py checks the library still does this.
    `time2` is `_time2_columns(event.columns)`, if the caller has it already.
    """
    for column in _time2_columns(event.columns) if time2 is None else time2:
        value = values.get(column.name)
        if isinstance(value, datetime.timedelta) and value < datetime.timedelta(0):
            seconds, micros = divmod(-value // datetime.timedelta(microseconds=1), 1_000_000)
            if micros:
                values[column.name] = -datetime.timedelta(seconds=seconds, microseconds=1_000_000 - micros)
    return values
