"""cdc's own framing of transaction boundaries (cdc/mysql/source.py `_frame_boundary`).

Differential: for the same bytes, what `_packet_wrapper` frames must carry every
value `_read` uses with the value the library's own event has (`kind` standing
for its class, timestamp, end position, event type, GTID, MariaDB flags, query),
and whatever it does not frame must be the library's wrapper, unchanged. The
bytes are real events captured from MariaDB 10.11 and MySQL 9.7 (checksums on),
the same without their checksum, and events built by hand from the documented
layouts for the cases the servers did not write here.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql.protocol import MysqlPacket
from pymysqlreplication.event import GtidEvent, MariadbGtidEvent, NotImplementedEvent, QueryEvent, XidEvent
from pymysqlreplication.exceptions import MalformedBinLogEvent

from cdc.mysql import source
from cdc.mysql import replication_hooks as hooks

hooks.install_library_hooks()  # the library's QUERY event reads unknown status variables as cdc has it

H = bytes.fromhex
# Captured with the library's wrapper recording each packet (OK byte, header, body, CRC32).
MARIADB_GTID_STANDALONE = H("00c299166ba2010000002a0000008ef2310208003f7400000000000000000000290000000000002cda9b1d")
MARIADB_GTID = H("00c299166ba2010000002a000000dbf3310208004174000000000000000000000c000000000000f2788450")
MARIADB_XID = H("00c299166b10010000001f000000c1f4310200002b64010000000000ef8bbc5c")
MYSQL_GTID = H("00c299166b21610000004f000000922f0800000000691d5dd5f22f11f1ae6e02fc000000012904000000000000022804"
               "0000000000002904000000000000f3d7b49b096206fc23015062010049bbc12a")
MYSQL_GTID_DDL = H("00c299166b21610000004d000000d22d0800000001691d5dd5f22f11f1ae6e02fc000000012704000000000000022604"
                   "00000000000027040000000000006f1eb49b096206d6506201008dee352c")
MYSQL_BEGIN = H("00c299166b0261000000470000001833080008006f000000000000000000001d000000000000012000a04500000000"
                "060373746404ff00ff00ff0012ff0000424547494ed77afb19")
MYSQL_BEGIN_FOR_UPDATE = H("00c299166b0261000000500000000531080008006f0000000000000000000026000000000000012000a0450000"
                           "0000060373746404ff00ff00ff0009010000000000000012ff0000424547494e5b6906b3")
MYSQL_XID = H("00c299166b10610000001f0000006630080000006209000000000000294bea2e")
MYSQL_DDL = H("00c299166b0261000000890000005b2e080008006f0000000000000009000034000000000000012000a0450000000006037374"
              "6404ff00ff00ff000c016672616d655f6361700011600900000000000012ff0014006672616d655f63617000435245415445"
              "204441544142415345204946204e4f5420455849535453206672616d655f6361709e62e101")
MYSQL_COMMIT = H("00c299166b026100000048000000c733080008006f000000000000000000001d000000000000012000a04500000000060373"
                 "746404ff00ff00ff0012ff0000434f4d4d49546e6e69bc")

CAPTURED = [MARIADB_GTID_STANDALONE, MARIADB_GTID, MARIADB_XID, MYSQL_GTID, MYSQL_GTID_DDL, MYSQL_BEGIN,
            MYSQL_BEGIN_FOR_UPDATE, MYSQL_XID]
ALLOWED = frozenset(hooks.STREAM_EVENTS)


class Ctl:
    charset = "utf8mb4"

    def __init__(self, dbms: str):
        self.dbms = dbms

    def _get_dbms(self) -> str:
        return self.dbms


def without_checksum(data: bytes) -> bytes:
    size = struct.unpack_from("<I", data, 10)[0]
    return data[:10] + struct.pack("<I", size - 4) + data[14:-4]


def header(event_type: int, body: bytes, checksum=True, server_id=1, log_pos=4242, timestamp=1700000000) -> bytes:
    trailer = b"\xde\xad\xbe\xef" if checksum else b""
    size = 19 + len(body) + len(trailer)
    return b"\x00" + struct.pack("<IBIIIH", timestamp, event_type, server_id, size, log_pos, 0) + body + trailer


def args(checksum: bool, allowed=ALLOWED, verify=False, post_header_lengths=None, dbms="mysql"):
    return (Ctl(dbms), (9, 7, 4), checksum, allowed, None, None, None, None, False, False, verify, True, False,
            False, post_header_lengths)


def table_maps():
    return hooks.TableMaps({}, None, None)


def library(data: bytes, checksum: bool, **kw):
    return hooks._library_packet_wrapper(MysqlPacket(data, "utf8"), table_maps(), *args(checksum, **kw))


def cdc(data: bytes, checksum: bool, **kw):
    return hooks._packet_wrapper(MysqlPacket(data, "utf8"), table_maps(), *args(checksum, **kw))


def assert_same(framed, wrapper) -> None:
    """FRAMED carries every value `_read` and `fetchone` use with the library's value."""
    event = wrapper.event
    assert isinstance(framed, hooks.FramedEvent)
    library_class = type(event)  # not `framed.kind is type(event)`: mypy would narrow `event` to object
    assert framed.event is framed and framed.kind is library_class
    assert (framed.event_type, framed.timestamp, framed.log_pos) == (wrapper.event_type, wrapper.timestamp,
                                                                     wrapper.log_pos)
    assert (framed.event.event_type, framed.event.timestamp, framed.event.packet.log_pos) == (
        event.event_type, event.timestamp, event.packet.log_pos)
    if isinstance(event, (GtidEvent, MariadbGtidEvent)):
        assert framed.gtid == event.gtid
    if isinstance(event, MariadbGtidEvent):
        assert framed.flags == event.flags
    if isinstance(event, QueryEvent):
        assert framed.query == event.query.strip() == "BEGIN"


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("data", CAPTURED, ids=lambda d: f"type{d[5]}-{len(d)}")
def test_captured_boundaries_are_framed_with_the_library_values(data, checksum):
    if not checksum:
        data = without_checksum(data)
    assert_same(cdc(data, checksum), library(data, checksum))


def test_the_values_are_what_the_servers_wrote():
    """Not only equal to the library's: the GTIDs the servers reported, the FL_STANDALONE of a DDL."""
    ddl, dml = cdc(MARIADB_GTID_STANDALONE, True), cdc(MARIADB_GTID, True)
    assert (ddl.gtid, ddl.flags & 1, dml.gtid, dml.flags & 1) == ("0-1-29759", 1, "0-1-29761", 0)
    assert cdc(MYSQL_GTID, True).gtid == "691d5dd5-f22f-11f1-ae6e-02fc00000001:1065"
    xid = cdc(MYSQL_XID, True)
    assert (xid.kind, xid.timestamp, xid.packet.log_pos) == (XidEvent, 0x6b1699c2, 0x083066)


def test_mariadb_gtid_layouts_and_a_large_server_id():
    # seq_no, domain id, flags2 FL_GROUP_COMMIT_ID with its commit id (21 bytes), and 6 unused bytes (19).
    group = struct.pack("<QIB", 2**64 - 1, 2**32 - 1, 0x02 | 0x04) + struct.pack("<Q", 77)
    plain = struct.pack("<QIB", 5, 3, 0x01) + bytes(6)
    for body in (group, plain):
        for checksum in (True, False):
            data = header(162, body, checksum, server_id=2**32 - 1)
            assert_same(cdc(data, checksum, dbms="mariadb"), library(data, checksum, dbms="mariadb"))
    assert cdc(header(162, plain, True, server_id=2**32 - 1), True).gtid == f"3-{2**32 - 1}-5"


def test_mysql_anonymous_gtid_stands_for_the_library_not_implemented_event():
    """gtid_mode=OFF: the library yields a NotImplementedEvent, and `_read` looks at its type only."""
    body = MYSQL_GTID[20:-4]
    anonymous = header(34, b"\x01" + bytes(16) + bytes(8) + body[25:])
    framed, wrapper = cdc(anonymous, True), library(anonymous, True)
    assert isinstance(wrapper.event, NotImplementedEvent)
    assert_same(framed, wrapper)
    assert framed.event_type == 34 and 34 not in source._FATAL_EVENT_TYPES


def test_mysql_gtid_of_a_large_gno():
    body = b"\x00" + bytes(range(16)) + struct.pack("<Q", 2**63 - 1) + b"\x02" + bytes(16)
    data = header(33, body)
    assert_same(cdc(data, True), library(data, True))
    assert cdc(data, True).gtid == f"00010203-0405-0607-0809-0a0b0c0d0e0f:{2**63 - 1}"


def query_event(status: bytes, query: bytes, schema=b"", checksum=True, post_header_pad=b"", schema_length=None) -> bytes:
    length = len(schema) if schema_length is None else schema_length
    post = struct.pack("<IIBHH", 7, 0, length, 0, len(status)) + post_header_pad
    return header(2, post + status + schema + b"\x00" + query, checksum)


STATUS = (b"\x00" + bytes(4) + b"\x01" + bytes(8) + b"\x06\x03std" + b"\x04" + bytes(6) + b"\x05\x06+00:00"
          + b"\x0b\x04root\x09localhost" + b"\x12\xff\x00" + b"\x80\x01\x02\x03" + b"\x81" + bytes(8))


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("status, schema", [
    (b"", b""),
    (STATUS, b""),
    (STATUS, b"app"),  # a BEGIN logged with a current schema
    (b"\x0b\x00\x00", b""),  # an empty invoker
    (b"\x00" + bytes(4) + b"\x15\x01\x02\x03", b""),  # 0x15, unknown to the library: `_status_var` skips it
    (b"\x82\x01", b""),  # MariaDB's Q_GTID_FLAGS3, unknown to the library
])
def test_begin_queries_are_framed_past_every_status_variable_the_library_reads(status, schema, checksum):
    data = query_event(status, b"BEGIN", schema, checksum)
    assert_same(cdc(data, checksum), library(data, checksum))


def test_a_longer_declared_query_post_header_is_skipped_as_the_library_skips_it():
    lengths = [0] * 40
    lengths[2 - 1] = 15
    data = query_event(STATUS, b"BEGIN", post_header_pad=b"\xff\xff")
    assert_same(cdc(data, True, post_header_lengths=lengths), library(data, True, post_header_lengths=lengths))
    lengths[2 - 1] = 12  # shorter than the format allows: cdc leaves it to the library, which raises its error
    with pytest.raises(MalformedBinLogEvent):
        cdc(data, True, post_header_lengths=lengths)


def library_outcome(data: bytes, checksum: bool, **kw):
    try:
        wrapper = library(data, checksum, **kw)
    except Exception as exc:  # noqa: BLE001 - the library's errors on malformed bytes vary
        return ("raises", type(exc))
    event = wrapper.event
    return ("event", type(event), getattr(event, "query", None), getattr(event, "gtid", None))


@pytest.mark.parametrize("data, why", [
    (query_event(STATUS, b"COMMIT"), "another query"),
    (query_event(STATUS, b"begin"), "another spelling: the library's path"),
    (query_event(STATUS, b"BEGIN "), "another length"),
    (MYSQL_DDL, "DDL"),
    (MYSQL_COMMIT, "COMMIT"),
    (query_event(b"\x02\x03std\x00", b"BEGIN"), "0x02 CATALOG, which the library reads as empty"),
    (query_event(b"\x0c\x01app\x00", b"BEGIN"), "0x0C database names"),
    (query_event(b"\x0e" + bytes(5), b"BEGIN"), "0x0E, read as empty"),
    (query_event(b"\x01" + bytes(7), b"BEGIN"), "a value running past the block"),
    (query_event(b"\x05", b"BEGIN"), "a length byte past the block"),
    (query_event(b"\x0b\x00", b"BEGIN"), "an invoker's host length past the block"),
    (query_event(b"", b"BEGIN", schema_length=1), "a schema length that leaves no NUL"),
    (query_event(b"", b"BEGIN", schema_length=200), "a schema longer than the event"),
    (header(16, bytes(9)), "an XID event of another size"),
    (header(16, bytes(7)), "a short XID event"),
    (header(162, bytes(18)), "a short MariaDB GTID event"),
    (header(33, bytes(41)), "a short MySQL GTID event"),
    (header(34, bytes(41)), "a short anonymous GTID event"),
    (header(42, bytes(60)), "GTID_TAGGED_LOG_EVENT (MySQL 9.x)"),
    (MYSQL_XID[:-1], "a size that does not add up"),
])
def test_leaves_to_the_library_what_it_does_not_frame_exactly(data, why):
    assert_library(data, True)


def assert_library(data: bytes, checksum: bool) -> None:
    """`_packet_wrapper` gave DATA to the library: its wrapper, or its error."""
    try:
        wrapper = cdc(data, checksum)
    except Exception as exc:  # noqa: BLE001 - the library's errors on malformed bytes vary
        assert library_outcome(data, checksum) == ("raises", type(exc))
        return
    assert isinstance(wrapper, hooks._library_packet_wrapper)


def test_checksums_to_verify_and_events_the_stream_did_not_ask_for_go_to_the_library():
    assert not isinstance(cdc(MYSQL_XID, True, verify=True), hooks.FramedEvent)
    for data, kind in [(MYSQL_XID, XidEvent), (MYSQL_GTID, GtidEvent), (MARIADB_GTID, MariadbGtidEvent),
                       (MYSQL_BEGIN, QueryEvent)]:
        without_kind = cdc(data, True, allowed=ALLOWED - {kind})
        assert without_kind.event is None  # dropped by the library, as it would be without cdc's framing
        assert not isinstance(cdc(data, True, allowed=ALLOWED - {hooks.FramedEvent}), hooks.FramedEvent)


def test_other_streams_get_the_library_wrapper():
    """Only `_read`'s streams (their table map a _TableMaps) take cdc's framing."""
    wrapper = hooks._packet_wrapper(MysqlPacket(MYSQL_XID, "utf8"), {}, *args(True))
    assert isinstance(wrapper, hooks._library_packet_wrapper) and isinstance(wrapper.event, XidEvent)


def test_read_dispatches_every_class_of_its_stream():
    """Every class `_read` asks for is one its `kind` checks know, and a framed event is one of them."""
    for kind in hooks._BOUNDARY_EVENTS.values():
        assert kind in hooks.STREAM_EVENTS
    assert hooks.FramedEvent in hooks.STREAM_EVENTS


@settings(max_examples=400, deadline=None)
@given(data=st.sampled_from(CAPTURED + [query_event(STATUS, b"BEGIN", b"app")]), at=st.integers(1, 200),
       value=st.integers(0, 255), checksum=st.booleans())
def test_a_changed_byte_is_framed_only_as_the_library_reads_it(data, at, value, checksum):
    """Any one byte changed, in the header, post-header, status variables or body: either cdc frames
    it with the library's values, or it leaves the event to the library."""
    if not checksum:
        data = without_checksum(data)
    data = bytearray(data)
    data[at % len(data)] = value
    data = bytes(data)
    try:
        framed = cdc(data, checksum)
    except Exception:  # noqa: BLE001 - only the library raises: cdc's framing returns None instead
        assert_library(data, checksum)
        return
    if isinstance(framed, hooks.FramedEvent):
        assert_same(framed, library(data, checksum))
    else:
        assert isinstance(framed, hooks._library_packet_wrapper)


def test_framed_events_are_freed_by_reference_count_alone():
    import gc

    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        for _ in range(200):
            framed = cdc(MYSQL_GTID, True)
            assert framed.event is framed and framed.packet is framed
        del framed
        assert len(gc.get_objects()) - before < 50
    finally:
        gc.enable()


def test_read_treats_a_framed_event_as_the_library_event():
    """`_read`'s checks are on `kind`: the framed XID and the library's XidEvent take the same branch."""
    framed = cdc(MYSQL_XID, True)
    event = library(MYSQL_XID, True).event
    for e in (framed, event):
        kind = e.kind if e.__class__ is hooks.FramedEvent else e.__class__
        assert issubclass(kind, XidEvent) and not issubclass(kind, (QueryEvent, GtidEvent, NotImplementedEvent))
