"""The snapshot's native row path (native/src/text.rs) against the Python path, value by value (issue 13).

The Python path is the reference: PyMySQL's converter for the field type, then
values.py and orjson. Every case runs both on the same text and compares the
document bytes. Random row packets must give actions or a clean DecodeError /
Decline, never a crash. The comparison over real MariaDB reads is in
tests/integration/test_native_snapshot.py.
"""

from __future__ import annotations

import datetime
import decimal
import struct

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql import converters
from pymysql.connections import Connection

from cdc.copy.native import SnapshotRows
from cdc.errors import RowError
from cdc.model import BinlogPosition, Column, ColumnKind
from cdc.mysql.pymysql_hooks import PacketResult
from cdc.mysql.server import PacketRows
from cdc.native import native
from cdc.rules import ActionBuilder, Rule, RuleSet, rowpath
from cdc.rules.values import ValueOptions, convert_value

from .test_native_rowpath import _GEO_MODES, _SRIDS, GEOMETRIES, _wkb

pytestmark = pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")


def _plan(columns: int):
    return native.Plan([(i, f'"c{i}"') for i in range(columns)], "", None, [0], ":", None, [(0, "ix", 0)], None,
                       True, 0, "".join(sorted(rowpath.INDEX_FORBIDDEN)))


def _lenenc(value: bytes | None) -> bytes:
    if value is None:
        return b"\xfb"
    n = len(value)
    head = bytes([n]) if n < 0xFB else b"\xfc" + n.to_bytes(2, "little") if n < 1 << 16 else \
        b"\xfd" + n.to_bytes(3, "little")
    return head + value


def _native_doc(reader: tuple[str, int], text: bytes) -> bytes:
    """The document of a row (id 1, value) through text.rs."""
    table = native.TextTable([("int", 0), reader])
    [(_, _, _, _, _, doc)] = native.snapshot_rows(table, [_plan(2)], [_lenenc(b"1") + _lenenc(text)])
    return doc


def _python_doc(converter, kind: ColumnKind, text: bytes, **column) -> bytes:
    """The same row as PyMySQL's cursor and values.py give it."""
    value = converter(text.decode()) if converter else text
    return orjson.dumps({"c0": 1, "c1": convert_value(value, Column("c1", kind, **column), ValueOptions())})


def _same(reader, converter, kind, text: bytes, **column) -> None:
    assert _native_doc(reader, text) == _python_doc(converter, kind, text, **column), text


@given(st.integers(-(2**63), 2**64 - 1))
def test_integers(n):
    _same(("int", 0), int, ColumnKind.INTEGER, str(n).encode())


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_doubles(f):
    # MariaDB prints a DOUBLE with up to 17 significant digits (%.17g, shortest first).
    for text in (repr(f), f"{f:.17g}", f"{f:.15g}"):
        _same(("double", 0), float, ColumnKind.DOUBLE, text.encode())


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from([".17g", ".15g", ".9g", "r"]))
def test_floats_read_as_col_plus_0e0(f, fmt):
    text = repr(f) if fmt == "r" else format(f, fmt)
    _same(("float", 0), float, ColumnKind.FLOAT, text.encode())


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**30), max_value=10**30))
def test_decimals(d):
    _same(("decimal", 0), decimal.Decimal, ColumnKind.DECIMAL, format(d, "f").encode())


@pytest.mark.parametrize("text", [b"0.00", b"-0.00", b"-0", b"00012.5", b"-000.10", b"99999999999999999999999999.1"])
def test_decimal_edges(text):
    _same(("decimal", 0), decimal.Decimal, ColumnKind.DECIMAL, text)


@given(st.datetimes(datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31)), st.integers(0, 6))
def test_dates_and_times(t, fsp):
    t = t.replace(microsecond=t.microsecond // 10 ** (6 - fsp) * 10 ** (6 - fsp))
    frac = f".{t.microsecond:06d}"[:fsp + 1] if fsp else ""
    shown = f"{t:%Y-%m-%d %H:%M:%S}"
    text = f"{t.year:04d}{shown[shown.index('-'):]}{frac}".encode()
    _same(("date", 0), converters.convert_date, ColumnKind.DATE, text[:10])
    _same(("datetime", 0), converters.convert_datetime, ColumnKind.DATETIME, text)
    # TIMESTAMP's range starts at 1970-01-01 00:00:01 UTC (MySQL and MariaDB docs): the
    # server never sends 00:00:00, which is second 0, the zero date (next test).
    if t >= datetime.datetime(1970, 1, 1, 0, 0, 1):
        _same(("timestamp", 0), converters.convert_datetime, ColumnKind.TIMESTAMP, text)


def test_timestamp_at_second_zero_goes_to_the_python_path():
    """Second 0 of a TIMESTAMP is its zero date to the shared plan: the chunk declines, never guesses."""
    with pytest.raises(native.Decline, match="zero date"):
        _native_doc(("timestamp", 0), b"1970-01-01 00:00:00")


@given(st.integers(-(838 * 3600 + 3599) * 10**6 - 999999, (838 * 3600 + 3599) * 10**6 + 999999), st.integers(0, 6))
def test_times(micros, fsp):
    sign, micros = ("-" if micros < 0 else ""), abs(micros)
    seconds, frac = divmod(micros, 1_000_000)
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if fsp:
        text += f".{frac:06d}"[:fsp + 1]
    _same(("time", 0), converters.convert_timedelta, ColumnKind.TIME, text.encode())


@pytest.mark.parametrize("text", [b"0000-00-00", b"2024-00-10", b"0000-00-00 00:00:00", b"1970-01-01 00:00:00"])
def test_zero_dates_are_left_to_python(text):
    reader = ("date", 0) if len(text) == 10 else ("timestamp", 0)
    with pytest.raises(native.Decline, match="zero date"):
        _native_doc(reader, text)


@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=60))
def test_text(s):
    _same(("text", 0), None, ColumnKind.STRING, s.encode())
    _same(("text", 0), str, ColumnKind.STRING, s.encode())


@given(st.sets(st.sampled_from(["x", "y", "z", "ä", "a b"])))
def test_sets(labels):
    _same(("set", 0), str, ColumnKind.SET, ",".join(labels).encode())


@given(st.binary(max_size=20), st.integers(0, 20))
def test_binary(data, pad):
    _same(("binary", pad), None, ColumnKind.BINARY, data, pad_to=pad or None)


@given(st.integers(1, 64), st.data())
def test_bits(bits, data):
    n = data.draw(st.integers(0, 2**bits - 1))
    raw = n.to_bytes((bits + 7) // 8, "big")
    _same(("bit", int(bits == 1)), None, ColumnKind.BIT, raw, bits=bits)


@given(GEOMETRIES, _SRIDS, st.sampled_from(_GEO_MODES))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_geometries(tree, srid, mode):
    """A GEOMETRY field's bytes (PyMySQL keeps them: binary charset, no converter) as values.py writes them."""
    from cdc.errors import ConversionError

    kind, points = mode
    data = struct.pack("<I", srid) + _wkb(tree)
    table = native.TextTable([("int", 0), ("geometry", int(kind is ColumnKind.POINT and points == "geo_point"))])
    try:
        expected = orjson.dumps({"c0": 1, "c1": convert_value(data, Column("c1", kind), ValueOptions(points=points))})
    except ConversionError:  # values.py refuses it: the chunk is left to the Python path, which stops on it
        with pytest.raises(native.Decline):
            native.snapshot_rows(table, [_plan(2)], [_lenenc(b"1") + _lenenc(data)])
        return
    [(_, _, _, _, _, doc)] = native.snapshot_rows(table, [_plan(2)], [_lenenc(b"1") + _lenenc(data)])
    assert doc == expected


READERS = [("int", 0), ("float", 0), ("double", 0), ("decimal", 0), ("date", 0), ("datetime", 0), ("timestamp", 0),
           ("time", 0), ("year", 0), ("text", 0), ("binary", 4), ("set", 0), ("bit", 1), ("bit", 0), ("json_text", 0),
           ("geometry", 0), ("geometry", 1)]


@given(st.lists(st.sampled_from(READERS), min_size=1, max_size=8),
       st.lists(st.one_of(st.binary(max_size=80), st.lists(st.one_of(st.none(), st.binary(max_size=12)), max_size=9)
                          .map(lambda vals: b"".join(_lenenc(v) for v in vals))), min_size=1, max_size=5))
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_rows_never_crash(readers, packets):
    table = native.TextTable(readers)
    try:
        actions = native.snapshot_rows(table, [_plan(len(readers))], packets)
    except (native.DecodeError, native.Decline):
        return
    for action in actions:
        orjson.loads(action[5])  # whatever came out is valid JSON


def raw_rows(packets: list[bytes], fields: tuple[tuple[str, int, int], ...]) -> PacketRows:
    """Rows as packets with no query behind them (the result of a connection never opened): the
    native path never converts a row to Python values."""
    return PacketRows(packets, fields, PacketResult(Connection(defer_connect=True)), "utf8")


def test_a_bad_row_stops_the_snapshot_naming_table_row_and_key():
    builder = ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 0, ValueOptions())
    rows = SnapshotRows(builder, "native")
    columns = (Column("id", ColumnKind.INTEGER), Column("v", ColumnKind.STRING))
    fields = (("id", 3, 63), ("v", 253, 45))
    good = _lenenc(b"7") + _lenenc(b"x")
    truncated = raw_rows([good, _lenenc(b"8") + b"\x05ab"], fields)
    with pytest.raises(RowError, match=r"snapshot rows of s\.t at binlog\.000007:1234 \(chunk after key \[5\], 2 rows\)"
                                       r": row 1: truncated"):
        rows.actions("s", "t", columns, BinlogPosition("binlog.000007", 1234), truncated, after=[5])
    actions = rows.actions("s", "t", columns, BinlogPosition("binlog.000007", 1234),
                           raw_rows([good], fields))
    assert actions is not None
    assert [(a.index, a.doc_id, a.doc_json, a.version) for a in actions] == [
        ("ix", "7", b'{"id":7,"v":"x"}', (7 << 32) | 1234)]
    assert rows.tables == {"s.t": "native"}
    # A column PyMySQL would hand over as bytes where the kind wants text: the Python path, with why.
    other = SnapshotRows(builder, "native")
    assert other.actions("s", "t", columns, BinlogPosition("binlog.000007", 1234),
                         raw_rows([good], (("id", 3, 63), ("v", 253, 63)))) is None
    assert other.tables["s.t"].startswith("python: column 'v': a string column read as field type 253 (charset 63)")
    assert SnapshotRows(builder, "python").actions("s", "t", columns, BinlogPosition("binlog.000007", 1234),
                                                   raw_rows([good], fields)) is None


# --------------------------------------------------------------------------- a chunk's body, encoded in Rust
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30)


@given(st.lists(st.tuples(_TEXT, st.one_of(st.none(), _TEXT)), min_size=1, max_size=8, unique_by=lambda r: r[0]),
       st.sampled_from(["index", "update"]), st.booleans(), st.sampled_from([None, "", "pipe\"line"]),
       st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_chunks_body_is_what_encode_bulk_makes_of_its_actions(rows, mode, routed, pipeline, two_rules):
    """snapshot_body (Rust) against encode_bulk over the actions made from their fields alone."""
    import dataclasses

    from cdc.es.sink import encode_bulk
    from cdc.model import EncodedActions
    from cdc.stream.delivery import action_weight

    rules = [Rule("s", "t", "ix", ("id",), mode=mode, routing="{id}" if routed else None, pipeline=pipeline)]
    if two_rules:
        rules.append(Rule("s", "t", "other", ("id",), also=True, include=("v",), rename=(("v", "w"),)))
    snapshot = SnapshotRows(ActionBuilder(RuleSet(rules), 2, ValueOptions()), "native")
    columns = (Column("id", ColumnKind.STRING), Column("v", ColumnKind.STRING))
    fields = (("id", 253, 45), ("v", 253, 45))
    packets = [_lenenc(i.encode()) + _lenenc(None if v is None else v.encode()) for i, v in rows]
    encoded = snapshot.actions("s", "t", columns, BinlogPosition("binlog.000003", 77), raw_rows(packets, fields))
    assert isinstance(encoded, EncodedActions) and encoded._actions is None
    assert len(encoded) == len(rows) * len(rules)
    assert encode_bulk(encoded) is encoded.body  # sent as it came
    actions = list(encoded)  # made on demand, once
    assert encoded.actions is actions or encoded.actions == actions
    assert encoded.body == encode_bulk([dataclasses.replace(a) for a in actions])
    assert encoded.weight == sum(action_weight(a) for a in actions)


@pytest.mark.parametrize("max_actions, max_bytes, sizes", [(4, 10_000, [4, 4, 2]), (10, 500, [3, 3, 3, 1]),
                                                          (10, 10, [1] * 10), (3, 340, [2, 2, 2, 2, 2])])
def test_a_chunk_bigger_than_a_request_is_encoded_in_parts_as_chunks_splits_actions(max_actions, max_bytes, sizes):
    """snapshot_body's parts: the requests `chunks` makes of the same actions, each body `encode_bulk`'s."""
    import dataclasses

    from cdc.es.sink import encode_bulk
    from cdc.model import EncodedActions, EncodedParts
    from cdc.stream.delivery import chunks

    builder = ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 0, ValueOptions())
    columns = (Column("id", ColumnKind.INTEGER), Column("v", ColumnKind.STRING))
    fields = (("id", 3, 63), ("v", 253, 45))
    packets = [_lenenc(str(i).encode()) + _lenenc(b"x" * 50) for i in range(1, 11)]  # weight 164-165 each

    def chunk(request):
        return SnapshotRows(builder, "native", request).actions("s", "t", columns, BinlogPosition("binlog.000001", 4),
                                                                raw_rows(packets, fields))

    whole = chunk(None)
    assert isinstance(whole, EncodedActions)
    expected = list(chunks(list(whole), max_actions, max_bytes))
    parts = chunk((max_actions, max_bytes))
    assert isinstance(parts, EncodedParts) and len(parts) == 10
    requests = list(chunks(parts, max_actions, max_bytes))
    assert [len(r) for r in requests] == [len(e) for e in expected] == sizes
    assert all(r.__class__ is EncodedActions and r._actions is None for r in requests)  # bodies as made in Rust
    assert [encode_bulk(r) for r in requests] == [encode_bulk([dataclasses.replace(a) for a in e]) for e in expected]
    # Asked for, a part's actions are its own: the chunk's actions are made once, in order.
    assert [a.doc_id for a in requests[1]] == [a.doc_id for a in expected[1]]
    assert [a.doc_id for a in parts] == [str(i) for i in range(1, 11)] and parts[-1].doc_id == "10"


def test_an_encoded_chunk_goes_as_one_request_made_into_actions_only_when_an_item_failed():
    from cdc.config import BatchConfig, RetryConfig
    from cdc.es.bulk import parse_bulk_response
    from cdc.es.transport import _OrjsonSerializer
    from cdc.model import EncodedActions, Outcome
    from cdc.stream.delivery import BulkWriter, chunks

    from .fakes import FakeSink

    snapshot = SnapshotRows(ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 0, ValueOptions()), "native")
    columns = (Column("id", ColumnKind.INTEGER), Column("v", ColumnKind.STRING))
    fields = (("id", 3, 63), ("v", 253, 45))

    def chunk() -> EncodedActions:
        packets = [_lenenc(str(i).encode()) + _lenenc(b"x" * 50) for i in range(1, 11)]
        rows = raw_rows(packets, fields)
        encoded = snapshot.actions("s", "t", columns, BinlogPosition("binlog.000001", 4), rows)
        assert isinstance(encoded, EncodedActions)
        return encoded

    # Within the batch limits: one request, as encoded; over them: split as any actions are.
    encoded = chunk()
    assert [c is encoded for c in chunks(encoded, 10, 10_000)] == [True]
    assert [len(c) for c in chunks(encoded, 4, 10_000)] == [4, 4, 2]
    assert [len(c) for c in chunks(chunk(), 10, 500)] == [3, 3, 3, 1]  # weight 150 each

    # Elasticsearch's answer when every item succeeded: counted, and no action made.
    encoded = chunk()
    answer = _OrjsonSerializer().json_loads(orjson.dumps({"errors": False, "items": [{"index": {"status": 201}}] * 10}))
    result = parse_bulk_response(encoded, answer)
    assert result.with_outcome(Outcome.REJECTED) == result.with_outcome(Outcome.STALE, Outcome.RETRY) == []
    assert encoded._actions is None
    # An item that failed once (FakeSink looks at every action): only that one is sent again.
    sink = FakeSink(script=[{"3": Outcome.RETRY}])
    writer = BulkWriter(sink, BatchConfig(max_actions=100), RetryConfig(initial_backoff=0.001, max_backoff=0.01))
    encoded = chunk()
    writer.write(encoded)
    assert sink.sent_ids == [[str(i) for i in range(1, 11)], ["3"]]
    assert writer.stats.actions_sent == 10 and writer.stats.item_retries == 1
