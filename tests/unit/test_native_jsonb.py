"""MySQL's binary JSON on the native row path (issue 28) against the Python path, byte for byte.

The reference is what the Python path does with a JSON column's bytes: pymysqlreplication's
own decoder (`json_binary.parse_json`, as packet.py `read_binary_json` calls it), then
values.py `convert_value`, then orjson. The values are random documents written by a
test-only encoder of the format (`mysql_jsonb.py`), then also corrupted: wherever the Python
path writes something the native code must write the same bytes or decline (the Python path
then does the event), and wherever the Python path raises it must decline. The end-to-end
comparison over a real MySQL 9.7 binlog is in tests/integration/test_native_rowpath.py.
"""

from __future__ import annotations

import random
import string
import struct
from decimal import Decimal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysqlreplication.json_binary import parse_json

from cdc.mysql import replication_hooks as hooks
from cdc.model import BinlogPosition, Column, ColumnKind, Op, RowChange, RowsData
from cdc.native import native
from cdc.rules import ActionBuilder, Rule, RuleSet, rowpath
from cdc.rules.values import ValueOptions, convert_value

from .mysql_jsonb import Opaque, Raw, decimal, encode, packed_datetime, packed_time, var_len

pytestmark = pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")
# The library's reading with cdc's hooks, as in `cdc run`: dates and times inside the JSON as MySQL
# writes them (cdc/mysql/source.py _json_opaque).
hooks.install_library_hooks()
JSON = Column("j", ColumnKind.JSON)


def python_path(data: bytes) -> bytes:
    """packet.py read_binary_json (an empty value is None), then values.py and orjson."""
    value = parse_json(data[0], data[1:]) if data else None
    return orjson.dumps(convert_value(value, JSON))


def native_path(data: bytes) -> bytes | None:
    """The native bytes, or None where it declines."""
    try:
        return native.json_binary(data).encode()
    except native.Decline:
        return None


def assert_same(data: bytes, may_decline: bool) -> None:
    try:
        expected = python_path(data)
    except Exception:  # the library or values.py raises: the native code must leave it to them
        assert native_path(data) is None
        return
    got = native_path(data)
    if got is None and may_decline:
        return
    assert got == expected


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), value  # a finite value (NaN and infinity have a letter here)
    return exponent


@st.composite
def decimals(draw) -> Opaque:
    if draw(st.booleans()):  # a double's shortest digits (maybe with zeros after): the Python path writes that double
        value = Decimal(repr(draw(st.floats(-1e35, 1e35))))
        if -_exponent(value) > 30:  # DECIMAL's scale is at most 30
            value = round(value, 30)
        text = format(value, "f")
        digits = len(text.lstrip("-").partition(".")[0].lstrip("0"))
        # MySQL's DECIMAL has at most 65 digits: 1e35 (36 of them) takes a scale of at most 29.
        scale = draw(st.integers(max(0, -_exponent(value)), min(30, 65 - digits)))
        return decimal(text, max(1, digits + scale), scale)
    precision = draw(st.integers(1, 65))
    scale = draw(st.integers(0, min(30, precision)))
    whole = draw(st.integers(0, 10 ** (precision - scale) - 1) | st.just(0))
    frac = draw(st.integers(0, 10 ** scale - 1) | st.sampled_from([0, 5, 10 ** scale // 2])) if scale else 0
    sign = draw(st.sampled_from(["", "-"]))
    return decimal(f"{sign}{whole}" + (f".{frac:0{scale}d}" if scale else ""), precision, scale)


_DOUBLES = [1e300, -0.0, 0.0, 0.1, 5e-324, 1.7976931348623157e308, 1e16, 1e-7, 123456789012345680.0, 2.5, float("nan"),
            float("inf")]
_INTEGERS = [0, -1, 2**15 - 1, 2**15, -(2**15) - 1, 2**31, 2**32, -(2**63), 2**63 - 1, 2**63, 2**64 - 1]
_TEXTS = ["", "é", "😀", '"\\\n\x00\x1f\x7f', "\u2028"]
_LONG = st.sampled_from([127, 128, 16383, 16384]).map(lambda n: "y" * n)  # sizes of 1, 2 and 3 bytes
# Field types other opaque values carry (binary strings and BIT as VARCHAR 15, ...).
_OTHER_TYPES = [1, 3, 13, 15, 16, 245, 252, 253, 254, 255]

opaques = st.one_of(
    decimals(),
    # Zero parts and days past the month's end too: MySQL prints the fields as they are.
    st.builds(packed_datetime, st.integers(0, 9999), st.integers(0, 12), st.integers(0, 31), st.integers(0, 23),
              st.integers(0, 59), st.integers(0, 59), st.integers(0, 999_999) | st.just(0),
              st.sampled_from([7, 10, 12, 14, 17, 18])),
    st.builds(packed_time, st.booleans(), st.integers(0, 838), st.integers(0, 59), st.integers(0, 59),
              st.integers(0, 999_999) | st.just(0)),
    st.builds(Opaque, st.sampled_from(_OTHER_TYPES), st.binary(max_size=12)),
)
# Any bytes in the types the library reads itself: zero dates, invalid months, hours past 23, ...
odd_opaques = st.builds(Opaque, st.sampled_from([0, 246, 10, 11, 12, 18, 19]), st.binary(min_size=2, max_size=10))
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.sampled_from(_INTEGERS)
           | st.floats() | st.sampled_from(_DOUBLES) | st.text(st.characters(codec="utf-8"), max_size=12)
           | st.sampled_from(_TEXTS) | _LONG | st.builds(Raw, st.binary(max_size=8)) | opaques)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), children, max_size=6),
    max_leaves=30)


@given(documents, st.randoms(use_true_random=False))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_random_documents_give_the_python_paths_bytes(value, rnd):
    data = encode(value, rnd)
    # Declining a document the Python path writes is allowed only for a whole column that is a
    # text opaque: it is parsed as JSON text, and json.rs leaves some texts to Python.
    assert_same(data, may_decline=isinstance(value, Opaque))


@given(st.lists(odd_opaques, max_size=3) | odd_opaques)
@settings(max_examples=1000, deadline=None)
def test_any_bytes_in_dates_times_and_decimals_are_the_python_paths_bytes_or_declined(value):
    assert_same(encode(value), may_decline=True)


@given(documents, st.randoms(use_true_random=False), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                              min_size=1, max_size=3), st.integers(0, 3))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_corrupt_documents_are_the_python_paths_bytes_or_declined(value, rnd, changes, cut):
    data = bytearray(encode(value, rnd))
    for at, byte in changes:
        data[at % len(data)] = byte
    assert_same(bytes(data[:len(data) - cut]), may_decline=True)


def nested(depth: int) -> bytes:
    """`depth` arrays, one inside the other, around a 1 (MySQL stores up to 100)."""
    return encode(orjson.loads(b"[" * depth + b"1" + b"]" * depth))


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**64 - 1, -(2**63), 1e300, -0.0, 0.1, 5e-324, "", "é\n\"", "z" * 70000,
    {"a": 1, "bb": [True, None], "c": {"d": "e"}}, [[], {}, [[]]], {"": 0}, list(range(300)),
    {f"k{i}": i * 1.5 for i in range(40)}, ["w" * 40000, "v" * 40000],  # the second forces a large array
    decimal("1.50", 5, 2), decimal("-1.50", 5, 2), decimal("0.1", 2, 1), decimal("-0.00", 5, 2),
    decimal("12345678901234567891", 20, 0), decimal("0.1000000000000000055511151231257827", 35, 34),
    decimal("9" * 35 + "." + "9" * 30, 65, 30), decimal("100", 3, 0), decimal("123456789.123456789", 18, 9),
    [decimal("10", 3, 0)], [packed_datetime(2024, 1, 2, 3, 4, 5, 500_000)],
    [packed_datetime(2024, 2, 29, field_type=10)], [packed_datetime(1, 1, 1), packed_datetime(9999, 12, 31, 23, 59, 59)],
    [packed_time(True, 1, 30, 0, 250_000), packed_time(False, 23, 59, 59, 999_999), packed_time(False, 0, 0, 0)],
    [Opaque(12, bytes(8))], [Opaque(15, b"A\xff")], [Opaque(16, b"\x05")], [Opaque(7, struct.pack("<q", 1 << 40))],
    Opaque(15, b"[1, 2.5]"), Opaque(15, b'{"a": 1e400}'), packed_datetime(2024, 1, 2),
    packed_time(False, 3, 0, 0), decimal("2.5", 2, 1),
])
def test_values_by_hand(value):
    assert native_path(encode(value)) == python_path(encode(value))


@pytest.mark.parametrize("value, text", [
    # What MySQL 9.7.4 gives for the same values (SELECT JSON_OBJECT(..., CAST(... AS DATETIME)), ...):
    # a SELECT, a snapshot and `cdc verify` see this text, so the stream writes it too.
    (packed_datetime(2024, 1, 2, 3, 4, 5), "2024-01-02 03:04:05.000000"),
    (packed_datetime(2024, 1, 2, 3, 4, 5, 500_000, field_type=18), "2024-01-02 03:04:05.500000"),
    (packed_datetime(2024, 1, 2, field_type=10), "2024-01-02"),
    (packed_time(True, 1, 30, 0, 250_000), "-01:30:00.250000"),  # the library dropped the sign
    (packed_time(False, 30, 0, 0), "30:00:00.000000"),  # the library raised: cdc stopped
    (packed_time(True, 838, 59, 59), "-838:59:59.000000"),
    (packed_datetime(2024, 2, 30), "2024-02-30 00:00:00.000000"),  # the library raised
    (packed_datetime(0, 0, 0), "0000-00-00 00:00:00.000000"),
    (packed_datetime(5, 1, 1), "0005-01-01 00:00:00.000000"),
])
def test_dates_and_times_in_json_are_written_as_mysql_writes_them(value, text):
    for data in (encode(value), encode([value]), encode({"k": value})):
        assert python_path(data) == native_path(data), data
    assert orjson.loads(python_path(encode([value]))) == [text]
    assert orjson.loads(python_path(encode(value))) == text  # a whole column of one: a string, not JSON text


@pytest.mark.parametrize("data", [
    encode(Opaque(12, bytes(7))),                               # a date or time MySQL writes in 8 bytes
    encode(Opaque(11, b"")),
    encode(Opaque(15, b"not json")),
    encode(Opaque(15, b"\xff")),
    bytes([0x0D, 0]),                                           # no such type
    bytes([4, 3]),                                              # no such literal
    encode([1, 2])[:-1],                                        # shorter than its size
    encode({"a": 1})[:5],
    encode(Opaque(246, bytes([5, 2, 0x80]))),                   # a DECIMAL short of its bytes
])
def test_what_the_python_path_refuses_is_declined(data):
    with pytest.raises(Exception):
        python_path(data)
    with pytest.raises(native.Decline):
        native.json_binary(data)


def test_what_the_library_reads_oddly_is_declined():
    """A value offset past the data: the library gives None for the whole container; a string
    past its data: the bytes there are; a size that does not end in 5 bytes: ""; out of order or
    repeated keys: its dict would merge them; more than 100 levels. MySQL writes none of these."""
    past = bytearray(encode(["abc"]))
    past[6] = 200  # the string's offset
    assert python_path(bytes(past)) == b"null"
    twice = encode({"a": 1, "b": 2}).replace(b"ab", b"aa")
    assert python_path(twice) == b'{"a":2}'
    short, endless = bytes([12]) + var_len(5) + b"ab", bytes([12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
    assert (python_path(short), python_path(endless)) == (b'"ab"', b'""')
    for data in (bytes(past), twice, nested(101), short, endless):
        with pytest.raises(native.Decline):
            native.json_binary(data)
    assert native_path(nested(100)) == python_path(nested(100))


# --------------------------------------------------------------------------- whole rows events
def _rows_body(rows: list[tuple[int, bytes | None]]) -> bytes:
    """A WRITE rows body of (INT id, JSON j) rows: null bitmap, int32, 4-byte length + JSON bytes."""
    body = b""
    for key, data in rows:
        body += bytes([0 if data is not None else 2]) + struct.pack("<i", key)
        if data is not None:
            body += struct.pack("<I", len(data)) + data
    return body


@given(st.lists(st.tuples(documents, st.booleans()), min_size=1, max_size=4), st.randoms(use_true_random=False),
       st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_rows_events_with_a_json_column_give_the_python_paths_actions(values, rnd, excluded):
    """Through RowPath.prepare, as the pipeline runs it, with the library's values on the Python side."""
    rule = Rule("s", "t", "ix", ("id",), exclude=("j",) if excluded else ())
    builder = ActionBuilder(RuleSet([rule]), 0, ValueOptions())
    path = rowpath.RowPath(builder, "native")
    columns = (Column("id", ColumnKind.INTEGER), Column("j", ColumnKind.JSON))
    rows = [(i, encode(v, rnd) if not null else None) for i, (v, null) in enumerate(values)]
    position = BinlogPosition("binlog.000001", 400)

    def library() -> list[RowChange]:
        return [RowChange(Op.INSERT, "s", "t", columns, None,
                          {"id": key, "j": None if data is None else parse_json(data[0], data[1:]) if data else None},
                          position, 0, i) for i, (key, data) in enumerate(rows)]

    data = RowsData(Op.INSERT, "s", "t", columns, (("int", 4, 0, 0, None), ("json_binary", 4, 0, 0, None)),
                    _rows_body(rows), position, 0, decode=library)
    try:
        expected = [(a.doc_id, a.doc_json) for change in library() for a in builder.actions(change)]
    except Exception:
        return  # the Python path stops here (a value it cannot convert)
    changes, actions = path.changes_and_actions(data)
    assert [(a.doc_id, a.doc_json) for a in actions] == expected
    assert path.tables == {"s.t": "native"}
    assert changes and changes[0].__class__ is rowpath.PreparedChange or any(
        isinstance(v, Opaque) for v, _ in values), "declined a document MySQL writes"


def test_a_mysql_json_column_is_read_natively():
    from pymysqlreplication.constants import FIELD_TYPE

    from cdc.mysql.replication_hooks import column_reader

    class LibraryColumn:
        type, length_size = FIELD_TYPE.JSON, 4

    assert column_reader(LibraryColumn()) == ("json_binary", 4, 0, 0, None)
    builder = ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 0, ValueOptions())
    columns = (Column("id", ColumnKind.INTEGER), Column("j", ColumnKind.JSON))
    table, _plan = rowpath.compile_plan(builder.rules.matches("s", "t")[0], "s", "t", columns,
                                        (("int", 4, 0, 0, None), column_reader(LibraryColumn())), builder)
    assert len(table) == 2
    # A JSON column in the id stays refused, as for MariaDB's JSON.
    with pytest.raises(rowpath.Unsupported, match="the id made of a json column"):
        rowpath.compile_plan(Rule("s", "t", "ix", ("j",)), "s", "t", columns,
                             (("int", 4, 0, 0, None), column_reader(LibraryColumn())), builder)


def test_the_encoder_is_what_the_library_reads():
    """The test encoder itself, against the library's decoder (so the comparisons above mean something)."""
    rnd = random.Random(7)
    value = {"a": [1, -70000, 2**63, 1.5, "s", None, True], "long key " + string.ascii_letters: {"x": []}}
    data = encode(value, rnd)
    assert parse_json(data[0], data[1:]) == {
        b"a": [1, -70000, 2**63, 1.5, b"s", None, True], ("long key " + string.ascii_letters).encode(): {b"x": []}}
