"""cdc/mysql/source.py and replication_hooks.py: the reuse of parsed TABLE_MAP events and of per-table column work (no server)."""

import datetime
from types import SimpleNamespace

import pytest
from pymysql.protocol import MysqlPacket
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import TableMapEvent, WriteRowsEvent

import cdc.mysql.source
from cdc.mysql import replication_hooks as hooks
from cdc.config import MysqlConfig, RetryConfig
from cdc.model import BinlogPosition, Column, ColumnKind, Op
from cdc.mysql.source import BinlogSource
from cdc.mysql.replication_hooks import TableMaps


@pytest.fixture(autouse=True)
def library_hooks():
    """BinlogSource installs them; these tests drive the library's parser directly."""
    hooks.install_library_hooks()

# TABLE_MAP events as MariaDB 10.11 sent them (binlog_row_metadata=FULL, CRC32 checksums),
# OK byte first, for capture.t (id INT PRIMARY KEY, name VARCHAR(20), d TIME(3)), and
# after ALTER TABLE capture.t ADD COLUMN extra INT (the server gave it a new table id).
TABLE_MAP = bytes.fromhex(
    "00ac7d026b130100000049000000063cfb020000170000000000010007636170747572650001740003030f13035000030601010002"
    "012d040a026964046e616d650164080100d70101bc")
ALTERED = bytes.fromhex(
    "00ac7d026b130100000050000000bf3efb020000180000000000010007636170747572650001740004030f1303035000030e010100"
    "02012d0410026964046e616d65016405657874726108010056b5221b")


def later(packet: bytes, timestamp: int, log_pos: int, crc: bytes) -> bytes:
    """The same event written again later: another header (timestamp, position) and checksum."""
    return (packet[:1] + timestamp.to_bytes(4, "little") + packet[5:14] + log_pos.to_bytes(4, "little")
            + packet[18:-4] + crc)


def parse(packet: bytes, table_map, optional_meta_data=True) -> TableMapEvent:
    ctl = SimpleNamespace(charset="utf8mb4", _get_dbms=lambda: "mariadb")
    wrapper = BinLogPacketWrapper(MysqlPacket(packet, "utf8"), table_map, ctl, (10, 11, 19), True,
                                  frozenset({TableMapEvent}), None, None, ["capture"], None, False, False, False,
                                  optional_meta_data, False)
    assert isinstance(wrapper.event, TableMapEvent)
    return wrapper.event


@pytest.fixture
def parses(monkeypatch):
    """Counts the library's own TABLE_MAP parses."""
    seen = []
    library = hooks._parse_table_map

    def counting(self, *args, **kwargs):
        seen.append(1)
        return library(self, *args, **kwargs)

    monkeypatch.setattr(hooks, "_parse_table_map", counting)
    return seen


def described(event: TableMapEvent) -> tuple:
    table = event.get_table()
    return (event.table_id, event.schema, event.table, event.column_count, table.data["primary_key"],
            [c.data for c in table.columns])


def test_a_table_map_seen_before_is_not_parsed_again(parses):
    maps = TableMaps({})
    first = parse(TABLE_MAP, maps)
    again = parse(later(TABLE_MAP, 1800000000, 5000, b"\x01\x02\x03\x04"), maps)
    assert len(parses) == 1
    fresh = parse(later(TABLE_MAP, 1800000000, 5000, b"\x01\x02\x03\x04"), {})  # the library alone
    assert described(again) == described(fresh) == described(first)
    assert [c.name for c in again.columns] == ["id", "name", "d"]
    assert again.columns[2].type == FIELD_TYPE.TIME2 and again.columns[2].fsp == 3
    # The event's own header, not the first one's.
    assert (again.timestamp, again.packet.log_pos) == (1800000000, 5000)
    assert (first.timestamp, first.packet.log_pos) != (again.timestamp, again.packet.log_pos)
    assert maps[again.table_id] is again.get_table() is first.get_table()


def test_a_changed_table_is_parsed_anew(parses):
    maps = TableMaps({})
    before = parse(TABLE_MAP, maps)
    after = parse(ALTERED, maps)
    assert len(parses) == 2
    assert [c.name for c in before.columns] == ["id", "name", "d"]
    assert [c.name for c in after.columns] == ["id", "name", "d", "extra"]
    assert set(maps) == {before.table_id, after.table_id}
    parse(later(ALTERED, 1800000001, 6000, b"\0\0\0\0"), maps)
    assert len(parses) == 2


def test_other_streams_and_settings_use_the_library_as_it_is(parses):
    parse(TABLE_MAP, {})
    parse(TABLE_MAP, {})  # a plain dict: someone else's BinLogStreamReader
    # Without the optional metadata the library asks the server for the names.
    maps = TableMaps({})
    parse(TABLE_MAP, maps, optional_meta_data=False)
    parse(TABLE_MAP, maps, optional_meta_data=False)
    assert len(parses) == 4 and maps.parsed == {}


def test_the_cache_starts_over_past_its_limit(parses, monkeypatch):
    monkeypatch.setattr(hooks, "_TABLE_MAP_CACHE_LIMIT", 1)
    maps = TableMaps({})
    parse(TABLE_MAP, maps)
    parse(ALTERED, maps)
    parse(later(ALTERED, 1, 2, b"\0\0\0\0"), maps)
    assert len(parses) == 2 and len(maps.parsed) == 1


# ---------------------------------------------------------------- rows events
def library_column(name, type_, **extra):
    return SimpleNamespace(name=name, type=type_, character_set_name=extra.pop("charset", None), **extra)


def rows_event(columns, *rows):
    event = WriteRowsEvent.__new__(WriteRowsEvent)  # only what _rows reads; the rows as if decoded already
    event.__dict__.update(schema="s", table="t", columns=columns, timestamp=1700000000,
                          _RowsEvent__rows=[{"values": dict(row), "none_sources": {}} for row in rows])
    return event


def source() -> BinlogSource:
    return BinlogSource(MysqlConfig(user="x", server_id=1), True, {("s", "t")}, RetryConfig())


def test_rows_of_one_table_definition_share_one_columns_tuple():
    src = source()
    definition = [library_column("id", FIELD_TYPE.LONG), library_column("d", FIELD_TYPE.TIME2, fsp=2),
                  library_column("b", FIELD_TYPE.BLOB, charset="binary")]
    end = BinlogPosition("binlog.000001", 100)
    negative = -datetime.timedelta(hours=1, seconds=1, microseconds=750000)  # the library's -01:00:01.25
    one = list(src._rows(rows_event(definition, {"id": 1, "d": negative, "b": b"x"},
                                    {"id": 2, "d": None, "b": None}), end))
    two = list(src._rows(rows_event(definition, {"id": 3, "d": negative, "b": b"y"}), end))
    assert one[0].columns is one[1].columns is two[0].columns
    assert one[0].columns == (Column("id", ColumnKind.INTEGER), Column("d", ColumnKind.TIME),
                              Column("b", ColumnKind.BINARY))
    assert one[0].after is not None and two[0].after is not None
    assert one[0].after["d"] == two[0].after["d"] == -datetime.timedelta(hours=1, seconds=1, microseconds=250000)
    assert [c.op for c in one + two] == [Op.INSERT] * 3 and [c.row_index for c in one] == [0, 1]

    # A new definition (after ALTER TABLE) is a new list from the library.
    altered = [library_column("id", FIELD_TYPE.LONGLONG), library_column("d", FIELD_TYPE.VARCHAR, charset="utf8mb4")]
    (three,) = src._rows(rows_event(altered, {"id": 4, "d": "text"}), end)
    assert three.columns == (Column("id", ColumnKind.INTEGER), Column("d", ColumnKind.STRING))
    assert three.after == {"id": 4, "d": "text"}


def test_rows_without_column_names_are_refused_every_time():
    src = source()
    definition = [library_column(None, FIELD_TYPE.LONG)]
    for _ in range(2):
        with pytest.raises(cdc.mysql.source.UnsupportedEventError, match="binlog_row_metadata=FULL"):
            list(src._rows(rows_event(definition, {"UNKNOWN_COL0": 1}), BinlogPosition("binlog.000001", 4)))


def test_library_hooks_are_installed_once_and_only_on_a_known_version(monkeypatch):
    import pymysqlreplication.binlogstream as binlogstream
    from pymysqlreplication.row_event import TableMapEvent

    hooks.install_library_hooks()
    hooks.install_library_hooks()
    assert binlogstream.MYSQL_EXPECTED_ERROR_CODES == []
    assert TableMapEvent.__init__ is hooks._table_map_event_init
    # a function's __wrapped__ is set by cdc, not declared (typeshed knows it on functools' wrappers only)
    assert getattr(TableMapEvent.__init__, "__wrapped__") is hooks._parse_table_map

    monkeypatch.setattr(hooks, "_library_version", lambda: (1, 1, 2))
    with pytest.raises(cdc.mysql.source.SourceError, match=r"mysql-replication 1\.1\.2 is installed.*setup\.cfg"):
        hooks.install_library_hooks()


# A QUERY event as MySQL 9.7.4 wrote it for `UPDATE capture.t SET v=2 WHERE id=1` in a session with
# binlog_format=STATEMENT (CRC32 checksum, OK byte first). Its status variables end with key 0x15 (one
# byte), which mysql-replication 1.0.17 does not know.
STATEMENT_QUERY = bytes.fromhex(
    "00a374166b02610000007a000000e90100000000290200000000000000000032000000000000012000a04500000000060373746404"
    "ff00ff00ff000901000000000000000c01636170747572650012ff0015000055504441544520636170747572652e742053455420763d"
    "322057484552452069643d31f014a94b")


def test_a_query_event_with_a_status_variable_newer_than_the_library_is_read():
    """Without the hook the library raised StatusVariableMismatch, and cdc stopped with a traceback
    ('unexpected error') instead of naming the statement-format change."""
    from pymysqlreplication.event import QueryEvent

    ctl = SimpleNamespace(charset="utf8mb4", _get_dbms=lambda: "mysql")
    wrapper = BinLogPacketWrapper(MysqlPacket(STATEMENT_QUERY, "utf8"), {}, ctl, (9, 7, 4), True,
                                  frozenset({QueryEvent}), None, None, None, None, False, False, False, True, False)
    event = wrapper.event
    assert isinstance(event, QueryEvent)
    assert event.schema == b"" and event.query == "UPDATE capture.t SET v=2 WHERE id=1"
    assert event.sql_mode == 0x45a00020 and event.mts_accessed_db_names == [b"capture"]  # read before it


def test_a_reconnect_that_finds_another_server_at_the_address_stops(monkeypatch):
    """BinlogSource._same_server, before each reconnect: the identity of the server answering now."""
    answering = ["mysql:new-uuid"]
    opened = []

    class Server:
        def __init__(self, config):
            opened.append(config)
            self.identity = answering[0]

        def close(self):
            pass

    monkeypatch.setattr(cdc.mysql.source, "Database", Server)
    at = cdc.mysql.source.StartPoint(BinlogPosition("binlog.000013", 6631271))
    config = MysqlConfig(host="db", port=3306, user="x", server_id=1)
    src = BinlogSource(config, False, {("s", "t")}, RetryConfig(), identity="mysql:old-uuid")
    with pytest.raises(cdc.mysql.source.SourceError) as stopped:
        src._same_server(at)
    assert type(stopped.value) is cdc.mysql.source.SourceError and stopped.value.exit_code == 1
    assert ("the server at db:3306 is mysql:new-uuid now, not mysql:old-uuid" in str(stopped.value)
            and "binlog.000013:6631271" in str(stopped.value) and "by GTID" in str(stopped.value))
    answering[0] = "mysql:old-uuid"
    src._same_server(at)  # the same server: reconnect
    BinlogSource(config, False, {("s", "t")}, RetryConfig())._same_server(at)  # no identity given: no check
    assert len(opened) == 2
