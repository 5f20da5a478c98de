"""Debezium change events -> RowChange -> the rules' actions (cdc/kafka/debezium.py, cdc/app/kafka_mode.py; pure).

Envelopes are literal: REAL_SNAPSHOT_ROW is what Debezium 3.5.0.Final's MariaDB
connector wrote here (JsonConverter, schemas.enable=true) for one row of a table
with a spread of column types; DOCS_* are the create/update/delete examples of
Debezium's documentation (documentation/modules/ROOT/partials/modules/
all-connectors/shared-mariadb-mysql.adoc, "{context}-bin" spelled out).
"""

import base64
import dataclasses
import datetime
import json
import logging
import struct
from decimal import Decimal
from typing import Any, Callable, Mapping

import orjson
import pytest

from cdc.app.kafka_mode import DebeziumInput, UnreadableMessage, latest, refuse_unversioned, shape
from cdc.kafka.client import Received
from cdc.kafka.debezium import STREAM_OFFSET, DebeziumError, Shape, Truncated, decode
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.mysql.catalog import Catalog, ColumnInfo, TableInfo
from cdc.rules import ActionBuilder, RuleSet, document_version, load_rules, resolve_rules

REAL_SNAPSHOT_ROW = r'''{"schema":{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"name"},{"type":"string","optional":true,"field":"price"},{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"ts"},{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"dt"},{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"d"},{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","version":1,"field":"t"},{"type":"string","optional":true,"field":"j"},{"type":"bytes","optional":true,"field":"b"},{"type":"bytes","optional":true,"name":"io.debezium.data.Bits","version":1,"parameters":{"length":"5"},"field":"bits"},{"type":"boolean","optional":true,"field":"flag"},{"type":"string","optional":true,"name":"io.debezium.data.EnumSet","version":1,"parameters":{"allowed":"a,b,c"},"field":"s"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"x,y"},"field":"e"},{"type":"float","optional":true,"field":"f"},{"type":"int32","optional":true,"name":"io.debezium.time.Year","version":1,"field":"y"},{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"0","connect.decimal.precision":"20"},"field":"u"},{"type":"int16","optional":true,"field":"tiny"}],"optional":true,"name":"t14try.t14_try.items.Value","field":"before"},{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"name"},{"type":"string","optional":true,"field":"price"},{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"ts"},{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"dt"},{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"d"},{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","version":1,"field":"t"},{"type":"string","optional":true,"field":"j"},{"type":"bytes","optional":true,"field":"b"},{"type":"bytes","optional":true,"name":"io.debezium.data.Bits","version":1,"parameters":{"length":"5"},"field":"bits"},{"type":"boolean","optional":true,"field":"flag"},{"type":"string","optional":true,"name":"io.debezium.data.EnumSet","version":1,"parameters":{"allowed":"a,b,c"},"field":"s"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"x,y"},"field":"e"},{"type":"float","optional":true,"field":"f"},{"type":"int32","optional":true,"name":"io.debezium.time.Year","version":1,"field":"y"},{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"0","connect.decimal.precision":"20"},"field":"u"},{"type":"int16","optional":true,"field":"tiny"}],"optional":true,"name":"t14try.t14_try.items.Value","field":"after"},{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":true,"field":"table"},{"type":"int64","optional":false,"field":"server_id"},{"type":"string","optional":true,"field":"gtid"},{"type":"string","optional":false,"field":"file"},{"type":"int64","optional":false,"field":"pos"},{"type":"int32","optional":false,"field":"row"},{"type":"int64","optional":true,"field":"thread"},{"type":"string","optional":true,"field":"query"}],"optional":false,"name":"io.debezium.connector.mariadb.Source","version":1,"field":"source"},{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"},{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"}],"optional":false,"name":"t14try.t14_try.items.Envelope","version":2},"payload":{"before":null,"after":{"id":1,"name":"one","price":"1.50","ts":"2024-01-02T03:04:05.123Z","dt":1704164645123456,"d":19724,"t":-3723500000,"j":"{\"a\":1}","b":"AP8=","bits":"FQ==","flag":true,"s":"a,c","e":"y","f":0.1,"y":2024,"u":"AP//////////","tiny":1},"source":{"version":"3.5.0.Final","connector":"mariadb","name":"t14try","ts_ms":1795868064000,"snapshot":"last","db":"t14_try","sequence":null,"ts_us":1795868064000000,"ts_ns":1795868064000000000,"table":"items","server_id":0,"gtid":null,"file":"binlog.000059","pos":11168956,"row":0,"thread":null,"query":null},"transaction":null,"op":"r","ts_ms":1795868065018,"ts_us":1795868065018012,"ts_ns":1795868065018012510}}'''

# The table behind it, as information_schema describes it (CREATE TABLE t14_try.items (...)).
ITEMS = TableInfo("t14_try", "items", (
    ColumnInfo("id", "int", "int(11)"), ColumnInfo("name", "varchar", "varchar(50)", "utf8mb4"),
    ColumnInfo("price", "decimal", "decimal(10,2)"), ColumnInfo("ts", "timestamp", "timestamp(3)"),
    ColumnInfo("dt", "datetime", "datetime(6)"), ColumnInfo("d", "date", "date"), ColumnInfo("t", "time", "time(6)"),
    ColumnInfo("j", "longtext", "longtext", "utf8mb4"), ColumnInfo("b", "varbinary", "varbinary(10)"),
    ColumnInfo("bits", "bit", "bit(5)"), ColumnInfo("flag", "bit", "bit(1)"),
    ColumnInfo("s", "set", "set('a','b','c')", "utf8mb4"), ColumnInfo("e", "enum", "enum('x','y')", "utf8mb4"),
    ColumnInfo("f", "float", "float"), ColumnInfo("y", "year", "year(4)"),
    ColumnInfo("u", "bigint", "bigint(20) unsigned"), ColumnInfo("tiny", "tinyint", "tinyint(1)"),
), ("id",), frozenset({"j"}))

# The same row as the binlog library (pymysqlreplication) hands it to cdc's stream.
BINLOG_ROW = {
    "id": 1, "name": "one", "price": Decimal("1.50"), "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, 123000),
    "dt": datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), "d": datetime.date(2024, 1, 2),
    "t": -datetime.timedelta(hours=1, minutes=2, seconds=3, microseconds=500000), "j": '{"a":1}',
    "b": b"\x00\xff", "bits": "10101", "flag": "1", "s": {"a", "c"}, "e": "y", "f": 0.10000000149011612,
    "y": 2024, "u": 18446744073709551615, "tiny": 1,
}
BINLOG_COLUMNS = (
    Column("id", ColumnKind.INTEGER), Column("name", ColumnKind.STRING), Column("price", ColumnKind.DECIMAL),
    Column("ts", ColumnKind.TIMESTAMP), Column("dt", ColumnKind.DATETIME), Column("d", ColumnKind.DATE),
    Column("t", ColumnKind.TIME), Column("j", ColumnKind.STRING), Column("b", ColumnKind.BINARY),
    Column("bits", ColumnKind.BIT, bits=5), Column("flag", ColumnKind.BIT, bits=1), Column("s", ColumnKind.SET),
    Column("e", ColumnKind.ENUM), Column("f", ColumnKind.FLOAT), Column("y", ColumnKind.YEAR),
    Column("u", ColumnKind.INTEGER), Column("tiny", ColumnKind.INTEGER),
)


def customers_schema():
    row = {"type": "struct", "optional": True, "fields": [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "string", "optional": False, "field": "first_name"},
        {"type": "string", "optional": False, "field": "last_name"},
        {"type": "string", "optional": False, "field": "email"}]}
    return {"type": "struct", "name": "mysql-server-1.inventory.customers.Envelope", "fields": [
        {**row, "field": "before"}, {**row, "field": "after"},
        {"type": "struct", "field": "source", "fields": []}, {"type": "string", "field": "op"}]}


ANNE = {"id": 1004, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"}
ANNE_MARIE = {**ANNE, "first_name": "Anne Marie"}


def docs_source(pos, ts_ms, query=None):
    return {"version": "3.5.0.Final", "connector": "mysql", "name": "mysql-server-1", "ts_ms": ts_ms,
            "snapshot": False, "db": "inventory", "table": "customers", "server_id": 223344, "gtid": None,
            "file": "mysql-bin.000003", "pos": pos, "row": 0, "thread": 7, "query": query}


DOCS_CREATE = {"op": "c", "ts_ms": 1465491411815, "before": None, "after": ANNE, "source": docs_source(154, 0)}
DOCS_UPDATE = {"before": ANNE, "after": ANNE_MARIE, "op": "u", "ts_ms": 1465581029523,
               "source": docs_source(484, 1465581029100,
                                     "UPDATE customers SET first_name='Anne Marie' WHERE id=1004")}
DOCS_DELETE = {"before": ANNE_MARIE, "after": None, "op": "d", "ts_ms": 1465581902461,
               "source": docs_source(805, 1465581902300, "DELETE FROM customers WHERE id=1004")}


def wrapped(payload):
    return orjson.dumps({"schema": customers_schema(), "payload": payload})


def no_shape(db, table):
    return None


def rules_for(tmp_path, text, *tables) -> RuleSet:
    (tmp_path / "r.yml").write_text(text)
    resolution = resolve_rules(load_rules(tmp_path / "r.yml"),
                               Catalog(tuple(sorted({t.schema for t in tables})),
                                       {(t.schema, t.table): t for t in tables}))
    assert not resolution.problems, resolution.problems
    return resolution.rules


def decoded(value: bytes, shape_of: Callable[[str, str], Shape | None]) -> RowChange:
    """`decode` of a message that is a row change, not a tombstone."""
    change = decode(value, shape_of)
    assert change is not None, value
    return change


def row_after(change: RowChange) -> Mapping[str, Any]:
    """The row after an insert or update."""
    assert change.after is not None, change
    return change.after


def received(value, offset=0, topic="dbz.t14_try.items"):
    return Received(topic, 0, offset, value if value is None or isinstance(value, bytes) else orjson.dumps(value),
                    None)


# ---------------------------------------------------------------------------------------------- the envelope

@pytest.mark.parametrize("with_schema", [True, False])
def test_the_documentations_create_update_delete(with_schema):
    encode = wrapped if with_schema else orjson.dumps
    created = decoded(encode(DOCS_CREATE), no_shape)
    assert created.op is Op.INSERT and (created.schema, created.table) == ("inventory", "customers")
    assert created.before is None and created.after == ANNE
    # A streamed row's position is inside its event: Debezium's pos (the event's start) + 2.
    assert created.position == BinlogPosition("mysql-bin.000003", 154 + STREAM_OFFSET)
    assert created.timestamp == 0 and created.row_index == 0
    updated = decoded(encode(DOCS_UPDATE), no_shape)
    assert updated.op is Op.UPDATE and updated.before == ANNE and updated.after == ANNE_MARIE
    assert updated.position == BinlogPosition("mysql-bin.000003", 486) and updated.timestamp == 1465581029
    deleted = decoded(encode(DOCS_DELETE), no_shape)
    assert deleted.op is Op.DELETE and deleted.before == ANNE_MARIE and deleted.after is None
    assert [c.name for c in deleted.columns] == ["id", "first_name", "last_name", "email"]


def test_tombstones_are_none_with_or_without_schemas():
    assert decode(None, no_shape) is None
    assert decode(b'{"schema":null,"payload":null}', no_shape) is None


def test_a_snapshot_row_keeps_the_snapshots_binlog_position():
    change = decoded(REAL_SNAPSHOT_ROW.encode(), no_shape)
    assert change.op is Op.INSERT  # op r: a write like an insert
    # The position read when the snapshot began: the same kind cdc's own snapshot versions by.
    assert change.position == BinlogPosition("binlog.000059", 11168956)
    streamed = json.loads(REAL_SNAPSHOT_ROW)
    streamed["payload"].update(op="c")
    streamed["payload"]["source"]["snapshot"] = "false"
    assert decoded(orjson.dumps(streamed), no_shape).position == BinlogPosition("binlog.000059", 11168958)


def test_versions_order_with_cdcs_own_stream():
    # Event A ends where event B starts (rows events of one statement follow each other).
    a_start, a_end = 1000, 1200
    b_start, b_end = a_end, 1450
    cdc_a = document_version(BinlogPosition("binlog.000007", a_end))
    dbz_a = document_version(decoded(orjson.dumps({**DOCS_CREATE, "source": {
        **DOCS_CREATE["source"], "file": "binlog.000007", "pos": a_start}}), no_shape).position)
    dbz_b = document_version(decoded(orjson.dumps({**DOCS_UPDATE, "source": {
        **DOCS_UPDATE["source"], "file": "binlog.000007", "pos": b_start}}), no_shape).position)
    cdc_b = document_version(BinlogPosition("binlog.000007", b_end))
    assert dbz_a < cdc_a < dbz_b - 1 < dbz_b < cdc_b  # dbz_b - 1: a routing change's delete
    assert document_version(BinlogPosition("binlog.000006", 99_999_999)) < dbz_a


def test_truncate_is_its_own_error():
    event = {"op": "t", "before": None, "after": None, "source": docs_source(900, 1)}
    with pytest.raises(Truncated) as info:
        decode(orjson.dumps(event), no_shape)
    assert (info.value.schema, info.value.table) == ("inventory", "customers")


@pytest.mark.parametrize("value, says", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (orjson.dumps({"op": "c", "after": ANNE}), "not a Debezium change event"),
    (orjson.dumps({**DOCS_CREATE, "op": "m"}), "op 'm'"),
    (orjson.dumps({**DOCS_CREATE, "source": {**DOCS_CREATE["source"], "file": None}}), "no binlog file"),
    (orjson.dumps({**DOCS_CREATE, "source": {**DOCS_CREATE["source"], "file": "mysql-bin"}}), "numeric suffix"),
    (orjson.dumps({**DOCS_CREATE, "source": {**DOCS_CREATE["source"], "table": None}}), "source.table"),
    (orjson.dumps({**DOCS_CREATE, "after": None}), "without 'after'"),
    (orjson.dumps({**DOCS_UPDATE, "before": None}), "without 'before'"),
    (orjson.dumps({**DOCS_CREATE, "op": "r", "source": {**DOCS_CREATE["source"], "snapshot": "incremental"}}),
     "incremental snapshot"),
    (orjson.dumps({"before": None, "after": {"a": 1}, "op": "u",
                   "source": {"cdc": 1, "db": "s", "table": "t", "file": "binlog.000001", "pos": 4}}),
     "kafka.input: cdc"),
])
def test_what_is_not_a_row_change_is_refused_with_a_reason(value, says):
    with pytest.raises(DebeziumError, match=says):
        decode(value, no_shape)


# ---------------------------------------------------------------------------------------------- values

def items_shape(tmp_path):
    rules = rules_for(tmp_path, "rules:\n  - {schema: t14_try, table: items, index: items}\n", ITEMS)
    return rules, shape(rules.rules[0])


def test_the_real_row_becomes_the_binlog_librarys_values(tmp_path):
    _, items = items_shape(tmp_path)
    change = decoded(REAL_SNAPSHOT_ROW.encode(), lambda db, t: items if (db, t) == ("t14_try", "items") else None)
    after = dict(row_after(change))
    assert after["price"] == Decimal("1.50") and str(after["price"]) == "1.50"
    assert after["ts"] == datetime.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=datetime.timezone.utc)
    assert after["dt"] == BINLOG_ROW["dt"] and after["d"] == BINLOG_ROW["d"] and after["t"] == BINLOG_ROW["t"]
    assert after["b"] == b"\x00\xff" and after["bits"] == 0b10101 and after["flag"] is True
    assert after["u"] == 18446744073709551615 and type(after["u"]) is int
    assert after["s"] == "a,c" and after["e"] == "y" and after["y"] == 2024 and after["j"] == '{"a":1}'


def test_the_payload_is_found_without_parsing_the_schema_and_decodes_as_a_whole_parse_would(tmp_path):
    """JsonConverter writes the schema first and the payload last: the payload is sliced out and the
    schema parsed once per table and schema. Other layouts, and a value in which `,"payload":` occurs
    twice (a column named payload), are parsed whole: the same row either way."""
    _, items = items_shape(tmp_path)

    def shape_of(db, table):
        return items if (db, table) == ("t14_try", "items") else None

    plain = REAL_SNAPSHOT_ROW.encode()
    parsed = orjson.loads(plain)
    spaced = json.dumps(parsed).encode()  # `, "payload": ` with spaces: not sliced
    reordered = orjson.dumps({"payload": parsed["payload"], "schema": parsed["schema"]})
    rows = [decoded(v, shape_of) for v in (plain, spaced, reordered)]
    assert rows[0] == rows[1] == rows[2] and row_after(rows[0])["name"] == "one"
    parsed["payload"]["after"]["payload"] = "a column named payload"
    twice = orjson.dumps(parsed)
    assert twice.count(b',"payload":') == 2
    assert row_after(decoded(twice, shape_of))["payload"] == "a column named payload"


@pytest.mark.parametrize("with_schema", [True, False])
def test_the_document_equals_what_cdcs_own_stream_makes(tmp_path, with_schema):
    """The real Debezium row and the binlog library's row give one document (docs/values.md "Values")."""
    rules, items = items_shape(tmp_path)
    value = json.loads(REAL_SNAPSHOT_ROW)
    if not with_schema:
        value = value["payload"]  # schemas.enable=false: the column kinds from information_schema decide
    change = decoded(orjson.dumps(value), lambda db, t: items)
    builder = ActionBuilder(rules)
    from_debezium = builder.actions(change)
    binlog = RowChange(Op.INSERT, "t14_try", "items", BINLOG_COLUMNS, None, BINLOG_ROW, change.position, 0)
    from_binlog = builder.actions(binlog)
    assert from_debezium == from_binlog
    assert from_debezium[0].doc == {
        "id": 1, "name": "one", "price": "1.50", "ts": "2024-01-02T03:04:05.123000Z",
        "dt": "2024-01-02T03:04:05.123456", "d": "2024-01-02", "t": "-01:02:03.500000", "j": {"a": 1},
        "b": "AP8=", "bits": 21, "flag": True, "s": ["a", "c"], "e": "y", "f": 0.1, "y": 2024,
        "u": 18446744073709551615, "tiny": 1}
    assert from_debezium[0].version == document_version(BinlogPosition("binlog.000059", 11168956))


def field(name, kind, logical=None, **parameters):
    f = {"type": kind, "optional": True, "field": name}
    if logical:
        f["name"] = logical
    if parameters:
        f["parameters"] = {k: str(v) for k, v in parameters.items()}
    return f


def one_value(schema_field, value, column=None, fraction=0):
    name = schema_field["field"]
    row = {"type": "struct", "fields": [schema_field]}
    envelope = {"schema": {"type": "struct", "fields": [{**row, "field": "before"}, {**row, "field": "after"}]},
                "payload": {"op": "c", "before": None, "after": {name: value},
                            "source": {"db": "s", "table": "t", "file": "binlog.000001", "pos": 4}}}
    shape_ = Shape({name: column} if column else {}, {name: fraction})
    return row_after(decoded(orjson.dumps(envelope), lambda db, t: shape_))[name]


@pytest.mark.parametrize("schema_field, value, expected", [
    # time.precision.mode=connect
    (field("c", "int64", "org.apache.kafka.connect.data.Timestamp"), 1704164645123,
     datetime.datetime(2024, 1, 2, 3, 4, 5, 123000)),
    (field("c", "int32", "org.apache.kafka.connect.data.Date"), 19724, datetime.date(2024, 1, 2)),
    (field("c", "int32", "org.apache.kafka.connect.data.Time"), 3723500, datetime.timedelta(seconds=3723.5)),
    # adaptive: DATETIME(0-3) in milliseconds, TIME(0-3) too; nanoseconds
    (field("c", "int64", "io.debezium.time.Timestamp"), 1704164645000, datetime.datetime(2024, 1, 2, 3, 4, 5)),
    (field("c", "int32", "io.debezium.time.Time"), -1000, datetime.timedelta(seconds=-1)),
    (field("c", "int64", "io.debezium.time.NanoTimestamp"), 1704164645123456789,
     datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)),
    (field("c", "int64", "io.debezium.time.NanoTime"), 1_500_000, datetime.timedelta(microseconds=1500)),
    (field("c", "string", "io.debezium.time.ZonedTimestamp"), "2024-01-02T03:04:05+05:30",
     datetime.datetime(2024, 1, 1, 21, 34, 5, tzinfo=datetime.timezone.utc)),
    # decimal.handling.mode=precise: unscaled big-endian two's complement, scale a parameter
    (field("c", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2),
     base64.b64encode((-150).to_bytes(2, "big", signed=True)).decode(), Decimal("-1.50")),
    (field("c", "struct", "io.debezium.data.VariableScaleDecimal"),
     {"scale": 3, "value": base64.b64encode((12345).to_bytes(2, "big", signed=True)).decode()}, Decimal("12.345")),
    # BIT(12): java.util.BitSet.toByteArray(), little-endian
    (field("c", "bytes", "io.debezium.data.Bits", length=12), base64.b64encode(b"\x01\x08").decode(), 0x801),
    (field("c", "string", "io.debezium.data.Json"), '{"k": [1, 2]}', '{"k": [1, 2]}'),
    (field("c", "struct", "io.debezium.data.geometry.Point"),
     {"wkb": base64.b64encode(struct.pack("<BIdd", 1, 1, 2.0, 3.0)).decode(), "srid": 4326},
     struct.pack("<I", 4326) + struct.pack("<BIdd", 1, 1, 2.0, 3.0)),
    (field("c", "double"), 1.25, 1.25),
    (field("c", "boolean"), False, False),
])
def test_logical_types(schema_field, value, expected):
    assert one_value(schema_field, value) == expected


def test_decimal_as_double_and_binary_as_base64():
    assert one_value(field("p", "double"), 1.5, Column("p", ColumnKind.DECIMAL)) == Decimal("1.5")
    assert one_value(field("b", "string"), "AP8=", Column("b", ColumnKind.BINARY)) == b"\x00\xff"


def test_without_schema_the_column_precision_picks_the_unit():
    row = {"op": "c", "before": None, "source": {"db": "s", "table": "t", "file": "binlog.000001", "pos": 4},
           "after": {"ms": 1704164645123, "us": 1704164645123456}}
    kinds = Shape({"ms": Column("ms", ColumnKind.DATETIME), "us": Column("us", ColumnKind.DATETIME)},
                  {"ms": 3, "us": 6})
    after = row_after(decoded(orjson.dumps(row), lambda db, t: kinds))
    assert after == {"ms": datetime.datetime(2024, 1, 2, 3, 4, 5, 123000),
                     "us": datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)}


@pytest.mark.parametrize("schema_field, value, column, says", [
    (field("c", "string", "io.debezium.time.Interval"), "P1D", None, "logical type io.debezium.time.Interval"),
    (field("c", "array"), [1], None, "Connect type 'array'"),
    (field("c", "int64", "io.debezium.time.MicroTimestamp"), "soon", None, "not an integer"),
    (field("c", "bytes"), "%%%", None, "cannot decode"),
    (field("c", "string"), "1,5", Column("c", ColumnKind.DECIMAL), "decimal.handling.mode=string"),
    (field("c", "string", "io.debezium.time.ZonedTimestamp"), "2024-01-02T03:04:05", None, "no UTC offset"),
])
def test_values_cdc_cannot_convert_are_refused_naming_the_column(schema_field, value, column, says):
    with pytest.raises(DebeziumError, match=says) as info:
        one_value(schema_field, value, column)
    assert "s.t after: column c" in str(info.value)


# ---------------------------------------------------------------------------------------------- the sink's side

CUSTOMERS = TableInfo("inventory", "customers", (
    ColumnInfo("id", "int", "int(11)"), ColumnInfo("first_name", "varchar", "varchar(255)", "utf8mb4"),
    ColumnInfo("last_name", "varchar", "varchar(255)", "utf8mb4"), ColumnInfo("email", "varchar", "varchar(255)",
                                                                               "utf8mb4")), ("id",))


def customers_input(tmp_path, rule="{schema: inventory, table: customers, index: customers}"):
    rules = rules_for(tmp_path, f"rules:\n  - {rule}\n", CUSTOMERS)
    return DebeziumInput(rules, ActionBuilder(rules))


def test_messages_become_the_rules_actions(tmp_path):
    to_actions = customers_input(tmp_path)
    actions = to_actions([received(wrapped(DOCS_CREATE), 0), received(None, 1), received(DOCS_UPDATE, 2),
                          received(DOCS_DELETE, 3), received(None, 4)])
    assert [(a.type, a.index, a.doc_id) for a in actions] == [
        (ActionType.INDEX, "customers", "1004"), (ActionType.INDEX, "customers", "1004"),
        (ActionType.DELETE, "customers", "1004")]
    assert actions[1].doc == ANNE_MARIE
    assert [a.version & 0xFFFFFFFF for a in actions] == [156, 486, 807]
    assert to_actions.tombstones == 2
    # a table no rule maps: nothing, as in cdc's stream
    other = {**DOCS_CREATE, "source": {**DOCS_CREATE["source"], "table": "orders"}}
    assert to_actions([received(other)]) == []


def test_a_primary_key_change_moves_the_document(tmp_path):
    # Debezium writes a PK change as a delete of the old key and a create of the new one.
    to_actions = customers_input(tmp_path)
    moved = {**ANNE, "id": 2000}
    actions = to_actions([received({**DOCS_DELETE, "before": ANNE}), received(None),
                          received({**DOCS_CREATE, "after": moved, "source": DOCS_DELETE["source"]})])
    assert [(a.type, a.doc_id) for a in actions] == [(ActionType.DELETE, "1004"), (ActionType.INDEX, "2000")]


def test_a_truncate_is_logged_and_counted_not_applied(tmp_path, caplog):
    to_actions = customers_input(tmp_path)
    truncate = {"op": "t", "before": None, "after": None, "source": docs_source(900, 1)}
    with caplog.at_level(logging.WARNING, logger="cdc.sink"):
        assert to_actions([received(truncate, 7)]) == []
    assert to_actions.truncates == 1
    record = [r for r in caplog.records if getattr(r, "event", None) == "truncate"][0]
    assert "inventory.customers" in record.getMessage() and "dbz.t14_try.items/0@7" in record.getMessage()


def test_a_bad_message_stops_the_sink_naming_it(tmp_path):
    to_actions = customers_input(tmp_path)
    with pytest.raises(UnreadableMessage, match=r"dbz.t14_try.items/0@5 is not a Debezium row change.*op 'm'"):
        to_actions([received(DOCS_CREATE, 4), received({**DOCS_CREATE, "op": "m"}, 5)])


def test_a_row_the_rules_cannot_convert_stops_the_sink_naming_it(tmp_path):
    to_actions = customers_input(tmp_path, "{schema: inventory, table: customers, index: 'c-{email}'}")
    no_email = {**DOCS_CREATE, "after": {**ANNE, "email": None}}
    with pytest.raises(UnreadableMessage, match=r"dbz.t14_try.items/0@3: .*inventory.customers.*email"):
        to_actions([received(no_email, 3)])


def test_the_newest_version_of_a_document_is_kept_whatever_the_read_order():
    def act(version, name):
        return Action(ActionType.INDEX, "customers", "1004", version, {"first_name": name})
    kept = latest([act(20, "newer"), act(10, "older from another partition")])
    assert [a.doc for a in kept] == [{"first_name": "newer"}]
    assert [a.doc for a in latest([act(10, "a"), act(20, "b")])] == [{"first_name": "b"}]
    # Unversioned (mode: update) writes: the last one read, as before.
    unversioned = [dataclasses.replace(act(20, "x"), versioned=False), dataclasses.replace(act(10, "y"),
                                                                                         versioned=False)]
    assert [a.doc for a in latest(unversioned)] == [{"first_name": "y"}]


# ---------------------------------------------------------------------------------------------- config

def load(tmp_path, kafka):
    import yaml

    from cdc.config import load_config

    path = tmp_path / "cdc.yml"
    path.write_text(yaml.safe_dump({"mysql": {"user": "cdc", "server_id": 5}, "kafka": kafka}))
    return load_config(str(path))


def test_config_debezium_input_takes_topic_names_and_patterns(tmp_path):
    from cdc.kafka.client import subscribed

    c = load(tmp_path, {"input": "debezium", "topics": ["dbz.shop.orders", r"^dbz\.shop\..*"]})
    assert c.kafka.input == "debezium" and subscribed(c.kafka) == ["dbz.shop.orders", r"^dbz\.shop\..*"]
    assert subscribed(load(tmp_path, {}).kafka) == ["cdc.actions"]


@pytest.mark.parametrize("kafka, says", [
    ({"input": "debezium"}, "needs kafka.topics"),
    ({"input": "debezium", "topics": ["^dbz.(unclosed"]}, "not a regular expression"),
    ({"input": "debezium", "topics": [""]}, "empty topic"),
    ({"topics": ["dbz.shop.orders"]}, "kafka.input: debezium"),
    ({"input": "avro"}, "input"),
])
def test_config_bad_debezium_input_is_refused(tmp_path, kafka, says):
    from cdc.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        load(tmp_path, kafka)


def test_rules_in_mode_update_are_refused_for_debezium_input(tmp_path):
    from cdc.errors import ConfigError

    refuse_unversioned(rules_for(tmp_path, "rules:\n  - {schema: inventory, table: customers, index: c}\n",
                                 CUSTOMERS))
    partial = rules_for(tmp_path, "rules:\n  - {schema: inventory, table: customers, index: c, mode: update}\n",
                        CUSTOMERS)
    with pytest.raises(ConfigError, match=r"mode: update.*r.yml"):
        refuse_unversioned(partial)
