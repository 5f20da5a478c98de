"""`values.decimal_as: number` and a non-UTC `values.timestamp_timezone` on the native row path.

The reference is the Python path: the library's own readers (`row_event.py`
__read_new_decimal, and utcfromtimestamp plus __add_fsp_to_time for TIMESTAMP2) on the
same bytes, then `ActionBuilder` (values.py, actions.py) and orjson. Each case runs both
paths over a rows event and compares index, id, routing and document bytes; the native
path must not decline these values. The snapshot's text path (PyMySQL's converters) is
compared the same way. The zone tables the native code looks offsets up in are checked
against the zones' own TZif transitions.
"""

from __future__ import annotations

import bisect
import datetime
import io
import struct
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql import converters
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import RowsEvent

from cdc.model import BinlogPosition, Column, ColumnKind, Op, RowChange, RowsData
from cdc.native import native
from cdc.rules import ActionBuilder, Rule, RuleSet, rowpath
from cdc.rules.values import ValueOptions, convert_value

from .mysql_jsonb import decimal as jsonb_decimal

pytestmark = pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")
NUMBER = ValueOptions(decimal_as="number")
POSITION = BinlogPosition("binlog.000001", 400)

# Zones with what makes offsets awkward between 1970 and 2038: Monrovia's -0:44:30 until 1972
# (an offset with seconds), half-hour and 45-minute offsets, Lord Howe's half-hour DST, Apia's
# skipped day (2011-12-30), southern-hemisphere DST, zones that are UTC part of the year
# (London: "Z" in winter), and fixed offsets.
ZONES = ["Europe/Paris", "America/New_York", "Africa/Monrovia", "Asia/Kolkata", "Australia/Lord_Howe",
         "Pacific/Apia", "America/St_Johns", "Asia/Kathmandu", "Europe/London", "Pacific/Chatham",
         "America/Sao_Paulo", "Etc/GMT+5", "Etc/GMT-14", "Africa/Casablanca", "Europe/Dublin"]
TZS = [ZoneInfo(z) for z in ZONES] + [datetime.timezone(datetime.timedelta(hours=-3, minutes=-30)),
                                      datetime.timezone(datetime.timedelta(hours=5, seconds=7))]


# --------------------------------------------------------------------------- the library as the reference
def _library(data: bytes) -> RowsEvent:
    """A RowsEvent whose packet holds `data`, to call the library's own column readers on it."""
    packet = BinLogPacketWrapper.__new__(BinLogPacketWrapper)
    packet.__dict__.update({"_BinLogPacketWrapper__data_buffer": b"", "read_bytes": 0, "packet": io.BytesIO(data)})
    event = RowsEvent.__new__(RowsEvent)
    event.packet = packet
    return event


def library_decimal(data: bytes, precision: int, scale: int) -> Decimal:
    event = _library(data)
    value = event._RowsEvent__read_new_decimal(SimpleNamespace(precision=precision, decimals=scale))
    assert event.packet.read_bytes == len(data)
    return value


def library_timestamp2(data: bytes, fsp: int) -> datetime.datetime:
    # row_event.py _read_column_data for FIELD_TYPE.TIMESTAMP2, as it is written there.
    event = _library(data)
    value = event._RowsEvent__add_fsp_to_time(datetime.datetime.utcfromtimestamp(event.packet.read_int_be_by_size(4)),
                                              SimpleNamespace(fsp=fsp))
    assert event.packet.read_bytes == len(data)
    return value


def decimal_bytes(text: str, precision: int, scale: int) -> bytes:
    """MySQL's decimal2bin of `text` for DECIMAL(precision, scale) (tests/unit/mysql_jsonb.py)."""
    return jsonb_decimal(text, precision, scale).data[2:]


def timestamp2_bytes(seconds: int, micros: int, fsp: int) -> bytes:
    """my_timestamp_to_binary: 4-byte big-endian seconds, then the fraction in (fsp + 1) // 2 bytes."""
    size = (fsp + 1) // 2
    frac = micros // 10 ** (6 - 2 * size) if size else 0
    return struct.pack(">i", seconds) + frac.to_bytes(size, "big")


def both_paths(options: ValueOptions, rule: Rule, kind: ColumnKind, reader: tuple, values: list[tuple[bytes, object]]):
    """Rows (INT id, one value) through the native path and the Python path: the same actions, natively."""
    builder = ActionBuilder(RuleSet([rule]), 0, options)
    path = rowpath.RowPath(builder, "native")
    columns = (Column("id", ColumnKind.INTEGER), Column("c", kind))
    changes = [RowChange(Op.INSERT, "s", "t", columns, None, {"id": i, "c": value}, POSITION, 0, i)
               for i, (_, value) in enumerate(values)]
    body = b"".join(b"\x00" + struct.pack("<i", i) + raw for i, (raw, _) in enumerate(values))
    expected = [(a.index, a.doc_id, a.routing, a.doc_json) for change in changes for a in builder.actions(change)]
    data = RowsData(Op.INSERT, "s", "t", columns, (("int", 4, 0, 0, None), reader), body, POSITION, 0,
                    decode=lambda: pytest.fail("the native path declined"))
    prepared, actions = path.changes_and_actions(data)
    assert path.tables == {"s.t": "native"}
    assert [(a.index, a.doc_id, a.routing, a.doc_json) for a in actions] == expected
    assert all(type(a) is rowpath.NativeAction for a in actions)
    return expected


# --------------------------------------------------------------------------- DECIMAL as a number
@st.composite
def decimals(draw) -> tuple[str, int, int]:
    """(text, precision, scale): any DECIMAL(p, s) value, MySQL's limits (p <= 65, s <= 30)."""
    precision = draw(st.integers(1, 65))
    scale = draw(st.integers(0, min(precision, 30)))
    whole_digits = precision - scale
    shape = draw(st.sampled_from(["any", "small", "binary", "max"]))
    if shape == "max":  # all nines, or the smallest step
        whole, frac = (10**whole_digits - 1, 10**scale - 1) if draw(st.booleans()) else (0, 1 if scale else 0)
    elif shape == "binary" and scale:  # exactly a double (k / 2^n): no rounding at all
        n = draw(st.integers(0, min(scale, 20)))
        k = draw(st.integers(0, min(2**n * (10**whole_digits) - 1, 2**53)))
        whole, rest = divmod(k, 2**n)  # k / 2^n = whole + rest * 5^n / 10^n, in integers
        frac = rest * 5**n * 10 ** (scale - n)
    else:
        whole = draw(st.integers(0, 10**whole_digits - 1 if shape == "any" else min(10**whole_digits - 1, 99)))
        frac = draw(st.integers(0, 10**scale - 1))
    sign = "-" if draw(st.booleans()) else ""
    text = f"{sign}{whole}" + (f".{frac:0{scale}d}" if scale else "")
    return text, precision, scale


EDGE_DECIMALS = [("0.5", 10, 2), ("0.1", 10, 1), ("-0.10", 10, 2), ("0.000", 5, 3), ("9" * 65, 65, 0),
                 ("-" + "9" * 35 + "." + "9" * 30, 65, 30), ("0." + "0" * 29 + "1", 30, 30),
                 ("10000000000000000", 20, 0), ("9007199254740993", 20, 0),  # 2^53 + 1: rounds to even
                 ("1000000000000000.5", 20, 1), ("0.00001", 10, 5), ("0.0001", 10, 4), ("123.4560", 10, 4),
                 ("562949953421312.25", 20, 2), ("4.35", 3, 2), ("-00012.50", 10, 2)]


@given(decimals())
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decimal_as_number_is_the_python_paths_float(value):
    text, precision, scale = value
    raw = decimal_bytes(text, precision, scale)
    library = library_decimal(raw, precision, scale)
    assert library == Decimal(text)
    # The id is str(float), the document orjson's float: both from float(Decimal).
    both_paths(NUMBER, Rule("s", "t", "ix", ("c",)), ColumnKind.DECIMAL, ("decimal", precision, scale, 0, None),
               [(raw, library)])


@pytest.mark.parametrize("text, precision, scale", EDGE_DECIMALS)
def test_decimal_edges(text, precision, scale):
    raw = decimal_bytes(text, precision, scale)
    library = library_decimal(raw, precision, scale)
    [(_, doc_id, _, doc)] = both_paths(NUMBER, Rule("s", "t", "ix", ("c",)), ColumnKind.DECIMAL,
                                       ("decimal", precision, scale, 0, None), [(raw, library)])
    assert doc == orjson.dumps({"id": 0, "c": float(text)}) and doc_id == str(float(text))


def test_a_negative_zero_is_minus_zero_as_the_library_reads_it():
    """A DECIMAL zero stored with the sign bit clear (negative): the library reads Decimal('-0.00'),
    whose float is -0.0; the text form stays "0.00" (values.py writes no "-0")."""
    raw = bytes(b ^ 0xFF for b in decimal_bytes("0.00", 10, 2))
    library = library_decimal(raw, 10, 2)
    assert str(library) == "-0.00"
    [(_, doc_id, _, doc)] = both_paths(NUMBER, Rule("s", "t", "ix", ("id",)), ColumnKind.DECIMAL,
                                       ("decimal", 10, 2, 0, None), [(raw, library)])
    assert doc == b'{"id":0,"c":-0.0}'
    [(_, _, _, doc)] = both_paths(ValueOptions(), Rule("s", "t", "ix", ("id",)), ColumnKind.DECIMAL,
                                  ("decimal", 10, 2, 0, None), [(raw, library)])
    assert doc == b'{"id":0,"c":"0.00"}'


# --------------------------------------------------------------------------- TIMESTAMP in a zone
def _transitions(tz) -> list[int]:
    return [second for second, _ in rowpath.zone_offsets(tz)[0][1:]]


@st.composite
def instants(draw) -> tuple[int, int]:
    """(UTC second, microseconds) in TIMESTAMP's range, often at and around a zone's transitions."""
    tz = draw(st.sampled_from(TZS))
    transitions = _transitions(tz)
    if transitions and draw(st.booleans()):
        # At a transition, just before and after it, and within the gap or the fold it makes.
        second = draw(st.sampled_from(transitions)) + draw(st.sampled_from([-7200, -3601, -3600, -1801, -1, 0, 1,
                                                                           1799, 1800, 3599, 3600, 7200]))
    else:
        second = draw(st.integers(1, 2**31 - 1))
    return min(max(second, 1), 2**31 - 1), draw(st.sampled_from([0, 1, 999_999, 500_000]) | st.integers(0, 999_999))


def _timestamp_rule() -> Rule:
    # The id and routing are the value as text (with its offset), the index name its local date and hour.
    return Rule("s", "t", "ix-{c:%Y.%m.%d-%H%M%S}", ("c",), routing="{c}")


@given(st.sampled_from(TZS), st.lists(instants(), min_size=1, max_size=8), st.integers(0, 6))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_timestamps_in_a_zone_are_the_python_paths_text(tz, moments, fsp):
    options = ValueOptions(timestamp_tz=tz)
    values: list[tuple[bytes, object]] = []
    for second, micros in moments:
        micros = micros // 10 ** (6 - fsp) * 10 ** (6 - fsp)
        raw = timestamp2_bytes(second, micros, fsp)
        values.append((raw, library_timestamp2(raw, fsp)))
    both_paths(options, _timestamp_rule(), ColumnKind.TIMESTAMP, ("timestamp2", fsp, 0, 0, None), values)


@pytest.mark.parametrize("tz", TZS, ids=str)
def test_every_transition_of_a_zone_and_the_seconds_around_it(tz):
    """Each change of offset in the zone table, the second before and after it, and the range's ends."""
    seconds = {1, 2**31 - 1}
    for t in _transitions(tz):
        seconds.update(s for s in (t - 1, t, t + 1) if 1 <= s < 2**31)
    values: list[tuple[bytes, object]] = []
    for second in sorted(seconds):
        raw = timestamp2_bytes(second, 0, 0)
        values.append((raw, library_timestamp2(raw, 0)))
    expected = both_paths(ValueOptions(timestamp_tz=tz), _timestamp_rule(), ColumnKind.TIMESTAMP,
                          ("timestamp2", 0, 0, 0, None), values)
    assert len(expected) == len(seconds)


def test_offsets_as_isoformat_writes_them():
    cases = {"Africa/Monrovia": (1, "1969-12-31T23:15:31-00:44:30"),
             "Asia/Kolkata": (1704164645, "2024-01-02T08:34:05+05:30"),
             "Europe/London": (1704164645, "2024-01-02T03:04:05Z"),
             "America/St_Johns": (1704164645, "2024-01-01T23:34:05-03:30")}
    for zone, (second, text) in cases.items():
        raw = timestamp2_bytes(second, 0, 0)
        [(index, doc_id, routing, doc)] = both_paths(ValueOptions(timestamp_tz=ZoneInfo(zone)), _timestamp_rule(),
                                                     ColumnKind.TIMESTAMP, ("timestamp2", 0, 0, 0, None),
                                                     [(raw, library_timestamp2(raw, 0))])
        assert doc_id == routing == text and orjson.loads(doc)["c"] == text
        assert index == "ix-" + datetime.datetime.fromisoformat(text).strftime("%Y.%m.%d-%H%M%S")


def test_the_old_timestamp_format_and_the_zero_timestamp():
    tz = ZoneInfo("Europe/Paris")
    raw = struct.pack("<I", 1711846800)  # 2024-03-31 01:00:00 UTC: the second Paris moves to +02:00
    value = datetime.datetime.utcfromtimestamp(1711846800)
    [(_, doc_id, _, _)] = both_paths(ValueOptions(timestamp_tz=tz), _timestamp_rule(), ColumnKind.TIMESTAMP,
                                     ("timestamp_old", 0, 0, 0, None), [(raw, value)])
    assert doc_id == "2024-03-31T03:00:00+02:00"
    # The zero TIMESTAMP (second 0) is null in any zone, and counted; in the document only.
    zero = (timestamp2_bytes(0, 0, 0), datetime.datetime(1970, 1, 1))
    [(_, _, _, doc)] = both_paths(ValueOptions(timestamp_tz=tz), Rule("s", "t", "ix", ("id",)), ColumnKind.TIMESTAMP,
                                  ("timestamp2", 0, 0, 0, None), [zero])
    assert doc == b'{"id":0,"c":null}'


def test_a_timestamp_outside_the_zone_table_is_left_to_python():
    """Negative seconds (not a TIMESTAMP MySQL writes) are past the zone table: declined, not guessed."""
    table = native.Table([("int", 4, 0, 0, None), ("timestamp2", 0, 0, 0, None)],
                         rowpath.zone_offsets(ZoneInfo("Europe/Paris")))
    plan = native.Plan([(1, '"c"')], "", None, [0], ":", None, [(0, "ix", 0)], None, True, 0,
                       "".join(sorted(rowpath.INDEX_FORBIDDEN)))
    with pytest.raises(native.Decline, match="zone"):
        native.decode(table, [plan], 0, b"\x00" + struct.pack("<i", 1) + timestamp2_bytes(-5, 0, 0))


# --------------------------------------------------------------------------- the zone tables
def test_zone_tables_hold_each_change_of_offset_of_the_zones_tzif_data():
    """Every transition the zone's TZif file lists in TIMESTAMP's range that changes the offset is in
    the table at its second, and the table has no other change."""
    import zoneinfo._common as common
    import zoneinfo._tzpath as tzpath

    checked = 0
    for zone in ZONES + ["America/Los_Angeles", "Asia/Tehran", "Australia/Adelaide", "America/Caracas",
                         "Pacific/Kiritimati", "Asia/Pyongyang", "Europe/Moscow", "Antarctica/Troll"]:
        path = tzpath.find_tzfile(zone)
        if path is None:
            continue
        with open(path, "rb") as f:
            trans_idx, trans_utc, utcoff, *_ = common.load_data(f)
        table, end = rowpath.zone_offsets(ZoneInfo(zone))
        starts = [s for s, _ in table]

        def offset(second: int) -> int:
            return table[bisect.bisect_right(starts, second) - 1][1]

        changes = set()
        for second, i in zip(trans_utc, trans_idx):
            if 0 < second < end:
                assert offset(second) == utcoff[i], (zone, second)
                if offset(second - 1) != utcoff[i]:
                    changes.add(second)
        # Past the file's last transition the zone's rule (its POSIX TZ string) goes on: only
        # the table's changes before it are checked against the file.
        last = max(trans_utc, default=0)
        assert {s for s in starts[1:] if s <= last} == changes, zone
        checked += 1
    assert checked >= 20


def test_a_zone_table_samples_as_the_zone_converts():
    for tz in TZS[:6]:
        table, end = rowpath.zone_offsets(tz)
        starts = [s for s, _ in table]
        for second in range(1, end, 3 * 86400 + 3607):  # every weekday and hour, over the range
            expected = datetime.datetime.fromtimestamp(second, datetime.timezone.utc).astimezone(tz).utcoffset()
            assert expected is not None
            assert table[bisect.bisect_right(starts, second) - 1][1] == expected.total_seconds()


def test_a_tzinfo_that_is_not_zoneinfo_stays_with_the_python_path():
    class Odd(datetime.tzinfo):
        def utcoffset(self, dt):
            return datetime.timedelta(hours=1)

        def dst(self, dt):
            return None

        def tzname(self, dt):
            return "Odd"

    builder = ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 0, ValueOptions(timestamp_tz=Odd()))
    columns = (Column("id", ColumnKind.INTEGER), Column("c", ColumnKind.TIMESTAMP))
    with pytest.raises(rowpath.Unsupported, match="not a zoneinfo zone"):
        rowpath.compile_plan(builder.rules.matches("s", "t")[0], "s", "t", columns,
                             (("int", 4, 0, 0, None), ("timestamp2", 0, 0, 0, None)), builder)
    with pytest.raises(rowpath.Unsupported, match="fraction of a second"):
        rowpath.zone_offsets(datetime.timezone(datetime.timedelta(seconds=1, microseconds=5)))


# --------------------------------------------------------------------------- the snapshot's text rows
def _lenenc(value: bytes) -> bytes:
    assert len(value) < 0xFB
    return bytes([len(value)]) + value


def _snapshot_same(options: ValueOptions, reader: tuple[str, int], converter, kind: ColumnKind, text: str) -> None:
    zone = rowpath.timestamp_zone(options.timestamp_tz) if reader[0] == "timestamp" else None
    table = native.TextTable([("int", 0), reader], zone)
    plan = native.Plan([(0, '"c0"'), (1, '"c1"')], "", None, [1], ":", None, [(0, "ix", 0)], None, True, 0,
                       "".join(sorted(rowpath.INDEX_FORBIDDEN)))
    [(_, _, _, doc_id, _, doc)] = native.snapshot_rows(table, [plan], [_lenenc(b"1") + _lenenc(text.encode())])
    value = convert_value(converter(text), Column("c1", kind), options)
    assert doc == orjson.dumps({"c0": 1, "c1": value}), text
    assert doc_id == str(value)


@given(decimals())
@settings(max_examples=500, deadline=None)
def test_snapshot_decimals_as_numbers(value):
    text, _, _ = value
    _snapshot_same(NUMBER, ("decimal", 1), Decimal, ColumnKind.DECIMAL, text)
    _snapshot_same(NUMBER, ("decimal", 1), Decimal, ColumnKind.DECIMAL, text.replace("-", "-00", 1))


@given(st.sampled_from(TZS), instants())
@settings(max_examples=500, deadline=None)
def test_snapshot_timestamps_in_a_zone(tz, moment):
    # The snapshot's session is in UTC (cdc/mysql/server.py), so the server sends UTC text.
    second, micros = moment
    t = datetime.datetime.fromtimestamp(second, datetime.timezone.utc).replace(microsecond=micros, tzinfo=None)
    text = t.strftime("%Y-%m-%d %H:%M:%S") + (f".{micros:06d}" if micros else "")
    _snapshot_same(ValueOptions(timestamp_tz=tz), ("timestamp", 0), converters.convert_datetime,
                   ColumnKind.TIMESTAMP, text)


def test_snapshot_tables_with_both_options_go_native():
    from cdc.copy.native import SnapshotRows

    columns = (Column("id", ColumnKind.INTEGER), Column("d", ColumnKind.DECIMAL), Column("ts", ColumnKind.TIMESTAMP))
    options = ValueOptions(decimal_as="number", timestamp_tz=ZoneInfo("Asia/Kolkata"))
    snapshot = SnapshotRows(ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 0, options), "native")
    compiled = snapshot._compile("s", "t", columns, (("id", 3, 63), ("d", 246, 63), ("ts", 7, 63)))
    assert compiled.reason is None and snapshot.tables == {"s.t": "native"}
    assert compiled.table is not None and compiled.plans is not None
    row = _lenenc(b"7") + _lenenc(b"-12.50") + _lenenc(b"2024-01-02 03:04:05.250000")
    [(_, _, _, _, _, doc)] = native.snapshot_rows(compiled.table, compiled.plans, [row])
    assert doc == b'{"id":7,"d":-12.5,"ts":"2024-01-02T08:34:05.250000+05:30"}'
