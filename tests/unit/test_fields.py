"""Mappings that follow the table (cdc/es/fields.py): literal table definitions in, fields and requests out."""

from typing import Any

import pytest

from cdc.errors import ConfigError, SinkAccessError, SinkError
from cdc.es import jsonfields
from cdc.es.fields import FieldMapper, column_info, field_changes, holds, wanted_fields
from cdc.es.indices import compare_mappings, generated_mappings
from cdc.model import BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.rules import Catalog, ColumnInfo, TableInfo, load_rules, resolve_rules
from cdc.rules.values import ValueOptions

from .fakes import AdminBase

OPTIONS = ValueOptions()
TEXT = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}


def resolved(tmp_path, text, *columns, json=()):
    path = tmp_path / "r.yml"
    path.write_text(text)
    table = TableInfo("shop", "t", tuple(ColumnInfo(*c) for c in columns), ("id",), frozenset(json))
    result = resolve_rules(load_rules(path), Catalog(("shop",), {("shop", "t"): table}))
    assert not result.problems, result.problems
    return result.rules


RULE = "rules:\n  - {schema: shop, table: t, index: t}\n"
# The table after ALTER TABLE ADD COLUMN n INT, d DECIMAL(10,2), at DATETIME(6), j JSON, u BIGINT UNSIGNED, as the
# table map gives it (the rule was resolved with `id` alone).
AFTER = (Column("id", ColumnKind.INTEGER), Column("n", ColumnKind.INTEGER), Column("d", ColumnKind.DECIMAL),
         Column("at", ColumnKind.DATETIME), Column("j", ColumnKind.JSON), Column("u", ColumnKind.INTEGER, unsigned_64=True),
         Column("b", ColumnKind.BIT, 1), Column("g", ColumnKind.GEOMETRY), Column("x", ColumnKind.OTHER))


def test_table_map_columns_map_as_information_schema_columns_do(tmp_path):
    # The same function as `cdc indices plan`, fed the information_schema columns of that definition.
    schema = [("id", "bigint", "bigint(20)"), ("n", "int", "int(11)"), ("d", "decimal", "decimal(10,2)"),
              ("at", "datetime", "datetime(6)"), ("j", "json", "json"), ("u", "bigint", "bigint(20) unsigned"),
              ("b", "bit", "bit(1)"), ("g", "geometry", "geometry")]
    (planned,) = resolved(tmp_path, RULE, *schema).rules
    (rule,) = resolved(tmp_path, RULE, ("id", "bigint", "bigint(20)")).rules
    assert wanted_fields(rule, OPTIONS, AFTER) == generated_mappings(planned, OPTIONS)["properties"]
    assert wanted_fields(rule, OPTIONS, AFTER) == {
        "id": {"type": "long"}, "n": {"type": "long"}, "d": {"type": "keyword"}, "at": {"type": "date"},
        "j": {"type": "object"}, "u": {"type": "unsigned_long"}, "b": {"type": "boolean"}, "g": {"type": "geo_shape"}}
    assert column_info(Column("x", ColumnKind.OTHER)) is None  # written as it comes: left dynamic, as in the plan


def test_rule_knowledge_applies_to_new_definitions(tmp_path):
    # MariaDB JSON (text in the binlog) and POINT (GEOMETRY there) as the rule resolved them; renames, exclusions,
    # conversions and given mappings as in the plan.
    text = ("rules:\n  - {schema: shop, table: t, index: t, rename: {s: title}, exclude: [secret],"
            " convert: {tags: {split: ','}}, create_index: {mappings: {properties: {d: {type: scaled_float,"
            " scaling_factor: 100}}}}}\n")
    (rule,) = resolved(tmp_path, text, ("id", "int", "int(11)"), ("mj", "longtext", "longtext"),
                       ("p", "point", "point"), ("s", "text", "text"), ("secret", "text", "text"), ("tags", "text", "text"),
                       json=("mj",)).rules
    columns = (Column("id", ColumnKind.INTEGER), Column("mj", ColumnKind.STRING), Column("p", ColumnKind.GEOMETRY),
               Column("s", ColumnKind.STRING), Column("secret", ColumnKind.STRING), Column("tags", ColumnKind.STRING),
               Column("d", ColumnKind.DECIMAL))
    assert wanted_fields(rule, OPTIONS, columns) == {
        "id": {"type": "long"}, "mj": {"type": "object"}, "p": {"type": "geo_shape"}, "title": TEXT,
        "tags": {"type": "keyword"}, "d": {"type": "scaled_float", "scaling_factor": 100}}


def test_holds():
    assert holds({"type": "long"}, {"type": "long"})
    assert holds(TEXT, {"type": "keyword"})  # a DECIMAL Elasticsearch once mapped dynamically: strings still fit
    assert holds({"type": "keyword"}, {"type": "date"})
    assert holds({"type": "keyword"}, {"type": "unsigned_long"})  # the fallback where unsigned_long is missing
    assert holds({"type": "double"}, {"type": "long"})
    assert holds({"type": "object", "enabled": False}, {"type": "keyword"})
    assert holds({"type": "my_plugin_type"}, {"type": "keyword"})  # not second-guessed
    assert not holds({"type": "long"}, TEXT)  # INT -> VARCHAR
    assert not holds({"type": "long"}, {"type": "keyword"})  # DECIMAL into a long: "1.5" is refused
    assert not holds({"type": "long"}, {"type": "unsigned_long"})
    assert not holds({"type": "date"}, {"type": "keyword"})  # DATETIME -> TIME
    assert not holds({"type": "keyword"}, {"type": "object"})  # VARCHAR -> JSON
    assert not holds({"properties": {"a": {"type": "long"}}}, {"type": "long"})  # JSON -> INT
    # GEOMETRY on a server without geo_shape: the dynamic mapping of its first GeoJSON value holds the next
    assert holds({"properties": {"type": TEXT, "coordinates": {"type": "float"}}}, {"type": "geo_shape"})
    assert not holds({"type": "keyword"}, {"type": "geo_shape"})


def test_field_changes():
    wanted = {"id": {"type": "long"}, "n": {"type": "long"}, "d": {"type": "keyword"}, "a.b": {"type": "long"}}
    have = {"id": {"type": "long"}, "d": {"type": "long"}}
    missing, conflicts = field_changes(wanted, have)
    assert missing == {"n": {"type": "long"}}
    assert conflicts == ["field d is mapped as long, and the table now gives keyword values"]


class Sink(AdminBase):
    """`admin` against literal mappings: index -> properties, behind `alias`."""

    def __init__(self, indices: dict, alias: str | None = None, refuse: tuple[str, ...] = ()):
        self.indices, self.alias, self.refuse = indices, alias, refuse
        self.calls: list[tuple[str, str, dict | None]] = []

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        name = path.split("/")[1]
        if method == "GET":
            names = [i for i in self.indices if name in (i, self.alias)]
            return (200, {i: {"mappings": {"properties": self.indices[i]}} for i in names}) if names else (404, {})
        assert body is not None  # a PUT of the new fields
        for spec in body["properties"].values():
            if spec["type"] in self.refuse:
                raise SinkError(f"mapper_parsing_exception: No handler for type [{spec['type']}] declared on field")
        if "forbidden" in self.refuse:
            raise SinkAccessError("403 security_exception")
        self.indices[name].update(body["properties"])
        return 200, {"acknowledged": True}


def change(columns):
    return RowChange(Op.INSERT, "shop", "t", columns, None, {c.name: 1 for c in columns}, BinlogPosition("b.1", 4), 0)


def test_mapper_adds_new_fields_once_per_definition(tmp_path, caplog):
    rules = resolved(tmp_path, RULE, ("id", "bigint", "bigint(20)"))
    sink = Sink({"t_v1": {"id": {"type": "long"}}}, alias="t")
    mapper = FieldMapper(rules, sink, OPTIONS)
    mapper.start(rules.rules)
    assert [c[0] for c in sink.calls] == ["GET"]  # the index has every column: nothing to put
    before = (Column("id", ColumnKind.INTEGER),)
    mapper.check(change(before))
    mapper.check(change(before))  # the same definition: no request
    assert len(sink.calls) == 2
    mapper.check(change(AFTER[:4]))
    assert sink.calls[-1] == ("PUT", "/t_v1/_mapping", {"properties": {
        "n": {"type": "long"}, "d": {"type": "keyword"}, "at": {"type": "date"}}})
    mapper.check(change(tuple(AFTER[:4])))  # an equal tuple: no request
    assert len(sink.calls) == 4
    assert mapper.added == ["t_v1.n: long", "t_v1.d: keyword", "t_v1.at: date"]


def test_mapper_falls_back_and_reports(tmp_path, caplog):
    rules = resolved(tmp_path, RULE, ("id", "bigint", "bigint(20)"))
    sink = Sink({"t": {"id": {"type": "long"}, "n": {"type": "long"}}}, refuse=("unsigned_long", "geo_shape"))
    mapper = FieldMapper(rules, sink, OPTIONS)
    # n: INT -> VARCHAR; u: no unsigned_long on this server (keyword holds every value); g: no geo_shape.
    columns = (Column("id", ColumnKind.INTEGER), Column("n", ColumnKind.STRING),
               Column("u", ColumnKind.INTEGER, unsigned_64=True), Column("g", ColumnKind.GEOMETRY))
    mapper.check(change(columns))
    assert sink.indices["t"]["u"] == {"type": "keyword"}
    assert "g" not in sink.indices["t"] and sink.indices["t"]["n"] == {"type": "long"}
    text = caplog.text
    assert "field n is mapped as long, and the table now gives text values" in text
    assert "cdc rebuild --index t" in text
    assert "cannot map field g as {'type': 'geo_shape'}" in text
    caplog.clear()
    mapper.check(change(columns[:3]))  # another definition with the same conflict: said once
    assert "field n" not in caplog.text


def test_mapper_leaves_missing_indices_and_refused_access(tmp_path, caplog):
    rules = resolved(tmp_path, RULE, ("id", "bigint", "bigint(20)"))
    sink = Sink({})
    FieldMapper(rules, sink, OPTIONS).check(change(AFTER))
    assert [c[0] for c in sink.calls] == ["GET"]  # the first write creates it
    sink = Sink({"t": {}}, refuse=("forbidden",))
    FieldMapper(rules, sink, OPTIONS).check(change(AFTER[:2]))
    assert "cannot add fields id, n" in caplog.text and sink.indices["t"] == {}


# ---------------------------------------------------------------------- json_mapping (cdc/es/jsonfields.py)
def test_json_mapping_per_rule(tmp_path):
    columns = (("id", "int", "int(11)"), ("j", "json", "json"), ("mj", "longtext", "longtext"), ("t", "text", "text"))
    fields = {}
    for mode in ("object", "flattened", "disabled"):
        text = f"rules:\n  - {{schema: shop, table: t, index: t, json_mapping: {mode}, convert: {{t: json}}}}\n"
        (rule,) = resolved(tmp_path, text, *columns, json=("mj",)).rules
        props = generated_mappings(rule, OPTIONS)["properties"]
        assert props["j"] == props["mj"] == props["t"]  # MySQL JSON, MariaDB JSON, `convert: json` alike
        assert wanted_fields(rule, OPTIONS, (Column("j", ColumnKind.JSON),)) == {"j": props["j"]}
        fields[mode] = props["j"]
    assert fields == {"object": {"type": "object"}, "flattened": {"type": "flattened"},
                      "disabled": {"type": "object", "enabled": False}}
    path = tmp_path / "bad.yml"
    path.write_text("rules:\n  - {schema: shop, table: t, index: t, json_mapping: flat}\n")
    with pytest.raises(ConfigError, match="json_mapping"):
        load_rules(path)


class RefusingSink(AdminBase):
    """Answers a PUT like a server without the types in `lacking` (Elasticsearch's message)."""

    def __init__(self, *lacking: str):
        self.lacking = lacking
        self.puts: list[dict | None] = []

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        self.puts.append(body)
        for field_type in self.lacking:
            if f"'type': '{field_type}'" in str(body):
                raise SinkError(f"mapper_parsing_exception: No handler for type [{field_type}] declared on field [j]")
        return 200, {"acknowledged": True}


def test_flattened_becomes_what_the_server_has():
    body = {"settings": {}, "mappings": {"properties": {"id": {"type": "long"}, "j": {"type": "flattened"},
                                                        "o": {"properties": {"k": {"type": "flattened"}}}}}}
    assert jsonfields.put(RefusingSink(), "/i", body) == body  # Elasticsearch
    opensearch = {"type": "flat_object"}  # OpenSearch >= 2.7
    sink = RefusingSink("flattened")
    assert jsonfields.put(sink, "/i", body)["mappings"]["properties"] == {
        "id": {"type": "long"}, "j": opensearch, "o": {"properties": {"k": opensearch}}}
    sink = RefusingSink("flattened", "flat_object")  # an integ-test-zip, OpenSearch < 2.7
    accepted = jsonfields.put(sink, "/i", body)
    assert accepted["mappings"]["properties"]["j"] == {"type": "object", "enabled": False} and len(sink.puts) == 3
    with pytest.raises(SinkError, match="geo_shape"):  # other refusals are not guessed at
        jsonfields.put(RefusingSink("geo_shape"), "/i", {"properties": {"g": {"type": "geo_shape"}}})
    # What the server made of it counts as planned, and holds what the plan would.
    for have in (opensearch, {"type": "object", "enabled": False}):
        assert compare_mappings({"properties": {"j": {"type": "flattened"}}}, {"properties": {"j": have}}) == []
        assert holds(have, {"type": "flattened"})
    assert compare_mappings({"properties": {"j": {"type": "flattened"}}}, {"properties": {"j": {"type": "keyword"}}})
