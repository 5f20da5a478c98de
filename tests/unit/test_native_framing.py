"""cdc's own framing of rows events for the native row path (cdc/mysql/source.py `_Framer`, issue 19).

It frames only what it reads exactly the way the library does (tests/integration/
test_native_rowpath.py compares the actions of both over a real binlog) and hands
everything else back to the library (None): extra row data, long column counts,
partial row images, sizes that do not add up, tables cdc does not read or whose
column names the server did not send.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from pymysqlreplication.constants import FIELD_TYPE

from cdc.model import Op
from cdc.mysql import replication_hooks as hooks


class Packet:
    def __init__(self, data: bytes):
        self.data = data

    def get_all_data(self) -> bytes:
        return self.data


def column(name: str | None):
    return SimpleNamespace(name=name, type=FIELD_TYPE.LONG, unsigned=False, character_set_name=None)


def table(table_id=7, schema="s", name="t", names=("id", "v")):
    return SimpleNamespace(table_id=table_id, schema=schema, table=name, columns=[column(n) for n in names])


def event(event_type: int, body: bytes, *, table_id=7, count=2, bitmap=b"\x03", extra: bytes | None = None,
          checksum=True, size_delta=0, post_header_pad=b"") -> bytes:
    """A rows event as the server sends it: OK byte, common header, post-header, count, bitmap(s), rows."""
    post = table_id.to_bytes(6, "little") + b"\x00\x00"
    if event_type >= 30:
        extra = extra or b""
        post += struct.pack("<H", 2 + len(extra))
    post += post_header_pad
    payload = post + (extra if event_type >= 30 and extra else b"") + bytes([count]) + bitmap
    if event_type in (24, 31):
        payload += bitmap
    payload += body
    trailer = b"\xde\xad\xbe\xef" if checksum else b""
    size = 19 + len(payload) + len(trailer) + size_delta
    header = struct.pack("<IBIIIH", 1700000000, event_type, 1, size, 4242, 0)
    return b"\x00" + header + payload + trailer


ROWS = b"\x00" + struct.pack("<ii", 1, 2)  # one row: null bitmap, two INTs


def frame(data: bytes, known=None, tables=frozenset({("s", "t")}), checksum=True, post_header_lengths=None):
    framer = hooks.Framer(tables)
    known = known or table()
    return framer.frame(Packet(data), {known.table_id: known}, checksum, post_header_lengths, ())


@pytest.mark.parametrize("event_type, op", [(23, Op.INSERT), (24, Op.UPDATE), (25, Op.DELETE),
                                            (30, Op.INSERT), (31, Op.UPDATE), (32, Op.DELETE)])
def test_frames_v1_and_v2_rows_events_of_cdc_tables(event_type, op):
    framed = frame(event(event_type, ROWS))
    assert framed is not None
    assert (framed.op, framed.event_type, framed.log_pos, framed.timestamp) == (op, event_type, 4242, 1700000000)
    assert framed.body == ROWS  # after the bitmap(s), without the checksum
    assert framed.event is framed
    assert [c.name for c in framed.shape.columns] == ["id", "v"]
    assert framed.shape.readers == (("int", 4, 0, 0, None), ("int", 4, 0, 0, None))


@pytest.mark.parametrize("event_type", [30, 31, 32])
def test_mysql_full_images_with_the_unused_bitmap_bits_set_are_framed_too(event_type):
    """MySQL 9.7 sets every bit of a FULL image's columns-present bitmap, 0xFF for two columns."""
    framed = frame(event(event_type, ROWS, bitmap=b"\xff"))
    assert framed is not None and framed.body == ROWS
    assert frame(event(event_type, ROWS, bitmap=b"\xfd")) is None  # column 2 missing: a partial image


def test_without_checksums_the_rows_run_to_the_end():
    assert frame(event(23, ROWS, checksum=False), checksum=False).body == ROWS


def test_a_longer_declared_post_header_is_skipped_as_the_library_skips_it():
    lengths = [0] * 40
    lengths[23 - 1] = 10
    assert frame(event(23, ROWS, post_header_pad=b"\xff\xff"), post_header_lengths=lengths).body == ROWS
    lengths[23 - 1] = 6  # shorter than the format allows: the library raises its error
    assert frame(event(23, ROWS), post_header_lengths=lengths) is None


@pytest.mark.parametrize("case", [
    dict(extra=b"\x01\x05\x00"),  # v2 extra row data (partition id): the library reads it
    dict(bitmap=b"\x01"),  # a partial row image (binlog_row_image=MINIMAL): the library's error
    dict(count=3, bitmap=b"\x07"),  # the event has another column count than the table map
    dict(size_delta=1),  # the event size does not match the packet
    dict(table_id=8),  # a table the stream filtered out: the library drops it
])
def test_leaves_to_the_library_what_it_does_not_frame_exactly(case):
    event_type = 30 if "extra" in case else 23
    assert frame(event(event_type, ROWS, **case)) is None


def test_leaves_other_tables_and_tables_without_column_names_to_the_library():
    assert frame(event(23, ROWS), tables=frozenset({("s", "other")})) is None
    assert frame(event(23, ROWS), known=table(names=("id", None))) is None


def test_leaves_events_other_than_rows_and_short_packets_to_the_library():
    data = event(23, ROWS)
    assert frame(data[:5] + b"\x13" + data[6:]) is None  # TABLE_MAP
    assert frame(data[:25]) is None


def test_a_table_definition_is_looked_at_once():
    framer = hooks.Framer(frozenset({("s", "t")}))
    known = table()
    first = framer.frame(Packet(event(23, ROWS)), {7: known}, True, None, ())
    second = framer.frame(Packet(event(25, ROWS)), {7: known}, True, None, ())
    assert first is not None and second is not None and first.shape is second.shape


def test_framed_events_are_freed_by_reference_count_alone():
    """No reference cycle: a catch-up frames tens of thousands of events per second."""
    import gc

    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            framed = frame(event(23, ROWS))
            assert framed is not None and framed.event is framed
            known = hooks._KnownTableMap(event(19, b"\x00" * 8), 7, table())
            assert known.event is known
        del framed, known
        assert gc.collect() < 50  # before: at least two objects per event were cyclic garbage
    finally:
        gc.enable()
