"""The native row path against the Python path over a real MariaDB (and MySQL) binlog (issue 19).

The same binlog range is read twice through `BinlogSource`: once with the library
decoding every row and `ActionBuilder` making the actions (the reference), once
with the rows handed undecoded to `RowPath` (cdc._native). Both must give the
same actions, field by field, with byte-identical documents.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import binlog_position, both_sources

from cdc.config import MysqlConfig, RetryConfig
from cdc.es.sink import encode_bulk
from cdc.model import BinlogPosition, RowChange
from cdc.mysql.server import Database
from cdc.mysql import source
from cdc.mysql import replication_hooks as hooks
from cdc.mysql.source import BinlogSource
from cdc.rules import ActionBuilder, load_rules, resolved_or_stop
from cdc.rules import rowpath
from cdc.rules.values import ValueOptions

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")]

from test_rules_values import ALL_TYPES, MAX_ROW, MIN_ROW, NULL_ROW, ZERO_ROW  # noqa: E402

# The value table without its GEOMETRY/POINT columns (those are compared below, on both servers);
# `all_types` has them, and its rule a conversion, so its events come through the fallback.
NATIVE_TYPES = ALL_TYPES.replace("CREATE TABLE all_types", "CREATE TABLE native_types").replace(
    ", g GEOMETRY, pt POINT", "")


def _native_row(sql: str) -> str:
    """An all_types INSERT for native_types: without the geometry values."""
    sql = sql.replace("INSERT INTO all_types", "INSERT INTO native_types")
    if "ST_GeomFromText(" in sql:
        sql = sql[:sql.rindex(",", 0, sql.index("ST_GeomFromText("))] + ")"
    return sql


MONTHLY = """CREATE TABLE monthly (id INT PRIMARY KEY, e ENUM('a','b') NOT NULL, dtm DATETIME(6) NOT NULL,
  ts TIMESTAMP(3) NOT NULL, vc VARCHAR(50), js JSON, d2 DECIMAL(10,2))"""

RULES: list[dict[str, Any]] = [
    {"schema": None, "table": "native_types", "index": "{schema}-all", "also": True},
    {"schema": None, "table": "native_types", "index": "{schema}-some", "also": True,
     "include": ["id", "d2", "vc", "dtm", "js", "e", "st"], "rename": {"vc": "title"},
     "fields": {"source": "mysql", "n": 2.5}, "add_table_name": "_t", "add_schema_name": "_s",
     "on_delete": "soft", "routing": "{id}"},
    {"schema": None, "table": "native_types", "index": "{schema}-upd", "also": True, "mode": "update",
     "exclude": ["tx"], "on_delete": "soft", "soft_delete_field": "gone"},
    {"schema": None, "table": "native_types", "index": "{schema}-ign", "also": True, "on_delete": "ignore",
     "id": "x{id}"},
    {"schema": None, "table": "all_types", "index": "{schema}-fallback", "convert": {"dt": {"datetime": "%b %Y"}}},
    {"schema": None, "table": "keys", "index": "{schema}-keys", "id": ["a", "b"]},
    {"schema": None, "table": "monthly", "index": "{schema}-m-{dtm:%Y.%m}", "id": "{id}-{e}", "routing": "{e}",
     "exclude": ["d2"], "on_delete": "soft", "fields": {"k": [1, "x"]}, "also": True},
    {"schema": None, "table": "monthly", "index": "{schema}-ts-{ts:%Y.%m.%d}", "also": True, "mode": "update"},
    # A non-ASCII index name: the native code declines such an event, the Python path does it.
    {"schema": None, "table": "decl", "index": "{schema}-d-{v}"},
]


def _rules_file(tmp_path: Path, schema: str) -> Path:
    rules = [dict(r, schema=schema) for r in RULES]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return path


def resolved(servers, path: Path):
    """The rules file at `path`, loaded and checked against the source server as `cdc run` does at start-up
    (the native plan needs checked rules)."""
    rules = load_rules(path)
    conn = Database(MysqlConfig(host=servers.mariadb_host, port=servers.mariadb_port, user=servers.admin_user,
                                password=servers.admin_password, server_id=4241))
    try:
        return resolved_or_stop(rules, conn.catalog(rules))
    finally:
        conn.close()


def _read(servers, schema: str, rules, start: BinlogPosition, end: BinlogPosition, native: bool,
          tables: tuple[str, ...] = ("native_types", "all_types", "keys", "monthly", "decl"),
          options: ValueOptions | None = None):
    # Server ids of this process's own: two runs at once would otherwise kick each other off (error 4052).
    config = MysqlConfig(host=servers.mariadb_host, port=servers.mariadb_port, user=servers.admin_user,
                         password=servers.admin_password, server_id=4242 + native + 2 * (os.getpid() % 5000))
    builder = ActionBuilder(rules, 0, options or ValueOptions())
    path = rowpath.RowPath(builder, "native" if native else "python")
    source = BinlogSource(config, servers.source == "mariadb", {(schema, t) for t in tables}, RetryConfig(max_attempts=1),
                          stop=threading.Event(), end=end,
                          prepare=path.prepare if native else None)
    actions, rows = [], 0
    from cdc.model import StartPoint

    for event in source.events(StartPoint(start)):
        if isinstance(event, RowChange):
            rows += rowpath.row_count(event)
            actions.extend(path.actions(event))
    return rows, actions, path


def _fields(action) -> tuple:
    # encode_bulk: the native path's actions bring their bulk line (native/src/actions.rs), the Python
    # path's are encoded from their fields; key and document are made with the native ones too.
    return (action.type, action.index, action.doc_id, action.version, action.routing, action.schema, action.table,
            action.position, action.pipeline, action.versioned, action.doc_json, encode_bulk([action]), action.key,
            action.document)


def test_native_and_python_paths_give_the_same_actions(servers, db, database, tmp_path, caplog, monkeypatch):
    db.execute(NATIVE_TYPES, ALL_TYPES, MONTHLY,
               "CREATE TABLE `keys` (a VARCHAR(20), b BINARY(3), v INT, PRIMARY KEY (a, b))",
               "CREATE TABLE decl (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)")
    rules = resolved(servers, _rules_file(tmp_path, database))
    start = BinlogPosition(*binlog_position(db))
    db.execute("SET SESSION sql_mode=''", "SET time_zone='+00:00'")
    for row in (MAX_ROW, MIN_ROW, NULL_ROW, ZERO_ROW):
        db.execute(row, _native_row(row))
    db.execute(
        # a multi-row statement, updates of values and of keys, deletes
        "INSERT INTO native_types (id, vc, e, dtm, js, d2) VALUES (10, 'a\\\"b\\\\c\\n\\t\\u0001', 'large', "
        "'2024-05-06 07:08:09', '{\"x\": 1e400, \"y\": -9223372036854775809, \"x\": [1.5e-7, 1E16]}', 1.5), "
        "(11, 'ü', 'small', '2023-12-31 23:59:59', '\"just a string\"', -0.5), "
        "(12, '', 'medium', '2024-01-01 00:00:00', '{\"n\": 12345678901234567890123, \"s\": \"é\"}', 0)",
        "UPDATE native_types SET vc = CONCAT('u-', id), tm6 = '-00:00:00.5' WHERE id IN (1, 2, 10)",
        "UPDATE native_types SET e = 'small' WHERE id = 10",  # the routing and the templated id change
        "UPDATE native_types SET dtm = '2025-01-01 00:00:00' WHERE id = 11",  # moves to another monthly index
        "UPDATE native_types SET id = 20 WHERE id = 12",  # the id changes
        "DELETE FROM native_types WHERE id IN (3, 20)",
        "UPDATE all_types SET vc = 'fallback' WHERE id = 1",
        "DELETE FROM all_types WHERE id = 2",
        "INSERT INTO `keys` VALUES ('a:b', 'x', 1), ('a\\\\', 'y\\0', 2), ('', '', 3)",
        "UPDATE `keys` SET v = 4",
        "DELETE FROM `keys` WHERE a = 'a:b'",
        "INSERT INTO monthly VALUES (1, 'a', '2024-01-31 23:59:59.5', '2024-01-31 23:59:59.5', 'x', '[1]', 1), "
        "(2, 'b', '2024-02-01 00:00:00', '2024-02-01 00:00:00', NULL, NULL, NULL)",
        "UPDATE monthly SET e = 'b' WHERE id = 1",  # the id and the routing change
        "UPDATE monthly SET dtm = '2024-03-01', ts = '2024-03-01' WHERE id = 2",  # moves index
        "UPDATE monthly SET vc = 'y'",
        "DELETE FROM monthly WHERE id = 1",
        "INSERT INTO decl VALUES (1, 'Plain')", "INSERT INTO decl VALUES (2, 'Übung')",
        "UPDATE decl SET v = 'Ärger' WHERE id = 1",
    )
    end = BinlogPosition(*binlog_position(db))
    py_rows, python, _ = _read(servers, database, rules, start, end, native=False)
    # Which rows events cdc framed itself (hooks.Framer) and which the library framed.
    framed: list[str] = []
    by_library: list[str] = []
    cdc_framed = source.BinlogSource._framed
    library_wrapper = hooks._library_packet_wrapper

    def count_framed(self, event, end):
        framed.append(event.table.table)
        return cdc_framed(self, event, end)

    def count_library(*args):
        wrapper = library_wrapper(*args)
        if hasattr(wrapper.event, "rows"):
            by_library.append(wrapper.event.table)
        return wrapper

    monkeypatch.setattr(source.BinlogSource, "_framed", count_framed)
    monkeypatch.setattr(hooks, "_library_packet_wrapper", count_library)
    nat_rows, native, path = _read(servers, database, rules, start, end, native=True)
    monkeypatch.undo()
    assert py_rows == nat_rows > 20
    assert len(python) == len(native) > 40
    for i, (a, b) in enumerate(zip(python, native)):
        assert _fields(a) == _fields(b), f"action {i}"
        assert a.doc == b.doc
    by_table: dict[str, set[str]] = {}
    for action in native:
        by_table.setdefault(action.table, set()).add(type(action).__name__)
    assert by_table == {"native_types": {"NativeAction"}, "keys": {"NativeAction"}, "monthly": {"NativeAction"},
                        "all_types": {"Action"}, "decl": {"NativeAction", "Action"}}
    assert [(a.index, type(a).__name__) for a in native if a.table == "decl"] == [
        (f"{database}-d-plain", "NativeAction"), (f"{database}-d-übung", "Action"),
        (f"{database}-d-plain", "Action"), (f"{database}-d-ärger", "Action")]
    # Every rows event was framed by cdc; the library framed only those the Python path then
    # decoded (a table without a native plan, and decl's events the native code declined).
    assert set(framed) == {"native_types", "all_types", "keys", "monthly", "decl"}
    assert set(by_library) == {"all_types", "decl"}
    assert by_library.count("decl") == 2 and by_library.count("all_types") == framed.count("all_types")
    assert path.tables[f"{database}.native_types"] == "native"
    assert path.tables[f"{database}.keys"] == "native"
    assert path.tables[f"{database}.monthly"] == "native"
    reason = "column 'dt': convert: datetime format '%b %Y'"
    assert path.tables[f"{database}.all_types"] == f"python: {reason}"
    # the fallback is logged once for the table, with its reason
    logged = [r.getMessage() for r in caplog.records if f"row path for {database}.all_types" in r.getMessage()]
    assert logged == [f"row path for {database}.all_types: python ({reason}); the native plan does not do that "
                      "exactly"]


# --------------------------------------------------------------------------- random rows (hypothesis)
RANDOM_TABLE = """CREATE TABLE random_rows (id INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, d DECIMAL(30,10),
  f FLOAT, db DOUBLE, dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(4), yr YEAR, vc VARCHAR(300),
  tx TEXT, bn VARBINARY(50), b4 BINARY(4), e ENUM('a','b','c'), st SET('x','y','z'), bt BIT(12), js JSON)"""
RANDOM_COLUMNS = "i, u, d, f, db, dt, dtm, ts, tm, yr, vc, tx, bn, b4, e, st, bt, js"  # all but id


def _random_rows():
    import datetime
    import json as jsonlib

    from hypothesis import strategies as st

    def nullable(strategy):
        return st.one_of(st.none(), strategy)

    def time_text(micros: int) -> str:
        sign, micros = ("-" if micros < 0 else ""), abs(micros)
        seconds, frac = divmod(micros, 1_000_000)
        return f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{frac // 100:04d}"

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(st.characters(blacklist_categories=["Cs"]), max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8)
    text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
    row = st.tuples(
        nullable(st.integers(-(2**63), 2**63 - 1)), nullable(st.integers(0, 2**64 - 1)),
        nullable(st.decimals(min_value=-(10**19), max_value=10**19, places=10)),
        nullable(st.floats(width=32, allow_nan=False, allow_infinity=False)),
        nullable(st.floats(allow_nan=False, allow_infinity=False)),
        nullable(st.dates(datetime.date(1000, 1, 1), datetime.date(9999, 12, 31))),
        nullable(st.datetimes(datetime.datetime(1000, 1, 1), datetime.datetime(9999, 12, 31))),
        nullable(st.datetimes(datetime.datetime(1970, 1, 2), datetime.datetime(2038, 1, 18)).map(
            lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))),
        nullable(st.integers(-(838 * 3600 + 59 * 60 + 59) * 10**6, (838 * 3600 + 59 * 60 + 59) * 10**6).map(time_text)),
        nullable(st.one_of(st.just(0), st.integers(1901, 2155))), nullable(text), nullable(text),
        nullable(st.binary(max_size=50)), nullable(st.binary(max_size=4)), nullable(st.sampled_from("abc")),
        nullable(st.sets(st.sampled_from("xyz")).map(",".join)), nullable(st.integers(0, 4095)),
        nullable(json_values.map(jsonlib.dumps)))
    return st.lists(row, min_size=20, max_size=60)


def test_random_rows_give_the_same_actions_on_both_paths(servers, db, database, tmp_path):
    _random_rows_on_both_paths(servers, db, database, tmp_path, ValueOptions(), {"index": "r"})


@pytest.mark.parametrize("zone", ["Australia/Lord_Howe", "America/St_Johns"])
def test_random_rows_with_decimals_as_numbers_and_timestamps_in_a_zone(servers, db, database, tmp_path, zone):
    """values.decimal_as: number and a timestamp_timezone with half-hour offsets and DST, natively."""
    from zoneinfo import ZoneInfo

    _random_rows_on_both_paths(servers, db, database, tmp_path,
                               ValueOptions(decimal_as="number", timestamp_tz=ZoneInfo(zone)), {"index": "r"})


def test_timestamps_at_a_zones_transitions_and_decimal_keys_on_both_paths(servers, db, database, tmp_path):
    """TIMESTAMPs at, just before and just after each Lord Howe offset change (half-hour DST) in the
    index name's date and the id, DECIMAL(65,30) numbers in the routing (str of the float)."""
    import datetime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Australia/Lord_Howe")
    db.execute("CREATE TABLE zoned (id INT PRIMARY KEY, d DECIMAL(65,30) NOT NULL, ts TIMESTAMP(6) NOT NULL)",
               "SET SESSION time_zone='+00:00'")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"rules": [{"schema": database, "table": "zoned", "index": "z-{ts:%Y.%m.%d-%H}",
                                               "id": "{id}@{ts}", "routing": "{d}"}]}))
    rules = resolved(servers, path)
    seconds = sorted({s + delta for s, _ in rowpath.zone_offsets(tz)[0][1:] for delta in (-1, 0, 1)} | {1, 2**31 - 1})
    decimals = ["0.5", "-0.000000000000000000000000000001", "9" * 35 + "." + "9" * 30, "1e16", "123.456", "-0"]
    rows = [(n, decimals[n % len(decimals)],
             datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
             + f".{n % 7 * 142857:06d}") for n, s in enumerate(seconds)]
    start = BinlogPosition(*binlog_position(db))
    with db.conn.cursor() as cur:
        cur.executemany("INSERT INTO zoned VALUES (%s, %s, %s)", rows)
        cur.execute("UPDATE zoned SET ts = TIMESTAMPADD(SECOND, 1, ts), d = -d WHERE id % 2 = 0")
        cur.execute("DELETE FROM zoned WHERE id % 3 = 0")
    end = BinlogPosition(*binlog_position(db))
    options = ValueOptions(decimal_as="number", timestamp_tz=tz)
    _, python, _ = _read(servers, database, rules, start, end, native=False, tables=("zoned",), options=options)
    _, native, path = _read(servers, database, rules, start, end, native=True, tables=("zoned",), options=options)
    assert path.tables[f"{database}.zoned"] == "native"
    assert len(python) == len(native) > 2 * len(rows)
    assert [_fields(a) for a in python] == [_fields(b) for b in native]
    assert all(isinstance(a, rowpath.NativeAction) for a in native)
    offsets = {a.doc_id[-6:] for a in native}
    assert {"+10:30", "+11:00"} <= offsets  # both of Lord Howe's offsets were written


def _random_rows_on_both_paths(servers, db, database, tmp_path, options: ValueOptions, rule: dict):
    from hypothesis import HealthCheck, given, settings

    db.execute(RANDOM_TABLE, "SET SESSION time_zone='+00:00'")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"rules": [{"schema": database, "table": "random_rows", **rule}]}))
    rules = resolved(servers, path)
    columns = RANDOM_COLUMNS
    compared = []

    @given(_random_rows())
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(rows):
        db.execute("DELETE FROM random_rows")
        start = BinlogPosition(*binlog_position(db))
        with db.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO random_rows (id, {columns}) VALUES ({', '.join(['%s'] * 19)})",
                            [(n, *row) for n, row in enumerate(rows)])
            # every row's values again, shifted by one row: updates of every column; then deletes
            cur.executemany(f"UPDATE random_rows SET {', '.join(f'{c} = %s' for c in columns.split(', '))} "
                            "WHERE id = %s", [(*rows[(n + 1) % len(rows)], n) for n in range(0, len(rows), 2)])
            cur.execute("DELETE FROM random_rows WHERE id % 3 = 0")
        end = BinlogPosition(*binlog_position(db))
        _, python, _ = _read(servers, database, rules, start, end, native=False, tables=("random_rows",),
                             options=options)
        _, native, path = _read(servers, database, rules, start, end, native=True, tables=("random_rows",),
                                options=options)
        assert path.tables[f"{database}.random_rows"] == "native"
        assert [_fields(a) for a in python] == [_fields(b) for b in native]
        assert sum(isinstance(a, rowpath.NativeAction) for a in native) == len(native)
        compared.append(len(native))

    check()
    assert len(compared) == 10 and min(compared) >= 20


# --------------------------------------------------------------------------- geometry, FLOAT/DOUBLE ids
SHAPES = """CREATE TABLE shapes (id INT PRIMARY KEY, g GEOMETRY, pt POINT, ls LINESTRING, pg POLYGON,
  mpt MULTIPOINT, mls MULTILINESTRING, mpg MULTIPOLYGON, gc GEOMETRYCOLLECTION)"""
# (id, SRID, one WKT per column after id); SRID 0 rows are also compared with the server's ST_AsGeoJSON.
SHAPE_ROWS: list[tuple[int, int, list[str | None]]] = [
    (1, 0, ["POINT(1.5 -2)", "POINT(0.1 1e16)", "LINESTRING(0 0,1 1,2.5 -0.25)",
            "POLYGON((0 0,4 0,4 4,0 0),(1 1,2 1,2 2,1 1))", "MULTIPOINT(1 2,3 4)",
            "MULTILINESTRING((0 0,1 1),(2 2,3 3,4 4))", "MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((5 5,6 5,6 6,5 5)))",
            "GEOMETRYCOLLECTION(POINT(1 2),LINESTRING(0 0,1 1),GEOMETRYCOLLECTION(POINT(3 4)))"]),
    (2, 0, ["GEOMETRYCOLLECTION(POINT(1 2),POLYGON((0 0,1 0,1 1,0 0)))", "POINT(-0.0001 123456789.125)",
            "LINESTRING(1e-7 2,3 1e300)", None, "MULTIPOINT(0 0)", None, None, "GEOMETRYCOLLECTION()"]),
    # SRIDs other than 0 (the value's first four bytes; the documents drop them)
    (3, 3857, ["MULTIPOLYGON(((0 0,10 0,10 10,0 0)))", "POINT(1 2)", "LINESTRING(0 0,1 1)", None, None, None, None,
               None]),
    (4, 4326, ["POINT(45.5 -120.25)", "POINT(10 20)", "LINESTRING(10 20,30 40)",
               "POLYGON((10 10,10 20,20 20,10 10))", None, None, None, "GEOMETRYCOLLECTION(POINT(10 20))"]),
    (5, 0, [None] * 8),
]
SHAPE_COLUMNS = ["g", "pt", "ls", "pg", "mpt", "mls", "mpg", "gc"]
FLOAT_KEYS = "CREATE TABLE fkeys (f FLOAT NOT NULL, d DOUBLE NOT NULL, v INT, PRIMARY KEY (f, d))"
FLOAT_ROWS = [(0.1, 0.1), (1e16, 1e16), (1.5e-5, 1.5e-5), (0.0, -0.0), (-0.0, 2.5), (3.4028234e38, 1e300),
              (1e-45, 5e-324), (16777217.0, 0.30000000000000004), (123456789.125, 123456789.125),
              (-2.5e-7, -2.5e-7), (1e-4, 1e-4), (12345678.0, 1e15), (0.333333333, 9007199254740993.0)]
GEO_RULES = [
    {"table": "shapes", "index": "{schema}-shapes", "also": True},
    {"table": "shapes", "index": "{schema}-shapes-some", "include": ["id", "pt", "gc"], "mode": "update",
     "on_delete": "soft", "also": True},
    {"table": "fkeys", "index": "{schema}-f", "also": True},  # the id: the primary key (f, d)
    {"table": "fkeys", "index": "{schema}-f-{f}", "id": "{d}/{f}", "routing": "{d}", "also": True},
]


def _geo_rules(servers, tmp_path: Path, database: str):
    path = tmp_path / "geo.yml"
    path.write_text(yaml.safe_dump({"rules": [dict(r, schema=database) for r in GEO_RULES]}))
    return resolved(servers, path)


@both_sources
@pytest.mark.parametrize("points", ["geojson", "geo_point"])
def test_geometry_and_float_ids_give_the_same_actions_on_both_paths(source_servers, db, database, tmp_path, points):
    """GEOMETRY and POINT columns (GeoJSON, or {"lat", "lon"}), and ids, index names and routing
    made of FLOAT and DOUBLE columns: native, and the same as the Python path gives."""
    import json

    import orjson

    servers = source_servers
    db.execute(SHAPES, FLOAT_KEYS)
    rules = _geo_rules(servers, tmp_path, database)
    start = BinlogPosition(*binlog_position(db))
    for row_id, srid, wkts in SHAPE_ROWS:
        values = ", ".join("NULL" if w is None else f"ST_GeomFromText('{w}', {srid})" for w in wkts)
        db.execute(f"INSERT INTO shapes VALUES ({row_id}, {values})")
    db.execute("UPDATE shapes SET pt = ST_GeomFromText('POINT(7 8)') WHERE id IN (1, 5)",
               "UPDATE shapes SET id = 6 WHERE id = 2", "DELETE FROM shapes WHERE id = 3")
    with db.conn.cursor() as cur:
        cur.executemany("INSERT INTO fkeys VALUES (%s, %s, %s)", [(f, d, n) for n, (f, d) in enumerate(FLOAT_ROWS)])
    db.execute("UPDATE fkeys SET v = v + 100", "UPDATE fkeys SET d = d * 2 WHERE v = 101",  # an id and routing change
               "DELETE FROM fkeys WHERE v = 102")
    end = BinlogPosition(*binlog_position(db))
    options = ValueOptions(points=points)
    tables = ("shapes", "fkeys")
    _, python, _ = _read(servers, database, rules, start, end, native=False, tables=tables, options=options)
    _, native, path = _read(servers, database, rules, start, end, native=True, tables=tables, options=options)
    assert path.tables == {f"{database}.shapes": "native", f"{database}.fkeys": "native"}
    assert len(native) == len(python) > 50
    assert [_fields(a) for a in python] == [_fields(b) for b in native]
    assert all(isinstance(a, rowpath.NativeAction) for a in native)  # no event was declined
    ids = {a.doc_id for a in native if a.index == f"{database}-f"}
    # repr() of the float32 as values.py rounds it (FLT_MAX is 3.4028235e+38), and of the double
    assert {"1e+16:1e+16", "1.5e-05:1.5e-05", "3.4028235e+38:1e+300", "16777216.0:0.30000000000000004",
            "1e-45:5e-324", "0.33333334:9007199254740992.0", "123456790.0:123456789.125", "1e+16:2e+16",
            "12345678.0:1000000000000000.0", "-2.5e-07:-2.5e-07", "0.0001:0.0001"} <= ids
    # The documents hold what the server itself makes of the values (SRID 0: ST_AsGeoJSON).
    docs = {orjson.loads(a.doc_json)["id"]: orjson.loads(a.doc_json) for a in native
            if a.index == f"{database}-shapes" and a.doc_json is not None}
    wanted = {n: dict(zip(SHAPE_COLUMNS, wkts)) for n, srid, wkts in SHAPE_ROWS if srid == 0}
    rows = db.execute(f"SELECT id, {', '.join(f'ST_AsGeoJSON({c})' for c in SHAPE_COLUMNS)} FROM shapes "
                      "WHERE id IN (1, 5, 6)")
    checked = 0
    for row in rows:
        for column, text in zip(SHAPE_COLUMNS, row[1:]):
            server = None if text is None else json.loads(text)
            if column == "pt" and server is not None and points == "geo_point":
                server = {"lat": server["coordinates"][1], "lon": server["coordinates"][0]}
            assert docs[row[0]][column] == server, (row[0], column, wanted.get(row[0]))
            checked += server is not None
    assert checked >= 12


# --------------------------------------------------------------------------- convert: conversions
CONVERT_TABLE = """CREATE TABLE conv_rows (id INT PRIMARY KEY, tags VARCHAR(200), name VARCHAR(100), up TEXT, dt DATE,
  dtm DATETIME(6), ts TIMESTAMP(3) NULL, flag TINYINT, bt BIT(3), st SET('x','Y','z'), e ENUM('A','b'), js JSON,
  jt TEXT)"""
CONVERT_COLUMNS = "tags, name, up, dt, dtm, ts, flag, bt, st, e, js, jt"
CONVERT = {"tags": [{"split": ","}, "lower"], "name": "lower", "up": "upper", "dt": {"datetime": "%Y/%m/%d"},
           "dtm": [{"datetime": "%Y-%m-%d %H:%M:%S"}, {"split": " "}], "ts": {"datetime": "%H:%M %%"},
           "flag": "bool", "bt": "bool", "st": "upper", "e": "lower", "js": "json", "jt": "json"}


def _convert_rows():
    import datetime
    import json as jsonlib

    from hypothesis import strategies as st

    def nullable(strategy):
        return st.one_of(st.none(), strategy)

    # Basic Multilingual Plane text without U+03A3: what the native code cases itself (convert.rs).
    text = st.text(st.characters(max_codepoint=0xFFFF, blacklist_categories=["Cs"], blacklist_characters="\u03a3"),
                   max_size=30)
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False,
                                                                                     allow_infinity=False)
    # No non-ASCII numerals (²): native/src/json.rs leaves JSON text holding them to the Python path
    # (values.py's r"\d{20}" check), which MySQL's SELECT of a JSON column writes unescaped.
    chars = st.characters(blacklist_categories=["Cs"]).filter(lambda c: c.isascii() or not c.isnumeric())
    json_values = st.recursive(scalars | st.text(chars, max_size=6), lambda c: st.lists(c, max_size=3)
                               | st.dictionaries(st.text(chars, max_size=4), c, max_size=3), max_leaves=6)
    row = st.tuples(
        nullable(st.lists(text.filter(lambda t: "," not in t), max_size=4).map(",".join)), nullable(text),
        nullable(text), nullable(st.dates(datetime.date(1, 1, 1), datetime.date(9999, 12, 31))),
        nullable(st.datetimes(datetime.datetime(1000, 1, 1), datetime.datetime(9999, 12, 31))),
        nullable(st.datetimes(datetime.datetime(1970, 1, 2), datetime.datetime(2038, 1, 18)).map(
            lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))),
        nullable(st.integers(-128, 127)), nullable(st.integers(0, 7)), nullable(st.sets(st.sampled_from("xYz")).map(
            ",".join)), nullable(st.sampled_from(["A", "b"])),
        # Not what values.py makes a str of at the top (a JSON string, an integer past 64 bits): `json` would
        # parse that str again, which the native code leaves to the Python path.
        nullable(json_values.filter(lambda v: not isinstance(v, str) and not (
            type(v) is int and not -(2**63) <= v < 2**64)).map(jsonlib.dumps)),
        nullable(json_values.map(jsonlib.dumps)))
    return st.lists(row, min_size=10, max_size=40)


def _read_or_error(*args, **kw):
    from cdc.errors import RowError

    try:
        return _read(*args, **kw)
    except RowError as exc:
        return None, str(exc), None


@both_sources
def test_conversions_give_the_same_actions_on_both_paths(source_servers, db, database, tmp_path):
    """A rule with `convert:` on every kind of column (chains too) over real binlog rows: byte-identical actions,
    the native code doing the events; one holding a JSON string in a JSON column goes to the Python path,
    which parses the str again for `json` (or stops cdc with its error, the same on both paths). On MySQL the
    JSON column is its binary JSON (native/src/jsonb.rs)."""
    from hypothesis import HealthCheck, given, settings

    servers = source_servers

    db.execute(CONVERT_TABLE, "SET SESSION time_zone='+00:00'", "SET SESSION sql_mode=''")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"rules": [{"schema": database, "table": "conv_rows", "index": "c",
                                               "convert": CONVERT}]}))
    rules = resolved(servers, path)
    compared = []

    def run(rows, changes=True):
        db.execute("DELETE FROM conv_rows")
        start = BinlogPosition(*binlog_position(db))
        with db.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO conv_rows (id, {CONVERT_COLUMNS}) VALUES ({', '.join(['%s'] * 13)})",
                            [(n, *row) for n, row in enumerate(rows)])
            if changes:
                cur.executemany(f"UPDATE conv_rows SET {', '.join(f'{c} = %s' for c in CONVERT_COLUMNS.split(', '))}"
                                " WHERE id = %s", [(*rows[(n + 1) % len(rows)], n) for n in range(0, len(rows), 2)])
                cur.execute("DELETE FROM conv_rows WHERE id % 3 = 0")
        end = BinlogPosition(*binlog_position(db))
        _, python, _ = _read_or_error(servers, database, rules, start, end, native=False, tables=("conv_rows",))
        _, native, path = _read_or_error(servers, database, rules, start, end, native=True, tables=("conv_rows",))
        if isinstance(python, str):
            assert native == python  # the same RowError, table, position, row and key
            return python
        assert path.tables[f"{database}.conv_rows"] == "native"
        assert [_fields(a) for a in python] == [_fields(b) for b in native]
        compared.append((len(native), sum(isinstance(a, rowpath.NativeAction) for a in native)))
        return native

    @given(_convert_rows())
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(rows):
        run(rows)

    check()
    assert len(compared) == 10 and min(n for n, _ in compared) >= 10
    assert all(n == made for n, made in compared)  # every event done natively
    # A JSON column holding JSON strings: the native code declines, the Python path parses the str again...
    fixed = [("A,b", "Ä", "ß", "0005-01-02", "2024-01-02 03:04:05.5", "2024-01-02 03:04:05.5", 2, 4, "x,Y", "A",
              '"[1, \\"x\\"]"', '"[1]"')]
    native = run(fixed, changes=False)
    assert [a.doc["js"] for a in native] == [[1, "x"]] and compared[-1] == (1, 0)
    assert native[0].doc["dt"] == "5/01/02" and native[0].doc["dtm"] == ["2024-01-02", "03:04:05"]
    # ... and stops on one that is no JSON inside, with the same error on both paths.
    error = run([fixed[0][:10] + ('"not json"', "1")], changes=False)
    assert isinstance(error, str) and "column 'js': invalid JSON text" in error
