"""cdc's hooks into pymysqlreplication's internals, and the framing that stands in for its parsing.

cdc/mysql/source.py reads the binlog through the library; what it needs changed there is done
here, named as hooks and checked against the library's version (`install_library_hooks`,
python-mysql-replication 1.0.x, setup.cfg):

* a TABLE_MAP event this connection has parsed before reuses that parse (`TableMaps`);
* a QUERY event's status variables the library does not know are skipped (`_status_var`);
* text columns are decoded as the server converts them (`exact_charsets`, cdc/mysql/charsets.py);
* dates and times inside MySQL's binary JSON are read as MySQL writes them (`_json_opaque`);
* rows events of the native row path's tables (`Framer`) and each transaction's GTID, BEGIN and
  XID events (`_frame_boundary`) are framed here rather than by the library's packet wrapper.

It also says how the native row path reads each column of a library table (`Shape`,
`column_reader`, `schema_readers` for `cdc check`). Only this module and cdc/mysql/source.py
import pymysqlreplication (tests/unit/test_structure.py).
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from types import SimpleNamespace

import pymysqlreplication.binlogstream as _binlogstream
import pymysqlreplication.json_binary as _json_binary
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
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    PartialUpdateRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from cdc.errors import SourceError
from cdc.model import Column, Op
from cdc.mysql import charsets
from cdc.mysql.catalog import TableInfo
from cdc.mysql.types import GEOMETRY_TYPES, STRING_CODES, FieldType, kind_of_field_type


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


class TableMaps(dict):
    """A stream's table id -> Table map that also carries the connection's parsed TABLE_MAP events.

    The library replaces its map with a plain dict at every rotate; `_read`
    puts this back before the next event is parsed.
    """

    def __init__(self, parsed: dict[bytes, dict], tables: dict | None = None, framer: Framer | None = None):
        super().__init__(tables or {})
        self.parsed = parsed
        # The stream's rows-event framing (native row path only; see Framer).
        self.framer = framer


# The library's own __init__ (also if this module is imported again).
_parse_table_map = getattr(TableMapEvent.__init__, "__wrapped__", TableMapEvent.__init__)


def _table_map_event_init(self, from_packet, event_size, table_map, ctl_connection, **kwargs):
    parsed = table_map.parsed if isinstance(table_map, TableMaps) else None
    # freeze_schema reads the table map; without the optional metadata the
    # library asks information_schema for the names. Neither depends on the bytes alone.
    if parsed is None or kwargs.get("freeze_schema") or not kwargs.get("optional_meta_data"):
        _parse_table_map(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
        exact_charsets(self)
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
    exact_charsets(self)
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


def exact_charsets(event) -> None:
    """Text columns whose charset cdc decodes as the server does (cdc/mysql/charsets.py) get its codec.

    The library decodes a text value with `column.character_set_name` as a Python codec
    name (row_event.py __read_string, after PyMySQL's charset names): cp1252 for latin1,
    Python's utf16 (little-endian) for utf16, ... A name of cdc's codecs makes it decode
    them as the server converts them, and tells `column_reader` which table the native path reads.
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
    * TABLE_MAP events already parsed on this connection are reused (`TableMaps`).
    * Rows events of the native row path's tables are framed by cdc (`Framer`), and so are
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
    # a Framer (the native row path's) take the framing, all others get the library's wrapper.
    _binlogstream.BinLogPacketWrapper = _packet_wrapper


def _library_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(p) for p in re.findall(r"\d+", version("mysql-replication"))[:3])




@dataclass(frozen=True)
class Shape:
    """What `_rows` needs of a table definition, worked out once per definition rather than per event."""

    columns: tuple[Column, ...]
    names_missing: bool
    time2: tuple  # the library's TIME(1..6) columns, for _fix_times
    # How the native row path reads each column (cdc/rules/rowpath.py); None for a
    # column it leaves to the library.
    readers: tuple[tuple | None, ...] = ()


def shape_of(library_columns) -> Shape:
    return Shape(tuple(Column(c.name, kind_of_field_type(c.type, c.character_set_name), getattr(c, "bits", None),
                               unsigned_64=c.type == FieldType.LONGLONG and bool(getattr(c, "unsigned", False)))
                        for c in library_columns),
                  any(c.name is None for c in library_columns), time2_columns(library_columns),
                  tuple(reader_or_none(c) for c in library_columns))


_INT_BYTES = {FieldType.TINY: 1, FieldType.SHORT: 2, FieldType.INT24: 3, FieldType.LONG: 4, FieldType.LONGLONG: 8}
_TEXT_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8"})  # pymysql decodes these as strict UTF-8
_SIMPLE_READERS = {FieldType.FLOAT: "float", FieldType.DOUBLE: "double", FieldType.DATE: "date",
                   FieldType.DATETIME: "datetime_old", FieldType.TIMESTAMP: "timestamp_old",
                   FieldType.TIME: "time_old", FieldType.YEAR: "year"}


def column_reader(c) -> tuple | None:
    """How the native row path reads a library column: (reader, a, b, c, labels), mirroring
    row_event.py __read_values_name; None for what it leaves to the library (charsets cdc has no
    table for (`exact_charsets`), types the library does not read)."""
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
        if native is not None:  # given by exact_charsets: native/src/charset.rs reads the same table
            return (f"text:{native}", prefix, 0, 0, None)
        if c.character_set_name == "binary":
            return ("binary", prefix, 0, 0, None)
    return None


def reader_or_none(c) -> tuple | None:
    try:
        return column_reader(c)
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
    instead of a TABLE_MAP (for `cdc check`): `column_reader` of stand-ins for the library's columns."""
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
    exact_charsets(SimpleNamespace(_processed=True, columns=columns, dbms=dbms))
    return tuple(reader_or_none(c) for c in columns)


@functools.lru_cache(maxsize=256)
def _full_bitmap(count: int) -> bytes:
    """The columns-present bitmap of a FULL row image of `count` columns, unused high bits 0 (as MariaDB writes it)."""
    return ((1 << count) - 1).to_bytes((count + 7) // 8, "little")


@functools.lru_cache(maxsize=256)
def _full_bitmaps(count: int) -> tuple[bytes, bytes]:
    """The two forms of a FULL row image's columns-present bitmap: unused high bits 0 (MariaDB) or 1
    (MySQL 9.7 sets every bit). The library reads both alike (its null bitmap is as long either way)."""
    return _full_bitmap(count), b"\xff" * ((count + 7) // 8)


def full_image(bitmap: bytes, count: int) -> bool:
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


class FramedRows:
    """A rows event framed by `Framer` instead of the library (what `fetchone` returns for it).

    `fetchone` reads `event_type`, `log_pos`, `timestamp` and `event` of what the
    packet wrapper gives it, and returns `event` if its class is one the stream
    asked for (`_open` adds this class to `only_events`).
    """

    __slots__ = ("event_type", "timestamp", "log_pos", "op", "table", "shape", "body", "_library")

    def __init__(self, op: Op, event_type: int, timestamp: int, log_pos: int, table, shape: Shape, body: bytes,
                 library: tuple):
        self.op, self.event_type, self.timestamp, self.log_pos = op, event_type, timestamp, log_pos
        self.table, self.shape, self.body = table, shape, body
        self._library = library

    @property
    def event(self) -> "FramedRows":
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
    """A TABLE_MAP event this connection has parsed before (`TableMaps.parsed`), without the library's wrapper.

    `fetchone` puts `event.get_table()` into its table map and, as cdc does not ask
    for TABLE_MAP events, reads on; that is all it does with one.
    """

    __slots__ = ("event_type", "timestamp", "log_pos", "table_id", "_table")

    def __init__(self, data: bytes, table_id: int, table):
        self.timestamp, self.event_type, _server_id, _size, self.log_pos = _EVENT_HEADER.unpack_from(data, 1)
        self.table_id, self._table = table_id, table

    @property
    def event(self) -> "_KnownTableMap":
        return self  # a property for the reason FramedRows.event gives

    def get_table(self):
        return self._table


class Framer:
    """One stream's rows-event framing: which tables it frames and how their rows are read."""

    def __init__(self, tables):
        self.tables = tables
        # id(the library's Table) -> (that Table, its Shape or None when the library frames it).
        # With TABLE_MAP reuse every event of one table definition has the same Table.
        self.known: dict[int, tuple[object, Shape | None]] = {}

    def frame(self, packet, table_map: dict, use_checksum: bool, post_header_lengths, args: tuple) -> FramedRows | None:
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
                shape = shape_of(table.columns)
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
        return FramedRows(op, event_type, timestamp, log_pos, table, shape, data[at:end], (packet, args))


# ---------------------------------------------------------------------- transaction boundaries framed here
# Every transaction brings a GTID event (MySQL also a BEGIN query) and an XID
# event around its rows. On an OLTP load of one row change per transaction the
# library's work for these (BinLogPacketWrapper with its 17 arguments, the
# event's __init__, BinLogEvent.__init__ asking the connection for the DBMS) was
# most of the CPU per row change: cProfile of 28,811 single-row transactions on
# MariaDB, 1.76 s of 3.7 s in fetchone against 0.09 s decoding rows natively.
# So cdc frames them too, for every stream of `_read` (Python or native row
# path), into a `FramedEvent` carrying what `_read` uses. Only an event laid
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


class FramedEvent:
    """A transaction-boundary event framed by `_frame_boundary` instead of the library.

    `kind` is the library class it stands for (XidEvent, MariadbGtidEvent, GtidEvent,
    QueryEvent for BEGIN, NotImplementedEvent for an anonymous GTID): `_read` dispatches
    on it as on the class of the library's events, so both take one path. It has the
    attributes `_read` reads of that class (`timestamp`, `packet.log_pos`, `gtid`,
    `flags`, `query`, `event_type`) and what `fetchone` reads (see `FramedRows`).
    """

    __slots__ = ("kind", "event_type", "timestamp", "log_pos", "gtid", "flags", "query")

    def __init__(self, kind: type, event_type: int, timestamp: int, log_pos: int, gtid: str | None = None,
                 flags: int = 0, query: str | None = None):
        self.kind, self.event_type, self.timestamp, self.log_pos = kind, event_type, timestamp, log_pos
        self.gtid, self.flags, self.query = gtid, flags, query

    @property
    def event(self) -> "FramedEvent":
        return self  # a property for the reason FramedRows.event gives

    @property
    def packet(self) -> "FramedEvent":
        return self  # `_read` reads the end position of a library event as event.packet.log_pos

    def __repr__(self) -> str:
        return f"<FramedEvent {self.kind.__name__} {self.gtid or self.query or ''} at {self.log_pos}>"


def _frame_boundary(data: bytes, kind: type, use_checksum: bool, post_header_lengths) -> FramedEvent | None:
    """The event in DATA (OK byte, common header, body) as a `FramedEvent`, or None for the library."""
    timestamp, event_type, server_id, event_size, log_pos = _EVENT_HEADER.unpack_from(data, 1)
    end = len(data) - 4 if use_checksum else len(data)
    size = end - 20  # post-header and payload
    if event_size + 1 != len(data) or size < 0:
        return None
    if event_type == _XID_EVENT:
        return FramedEvent(kind, event_type, timestamp, log_pos) if size == 8 else None
    if event_type == _MARIADB_GTID_EVENT:
        if size < 19:
            return None
        seq_no, domain_id, flags = _MARIADB_GTID.unpack_from(data, 20)
        return FramedEvent(kind, event_type, timestamp, log_pos, f"{domain_id}-{server_id}-{seq_no}", flags)
    if event_type == _GTID_LOG_EVENT or event_type == _ANONYMOUS_GTID_LOG_EVENT:
        if size < 42:
            return None
        gtid = None
        if event_type == _GTID_LOG_EVENT:  # event.py GtidEvent.gtid: the UUID's 8-4-4-4-12 hex digits, ':', GNO
            sid = data[21:37].hex()
            gtid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}:{int.from_bytes(data[37:45], 'little')}"
        return FramedEvent(kind, event_type, timestamp, log_pos, gtid)
    if event_type == _QUERY_EVENT and data.endswith(_BEGIN, 0, end) and _query_begins(data, end, post_header_lengths):
        return FramedEvent(kind, event_type, timestamp, log_pos, query="BEGIN")
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
    cdc's rows events framed by `Framer`."""
    args = (ctl_connection, mysql_version, use_checksum, allowed_events, only_tables, ignored_tables, only_schemas,
            ignored_schemas, freeze_schema, ignore_decode_errors, verify_checksum, optional_meta_data,
            enable_logging, use_column_name_cache, post_header_lengths)
    if type(table_map) is TableMaps and not verify_checksum:
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
            # event) and for FramedEvent (else fetchone drops it): what _read sees is unchanged.
            if kind in allowed_events and FramedEvent in allowed_events:
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
STREAM_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, PartialUpdateRowsEvent, XidEvent, QueryEvent,
                  GtidEvent, MariadbGtidEvent, RotateEvent, HeartbeatLogEvent, NotImplementedEvent, FramedRows,
                  FramedEvent)


def time2_columns(library_columns) -> tuple:
    return tuple(c for c in library_columns if c.type == FieldType.TIME2 and getattr(c, "fsp", 0))
