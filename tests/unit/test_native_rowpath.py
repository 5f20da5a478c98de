"""The native row path against the Python path, value by value and on random input (issue 19).

The Python path (values.py + orjson) is the reference: every case here runs both and
compares the bytes. Random event bytes must give a result or a clean DecodeError /
Decline, never a crash. The end-to-end comparison over a real binlog is in
tests/integration/test_native_rowpath.py.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Literal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.model import Column, ColumnKind
from cdc.native import native
from cdc.rules import rowpath
from cdc.rules.values import _float32, _json, _parse_json_text

pytestmark = pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")


def python_json_text(text: str) -> bytes:
    return orjson.dumps(_json(_parse_json_text(text, Column("j", ColumnKind.JSON))))


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=3000)
def test_floats_are_written_as_orjson_writes_them(value):
    assert native.format_float(value).encode() == orjson.dumps(value)


@pytest.mark.parametrize("value", [0.0, -0.0, 1e16, 1e15, 1e-5, 1e-6, 1.5e-7, 5e-324, 1.7976931348623157e308,
                                   0.30000000000000004, 123456789012345680.0, 2.5, 1e22, 1e21])
def test_float_edges(value):
    assert native.format_float(value).encode() == orjson.dumps(value)


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
@settings(max_examples=3000)
def test_float32_is_the_shortest_same_float32_as_values_py(value):
    assert struct.pack("<d", native.float32(value)) == struct.pack("<d", _float32(value))


JSON_TEXTS = [
    '{"a": [1, 2.50, -0, 1e-400], "b": {"c": null, "s": "x"}}',
    '{"x": 1e400, "y": -9223372036854775809, "x": [1.5e-7, 1E16]}',  # orjson refuses: json.loads decides
    '{"n": 12345678901234567890123, "s": "\\u00e9\\ud83d\\ude00"}',  # a 20-digit run: json.loads
    '[-9223372036854775809, 18446744073709551615, -9223372036854775808]',  # orjson: the first is a float
    '"just a string"', '123', '-0.0', 'true', ' [ ] ', '{"a":1,"b":2,"a":3}', '"\\b\\f\\n\\r\\t\\"\\\\\\/"',
    '{"\\u0000": "\\u001f\\u007f"}', '1E2', '[1e-7, 1e-5, 100.0]',
]


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_json_text_as_values_py_writes_it(text):
    assert native.json_text(text).encode() == python_json_text(text)


@pytest.mark.parametrize("text", ['{"a": 1', "NaN", "[1,]", '"\\ud800"', "01", '{"a" 1}', "[1] x", "\x01",
                                  '"\\x"', "[" * 200 + "]" * 200, '"١٢٣"'])
def test_json_text_it_does_not_reproduce_is_left_to_python(text):
    with pytest.raises(native.Decline):
        native.json_text(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20)


@given(json_values, st.sampled_from([None, 0, 2]))
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_random_json_text_gives_the_same_bytes(value, indent):
    text = json.dumps(value, indent=indent, ensure_ascii=indent == 2)
    try:
        expected = python_json_text(text)
    except Exception:
        with pytest.raises(native.Decline):
            native.json_text(text)
        return
    try:
        got = native.json_text(text)
    except native.Decline:
        return  # the Python path does it: allowed, never wrong
    assert got.encode() == expected


# --------------------------------------------------------------------------- whole events, random bytes
READERS = [("int", 1, 0, 0, None), ("int", 8, 1, 0, None), ("int", 3, 0, 0, None), ("float", 0, 0, 0, None),
           ("double", 0, 0, 0, None), ("decimal", 65, 30, 0, None), ("decimal", 10, 2, 0, None),
           ("date", 0, 0, 0, None), ("datetime2", 6, 0, 0, None), ("timestamp2", 3, 0, 0, None),
           ("time2", 5, 0, 0, None), ("time_old", 0, 0, 0, None), ("year", 0, 0, 0, None),
           ("text", 1, 0, 0, None), ("text", 2, 0, 0, None), ("binary", 1, 4, 0, None), ("json_text", 4, 0, 0, None),
           ("enum", 1, 0, 0, ["", "a", "b"]), ("set", 1, 0, 0, ["x", "y", "z"]), ("bit", 1, 1, 1, None),
           ("bit", 10, 2, 0, None), ("datetime_old", 0, 0, 0, None), ("timestamp_old", 0, 0, 0, None),
           ("geometry", 4, 0, 0, None), ("geometry", 1, 1, 0, None)]


def _plan(columns: int, **kw):
    options: dict[str, Any] = dict(doc=[(i, f'"c{i}"') for i in range(columns)], consts=',"k":1', soft=None,
                                   id_cols=[0], id_sep=":", id_tpl=None, index=[(0, "ix", 0)], routing=None,
                                   versioned=True, on_delete=0, forbidden="".join(sorted(rowpath.INDEX_FORBIDDEN)))
    options.update(kw)
    return native.Plan(**options)


@given(st.lists(st.sampled_from(READERS), min_size=1, max_size=8), st.binary(max_size=300), st.integers(0, 2),
       st.booleans())
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_bytes_never_crash(readers, body, op, soft):
    table = native.Table(readers)
    plan = _plan(len(readers), soft='"deleted"' if soft else None, on_delete=2 if soft else 0,
                 id_cols=list(range(len(readers))), id_sep="/")
    try:
        rows, actions, zero_rows = native.decode(table, [plan], op, body)
    except (native.DecodeError, native.Decline):
        return
    for action in actions:
        if action[7] is not None:
            orjson.loads(action[7])  # whatever came out is valid JSON


def test_truncated_event_is_a_decode_error_naming_the_offset():
    table = native.Table([("int", 4, 0, 0, None), ("text", 1, 0, 0, None)])
    with pytest.raises(native.DecodeError, match="truncated: 5 bytes needed at offset 6"):
        native.decode(table, [_plan(2)], 0, b"\x00\x01\x00\x00\x00\x05abc")


def test_decode_error_in_the_row_path_names_table_and_position():
    from cdc.errors import RowError
    from cdc.model import BinlogPosition, Op, RowsData
    from cdc.rules import ActionBuilder, Rule, RuleSet
    from cdc.rules.values import ValueOptions

    rule = Rule("s", "t", "ix", ("id",))
    builder = ActionBuilder(RuleSet([rule]), 0, ValueOptions())
    path = rowpath.RowPath(builder, "native")
    columns = (Column("id", ColumnKind.INTEGER),)
    rows = RowsData(Op.INSERT, "s", "t", columns, (("int", 4, 0, 0, None),), b"\x00\x01\x00", BinlogPosition(
        "binlog.000007", 1234), 0, decode=lambda: pytest.fail("a decode error must not fall back"))
    with pytest.raises(RowError, match=r"s\.t at binlog\.000007:1234 \(3 bytes of rows\): truncated"):
        path.prepare(rows)
    good = RowsData(Op.INSERT, "s", "t", columns, (("int", 4, 0, 0, None),), b"\x00\x07\x00\x00\x00",
                    BinlogPosition("binlog.000007", 1234), 0, decode=lambda: pytest.fail("no fallback"))
    changes, actions = path.changes_and_actions(good)
    assert len(changes) == 1 and [(a.index, a.doc_id, a.doc_json, a.doc) for a in actions] == [
        ("ix", "7", b'{"id":7}', {"id": 7})]
    assert actions[0].version == (7 << 32) | 1234
    assert not math.isnan(0.0)


def test_status_shows_each_table_that_falls_back():
    from cdc.ops.metrics import PrometheusObserver
    from cdc.ops.progress import Progress
    from cdc.ops.status import Report, format_text

    metrics = PrometheusObserver(Progress(5.0))
    metrics.watch_row_paths(lambda: {"s.t": "native", "s.u": "python: values.decimal_as: number"})
    body = metrics.exposition()[0].decode()
    assert 'cdc_row_path{path="native",reason="",table="s.t"} 1.0' in body
    assert 'cdc_row_path{path="python",reason="values.decimal_as: number",table="s.u"} 1.0' in body
    report: Report = {"checkpoint": None, "daemon_running": True, "snapshot": None, "dead_letters": None,
                      "problems": [], "lag": {"source": None},
                      "row_path": {"config": "auto", "native_module": True,
                                   "tables": {"s.t": "native", "s.u": "python: values.decimal_as: number"}}}
    text = format_text(report)
    assert "row path      native where the rules allow (row_path: auto)\n              s.u: python: " \
           "values.decimal_as: number" in text
    assert "s.t" not in text
    report["row_path"] = {"config": "auto", "native_module": False, "tables": None}
    assert "row path      python (the native module is not installed)" in format_text(report)


def test_a_new_table_definition_gets_a_new_plan():
    """ALTER TABLE ... RENAME COLUMN: same types, other names; the documents follow the new names."""
    from cdc.model import BinlogPosition, Op, RowsData
    from cdc.rules import ActionBuilder, Rule, RuleSet
    from cdc.rules.values import ValueOptions

    path = rowpath.RowPath(ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 0, ValueOptions()), "auto")
    readers = (("int", 4, 0, 0, None), ("int", 1, 0, 0, None))

    def docs(names: tuple[str, str]) -> list[bytes]:
        columns = tuple(Column(n, ColumnKind.INTEGER) for n in names)
        rows = RowsData(Op.INSERT, "s", "t", columns, readers, b"\x00\x07\x00\x00\x00\x05",
                        BinlogPosition("binlog.000001", 4), 0, decode=lambda: pytest.fail("no fallback"))
        return [a.doc_json for a in path.changes_and_actions(rows)[1]]

    assert docs(("id", "a")) == [b'{"id":7,"a":5}']
    assert docs(("id", "alpha")) == [b'{"id":7,"alpha":5}']
    assert docs(("id", "a")) == [b'{"id":7,"a":5}']


# --------------------------------------------------------------------------- the actions as objects
def _text_event(values: list[str]) -> bytes:
    """A WRITE rows body of (VARCHAR id, VARCHAR r) rows: no NULLs, 1-byte length prefixes."""
    body = b""
    for value in values:
        raw = value.encode()
        body += b"\x00" + bytes([len(raw)]) + raw + bytes([len(raw)]) + raw
    return body


_ID_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40).filter(
    lambda t: len(t.encode()) < 250)


@given(st.lists(_ID_TEXT, min_size=1, max_size=6), st.sampled_from(["index", "update"]),
       st.sampled_from(["delete", "soft", "ignore"]), st.booleans(), st.sampled_from([None, "", "pipe\"line"]),
       st.sampled_from([0, 1, 2]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_native_actions_carry_the_bulk_line_key_and_document_their_fields_give(ids, mode, on_delete, routed,
                                                                               pipeline, op):
    """actions.rs fills `bulk_meta`, `key` and `document` in; they must be what the fields give."""
    import dataclasses

    from cdc.es.sink import encode_bulk
    from cdc.model import Action, BinlogPosition, Op, RowsData
    from cdc.rules import ActionBuilder, Rule, RuleSet
    from cdc.rules.values import ValueOptions

    rule = Rule("s", "t", "ix", ("id",), mode=mode, on_delete=on_delete, routing="{r}" if routed else None,
                pipeline=pipeline)
    path = rowpath.RowPath(ActionBuilder(RuleSet([rule]), 3, ValueOptions()), "native")
    columns = (Column("id", ColumnKind.STRING), Column("r", ColumnKind.STRING))
    readers = (("text", 1, 0, 0, None), ("text", 1, 0, 0, None))
    body = _text_event(ids)
    if op == 1:  # an update: each row's before and after image, the routing moved
        body = b"".join(_text_event([v]) + _text_event([v + "x"] if len((v + "x").encode()) < 250 else [v])
                        for v in ids)
    rows = RowsData((Op.INSERT, Op.UPDATE, Op.DELETE)[op], "s", "t", columns, readers, body,
                    BinlogPosition("binlog.000009", 4321), 0, decode=lambda: pytest.fail("no fallback"))
    _, actions = path.changes_and_actions(rows)
    assert actions or (op == 2 and on_delete == "ignore")
    for action in actions:
        assert type(action) is rowpath.NativeAction and action.bulk_meta is not None
        twin = dataclasses.replace(action)  # made from the fields alone
        assert "bulk_meta" not in twin.__dict__ and "key" not in twin.__dict__
        assert encode_bulk([action]) == encode_bulk([twin])
        assert encode_bulk([action]).split(b"\n")[0] == action.bulk_meta
        assert action.key == twin.key == Action.key.compute(action)
        assert action.document == twin.document == (action.index, action.doc_id)


def test_native_actions_are_left_out_of_the_cyclic_collector_and_freed_by_reference_count():
    """actions.rs untracks each action, its dict and its two tuples, and the event's stand-in and
    position (the argument is there)."""
    import gc
    import weakref

    from cdc.model import BinlogPosition, Op, RowsData
    from cdc.rules import ActionBuilder, Rule, RuleSet
    from cdc.rules.values import ValueOptions

    path = rowpath.RowPath(ActionBuilder(RuleSet([Rule("s", "t", "ix", ("id",))]), 3, ValueOptions()), "native")
    columns = (Column("id", ColumnKind.STRING), Column("r", ColumnKind.STRING))
    readers = (("text", 1, 0, 0, None), ("text", 1, 0, 0, None))
    rows = RowsData(Op.INSERT, "s", "t", columns, readers, _text_event(["a", "b"]),
                    BinlogPosition("binlog.000009", 4321), 0, decode=lambda: pytest.fail("no fallback"))
    changes, actions = path.changes_and_actions(rows)
    assert len(actions) == 2
    (change,) = changes
    assert isinstance(change, rowpath.PreparedChange)
    assert not any(gc.is_tracked(o) for o in (change, change.__dict__, change.prepared, change.position))
    del change, changes
    for action in actions:
        assert not gc.is_tracked(action) and not gc.is_tracked(action.__dict__)
        assert not gc.is_tracked(action.key) and not gc.is_tracked(action.document)
        assert action.doc == {"id": "a", "r": "a"} or action.doc == {"id": "b", "r": "b"}
    gone = weakref.ref(actions[0])
    del actions[:]
    assert gone() is None  # no cycle holds it: dropped with its last reference, no collection needed


def test_untrack_leaves_objects_the_collector_does_not_track_alone():
    """cdc._native.untrack checks before it untracks: types without the collector's header are skipped."""
    import gc

    native.untrack(1, "text", b"bytes", None, 2.5, int, ("a", "b"))  # nothing to do, nothing read amiss
    pair = ("a", ["list"])
    assert gc.is_tracked(pair)
    native.untrack(pair)
    assert not gc.is_tracked(pair) and pair == ("a", ["list"])


# --------------------------------------------------------------------------- floats in ids (Python's repr)
@given(st.floats())
@settings(max_examples=3000)
def test_float_repr_is_pythons_repr(value):
    """actions.py `_id_part` is str() of the converted value: for a float its repr()."""
    if math.isfinite(value):
        assert native.float_repr(value) == repr(value)
    else:
        with pytest.raises(native.Decline):  # NaN and infinities: never a MySQL value
            native.float_repr(value)


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
@settings(max_examples=3000)
def test_float_repr_of_float32_values_as_values_py_rounds_them(value):
    """A FLOAT id is repr() of values.py _float32 (the shortest decimal of the float32), and of the widened value."""
    assert native.float_repr(native.float32(value)) == repr(_float32(value))
    assert native.float_repr(value) == repr(value)


@pytest.mark.parametrize("value", [0.0, -0.0, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 0.00012, 1.5e-5, 5e-324,
                                   2.2250738585072014e-308, 1.7976931348623157e308, 0.30000000000000004,
                                   123456789012345680.0, 562949953421312.25, 1e22, 1e21, 1e100, -1e-100,
                                   3.4028234663852886e38, 1.401298464324817e-45])
def test_float_repr_edges(value):
    assert native.float_repr(value) == repr(value) == str(value)


# --------------------------------------------------------------------------- geometry (WKB)
def _wkb(node) -> bytes:
    """A geometry tree (code, little-endian?, body) as WKB, each geometry in its own byte order."""
    code, little, body = node
    order = "<" if little else ">"
    out = bytes([little]) + struct.pack(order + "I", code)

    def points(pts) -> bytes:
        return struct.pack(order + "I", len(pts)) + b"".join(struct.pack(order + "dd", *p) for p in pts)

    if code == 1:
        return out + struct.pack(order + "dd", *body)
    if code == 2:
        return out + points(body)
    if code == 3:
        return out + struct.pack(order + "I", len(body)) + b"".join(points(ring) for ring in body)
    return out + struct.pack(order + "I", len(body)) + b"".join(_wkb(part) for part in body)


_ORDER = st.booleans()
_XY = st.tuples(st.floats(), st.floats())  # NaN and infinities too: orjson writes them as null
_POINT = st.tuples(st.just(1), _ORDER, _XY)
_LINE = st.tuples(st.just(2), _ORDER, st.lists(_XY, max_size=4))
_POLYGON = st.tuples(st.just(3), _ORDER, st.lists(st.lists(_XY, max_size=4), max_size=3))
# Multi* as MySQL writes them (parts of their one type), and of anything else, which values.py
# does not check: parts of other types give their coordinates, a collection among them an error.
_MULTI = st.one_of(st.tuples(st.just(4), _ORDER, st.lists(_POINT, max_size=3)),
                   st.tuples(st.just(5), _ORDER, st.lists(_LINE, max_size=3)),
                   st.tuples(st.just(6), _ORDER, st.lists(_POLYGON, max_size=3)))
GEOMETRIES = st.recursive(
    _POINT | _LINE | _POLYGON | _MULTI,
    lambda children: st.tuples(st.just(7), _ORDER, st.lists(children, max_size=3))
    | st.tuples(st.sampled_from([4, 5, 6]), _ORDER, st.lists(children, max_size=3)),
    max_leaves=12)
_SRIDS = st.sampled_from([0, 4326, 3857, 2**32 - 1]) | st.integers(0, 2**32 - 1)
Points = Literal["geojson", "geo_point"]  # values.points
_GEO_MODES: list[tuple[ColumnKind, Points]] = [(ColumnKind.GEOMETRY, "geojson"), (ColumnKind.GEOMETRY, "geo_point"), (ColumnKind.POINT, "geojson"),
              (ColumnKind.POINT, "geo_point")]


def _python_geometry(data: bytes, kind: ColumnKind, points: Points) -> bytes | Exception:
    from cdc.errors import ConversionError
    from cdc.rules.values import ValueOptions, convert_value

    try:
        return orjson.dumps(convert_value(data, Column("g", kind), ValueOptions(points=points)))
    except ConversionError as exc:
        return exc


def _assert_same_geometry(data: bytes, kind: ColumnKind, points: Points) -> None:
    expected = _python_geometry(data, kind, points)
    geo_point = kind is ColumnKind.POINT and points == "geo_point"  # as compile_plan sets it
    if isinstance(expected, Exception):
        with pytest.raises(native.Decline):
            native.geometry(data, geo_point)
    else:
        assert native.geometry(data, geo_point).encode() == expected


@given(GEOMETRIES, _SRIDS, st.sampled_from(_GEO_MODES))
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_random_geometries_as_values_py_writes_them(tree, srid, mode):
    _assert_same_geometry(struct.pack("<I", srid) + _wkb(tree), *mode)


@given(GEOMETRIES, _SRIDS, st.sampled_from(_GEO_MODES), st.sampled_from(["cut", "append", "change"]), st.data())
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_damaged_geometries_decline_where_values_py_raises(tree, srid, mode, damage, data):
    """A cut, lengthened or changed value: the same bytes where values.py takes it, else a Decline."""
    value = bytearray(struct.pack("<I", srid) + _wkb(tree))
    if damage == "cut":
        value = value[:data.draw(st.integers(0, len(value) - 1))]
    elif damage == "append":
        value += data.draw(st.binary(min_size=1, max_size=20))
    else:
        value[data.draw(st.integers(4, len(value) - 1))] = data.draw(st.integers(0, 255))
    _assert_same_geometry(bytes(value), *mode)


def _pt(x: float, y: float, little: bool = True) -> bytes:
    return _wkb((1, little, (x, y)))


GEOMETRY_CASES = [
    b"\xe6\x10\x00\x00" + _pt(1.5, -2.0),  # SRID 4326
    b"\x00\x00\x00\x00" + _pt(1e16, 1e-7, little=False),
    b"\x00\x00\x00\x00" + _pt(float("nan"), float("inf")),
    b"\x00\x00\x00\x00" + _wkb((7, True, [])),  # GEOMETRYCOLLECTION EMPTY
    b"\x00\x00\x00\x00" + _wkb((7, False, [(7, True, [(1, False, (0.0, -0.0))]), (2, True, [(1.0, 2.0)])])),
    b"\x00\x00\x00\x00" + _wkb((4, True, [(2, False, [(1.0, 2.0), (3.0, 4.0)])])),  # a MultiPoint of a line
    # declined: values.py raises
    b"", b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x01", b"\x00\x00\x00\x00" + _pt(1.0, 2.0)[:-1],
    b"\x00\x00\x00\x00" + _pt(1.0, 2.0) + b"\x00", b"\x00\x00\x00\x00\x02\x01\x00\x00\x00" + bytes(16),
    b"\x00\x00\x00\x00\x01\x08\x00\x00\x00", b"\x00\x00\x00\x00\x01\xe9\x03\x00\x00" + bytes(24),  # POINT Z (1001)
    b"\x00\x00\x00\x00\x01\x02\x00\x00\x00\xff\xff\xff\xff",  # a count past the end
    b"\x00\x00\x00\x00" + _wkb((4, True, [(7, True, [])])),  # a collection in a Multi*
]


@pytest.mark.parametrize("data", GEOMETRY_CASES)
@pytest.mark.parametrize("mode", _GEO_MODES)
def test_geometry_literals(data, mode):
    _assert_same_geometry(data, *mode)


def test_deep_collections_are_declined_not_a_stack_overflow():
    deep = b"\x00\x00\x00\x00" + b"\x01\x07\x00\x00\x00\x01\x00\x00\x00" * 5000 + b"\x01\x07\x00\x00\x00\x00\x00\x00\x00"
    with pytest.raises(native.Decline):
        native.geometry(deep)
    shallow = b"\x00\x00\x00\x00" + b"\x01\x07\x00\x00\x00\x01\x00\x00\x00" * 60 + _pt(1.0, 2.0)
    _assert_same_geometry(shallow, ColumnKind.GEOMETRY, "geojson")


# --------------------------------------------------------------------------- whole events: both paths
def _both_paths(rule, options, columns, readers, op, images):
    """One rows event of `images` (each: its bytes in the event, the values the library gives) through
    the native path and the Python path: the same actions, or the same error from the Python path
    after the native code declined. Returns the native actions (None on an error)."""
    from cdc.errors import RowError
    from cdc.model import BinlogPosition, Op, RowChange, RowsData
    from cdc.rules import ActionBuilder, RuleSet

    position = BinlogPosition("binlog.000003", 777)
    step = 2 if op is Op.UPDATE else 1
    changes = []
    for n, k in enumerate(range(0, len(images), step)):
        before = images[k][1] if op is not Op.INSERT else None
        after = images[k + step - 1][1] if op is not Op.DELETE else None
        changes.append(RowChange(op, "s", "t", columns, before, after, position, 0, n))
    declined = []

    def decode():
        declined.append(True)
        return changes

    rows = RowsData(op, "s", "t", columns, readers, b"".join(raw for raw, _ in images), position, 0, decode=decode)
    reference = ActionBuilder(RuleSet([rule]), 0, options)
    try:
        expected = [a for c in changes for a in reference.actions(c)]
    except RowError as exc:
        path = rowpath.RowPath(ActionBuilder(RuleSet([rule]), 0, options), "native")
        prepared = path.prepare(rows)
        assert declined, "the native path must leave an event the Python path refuses to it"
        with pytest.raises(RowError) as raised:
            [a for c in prepared for a in path.actions(c)]
        assert str(raised.value) == str(exc)
        return None
    path = rowpath.RowPath(ActionBuilder(RuleSet([rule]), 0, options), "native")
    got = [a for c in path.prepare(rows) for a in path.actions(c)]
    assert path.tables["s.t"] == "native"
    assert not declined, "the Python path takes this event: so must the native one"
    assert all(type(a) is rowpath.NativeAction for a in got)
    assert [_action_fields(a) for a in got] == [_action_fields(a) for a in expected]
    return got


def _action_fields(action) -> tuple:
    from cdc.es.sink import encode_bulk

    return (action.type, action.index, action.doc_id, action.version, action.routing, action.schema, action.table,
            action.position, action.pipeline, action.versioned, action.doc_json, encode_bulk([action]), action.key,
            action.document)


def _blob(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


@given(st.lists(st.tuples(st.none() | GEOMETRIES.map(_wkb), st.none() | _XY.map(lambda xy: _pt(*xy)),
                          _SRIDS), min_size=1, max_size=5),
       st.sampled_from(["geojson", "geo_point"]), st.sampled_from(["insert", "update", "delete"]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_geometry_columns_give_the_same_actions_on_both_paths(rows, points, op):
    """A GEOMETRY and a POINT column (a GEOMETRY in the binlog; the rule knows it from information_schema)."""
    from cdc.model import Op
    from cdc.rules import Rule
    from cdc.rules.values import ValueOptions

    rule = Rule("s", "t", "ix", ("id",), point_columns=frozenset({"p"}), on_delete="soft")
    columns = (Column("id", ColumnKind.INTEGER), Column("g", ColumnKind.GEOMETRY), Column("p", ColumnKind.GEOMETRY))
    readers = (("int", 4, 0, 0, None), ("geometry", 4, 0, 0, None), ("geometry", 4, 0, 0, None))
    images = []
    for n, (g, p, srid) in enumerate(rows):
        values: dict[str, Any] = {"id": n, "g": None if g is None else struct.pack("<I", srid) + g,
                  "p": None if p is None else struct.pack("<I", srid) + p}
        nulls = (g is None) << 1 | (p is None) << 2
        raw = bytes([nulls]) + struct.pack("<i", n) + b"".join(_blob(values[c]) for c in "gp" if values[c] is not None)
        images.append((raw, values))
    opcode = {"insert": Op.INSERT, "update": Op.UPDATE, "delete": Op.DELETE}[op]
    if opcode is Op.UPDATE:
        images = [image for pair in zip(images, images[1:] + images[:1]) for image in pair]
    _both_paths(rule, ValueOptions(points=points), columns, readers, opcode, images)


@pytest.mark.parametrize("points", ["geojson", "geo_point"])
def test_geometry_documents_and_a_bad_value(points):
    from cdc.model import Op
    from cdc.rules import Rule
    from cdc.rules.values import ValueOptions

    rule = Rule("s", "t", "ix", ("id",), point_columns=frozenset({"p"}))
    columns = (Column("id", ColumnKind.INTEGER), Column("g", ColumnKind.GEOMETRY), Column("p", ColumnKind.GEOMETRY))
    readers = (("int", 4, 0, 0, None), ("geometry", 4, 0, 0, None), ("geometry", 4, 0, 0, None))
    point = b"\xe6\x10\x00\x00" + _pt(13.4, 52.5)
    good = (b"\x00\x01\x00\x00\x00" + _blob(point) + _blob(point), {"id": 1, "g": point, "p": point})
    actions = _both_paths(rule, ValueOptions(points=points), columns, readers, Op.INSERT, [good])
    assert actions is not None
    lat_lon = b'{"lat":52.5,"lon":13.4}' if points == "geo_point" else b'{"type":"Point","coordinates":[13.4,52.5]}'
    assert actions[0].doc_json == b'{"id":1,"g":{"type":"Point","coordinates":[13.4,52.5]},"p":' + lat_lon + b"}"
    bad = point + b"\x00"  # a trailing byte: values.py raises, cdc stops on the row (a RowError)
    event = [good, (b"\x00\x02\x00\x00\x00" + _blob(bad) + _blob(point), {"id": 2, "g": bad, "p": point})]
    assert _both_paths(rule, ValueOptions(points=points), columns, readers, Op.INSERT, event) is None
    # ... unless the column is not in the document: values.py converts only what it writes
    excluded = Rule("s", "t", "ix", ("id",), exclude=("g",))
    assert _both_paths(excluded, ValueOptions(), columns, readers, Op.INSERT, event) is not None


_F32 = st.floats(width=32).map(lambda f: struct.pack("<f", f))
_F64 = st.floats().map(lambda f: struct.pack("<d", f))


@given(st.lists(st.tuples(_F32, _F64), min_size=1, max_size=5), st.sampled_from(["ids", "template", "routing"]))
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_float_and_double_ids_routing_and_index_names_on_both_paths(rows, where):
    from cdc.model import Op
    from cdc.rules import Rule
    from cdc.rules.values import ValueOptions

    if where == "ids":
        rule = Rule("s", "t", "ix", ("f", "d"))
    elif where == "template":
        rule = Rule("s", "t", "ix-{f}", None, id_template="{d}/{f}")
    else:
        rule = Rule("s", "t", "ix", ("v",), routing="{f}{d}")
    columns = (Column("f", ColumnKind.FLOAT), Column("d", ColumnKind.DOUBLE), Column("v", ColumnKind.INTEGER))
    readers = (("float", 0, 0, 0, None), ("double", 0, 0, 0, None), ("int", 1, 0, 0, None))
    images = []
    for n, (f, d) in enumerate(rows):
        # the library: struct.unpack of the float32 (widened) and of the double
        images.append((b"\x00" + f + d + bytes([n]), {"f": struct.unpack("<f", f)[0], "d": struct.unpack("<d", d)[0],
                                                        "v": n}))
    _both_paths(rule, ValueOptions(), columns, readers, Op.INSERT, images)


def test_set_ids_are_left_to_the_python_path_which_refuses_them():
    """A SET value is a list, which actions.py `_id_part` refuses: the plan compiles, each event declines."""
    from cdc.model import Op
    from cdc.rules import Rule
    from cdc.rules.values import ValueOptions

    columns = (Column("s", ColumnKind.SET), Column("v", ColumnKind.INTEGER))
    readers = (("set", 1, 0, 0, ["x", "y"]), ("int", 1, 0, 0, None))
    for rule in (Rule("s", "t", "ix", ("s",)), Rule("s", "t", "ix-{s}", ("v",)),
                 Rule("s", "t", "ix", ("v",), routing="{s}")):
        assert _both_paths(rule, ValueOptions(), columns, readers, Op.INSERT,
                           [(b"\x00\x03\x01", {"s": {"x", "y"}, "v": 1})]) is None
