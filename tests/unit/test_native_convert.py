"""The rules' `convert:` conversions on the native row path (native/src/convert.rs) against the Python path.

The Python path is the reference: the column's value as values.py converts it, then
`apply_conversion` for each conversion in order, then orjson. Every case runs both and
compares the document bytes. Where the Python path raises `ConversionError` the native
code must decline (the Python path then redoes the event and stops cdc with its error);
where the Python path succeeds, the native code may decline only in the few cases it
leaves to Python on purpose (`_leaves_to_python`), never give other bytes.
"""

from __future__ import annotations

import datetime
import json
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql import converters

from cdc.errors import ConversionError, RowError
from cdc.model import BinlogPosition, Column, ColumnKind, Op, RowChange, RowsData
from cdc.native import native
from cdc.rules import ActionBuilder, Rule, RuleSet, rowpath
from cdc.rules.model import Conversion
from cdc.rules.values import ValueOptions, apply_conversion, convert_value

pytestmark = pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{6})?Z?)?", re.ASCII)


@pytest.fixture(autouse=True, scope="module")
def _cases():
    rowpath._case_table()


def _plan(convs: list[tuple[str, str | None]], pad_year: bool | None = None):
    """Fields c0 (the id, as it is) and c1 (converted)."""
    return native.Plan([(0, '"c0"'), (1, '"c1"')], "", None, [0], ":", None, [(0, "ix", 0)], None, True, 0,
                       "".join(sorted(rowpath.INDEX_FORBIDDEN)), [[], convs],
                       bool(rowpath._PAD_YEAR) if pad_year is None else pad_year)


def _lenenc(value: bytes) -> bytes:
    n = len(value)
    return (bytes([n]) if n < 0xFB else b"\xfc" + n.to_bytes(2, "little") if n < 1 << 16 else
            b"\xfd" + n.to_bytes(3, "little")) + value


def _native_doc(reader: tuple[str, int], text: bytes, convs) -> bytes | None:
    """The document of a snapshot row (1, text) through text.rs and the plan; None if it declines."""
    table = native.TextTable([("int", 0), reader])
    try:
        [(_, _, _, _, _, doc)] = native.snapshot_rows(table, [_plan(convs)], [_lenenc(b"1") + _lenenc(text)])
    except native.Decline:
        return None
    return doc


def _leaves_to_python(value, name: str) -> bool:
    """Whether convert.rs declines `name` of this (Python) value although Python converts it."""
    if isinstance(value, list):
        return any(_leaves_to_python(v, name) for v in value)
    if not isinstance(value, str):
        return False
    if name in ("lower", "upper"):
        return any(ord(c) > 0xFFFF for c in value) or (name == "lower" and "\u03a3" in value)
    if name == "bool":
        return not value.isascii()
    if name == "datetime":
        return not _ISO.fullmatch(value)
    if name == "json":
        try:
            native.json_text(value)
        except native.Decline:
            return True
    return False


def _python(value, kind: ColumnKind, convs, **column) -> tuple[bytes | None, bool]:
    """(the Python path's document, or None where it raises ConversionError; whether a decline is allowed)."""
    value = convert_value(value, Column("c1", kind, **column), ValueOptions())
    # A JSON column holding a JSON string: `json` parses the str again; left to Python.
    allowed = kind is ColumnKind.JSON and isinstance(value, str)
    try:
        for name, arg in convs:
            allowed |= value is not None and _leaves_to_python(value, name)
            value = apply_conversion(value, name, arg, "c1")
    except ConversionError:
        return None, True
    return orjson.dumps({"c0": 1, "c1": value}), allowed


def _same(reader, converter, kind: ColumnKind, text: bytes, convs, **column) -> bytes | None:
    expected, allowed = _python(converter(text.decode()) if converter else text, kind, convs, **column)
    got = _native_doc(reader, text, convs)
    if expected is None:
        assert got is None, (text, convs, got)  # the Python path raises: declined, never written
    elif got is None:
        assert allowed, f"declined {text!r} {convs}, which Python converts to {expected!r}"
    else:
        assert got == expected, (text, convs)
    return got


# ----------------------------------------------------------------------------- split
@pytest.mark.parametrize("text, sep", [("a,b,,c", ","), ("", ","), (",", ","), ("a", ","), ("aaa", "aa"),
                                       ("x y  z", " "), ("é|ü", "|"), ("a;b", ""), ("a,b", "")])
def test_split_literals(text, sep):
    assert _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("split", sep)]) is not None


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), st.sampled_from([",", ";", "ab", "é", " ", ""]))
def test_split(text, sep):
    assert _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("split", sep)]) is not None


@pytest.mark.parametrize("reader, converter, kind, text", [
    (("int", 0), int, ColumnKind.INTEGER, b"12"), (("double", 0), float, ColumnKind.DOUBLE, b"1.5"),
    (("set", 0), str, ColumnKind.SET, b"x,y"), (("year", 0), int, ColumnKind.YEAR, b"2024")])
def test_split_of_what_is_not_text_is_left_to_python_which_raises(reader, converter, kind, text):
    assert _same(reader, converter, kind, text, [("split", ",")]) is None


@pytest.mark.parametrize("reader, converter, kind, text", [
    (("decimal", 0), None, ColumnKind.DECIMAL, b"1.50"), (("date", 0), converters.convert_date, ColumnKind.DATE,
                                                           b"2024-01-02"),
    (("time", 0), converters.convert_timedelta, ColumnKind.TIME, b"-01:02:03.5"),
    (("binary", 0), None, ColumnKind.BINARY, b"\x00\xff,x")])
def test_split_of_values_python_has_as_text(reader, converter, kind, text):
    if kind is ColumnKind.DECIMAL:
        import decimal
        converter = decimal.Decimal
    assert _same(reader, converter, kind, text, [("split", "-")]) is not None
    assert _same(reader, converter, kind, text, [("split", "0")]) is not None


# ----------------------------------------------------------------------------- lower / upper
@pytest.mark.parametrize("text", ["ABC def", "", "ÄÖÜ straße", "İstanbul", "ǅ ǈ ǋ", "ﬁ ﬀ ŉ", "ΑΒΓ", "Ⴀ ა ᲐᲑ",
                                  "\u1c89\u1c8a", "ꟀꟁꟂ", "\u2c2f\u2c5f", "a\x1cb"])
@pytest.mark.parametrize("name", ["lower", "upper"])
def test_lower_upper_literals(text, name):
    # U+1C89/U+1C8A (Cyrillic TJE, Unicode 16) and U+2C2F/U+2C5F (Glagolitic, Unicode 14) are
    # cased in newer Unicode than Python 3.11's or only from 14.0: the table is Python's own.
    assert _same(("text", 0), str, ColumnKind.STRING, text.encode(), [(name, None)]) is not None


@pytest.mark.parametrize("text", ["ΣΑΣ", "ΟΔΥΣΣΕΥΣ", "Σ", "aΣ b"])
def test_capital_sigma_to_lower_is_left_to_python(text):
    # Python writes σ or ς by the neighbours (Final_Sigma); the native code leaves it to Python.
    assert _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("lower", None)]) is None
    assert _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("upper", None)]) is not None


def test_every_bmp_code_point_as_python_cases_it():
    """All of U+0080..U+FFFF (but surrogates and, for lower, U+03A3), in runs of 256: str.lower/upper is per
    code point apart from Final_Sigma, so a run gives what each code point gives."""
    for name in ("lower", "upper"):
        for start in range(0x80, 0x10000, 256):
            text = "".join(chr(c) for c in range(start, min(start + 256, 0x10000))
                           if not 0xD800 <= c < 0xE000 and not (name == "lower" and c == 0x3A3))
            if text:
                assert _same(("text", 0), str, ColumnKind.STRING, text.encode(), [(name, None)]) is not None, start


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30), st.sampled_from(["lower", "upper"]))
@settings(max_examples=1000)
def test_lower_upper(text, name):
    _same(("text", 0), str, ColumnKind.STRING, text.encode(), [(name, None)])


@given(st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), max_size=30),
       st.sampled_from(["lower", "upper"]))
@settings(max_examples=1000)
def test_lower_upper_of_bmp_text_is_native(text, name):
    got = _same(("text", 0), str, ColumnKind.STRING, text.encode(), [(name, None)])
    assert (got is None) == (name == "lower" and "\u03a3" in text)


@given(st.sets(st.sampled_from(["x", "Y", "Ä", "a b", "ΣΑ", "ǅ", "𐐀"])), st.sampled_from(["lower", "upper"]))
def test_lower_upper_of_a_set_keeps_its_sorted_order(labels, name):
    _same(("set", 0), str, ColumnKind.SET, ",".join(labels).encode(), [(name, None)])


# ----------------------------------------------------------------------------- bool
@given(st.integers(-(2**63), 2**64 - 1))
def test_bool_of_integers(n):
    assert _same(("int", 0), int, ColumnKind.INTEGER, str(n).encode(), [("bool", None)]) is not None


@pytest.mark.parametrize("bits, raw", [(1, b"\x00"), (1, b"\x01"), (5, b"\x00"), (5, b"\x10")])
def test_bool_of_bits(bits, raw):
    assert _same(("bit", int(bits == 1)), None, ColumnKind.BIT, raw, [("bool", None)], bits=bits) is not None


_WORDS = ["1", "true", "yes", "y", "on", "0", "false", "no", "n", "off", "", "maybe", "2", "tru", "yes!", "k"]


@given(st.sampled_from(_WORDS), st.text(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\xa0\u2003", max_size=3),
       st.text(" \t\x1f\x85", max_size=3), st.data())
def test_bool_of_text(word, left, right, data):
    word = "".join(c.upper() if data.draw(st.booleans()) else c for c in word)
    _same(("text", 0), str, ColumnKind.STRING, (left + word + right).encode(), [("bool", None)])


@pytest.mark.parametrize("text, result", [(" Yes ", b"true"), ("OFF", b"false"), ("", b"false"), ("\x1cy\x1f", b"true"),
                                          ("maybe", None), ("\xa0yes", None), ("K", None)])
def test_bool_of_text_literals(text, result):
    got = _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("bool", None)])
    assert got == (None if result is None else b'{"c0":1,"c1":' + result + b"}")


def test_bool_of_a_float_or_a_set_is_left_to_python_which_raises():
    assert _same(("double", 0), float, ColumnKind.DOUBLE, b"1.0", [("bool", None)]) is None
    assert _same(("set", 0), str, ColumnKind.SET, b"x", [("bool", None)]) is None


# ----------------------------------------------------------------------------- datetime
_FORMATS = ["%Y/%m/%d", "%Y-%m-%dT%H:%M:%S", "%%Y=%Y %H:%M:%S%%", "day %d of %m, é", "%Y", "%H%M%S", "plain"]


@given(st.datetimes(datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31)), st.integers(0, 6),
       st.sampled_from(_FORMATS))
def test_datetime_of_dates(t, fsp, fmt):
    t = t.replace(microsecond=t.microsecond // 10 ** (6 - fsp) * 10 ** (6 - fsp))
    frac = f".{t.microsecond:06d}"[:fsp + 1] if fsp else ""
    text = f"{t.year:04d}-{t:%m-%d %H:%M:%S}{frac}".encode()
    convs = [("datetime", fmt)]
    assert _same(("date", 0), converters.convert_date, ColumnKind.DATE, text[:10], convs) is not None
    assert _same(("datetime", 0), converters.convert_datetime, ColumnKind.DATETIME, text, convs) is not None
    if t >= datetime.datetime(1970, 1, 1, 0, 0, 1) and t.year < 2038:
        assert _same(("timestamp", 0), converters.convert_datetime, ColumnKind.TIMESTAMP, text, convs) is not None


@pytest.mark.parametrize("year", [1, 5, 99, 999, 1000, 2024, 9999])
def test_years_below_1000_are_what_this_pythons_strftime_writes(year):
    # glibc's strftime does not pad %Y: CPython 3.11 on Linux writes year 5 as "5".
    expected = datetime.date(year, 1, 2).strftime("%Y|%d")
    got = _same(("date", 0), converters.convert_date, ColumnKind.DATE, f"{year:04d}-01-02".encode(),
                [("datetime", "%Y|%d")])
    assert got == orjson.dumps({"c0": 1, "c1": expected})
    assert rowpath._PAD_YEAR is (datetime.date(5, 1, 1).strftime("%Y") == "0005")


@given(st.datetimes(datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31)),
       st.sampled_from(["iso", "iso_space", "date", "z", "offset", "frac3", "compact"]))
def test_datetime_of_text(t, shape):
    text = {"iso": t.isoformat(), "iso_space": t.isoformat(" "), "date": t.date().isoformat(),
            "z": t.isoformat() + "Z", "offset": t.isoformat() + "+00:00",
            "frac3": t.isoformat(timespec="milliseconds"), "compact": t.strftime("%Y%m%dT%H%M%S")}[shape]
    _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("datetime", "%Y.%m.%d %H-%M-%S")])


@pytest.mark.parametrize("text", ["2024-02-30", "2024-01-02T25:00:00", "yesterday", "", "12:00:00"])
def test_datetime_of_text_that_is_no_date_is_left_to_python_which_raises(text):
    assert _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("datetime", "%Y")]) is None


def test_datetime_of_a_zero_date_is_null_and_counted():
    table = native.TextTable([("int", 0), ("datetime", 0)])
    # A zero DATETIME in a snapshot row is the Python path's (its counting), as without convert:.
    with pytest.raises(native.Decline, match="zero date"):
        native.snapshot_rows(table, [_plan([("datetime", "%Y")])], [_lenenc(b"1") + _lenenc(b"0000-00-00 00:00:00")])


# ----------------------------------------------------------------------------- json
_JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) |
                     st.text(max_size=8), lambda inner: st.lists(inner, max_size=4) |
                     st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)


@given(_JSON, st.sampled_from([None, 0, 2]))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_json_of_text(value, indent):
    text = json.dumps(value, indent=indent, ensure_ascii=indent == 2)
    _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("json", None)])


@pytest.mark.parametrize("text", ['{"a": [1, 2.50, "x"]}', "[]", "null", "12345678901234567890123", "1e400", "",
                                  "{", "NaN", '"abc"', " true "])
def test_json_of_text_literals(text):
    _same(("text", 0), str, ColumnKind.STRING, text.encode(), [("json", None)])


@pytest.mark.parametrize("text, native", [('{"a": 1}', True), ("[1, \"x\"]", True), ("3", True), ("null", True),
                                          ('"abc"', False), ('"[1, 2]"', False), ('"\\"x\\""', False),
                                          ("12345678901234567890123", False), ("-1e400", False)])
def test_json_of_a_json_column(text, native):
    """A JSON column's value passes as it is, but what values.py makes a str of (a JSON string, an integer past 64
    bits, a number past double range) is parsed again by `json` (or fails): left to the Python path."""
    got = _same(("json_text", 0), None, ColumnKind.JSON, text.encode(), [("json", None)])
    assert (got is not None) == native


# ----------------------------------------------------------------------------- chains
_CONVS = st.sampled_from([("split", ","), ("split", "-"), ("lower", None), ("upper", None), ("bool", None),
                          ("datetime", "%Y/%m/%d"), ("datetime", "%H")])


@given(st.text(st.sampled_from("aAbB,- :T0123456789yesnoYESNOäÄΣ[]\"{}"), max_size=25)
       | st.sampled_from(["2024-01-02", "2024-01-02T03:04:05", "YES", "No", "a,B,c", "[1, 2]", '"X"']),
       st.lists(_CONVS, min_size=1, max_size=3), st.booleans())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_chains_of_conversions(text, convs, then_json):
    _same(("text", 0), str, ColumnKind.STRING, text.encode(), convs + [("json", None)] if then_json else convs)


@given(st.datetimes(datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31)), st.lists(_CONVS, max_size=2))
def test_chains_on_dates(t, convs):
    text = f"{t.year:04d}-{t:%m-%d %H:%M:%S}".encode()
    _same(("datetime", 0), converters.convert_datetime, ColumnKind.DATETIME, text, [("datetime", "%Y-%m-%d")] + convs)


# ----------------------------------------------------------------------------- compiled from a rule
def _varchar(value: str) -> bytes:
    raw = value.encode()
    return bytes([len(raw)]) + raw


def _event(rows: list[tuple[int, str, datetime.date, set[str], str, int]]) -> bytes:
    """WRITE rows of (INT id, VARCHAR tags, DATE d, SET('x','Y','z') s, LONGTEXT JSON j, TINYINT flag)."""
    body = b""
    for id_, tags, d, s, j, flag in rows:
        raw_json = j.encode()
        body += (b"\x00" + id_.to_bytes(4, "little") + _varchar(tags)
                 + (d.year << 9 | d.month << 5 | d.day).to_bytes(3, "little")
                 + bytes([sum(1 << i for i, label in enumerate(["x", "Y", "z"]) if label in s)])
                 + len(raw_json).to_bytes(4, "little") + raw_json + (flag & 0xFF).to_bytes(1, "little"))
    return body


_COLUMNS = (Column("id", ColumnKind.INTEGER), Column("tags", ColumnKind.STRING), Column("d", ColumnKind.DATE),
            Column("s", ColumnKind.SET), Column("j", ColumnKind.JSON), Column("flag", ColumnKind.INTEGER))
_READERS = (("int", 4, 0, 0, None), ("text", 1, 0, 0, None), ("date", 0, 0, 0, None),
            ("set", 1, 0, 0, ["x", "Y", "z"]), ("text", 4, 0, 0, None), ("int", 1, 0, 0, None))
_RULE = Rule("s", "t", "ix", ("id",), conversions=(
    ("tags", (Conversion("split", ","), Conversion("upper"))), ("d", (Conversion("datetime", "%Y/%m/%d"),)),
    ("s", (Conversion("lower"),)), ("j", (Conversion("json"),)), ("flag", (Conversion("bool"),))))


def _both(rows, rule: Rule = _RULE) -> tuple[list, list, list[int]]:
    """(native actions, Python actions, how often the event fell back) for one WRITE event of `rows`."""
    position = BinlogPosition("binlog.000003", 777)
    changes = [RowChange(Op.INSERT, "s", "t", _COLUMNS, None, dict(zip([c.name for c in _COLUMNS], row)),
                         position, 0, n) for n, row in enumerate(rows)]
    fallbacks = []

    def decode():
        fallbacks.append(1)
        return changes

    path = rowpath.RowPath(ActionBuilder(RuleSet([rule]), 0, ValueOptions()), "native")
    data = RowsData(Op.INSERT, "s", "t", _COLUMNS, _READERS, _event(rows), position, 0, decode=decode)
    _, native_actions = path.changes_and_actions(data)
    assert path.tables == {"s.t": "native"}
    builder = ActionBuilder(RuleSet([rule]), 0, ValueOptions())
    python_actions = [a for change in changes for a in builder.actions(change)]
    return native_actions, python_actions, fallbacks


_ROWS = st.lists(st.tuples(st.integers(1, 2**31 - 1), st.text("abC, Ä-", max_size=12),
                           st.dates(datetime.date(1, 1, 1)), st.sets(st.sampled_from(["x", "Y", "z"])),
                           st.sampled_from(['{"a": 1}', "[1, 2]", "null", '"[3]"', "true"]),
                           st.integers(-128, 127)), min_size=1, max_size=5)


@given(_ROWS)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_a_rule_with_conversions_gives_the_python_paths_actions(rows):
    native_actions, python_actions, fallbacks = _both(rows)
    assert [(a.index, a.doc_id, a.version, a.doc_json) for a in native_actions] == \
           [(a.index, a.doc_id, a.version, orjson.dumps(a.doc)) for a in python_actions]
    # Only a JSON string in j (parsed again by `json`) is left to the Python path.
    assert bool(fallbacks) == any(row[4].startswith('"') for row in rows)
    if not fallbacks:
        assert all(type(a) is rowpath.NativeAction for a in native_actions)


def test_a_value_the_python_path_cannot_convert_stops_cdc_the_same_way():
    """bool of 'maybe': the native code declines, the Python path redoes the event and raises its RowError
    (table, position, row and key): the pipeline stops on it (pipeline.py `_actions` -> CdcError)."""
    rule = Rule("s", "t", "ix", ("id",), conversions=(("tags", (Conversion("bool"),)),))
    day = datetime.date(2024, 1, 2)
    rows: list[tuple] = [(1, "yes", day, set(), "1", 0), (2, "maybe", day, set(), "1", 0)]
    with pytest.raises(RowError) as from_native:
        _both(rows, rule)
    builder = ActionBuilder(RuleSet([rule]), 0, ValueOptions())
    change = RowChange(Op.INSERT, "s", "t", _COLUMNS, None, dict(zip([c.name for c in _COLUMNS], rows[1])),
                       BinlogPosition("binlog.000003", 777), 0, 1)
    with pytest.raises(RowError) as from_python:
        builder.actions(change)
    assert str(from_native.value) == str(from_python.value)
    assert "at binlog.000003:777 (row 1 of the event, key id=2)" in str(from_native.value)
    assert str(from_native.value).endswith("column 'tags': bool cannot read 'maybe'")


@pytest.mark.parametrize("conversions, reason", [
    ((("tags", (Conversion("json"), Conversion("lower"))),), "column 'tags': convert: a conversion after json"),
    ((("d", (Conversion("datetime", "%b %Y"),)),), "column 'd': convert: datetime format '%b %Y'"),
    ((("d", (Conversion("datetime", "%Y%"),)),), "column 'd': convert: datetime format '%Y%'")])
def test_what_the_plan_does_not_do_is_named(conversions, reason):
    rule = Rule("s", "t", "ix", ("id",), conversions=conversions)
    path = rowpath.RowPath(ActionBuilder(RuleSet([rule]), 0, ValueOptions()), "auto")
    path.prepare(RowsData(Op.INSERT, "s", "t", _COLUMNS, _READERS, b"", BinlogPosition("b.1", 4), 0, decode=list))
    assert path.tables == {"s.t": f"python: {reason}"}


def test_conversions_of_excluded_columns_are_not_applied():
    rule = Rule("s", "t", "ix", ("id",), exclude=("tags",), rename=(("flag", "on"),),
                conversions=(("tags", (Conversion("bool"),)), ("flag", (Conversion("bool"),))))
    native_actions, python_actions, fallbacks = _both([(1, "maybe", datetime.date(2024, 1, 2), {"x"}, "1", 3)], rule)
    assert not fallbacks
    assert [a.doc_json for a in native_actions] == [orjson.dumps(a.doc) for a in python_actions] == [
        b'{"id":1,"d":"2024-01-02","s":["x"],"j":1,"on":true}']


# ----------------------------------------------------------------------------- TIMESTAMP in a zone, DECIMAL as number
_ZCOLUMNS = (Column("id", ColumnKind.INTEGER), Column("ts", ColumnKind.TIMESTAMP), Column("ts2", ColumnKind.TIMESTAMP),
             Column("d", ColumnKind.DECIMAL))
_ZREADERS = (("int", 4, 0, 0, None), ("timestamp2", 0, 0, 0, None), ("timestamp2", 0, 0, 0, None),
             ("decimal", 10, 2, 0, None))


@given(st.lists(st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)), min_size=1, max_size=4),
       st.sampled_from(["Asia/Kolkata", "America/St_Johns", "Europe/Dublin", "UTC"]),
       st.sampled_from([[("datetime", "%Y-%m-%d %H:%M:%S")], [("lower", None)], [("split", ":")],
                        [("datetime", "%H"), ("json", None)]]),
       st.sampled_from([[("json", None)], [("bool", None)], [("split", ".")], []]))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_conversions_of_timestamps_in_a_zone_and_decimals_as_numbers(stamps, zone, ts_convs, d_convs):
    """A TIMESTAMP in a non-UTC zone is converted in local time (its text carries the offset), a DECIMAL under
    decimal_as: number is a float to the conversions (split and bool of it raise in Python: declined)."""
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    def conv(names):
        return tuple(Conversion(name, arg) for name, arg in names)

    rule = Rule("s", "t", "ix", ("id",), conversions=(("ts", conv(ts_convs)), ("ts2", conv([("upper", None)])),
                                                      ("d", conv(d_convs))))
    options = ValueOptions(timestamp_tz=ZoneInfo(zone), decimal_as="number")
    position = BinlogPosition("binlog.000003", 777)
    body, changes = b"", []
    for n, (secs, secs2) in enumerate(stamps):
        # DECIMAL(10,2) 1234.50 as MariaDB writes it (cf. values.rs's decimal test)
        body += b"\x00" + (n + 1).to_bytes(4, "little") + secs.to_bytes(4, "big") + secs2.to_bytes(4, "big") + \
            bytes([0x80, 0x00, 0x04, 0xd2, 0x32])
        utc = datetime.datetime.fromtimestamp
        changes.append(RowChange(Op.INSERT, "s", "t", _ZCOLUMNS, None, {
            "id": n + 1, "ts": utc(secs, datetime.timezone.utc).replace(tzinfo=None),
            "ts2": utc(secs2, datetime.timezone.utc).replace(tzinfo=None), "d": Decimal("1234.50")}, position, 0, n))
    fallbacks = []

    def decode():
        fallbacks.append(1)
        return changes

    path = rowpath.RowPath(ActionBuilder(RuleSet([rule]), 0, options), "native")
    data = RowsData(Op.INSERT, "s", "t", _ZCOLUMNS, _ZREADERS, body, position, 0, decode=decode)
    builder = ActionBuilder(RuleSet([rule]), 0, options)
    try:
        expected = [orjson.dumps(a.doc) for change in changes for a in builder.actions(change)]
    except RowError as exc:
        with pytest.raises(RowError) as from_native:
            path.changes_and_actions(data)
        assert str(from_native.value) == str(exc) and fallbacks  # declined, then the Python path's error
        return
    _, actions = path.changes_and_actions(data)
    assert path.tables == {"s.t": "native"}
    assert [a.doc_json for a in actions] == expected
    assert not fallbacks  # all of these are native
