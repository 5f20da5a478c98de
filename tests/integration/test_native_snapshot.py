"""The snapshot's native row path against its Python path over real MariaDB reads (issue 13).

The same chunk is read twice through `Snapshot`: once with PyMySQL converting
every value and `ActionBuilder` making the actions (row_path: python, the
reference), once as row packets turned into actions by cdc._native
(native/src/text.rs). Both must give the same actions, field by field, with
byte-identical documents; a table with every type of the value table also goes
through both into Elasticsearch and the stored documents are compared.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import threading
from pathlib import Path

import pytest
import yaml
from harness import both_sources

from cdc.config import BatchConfig, MysqlConfig, RetryConfig, SnapshotConfig
from cdc.copy.snapshot import Snapshot, SnapshotState
from cdc.mysql.server import Database, PacketRows
from cdc.stream.delivery import BulkWriter
from cdc.rules import ActionBuilder, load_rules, resolved_or_stop, rowpath
from cdc.rules.values import ValueOptions

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")]

from test_native_rowpath import (CONVERT, CONVERT_COLUMNS, CONVERT_TABLE, RANDOM_COLUMNS, RANDOM_TABLE,  # noqa: E402
                                 _convert_rows, _random_rows)
from cdc.rules import document_version  # noqa: E402
from cdc.es.sink import encode_bulk  # noqa: E402


def _fields(action) -> tuple:
    """Everything but the position (each read has its own: other tests write to the binlog in between)."""
    assert action.version == document_version(action.position, 0)  # the chunk's read position, as the stream's
    # The native path's bulk line, key and document (native/src/actions.rs) are what the fields give.
    assert encode_bulk([action]) == encode_bulk([dataclasses.replace(action)])
    return (action.type, action.index, action.doc_id, action.routing, action.schema, action.table, action.pipeline,
            action.versioned, action.doc_json, action.key, action.document)
from test_rules_values import ALL_TYPES, MAX_ROW, MIN_ROW, NULL_ROW, ZERO_ROW  # noqa: E402

# Every type of the value table but GEOMETRY/POINT (those on both servers: test_geometry_...).
SNAP_TYPES = ALL_TYPES.replace("CREATE TABLE all_types", "CREATE TABLE snap_types").replace(
    ", g GEOMETRY, pt POINT", "")


def _snap_row(sql: str) -> str:
    sql = sql.replace("INSERT INTO all_types", "INSERT INTO snap_types")
    if "ST_GeomFromText(" in sql:
        sql = sql[:sql.rindex(",", 0, sql.index("ST_GeomFromText("))] + ")"
    return sql


RULES: list[dict[str, Any]] = [
    {"table": "snap_types", "index": "{schema}-all"},
    {"table": "snap_types", "index": "{schema}-some", "include": ["id", "d2", "vc", "dtm", "js", "e", "st", "l1"],
     "rename": {"vc": "title"}, "fields": {"source": "mysql", "n": 2.5}, "add_table_name": "_t",
     "add_schema_name": "_s", "on_delete": "soft", "routing": "{id}"},
    {"table": "snap_types", "index": "{schema}-upd", "mode": "update", "exclude": ["tx"]},
    {"table": "snap_types", "index": "{schema}-ix", "id": "x{id}", "routing": "r{id}"},
    {"table": "all_types", "index": "{schema}-fallback", "convert": {"dt": {"datetime": "%b %Y"}}},
    {"table": "random_rows", "index": "{schema}-r"},
    {"table": "conv_rows", "index": "{schema}-c", "convert": CONVERT},
]


def _rules(servers, tmp_path: Path, schema: str, tables: tuple[str, ...]):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"rules": [dict(r, schema=schema, also=True) for r in RULES if r["table"] in tables]},
                                   sort_keys=False))
    rules = load_rules(path)
    conn = Database(_config(servers))
    try:
        return resolved_or_stop(rules, conn.catalog(rules))
    finally:
        conn.close()


def _config(servers) -> MysqlConfig:
    return MysqlConfig(host=servers.mariadb_host, port=servers.mariadb_port, user=servers.admin_user,
                       password=servers.admin_password, server_id=4343)


def _chunk(servers, rules, table: str, native: bool, chunk_size: int = 1000, options: ValueOptions | None = None):
    """The first chunk's actions of `table` as the snapshot makes them, and the builder."""
    db = Database(_config(servers))
    try:
        builder = ActionBuilder(rules, 0, options or ValueOptions())
        unused = BulkWriter(None, BatchConfig(), RetryConfig())  # type: ignore[arg-type]  # nothing is written
        snapshot = Snapshot(db, builder, unused, SnapshotConfig(chunk_size=chunk_size),
                            lambda state: None, threading.Event(), row_path="native" if native else "python")
        rule = next(r for r in rules.rules if r.table == table)
        plan = snapshot.plan(rule)
        position, rows = snapshot._read_chunk(plan, None)
        assert isinstance(rows, PacketRows) == native
        return snapshot._actions(plan, position, rows), builder, snapshot
    finally:
        db.close()


def test_every_type_gives_the_same_actions_on_both_paths(servers, db, database, tmp_path, es):
    db.execute(SNAP_TYPES, ALL_TYPES, "SET SESSION sql_mode=''")
    for row in (MAX_ROW, MIN_ROW, NULL_ROW):
        db.execute(row, _snap_row(row))
    db.execute("INSERT INTO snap_types (id, vc, e, dt, dtm, js, d2, st) VALUES "
               "(10, 'a\\\"b\\\\c\\n\\t\\u0001 ü 😀', 'large', '2024-05-06', '2024-05-06 07:08:09', "
               "'{\"x\": 1e400, \"y\": -9223372036854775809, \"x\": [1.5e-7, 1E16]}', -0.5, 'c,a'), "
               "(11, '', 'small', '0999-12-31', '2023-12-31 23:59:59.000001', '\"just a string\"', 0, '')")
    rules = _rules(servers, tmp_path, database, ("snap_types", "all_types"))
    python, _, _ = _chunk(servers, rules, "snap_types", native=False)
    native, _, snapshot = _chunk(servers, rules, "snap_types", native=True)
    assert len(python) == len(native) == 5 * 4
    assert [_fields(a) for a in python] == [_fields(b) for b in native]
    assert all(isinstance(a, rowpath.NativeAction) for a in native)
    assert snapshot.native.tables[f"{database}.snap_types"] == "native"

    # A chunk with a zero date: the native code declines it, the Python path writes and counts it.
    db.execute(_snap_row(ZERO_ROW))
    python, py_builder, _ = _chunk(servers, rules, "snap_types", native=False)
    native, nat_builder, _ = _chunk(servers, rules, "snap_types", native=True)
    assert [_fields(a) for a in python] == [_fields(b) for b in native]
    assert not any(isinstance(a, rowpath.NativeAction) for a in native)
    assert nat_builder.stats.zero_dates == py_builder.stats.zero_dates > 0

    # A table the native plan leaves to Python (a conversion): the same actions, and the reason recorded.
    python, _, _ = _chunk(servers, rules, "all_types", native=False)
    native, _, snapshot = _chunk(servers, rules, "all_types", native=True)
    assert [_fields(a) for a in python] == [_fields(b) for b in native] and len(native) == 3
    assert snapshot.native.tables[f"{database}.all_types"] == "python: column 'dt': convert: datetime format '%b %Y'"

    # Both paths into Elasticsearch through the real snapshot: the stored documents are the same.
    from cdc.config import ElasticsearchConfig
    from cdc.es.sink import ElasticsearchSink
    from cdc.stream.observe import Stats

    stored = {}
    for mode in ("python", "native"):
        path = tmp_path / f"{mode}.yml"
        path.write_text(yaml.safe_dump({"rules": [{"schema": database, "table": "snap_types",
                                                   "index": f"{database}-es-{mode}"}]}))
        one = load_rules(path)
        # Not mapped: the extremes of the value table (BIGINT UNSIGNED max, DOUBLE min) do not fit
        # dynamic mappings; the stored _source is what is compared.
        es.indices.create(index=f"{database}-es-{mode}", mappings={"dynamic": False})
        conn = Database(_config(servers))
        try:
            one = resolved_or_stop(one, conn.catalog(one))
            sink = ElasticsearchSink(ElasticsearchConfig(hosts=[servers.es_url]))
            writer = BulkWriter(sink, BatchConfig(), RetryConfig(max_attempts=2), Stats())
            snapshot = Snapshot(conn, ActionBuilder(one, 0, ValueOptions()), writer, SnapshotConfig(chunk_size=2),
                                lambda state: None, threading.Event(), row_path=mode)
            state = snapshot.run(one.rules, SnapshotState())
            assert not state.pending and snapshot.rows_written == 6
        finally:
            conn.close()
        es.indices.refresh(index=f"{database}-es-{mode}")
        hits = es.search(index=f"{database}-es-{mode}", size=100)["hits"]["hits"]
        stored[mode] = sorted(((h["_id"], h["_source"]) for h in hits), key=repr)
        es.indices.delete(index=f"{database}-es-{mode}")
    assert len(stored["native"]) == 6 and stored["native"] == stored["python"]


def test_random_rows_give_the_same_actions_on_both_paths(servers, db, database, tmp_path):
    _random_rows_on_both_paths(servers, db, database, tmp_path, ValueOptions())


def test_random_rows_with_decimals_as_numbers_and_timestamps_in_a_zone(servers, db, database, tmp_path):
    """values.decimal_as: number and a timestamp_timezone with half-hour offsets and DST, natively."""
    from zoneinfo import ZoneInfo

    _random_rows_on_both_paths(servers, db, database, tmp_path,
                               ValueOptions(decimal_as="number", timestamp_tz=ZoneInfo("America/St_Johns")))


def _random_rows_on_both_paths(servers, db, database, tmp_path, options: ValueOptions):
    from hypothesis import HealthCheck, given, settings

    db.execute(RANDOM_TABLE, "SET SESSION time_zone='+00:00'")
    rules = _rules(servers, tmp_path, database, ("random_rows",))
    columns = RANDOM_COLUMNS
    compared = []

    @given(_random_rows())
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(rows):
        db.execute("DELETE FROM random_rows")
        with db.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO random_rows (id, {columns}) VALUES ({', '.join(['%s'] * 19)})",
                            [(n, *row) for n, row in enumerate(rows)])
        python, _, _ = _chunk(servers, rules, "random_rows", native=False, chunk_size=100, options=options)
        native, _, snapshot = _chunk(servers, rules, "random_rows", native=True, chunk_size=100, options=options)
        assert snapshot.native.tables[f"{database}.random_rows"] == "native"
        assert [_fields(a) for a in python] == [_fields(b) for b in native]
        assert all(isinstance(a, rowpath.NativeAction) for a in native)
        compared.append(len(native))

    check()
    assert len(compared) == 10 and min(compared) >= 20


@both_sources
@pytest.mark.parametrize("points", ["geojson", "geo_point"])
def test_geometry_and_float_ids_give_the_same_actions_on_both_paths(source_servers, db, database, tmp_path, points):
    """GEOMETRY/POINT columns read from the SELECT's bytes, and FLOAT/DOUBLE ids: native, as the Python path."""
    from test_native_rowpath import FLOAT_KEYS, FLOAT_ROWS, SHAPE_ROWS, SHAPES, _geo_rules

    servers = source_servers
    db.execute(SHAPES, FLOAT_KEYS)
    for row_id, srid, wkts in SHAPE_ROWS:
        values = ", ".join("NULL" if w is None else f"ST_GeomFromText('{w}', {srid})" for w in wkts)
        db.execute(f"INSERT INTO shapes VALUES ({row_id}, {values})")
    with db.conn.cursor() as cur:
        cur.executemany("INSERT INTO fkeys VALUES (%s, %s, %s)", [(f, d, n) for n, (f, d) in enumerate(FLOAT_ROWS)])
    rules = _geo_rules(servers, tmp_path, database)
    options = ValueOptions(points=points)
    for table, count in (("shapes", 2 * len(SHAPE_ROWS)), ("fkeys", 2 * len(FLOAT_ROWS))):
        python, _, _ = _chunk(servers, rules, table, native=False, options=options)
        native, _, snapshot = _chunk(servers, rules, table, native=True, options=options)
        assert len(python) == len(native) == count
        assert [_fields(a) for a in python] == [_fields(b) for b in native]
        assert all(isinstance(a, rowpath.NativeAction) for a in native), table
        assert snapshot.native.tables[f"{database}.{table}"] == "native"


@both_sources
def test_conversions_give_the_same_actions_on_both_paths(source_servers, db, database, tmp_path):
    """A rule with `convert:` on every kind of column (chains too): the chunk is done natively, byte-identical."""
    from hypothesis import HealthCheck, given, settings

    servers = source_servers

    db.execute(CONVERT_TABLE, "SET SESSION time_zone='+00:00'", "SET SESSION sql_mode=''")
    rules = _rules(servers, tmp_path, database, ("conv_rows",))
    compared = []

    @given(_convert_rows())
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(rows):
        db.execute("DELETE FROM conv_rows")
        with db.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO conv_rows (id, {CONVERT_COLUMNS}) VALUES ({', '.join(['%s'] * 13)})",
                            [(n, *row) for n, row in enumerate(rows)])
        python, _, _ = _chunk(servers, rules, "conv_rows", native=False, chunk_size=100)
        native, _, snapshot = _chunk(servers, rules, "conv_rows", native=True, chunk_size=100)
        assert snapshot.native.tables[f"{database}.conv_rows"] == "native"
        assert [_fields(a) for a in python] == [_fields(b) for b in native]
        assert all(isinstance(a, rowpath.NativeAction) for a in native)
        compared.append(len(native))

    check()
    assert len(compared) == 10 and min(compared) >= 10
