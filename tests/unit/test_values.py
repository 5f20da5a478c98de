import datetime
import struct
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
import pytest

from cdc.model import Column, ColumnKind
from cdc.values import (
    ConversionError,
    ConversionStats,
    ValueOptions,
    convert_row,
    convert_value,
)

K = ColumnKind


def conv(value, kind, bits=None, options=None, stats=None, name="c"):
    column = Column(name, kind, bits)
    if options is None:
        return convert_value(value, column, stats=stats)
    return convert_value(value, column, options, stats)


def roundtrip(value, kind, **kw):
    """Convert as a row, assert orjson accepts it, return the converted value."""
    column = Column("c", kind, kw.pop("bits", None))
    row = convert_row({"c": value}, [column], **kw)
    assert orjson.loads(orjson.dumps(row)) == row
    return row["c"]


def point_wkb(x, y, order="<"):
    return bytes([1 if order == "<" else 0]) + struct.pack(order + "Idd", 1, x, y)


def mysql_geometry(wkb, srid=0):
    return struct.pack("<I", srid) + wkb


# --- None / INTEGER / YEAR / ENUM ------------------------------------------------


@pytest.mark.parametrize("kind", list(ColumnKind))
def test_none_stays_none_for_every_kind(kind):
    assert conv(None, kind) is None


def test_integer_bigint_unsigned_max():
    assert roundtrip(18446744073709551615, K.INTEGER) == 18446744073709551615
    assert roundtrip(-9223372036854775808, K.INTEGER) == -9223372036854775808


def test_integer_bool_stays_bool():
    assert conv(True, K.INTEGER) is True


def test_year_int_and_library_zero_year():
    assert roundtrip(2024, K.YEAR) == 2024
    # pymysqlreplication reads YEAR as uint8 + 1900, so YEAR 0000 arrives as 1900.
    assert conv(1900, K.YEAR) == 0


def test_enum_label_and_index_unchanged():
    assert roundtrip("medium", K.ENUM) == "medium"
    assert conv(2, K.ENUM) == 2


# --- DECIMAL / FLOAT ---------------------------------------------------------------


def test_decimal_65_30_exact():
    text = "12345678901234567890123456789012345.123456789012345678901234567890"
    assert roundtrip(Decimal(text), K.DECIMAL) == text


@pytest.mark.parametrize(
    "value, expected",
    [
        (Decimal("0E-10"), "0.0000000000"),
        (Decimal("1E+2"), "100"),
        (Decimal("1.50"), "1.50"),
        (Decimal("-3.25"), "-3.25"),
        (Decimal("-0.00"), "0.00"),
        (Decimal("123."), "123"),
    ],
)
def test_decimal_as_string(value, expected):
    assert conv(value, K.DECIMAL) == expected


def test_decimal_as_number():
    assert roundtrip(Decimal("1.50"), K.DECIMAL, options=ValueOptions(decimal_as="number")) == 1.5


def test_float_and_non_finite():
    assert roundtrip(1.25, K.FLOAT) == 1.25
    assert conv(float("nan"), K.FLOAT) is None
    assert conv(float("inf"), K.FLOAT) is None
    assert conv(float("-inf"), K.FLOAT) is None


# --- DATE / DATETIME / TIMESTAMP / TIME --------------------------------------------


def test_date():
    assert roundtrip(datetime.date(2024, 1, 2), K.DATE) == "2024-01-02"
    assert conv(datetime.date(1, 1, 1), K.DATE) == "0001-01-01"


def test_zero_date_strings_become_null_and_are_counted():
    stats = ConversionStats()
    assert conv("0000-00-00", K.DATE, stats=stats) is None
    assert conv("0000-00-00 00:00:00", K.DATETIME, stats=stats) is None
    assert conv("0000-00-00 00:00:00", K.TIMESTAMP, stats=stats) is None
    assert conv("2024-00-10", K.DATE, stats=stats) is None
    assert stats.zero_dates == 4
    assert conv("0000-00-00", K.DATE) is None  # stats are optional


def test_convert_row_counts_zero_dates():
    stats = ConversionStats()
    columns = [Column("d", K.DATE), Column("dt", K.DATETIME)]
    row = convert_row({"d": "0000-00-00", "dt": "0000-00-00 00:00:00"}, columns, stats=stats)
    assert row == {"d": None, "dt": None}
    assert stats.zero_dates == 2


def test_datetime_fraction_only_when_nonzero():
    assert roundtrip(datetime.datetime(2024, 1, 2, 3, 4, 5), K.DATETIME) == "2024-01-02T03:04:05"
    dt6 = datetime.datetime(2024, 1, 2, 3, 4, 5, 120)
    assert roundtrip(dt6, K.DATETIME) == "2024-01-02T03:04:05.000120"


def test_timestamp_utc():
    naive_utc = datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert roundtrip(naive_utc, K.TIMESTAMP) == "2024-01-02T03:04:05Z"
    frac = datetime.datetime(2024, 1, 2, 3, 4, 5, 500000)
    assert conv(frac, K.TIMESTAMP) == "2024-01-02T03:04:05.500000Z"


def test_timestamp_in_kolkata():
    options = ValueOptions(timestamp_tz=ZoneInfo("Asia/Kolkata"))
    naive_utc = datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert roundtrip(naive_utc, K.TIMESTAMP, options=options) == "2024-01-02T08:34:05+05:30"


def test_timestamp_aware_is_converted():
    aware = datetime.datetime(2024, 1, 2, 5, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert conv(aware, K.TIMESTAMP) == "2024-01-02T03:04:05Z"


def test_timestamp_zero_from_library_is_epoch():
    # row_event.py: utcfromtimestamp(0) for '0000-00-00 00:00:00'.
    stats = ConversionStats()
    assert conv(datetime.datetime(1970, 1, 1), K.TIMESTAMP, stats=stats) is None
    assert stats.zero_dates == 1
    assert conv(datetime.datetime(1970, 1, 1, 0, 0, 1), K.TIMESTAMP) == "1970-01-01T00:00:01Z"


@pytest.mark.parametrize(
    "value, expected",
    [
        (datetime.timedelta(hours=838, minutes=59, seconds=59), "838:59:59"),
        (-datetime.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999), "-838:59:59.999999"),
        (datetime.timedelta(hours=-1, minutes=-30), "-01:30:00"),
        (datetime.timedelta(seconds=-1), "-00:00:01"),
        (datetime.timedelta(seconds=-1, microseconds=-500000), "-00:00:01.500000"),
        (datetime.timedelta(hours=25, microseconds=1), "25:00:00.000001"),
        (datetime.timedelta(0), "00:00:00"),
    ],
)
def test_time(value, expected):
    assert roundtrip(value, K.TIME) == expected


# --- STRING / BINARY -----------------------------------------------------------------


def test_string_emoji_unchanged():
    assert roundtrip("héllo 😀", K.STRING) == "héllo 😀"


def test_string_bytes_utf8_then_latin1():
    assert conv("😀".encode(), K.STRING) == "😀"
    assert conv(b"caf\xe9", K.STRING) == "café"


def test_binary_base64():
    assert roundtrip(b"\x00\xff", K.BINARY) == "AP8="
    assert conv(bytearray(b"\x00\xff"), K.BINARY) == "AP8="
    assert conv("already text", K.BINARY) == "already text"


# --- SET / BIT -------------------------------------------------------------------------


def test_set_forms():
    assert roundtrip({"b", "a", "c"}, K.SET) == ["a", "b", "c"]
    assert conv(frozenset({"x"}), K.SET) == ["x"]
    assert conv(set(), K.SET) == []
    assert conv("a,b", K.SET) == ["a", "b"]
    assert conv("c,a", K.SET) == ["a", "c"]
    assert conv("", K.SET) == []


def test_bit1_library_and_pymysql_forms():
    assert roundtrip("1", K.BIT, bits=1) is True
    assert conv("0", K.BIT, bits=1) is False
    assert conv(b"\x01", K.BIT, bits=1) is True
    assert conv(b"\x00", K.BIT, bits=1) is False
    assert conv("1", K.BIT, bits=1, options=ValueOptions(bit1_as_bool=False)) == 1


def test_bit10_library_and_pymysql_forms():
    # b'1000000011' = 515
    assert roundtrip("1000000011", K.BIT, bits=10) == 515
    assert conv(b"\x02\x03", K.BIT, bits=10) == 515
    assert conv(515, K.BIT, bits=10) == 515


def test_bit_width_from_library_string_when_unknown():
    assert conv("1", K.BIT) is True
    assert conv("01", K.BIT) == 1


# --- JSON ------------------------------------------------------------------------------


def test_mysql_binary_json_bytes_nested():
    value = {b"a": [1, {b"b": b"x", b"c": [b"y", None, True]}], b"n": 2.5}
    assert roundtrip(value, K.JSON) == {"a": [1, {"b": "x", "c": ["y", None, True]}], "n": 2.5}


def test_mysql_json_scalar_bytes_is_a_string_not_text():
    assert conv(b"[1]", K.JSON) == "[1]"


def test_json_decimal_and_dates_inside():
    value = [Decimal("1.5"), Decimal("0.1"), Decimal("12345678901234567890.123"), datetime.datetime(2024, 1, 2)]
    assert roundtrip(value, K.JSON) == [1.5, 0.1, "12345678901234567890.123", "2024-01-02T00:00:00"]


def test_mariadb_json_text():
    assert roundtrip('{"a": [1, "x", null], "b": {"c": true}}', K.JSON) == {
        "a": [1, "x", None],
        "b": {"c": True},
    }
    assert conv('"just a string"', K.JSON) == "just a string"


def test_json_text_unparsed_when_disabled():
    assert conv('{"a": 1}', K.JSON, options=ValueOptions(parse_json=False)) == '{"a": 1}'


def test_invalid_json_text_names_the_column():
    with pytest.raises(ConversionError, match="payload") as info:
        conv("{not json", K.JSON, name="payload")
    assert info.value.column == "payload"
    assert isinstance(info.value, ValueError)


def test_partial_json_diff_is_rejected():
    class JsonDiff:  # same class name as pymysqlreplication.json_binary.JsonDiff
        op, path = 0, b"$.a"

    with pytest.raises(ConversionError, match="partial"):
        conv(JsonDiff(), K.JSON)


# --- GEOMETRY ----------------------------------------------------------------------------


def test_geometry_point_little_endian():
    assert roundtrip(mysql_geometry(point_wkb(1.5, -2.0)), K.GEOMETRY) == {
        "type": "Point",
        "coordinates": [1.5, -2.0],
    }


def test_geometry_point_big_endian_with_srid():
    value = mysql_geometry(point_wkb(3.0, 4.0, order=">"), srid=4326)
    assert conv(value, K.GEOMETRY) == {"type": "Point", "coordinates": [3.0, 4.0]}


def test_geometry_polygon():
    ring = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 0.0)]
    wkb = b"\x01" + struct.pack("<II", 3, 1) + struct.pack("<I", len(ring))
    wkb += b"".join(struct.pack("<dd", x, y) for x, y in ring)
    assert roundtrip(mysql_geometry(wkb), K.GEOMETRY) == {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 0.0]]],
    }


def test_geometry_multipoint_and_collection():
    multi = b"\x01" + struct.pack("<II", 4, 2) + point_wkb(1, 2) + point_wkb(3, 4, order=">")
    assert conv(mysql_geometry(multi), K.GEOMETRY) == {"type": "MultiPoint", "coordinates": [[1.0, 2.0], [3.0, 4.0]]}
    line = b"\x01" + struct.pack("<II", 2, 2) + struct.pack("<4d", 0, 0, 1, 1)
    coll = b"\x01" + struct.pack("<II", 7, 2) + point_wkb(5, 6) + line
    assert conv(mysql_geometry(coll), K.GEOMETRY) == {
        "type": "GeometryCollection",
        "geometries": [
            {"type": "Point", "coordinates": [5.0, 6.0]},
            {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]},
        ],
    }


def test_geometry_unknown_type_and_truncated():
    with pytest.raises(ConversionError, match="shape"):
        conv(mysql_geometry(b"\x01" + struct.pack("<I", 99)), K.GEOMETRY, name="shape")
    with pytest.raises(ConversionError, match="shape"):
        conv(mysql_geometry(point_wkb(1, 2)[:-3]), K.GEOMETRY, name="shape")


# --- OTHER / convert_row -------------------------------------------------------------------


def test_other_by_python_type():
    assert conv(Decimal("2.50"), K.OTHER) == "2.50"
    assert conv(datetime.datetime(2024, 1, 2, 3, 4, 5), K.OTHER) == "2024-01-02T03:04:05"
    assert conv(datetime.date(2024, 1, 2), K.OTHER) == "2024-01-02"
    assert conv(datetime.timedelta(seconds=-1), K.OTHER) == "-00:00:01"
    assert conv({"b", "a"}, K.OTHER) == ["a", "b"]
    assert conv(b"\x00\xff", K.OTHER) == "AP8="
    assert conv({b"k": [b"v"]}, K.OTHER) == {"k": ["v"]}
    assert conv('{"a": 1}', K.OTHER) == '{"a": 1}'  # strings are not parsed
    assert conv(7, K.OTHER) == 7
    assert conv(2**70, K.OTHER) == str(2**70)  # beyond what orjson can write
    assert conv(object, K.OTHER) == "<class 'object'>"


def test_convert_row_mixed_columns_and_unknown_keys():
    columns = {
        "id": Column("id", K.INTEGER),
        "price": Column("price", K.DECIMAL),
        "flag": Column("flag", K.BIT, 1),
        "tags": Column("tags", K.SET),
    }
    row = {
        "id": 18446744073709551615,
        "price": Decimal("9.90"),
        "flag": "1",
        "tags": {"b", "a"},
        "extra": datetime.timedelta(hours=1),
        "blob": b"\x00\xff",
    }
    out = convert_row(row, columns)
    assert out == {
        "id": 18446744073709551615,
        "price": "9.90",
        "flag": True,
        "tags": ["a", "b"],
        "extra": "01:00:00",
        "blob": "AP8=",
    }
    assert orjson.loads(orjson.dumps(out)) == out
