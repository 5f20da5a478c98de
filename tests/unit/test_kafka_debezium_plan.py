"""The planned Debezium path (cdc/app/debezium_plan.py) against RowChange + ActionBuilder: the same actions.

Generated messages of a table with every column type cdc converts, in each connector
encoding (schemas on and off; decimal.handling.mode precise, string and double;
time.precision.mode adaptive_time_microseconds and connect; binary.handling.mode bytes and
base64; bigint.unsigned.handling.mode precise and long), with NULLs, zero dates, values of
the wrong type, tombstones, truncates, snapshot and streamed rows, updates that move
documents, and tables no rule maps, go through `DebeziumInput` twice, once with its planner
and once without, under rule sets with every rule option and value option. Each message
must give the same actions (type, index, id, version, routing, pipeline, position and the
document's JSON, byte for byte) or the same error, and the same counters.
"""

import base64
import datetime
import random
import struct
import zlib
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from cdc.app.kafka_mode import DebeziumInput, UnreadableMessage
from cdc.es.bulk import encode_bulk
from cdc.app import debezium_plan
from cdc.kafka.client import Received
from cdc.mysql.catalog import Catalog, ColumnInfo, TableInfo
from cdc.rules import ActionBuilder, load_rules, resolve_rules
from cdc.rules.values import ValueOptions

ZOO = TableInfo("shop", "zoo", (
    ColumnInfo("id", "int", "int(11)"), ColumnInfo("big", "bigint", "bigint(20) unsigned"),
    ColumnInfo("tiny", "tinyint", "tinyint(1)"), ColumnInfo("name", "varchar", "varchar(50)", "utf8mb4"),
    ColumnInfo("latin", "varchar", "varchar(50)", "latin1"), ColumnInfo("price", "decimal", "decimal(10,2)"),
    ColumnInfo("f", "float", "float"), ColumnInfo("dbl", "double", "double"),
    ColumnInfo("dt0", "datetime", "datetime"), ColumnInfo("dt6", "datetime", "datetime(6)"),
    ColumnInfo("d", "date", "date"), ColumnInfo("t", "time", "time(6)"), ColumnInfo("ts", "timestamp", "timestamp(3)"),
    ColumnInfo("zts", "timestamp", "timestamp"), ColumnInfo("y", "year", "year(4)"),
    ColumnInfo("j", "json", "json"), ColumnInfo("mj", "longtext", "longtext", "utf8mb4"),
    ColumnInfo("e", "enum", "enum('x','y','Z')", "utf8mb4"), ColumnInfo("s", "set", "set('a','b','c')", "utf8mb4"),
    ColumnInfo("flag", "bit", "bit(1)"), ColumnInfo("bits", "bit", "bit(12)"), ColumnInfo("blob", "blob", "blob"),
    ColumnInfo("bin", "binary", "binary(4)"), ColumnInfo("g", "geometry", "geometry"),
    ColumnInfo("p", "point", "point"), ColumnInfo("txt", "text", "text", "utf8mb4"),
), ("id",), frozenset({"mj"}))

# Rule sets: every option a rule has, and the value options (ActionBuilder's ValueOptions, version epoch).
RULES = {
    "plain": "- {schema: shop, table: zoo, index: zoo}",
    "options": """- schema: shop
  table: zoo
  index: 'zoo-{d:%Y.%m}'
  id: '{id}-{tiny}'
  routing: '{name}'
  rename: {name: title, dt0: when}
  exclude: [blob]
  fields: {source: debezium, tags: [1, 2]}
  add_table_name: tbl
  add_schema_name: sch
  pipeline: p1
  convert: {latin: {split: ' '}, name: [lower], e: upper, tiny: bool, dt6: {datetime: '%Y/%m/%d %H'}, txt: json}""",
    "soft": """- schema: shop
  table: zoo
  index: 'zoo-{schema}-{table}'
  id: [id, name]
  id_separator: '|'
  on_delete: soft
  soft_delete_field: gone
  include: [id, name, price, dt6, j, mj, g, p, s, bits, flag, t, ts]""",
    "also": """- {schema: shop, table: zoo, index: zoo-a, also: true, on_delete: ignore, routing: '{e}'}
- {schema: shop, table: zoo, index: 'zoo-b-{y}', also: true, id: '{id}.{big}'}""",
    "binary_id": "- {schema: shop, table: zoo, index: zoo, id: bin, allow_duplicate_ids: true}",
    # Index names and ids of values: upper case lowered, empty ids, ids with the separator in them.
    "values_in_names": "- {schema: shop, table: zoo, index: 'zoo-{e}-{flag}', id: '{name}', allow_duplicate_ids: true}",
    "pattern": "- {schema: shop, table: {glob: 'zo*'}, index: 'x-{table}'}",
    # Every column as it is (the converted image is the document), marked deleted, through a pipeline: the
    # action lines the plan makes for an index name of the rule alone.
    # Ids of one column of other types (a bool is "true"/"false", not str()), and documents that only rename or
    # only convert (not the converted image itself).
    "other_ids": """- {schema: shop, table: zoo, index: zoo-f, id: flag, allow_duplicate_ids: true, also: true,
   rename: {name: title}}
- {schema: shop, table: zoo, index: zoo-g, id: dbl, allow_duplicate_ids: true, also: true, convert: {e: upper}}""",
    "whole_soft_pipeline": "- {schema: shop, table: zoo, index: 'zoo-{table}', on_delete: soft, pipeline: p2}",
}
OPTIONS = {
    "default": (ValueOptions(), 0),
    "other": (ValueOptions(decimal_as="number", timestamp_tz=ZoneInfo("America/New_York"), bit1_as_bool=False,
                           points="geo_point"), 3),
    "unparsed": (ValueOptions(parse_json=False, timestamp_tz=datetime.timezone(datetime.timedelta(hours=5,
                                                                                                    minutes=30))), 1),
}
# Connector encodings: (schemas, decimal, time, binary, bigint unsigned).
ENCODINGS = [
    (True, "string", "adaptive_time_microseconds", "bytes", "precise"),
    (True, "precise", "connect", "base64", "long"),
    (True, "double", "adaptive_time_microseconds", "bytes", "precise"),
    (False, "string", "adaptive_time_microseconds", "bytes", "precise"),
]
EPOCH = datetime.datetime(1970, 1, 1)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wkb_point(x, y):
    return struct.pack("<BIdd", 1, 1, x, y)


def column_values(rng: random.Random, enc):
    """Column -> (field schema, JSON value) for one row in one connector encoding."""
    schemas, decimal_mode, time_mode, binary_mode, bigint_mode = enc
    connect = time_mode == "connect"

    def fld(kind, logical=None, **parameters):
        f = {"type": kind, "optional": True}
        if logical:
            f.update(name=logical, version=1)
        if parameters:
            f["parameters"] = {k: str(v) for k, v in parameters.items()}
        return f

    def binary(data):
        return (fld("string"), b64(data)) if binary_mode == "base64" else (fld("bytes"), b64(data))

    micros = rng.choice([0, 1, 999_999, rng.randint(-2 * 10**15, 4 * 10**15)])
    price = rng.choice([0, 1, -1, 150, -150, 123456789, rng.randint(-10**9, 10**9)])
    price_text = f"{'-' if price < 0 else ''}{abs(price) // 100}.{abs(price) % 100:02d}"
    price_v: tuple[dict, Any]
    big_v: tuple[dict, Any]
    if decimal_mode == "string":
        price_v = (fld("string"), rng.choice([price_text, price_text, "-0.00", "007.50", "1E+2", "12"]))
    elif decimal_mode == "precise":
        price_v = (fld("bytes", "org.apache.kafka.connect.data.Decimal", scale=2),
                   b64(price.to_bytes(8, "big", signed=True)))
    else:
        price_v = (fld("double"), price / 100)
    big = rng.choice([0, 2**63 - 1, 2**64 - 1, rng.randint(0, 2**64 - 1)])
    if bigint_mode == "precise":
        big_v = (fld("bytes", "org.apache.kafka.connect.data.Decimal", scale=0), b64(big.to_bytes(9, "big")))
    else:
        big_v = (fld("int64"), big - 2**63)
    text = rng.choice(["one", "Ünïcödé ß ΣΑΣ", "", "a:b\\c", "UPPER lower", "TRUE", "0", "x" * 300, "tab\there"])
    json_text = rng.choice(['{"a": 1, "b": [true, null, 1.5, "x"]}', "[]", '"s"', '{"a":{"b":{"c":[1,2,{"d":0.1}]}}}',
                            '{"k": -9999999999999999999}', '{"a": 1, "a": 2}', "12", "null"] * 3
                           + ["12345678901234567890123", "1e400", "not json"])
    ms = micros // 1000
    columns = {
        "id": (fld("int32"), rng.randint(-5, 40)),
        "big": big_v,
        "tiny": (fld("int16"), rng.choice([0, 1, 7, -1])),
        "name": (fld("string"), text),
        "latin": (fld("string"), rng.choice(["caf\u00e9 au lait", "plain", "", " lead"])),
        "price": price_v,
        "f": (fld("float"), rng.choice([0.1, 1.5, 3.4028234663852886e38, -0.0, 16777217.0])),
        "dbl": (fld("double"), rng.choice([0.1, -2.5e300, 1.0, 5e-324])),
        "dt0": (fld("int64", "org.apache.kafka.connect.data.Timestamp" if connect else "io.debezium.time.Timestamp"),
                ms),
        "dt6": ((fld("int64", "org.apache.kafka.connect.data.Timestamp"), ms) if connect
                else (fld("int64", "io.debezium.time.MicroTimestamp"), micros)),
        "d": (fld("int32", "org.apache.kafka.connect.data.Date" if connect else "io.debezium.time.Date"),
              rng.choice([0, 19724, -719162, 2932896, rng.randint(-10000, 30000)])),
        "t": ((fld("int32", "org.apache.kafka.connect.data.Time"), rng.randint(-3_000_000, 86_400_000)) if connect
              else (fld("int64", "io.debezium.time.MicroTime"), rng.choice([-3723500000, 0, 3020399999999]))),
        "ts": (fld("string", "io.debezium.time.ZonedTimestamp"),
               rng.choice(["2024-01-02T03:04:05.123Z", "1970-01-01T00:00:01Z", "2024-03-10T07:30:00+05:30",
                           "2038-01-19T03:14:07Z"])),
        # A naive timestamp of a TIMESTAMP column: 0 is the zero TIMESTAMP, which values.py counts.
        "zts": (fld("int64", "io.debezium.time.Timestamp"), rng.choice([0] + [1704164645000] * 9)),
        "y": (fld("int32", "io.debezium.time.Year"), rng.choice([2024, 1901, 0])),
        "j": (fld("string", "io.debezium.data.Json"), json_text),
        "mj": (fld("string"), rng.choice([json_text, '{"color": "red", "size": 3, "tags": ["a", "b"]}'])),
        "e": (fld("string", "io.debezium.data.Enum", allowed="x,y,Z"), rng.choice(["x", "y", "Z"])),
        "s": (fld("string", "io.debezium.data.EnumSet", allowed="a,b,c"), rng.choice(["", "a", "c,a", "a,b,c"])),
        "flag": (fld("boolean"), rng.choice([True, False])),
        "bits": (fld("bytes", "io.debezium.data.Bits", length=12), b64(rng.randint(0, 4095).to_bytes(2, "little"))),
        "blob": binary(rng.randbytes(rng.randint(0, 20))),
        "bin": binary(rng.choice([b"\x00\x01", b"abcd", b"", b"\xff"])),
        "g": (fld("struct", "io.debezium.data.geometry.Geometry"),
              {"wkb": b64(rng.choice([wkb_point(1.5, -2.0), struct.pack("<BII", 1, 2, 2) + struct.pack(
                  "<dddd", 0, 0, 1, 1)])), "srid": rng.choice([0, 4326, None])}),
        "p": (fld("struct", "io.debezium.data.geometry.Point"), {"wkb": b64(wkb_point(rng.random(), 3.25)),
                                                                 "srid": 4326}),
        "txt": (fld("string"), rng.choice(['["x", "y"]', "plain text", '{"n": 1}'])),
    }
    out = {}
    for name, (schema_field, value) in columns.items():
        roll = rng.random()
        if roll < 0.12:
            value = None
        elif roll < 0.125:
            # A value of the wrong type: both paths must refuse it, or convert it, alike.
            value = rng.choice(["text", 12, 1.5, True, [1], {"k": 1}, 1e20, 2**64 - 1, -2**63, "%%%", "", -1])
        out[name] = ({**schema_field, "field": name}, value)
    return out


def envelope(enc, op, before, after, pos, snapshot="false", table="zoo", db="shop"):
    schemas = enc[0]
    source = {"version": "3.5.0.Final", "connector": "mariadb", "name": "p", "ts_ms": 1796000000000,
              "snapshot": snapshot, "db": db, "sequence": None, "table": table, "server_id": 1, "gtid": None,
              "file": "binlog.000042", "pos": pos, "row": 0, "thread": None, "query": None}
    payload = {"before": None if before is None else {k: v for k, (_, v) in before.items()},
               "after": None if after is None else {k: v for k, (_, v) in after.items()},
               "source": source, "op": op, "ts_ms": 1796000000001}
    if not schemas:
        return orjson.dumps(payload)
    image = before if before is not None else after
    row = {"type": "struct", "optional": True, "name": f"p.{db}.{table}.Value",
           "fields": [f for f, _ in image.values()] if image else []}
    schema = {"type": "struct", "name": f"p.{db}.{table}.Envelope", "version": 2, "optional": False, "fields": [
        {**row, "field": "before"}, {**row, "field": "after"},
        {"type": "struct", "optional": False, "field": "source", "fields": [{"type": "string", "field": "file"}]},
        {"type": "string", "optional": False, "field": "op"}]}
    return orjson.dumps({"schema": schema, "payload": payload})


def messages(seed: int, count: int):
    rng = random.Random(seed)
    out = []
    pos = 1000
    for n in range(count):
        enc = ENCODINGS[n % len(ENCODINGS)]
        pos += rng.randint(50, 500)
        roll = rng.random()
        row = column_values(rng, enc)
        if roll < 0.35:
            value = envelope(enc, "c", None, row, pos)
        elif roll < 0.45:
            value = envelope(enc, "r", None, row, pos, snapshot=rng.choice(["true", "last", "false", "first"]))
        elif roll < 0.70:
            new = dict(row)
            for name in rng.sample(list(row), 3):  # id, tiny, name, ... may change: the document moves
                new[name] = column_values(rng, enc)[name]
            value = envelope(enc, "u", row, new, pos)
        elif roll < 0.85:
            value = envelope(enc, "d", row, None, pos)
        else:
            value = rng.choice([
                None,  # a tombstone
                b'{"schema":null,"payload":null}',
                envelope(enc, "t", None, None, pos),
                envelope(enc, "c", None, row, pos, table="other"),  # a table no rule maps
                envelope(enc, "r", None, row, pos, snapshot="incremental"),
                envelope(enc, "u", None, row, pos),  # an update without before
                envelope(enc, "c", None, row, -4),
                envelope(enc, "c", None, {k: v for k, v in row.items() if k != "id"}, pos),  # no key column
                envelope(enc, "c", None, dict(reversed(list(row.items()))), pos),  # the columns in another order
                envelope(enc, "u", dict(reversed(list(row.items()))), row, pos),
                envelope(enc, "c", None, {**row, "extra": ({"type": "string", "field": "extra"}, "x")}, pos),
                b"not json",
                orjson.dumps({"payload": orjson.loads(envelope(enc, "c", None, row, pos)), "schema": {}}),
            ])
        out.append(Received("p.shop.zoo", n % 3, n, value, None))
    return out


def rule_set(tmp_path, name):
    (tmp_path / "r.yml").write_text("rules:\n" + "\n".join("  " + line for line in RULES[name].splitlines()) + "\n")
    resolution = resolve_rules(load_rules(tmp_path / "r.yml"), Catalog(("shop",), {("shop", "zoo"): ZOO}))
    assert not resolution.problems, resolution.problems
    return resolution.rules


def outcome(to_actions: DebeziumInput, message: Received):
    try:
        actions = to_actions([message])
    except UnreadableMessage as exc:
        return "error", str(exc)
    # `doc` too: the planned path's is decoded from doc_json when asked for (dead letters, dry runs).
    return [(a.type, a.index, a.doc_id, a.version, a.routing, a.pipeline, a.versioned, a.schema, a.table,
             a.position, a.key, a.document, a.doc_json, a.doc) for a in actions], encode_bulk(actions)


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("rules", list(RULES))
def test_the_planned_path_makes_todays_actions(tmp_path, rules, options):
    value_options, epoch = OPTIONS[options]
    ruleset = rule_set(tmp_path, rules)
    today = DebeziumInput(ruleset, ActionBuilder(ruleset, epoch, value_options), planned=False)
    planned = DebeziumInput(ruleset, ActionBuilder(ruleset, epoch, value_options))
    assert planned.planner is not None
    taken: Counter[str] = Counter()  # messages planned, by op
    for message in messages(seed=zlib.crc32(f"{rules}/{options}".encode()), count=500):
        if message.value is not None and planned.planner.actions(message.value) is not None:
            data = orjson.loads(message.value)
            taken[data.get("payload", data)["op"]] += 1
        # (the planner's own counters and zero dates are left as they were when it declines)
        assert outcome(planned, message) == outcome(today, message), message.value
    assert (planned.tombstones, planned.truncates) == (today.tombstones, today.truncates)
    assert planned.builder.stats == today.builder.stats
    assert planned.builder.zero_date_rows == today.builder.zero_date_rows
    if rules == "binary_id":
        assert not taken  # not planned: every message the slow way
    else:
        # Most messages are planned, of every op; the rest are the odd ones (a seventh), or have a bad value
        # or a zero date.
        assert sum(taken.values()) > 100 and set(taken) == {"c", "r", "u", "d"}, taken
        assert min(taken.values()) >= 10, taken


def test_every_short_way_is_taken(tmp_path):
    """The plans of the table use every short way the planner has (so the comparison above tests them)."""
    ruleset = rule_set(tmp_path, "plain")
    planner = DebeziumInput(ruleset, ActionBuilder(ruleset)).planner
    assert planner is not None
    for message in messages(seed=7, count=200):
        if message.value is not None:
            planner.actions(message.value)
    codes = {code for plan in planner._plans.values() if plan is not None
             for rule_plan in plan.rules for _, code, _, _ in rule_plan.columns}
    assert codes == set(range(8)), codes
    # ... and its document is the converted image, with the action lines made by the plan (which encode_bulk
    # then sends as they are: the comparison above compares its bodies).
    rule_plans = [rule_plan for plan in planner._plans.values() if plan is not None for rule_plan in plan.rules]
    assert rule_plans and all(p.identity and p.document is None and p.index_head for p in rule_plans)
    assert debezium_plan._GENERIC in codes and debezium_plan._DATE in codes


def test_datetimes_at_the_edges(tmp_path):
    """DATETIME numbers the planned path writes from their whole second's text (`_second`, kept per second):
    around 0 and negative ones, with and without microseconds, the first and last that fit a datetime and the
    first that do not (the slow path's error), each twice (the second time from the kept text)."""
    ruleset = rule_set(tmp_path, "plain")
    today = DebeziumInput(ruleset, ActionBuilder(ruleset), planned=False)
    planned = DebeziumInput(ruleset, ActionBuilder(ruleset))
    assert planned.planner is not None
    first = (datetime.datetime.min - EPOCH) // datetime.timedelta(microseconds=1)
    last = (datetime.datetime.max - EPOCH) // datetime.timedelta(microseconds=1)
    fit = [0, 1, -1, 999_999, 1_000_000, -1_000_000, -1_000_001, 1796680435010375, 1796680435000000,
           first, first + 1, last, last - 999_999]
    beyond = [first - 1, last + 1, 2**63 - 1, -2**63]
    enc = ENCODINGS[0]
    for n, micros in enumerate((fit + beyond) * 2):
        row = {name: (f, v) for name, (f, v) in column_values(random.Random(1), enc).items()}
        row["dt6"] = (row["dt6"][0], micros)
        message = Received("p.shop.zoo", 0, n, envelope(enc, "c", None, row, 1000 + n), None)
        assert message.value is not None
        assert (planned.planner.actions(message.value) is not None) == (micros in fit), micros
        assert outcome(planned, message) == outcome(today, message), micros
