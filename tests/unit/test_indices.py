from typing import Any

import pytest

from cdc.errors import PreflightError, SinkError
from cdc.es.indices import (
    IndexPlan,
    column_field,
    compare_mappings,
    create_missing,
    ensure,
    generated_mappings,
    index_target,
    inspect,
    plan_indices,
)
from cdc.rules import Catalog, ColumnInfo, TableInfo, load_rules, resolve_rules
from cdc.rules.values import ValueOptions

from .fakes import AdminBase

OPTIONS = ValueOptions()
TEXT = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}


def rules_for(tmp_path, text, *tables):
    path = tmp_path / "r.yml"
    path.write_text(text)
    catalog = Catalog(("shop",), {(t.schema, t.table): t for t in tables})
    result = resolve_rules(load_rules(path), catalog)
    assert not result.problems, result.problems
    return result.rules.rules


def t(name, *columns, pk=("id",), json=()):
    return TableInfo("shop", name, tuple(ColumnInfo(*c) for c in columns), pk, frozenset(json))


ALL_TYPES = t(
    "all",
    ("id", "bigint", "bigint(20) unsigned"), ("i", "int", "int(11)"), ("y", "year", "year(4)"),
    ("d", "decimal", "decimal(65,30)"), ("f", "float", "float"), ("db", "double", "double"),
    ("dt", "date", "date"), ("dtm", "datetime", "datetime(6)"), ("ts", "timestamp", "timestamp"),
    ("tm", "time", "time(6)"), ("c", "char", "char(10)"), ("tx", "longtext", "longtext"),
    ("e", "enum", "enum('a','b')"), ("s", "set", "set('a','b')"), ("b", "varbinary", "varbinary(10)"),
    ("bit1", "bit", "bit(1)"), ("bit9", "bit", "bit(9)"), ("bit64", "bit", "bit(64)"),
    ("js", "json", "json"), ("mj", "longtext", "longtext"), ("pt", "point", "point"),
    ("g", "geometry", "geometry"), ("u", "uuid", "uuid"),
    json=("mj",),
)


def test_generated_mappings_for_every_type(tmp_path):
    (rule,) = rules_for(tmp_path, "rules:\n  - {schema: shop, table: all, index: a, exclude: [u], create_index: true}\n",
                        ALL_TYPES)
    assert generated_mappings(rule, OPTIONS) == {"properties": {
        "id": {"type": "unsigned_long"}, "i": {"type": "long"}, "y": {"type": "long"},
        "d": {"type": "keyword"}, "f": {"type": "float"}, "db": {"type": "double"},
        "dt": {"type": "date"}, "dtm": {"type": "date"}, "ts": {"type": "date"},
        "tm": {"type": "keyword"}, "c": TEXT, "tx": TEXT, "e": {"type": "keyword"}, "s": {"type": "keyword"},
        "b": {"type": "binary"}, "bit1": {"type": "boolean"}, "bit9": {"type": "long"},
        "bit64": {"type": "unsigned_long"}, "js": {"type": "object"}, "mj": {"type": "object"},
        "pt": {"type": "geo_shape"}, "g": {"type": "geo_shape"},
    }}


def test_value_options_change_the_fields():
    options = ValueOptions(decimal_as="number", bit1_as_bool=False, points="geo_point")
    assert column_field(ColumnInfo("d", "decimal", "decimal(10,2)"), options) == {"type": "double"}
    assert column_field(ColumnInfo("b", "bit", "bit(1)"), options) == {"type": "long"}
    assert column_field(ColumnInfo("p", "point", "point"), options) == {"type": "geo_point"}
    assert column_field(ColumnInfo("u", "uuid", "uuid"), options) is None


def test_mappings_follow_renames_conversions_and_added_fields(tmp_path):
    (rule,) = rules_for(tmp_path, """
rules:
  - schema: shop
    table: p
    index: p
    include: [id, name, tags, flag, meta, born, email]
    rename: {name: title}
    convert: {tags: {split: ","}, flag: bool, meta: json, born: {datetime: "%Y"}, email: lower}
    fields: {source: mysql, version: 2, ratio: 0.5, live: true, labels: [a], extra: {k: v}}
    add_table_name: _table
    add_schema_name: _schema
    on_delete: soft
    create_index: true
""", t("p", ("id", "int", "int"), ("name", "varchar", "varchar(9)"), ("tags", "varchar", "varchar(9)"),
       ("flag", "tinyint", "tinyint(1)"), ("meta", "text", "text"), ("born", "date", "date"),
       ("email", "varchar", "varchar(9)"), ("hidden", "int", "int")))
    assert generated_mappings(rule, OPTIONS)["properties"] == {
        "id": {"type": "long"}, "title": TEXT, "tags": {"type": "keyword"}, "flag": {"type": "boolean"},
        "meta": {"type": "object"}, "born": {"type": "keyword"}, "email": TEXT,
        "source": {"type": "keyword"}, "version": {"type": "long"}, "ratio": {"type": "double"},
        "live": {"type": "boolean"}, "labels": {"type": "keyword"}, "extra": {"type": "object"},
        "_table": {"type": "keyword"}, "_schema": {"type": "keyword"}, "deleted": {"type": "boolean"},
    }


def test_plan_indices_for_shards_templates_and_given_mappings(tmp_path):
    rules = rules_for(tmp_path, """
rules:
  - schema: shop
    table: {regex: "o_(\\\\d+)"}
    index: orders
    create_index: {settings: {number_of_shards: 2}}
  - schema: shop
    table: inv
    index: "inv-{table}-{at:%Y.%m}"
    create_index: true
  - schema: shop
    table: given
    index: given
    create_index: {mappings: {dynamic: strict, properties: {id: {type: keyword}}}}
  - schema: shop
    table: none
    index: none
""", t("o_1", ("id", "int", "int"), ("v", "int", "int")), t("o_2", ("id", "int", "int"), ("v", "varchar", "varchar(3)")),
        t("inv", ("id", "int", "int"), ("at", "date", "date")), t("given", ("id", "int", "int")),
        t("none", ("id", "int", "int")))
    plans = {p.name: p for p in plan_indices(rules, OPTIONS)}
    assert sorted(plans) == ["cdc-inv-inv", "given", "orders"]
    orders = plans["orders"]
    assert orders.kind == "index"
    assert orders.settings == {"number_of_shards": 2}
    assert orders.mappings == {"properties": {"id": {"type": "long"}, "v": {"type": "long"}}}
    assert len(orders.rules) == 1
    assert orders.notes == (f"field v: long from {rules[0].source}, text from {rules[1].source}; using long",)
    inv = plans["cdc-inv-inv"]
    assert (inv.kind, inv.pattern) == ("template", "inv-inv-*")
    assert inv.body["index_patterns"] == ["inv-inv-*"] and inv.body["priority"] == 200
    assert inv.mappings == {"properties": {"id": {"type": "long"}, "at": {"type": "date"}}}
    assert plans["given"].mappings == {"dynamic": "strict", "properties": {"id": {"type": "keyword"}}}


def test_given_mappings_are_laid_over_generated_ones(tmp_path):
    (rule,) = rules_for(tmp_path, """
rules:
  - schema: shop
    table: g
    index: g
    create_index: {mappings: {dynamic: false, properties: {shape: {type: object, enabled: false}}}}
""", t("g", ("id", "int", "int"), ("shape", "geometry", "geometry"), ("name", "varchar", "varchar(5)")))
    (plan,) = plan_indices([rule], OPTIONS)
    assert plan.mappings == {"dynamic": False, "properties": {
        "id": {"type": "long"}, "shape": {"type": "object", "enabled": False}, "name": TEXT}}


def test_index_target():
    from cdc.rules import Rule

    assert index_target(Rule("s", "Orders_7", "o-{table}", ("id",), captures=(("table", "Orders_7"),))) == \
        ("index", "o-orders_7")
    assert index_target(Rule("s", "t", "o-{a:%Y}-{b}", ("id",))) == ("template", "o-*-*")
    assert index_target(Rule("s", "t", "o-{a:%Y}{b}", ("id",))) == ("template", "o-*")


def test_compare_mappings():
    want = {"properties": {"a": {"type": "long"}, "t": TEXT, "o": {"type": "object", "properties": {"x": {"type": "date"}}},
                           "missing": {"type": "keyword"}}}
    have = {"properties": {"a": {"type": "keyword"}, "t": {"type": "text"},
                           "o": {"properties": {"x": {"type": "long"}}}, "extra": {"type": "long"}}}
    assert compare_mappings(want, have) == [
        "a: keyword in Elasticsearch, long planned",
        "t.keyword: missing in Elasticsearch, keyword planned",
        "o.x: long in Elasticsearch, date planned",
        "missing: not mapped (Elasticsearch would map it dynamically)",
    ]
    assert compare_mappings(want, want) == []


def test_compare_mappings_sees_a_changed_analyzer():
    want = {"properties": {"s": {"type": "text", "analyzer": "short"}, "k": {"type": "keyword", "normalizer": "low"},
                           "t": {"type": "text"}}}
    have = {"properties": {"s": {"type": "text"}, "k": {"type": "keyword", "normalizer": "low"},
                           "t": {"type": "text", "analyzer": "english"}}}
    # t: the index's own analyzer, which the rule does not give, is no difference.
    assert compare_mappings(want, have) == ["s: analyzer default in Elasticsearch, short planned"]


class FakeSink(AdminBase):
    def __init__(self, existing: dict | None = None, fail: dict[str, str] | None = None):
        self.existing = existing or {}
        self.fail = fail or {}
        self.calls: list[tuple[str, str, dict | None]] = []

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        name = path.split("/")[1] if not path.startswith("/_index_template/") else path
        if method == "GET":
            if path.startswith("/_index_template/"):
                if path in self.existing:
                    return 200, {"index_templates": [{"name": path, "index_template": self.existing[path]}]}
                return 404, {}
            if name in self.existing:
                if path.endswith("_settings?flat_settings=true"):
                    return 200, {name: {"settings": self.existing[name].get("flat", {})}}
                return 200, {name: {"mappings": self.existing[name]["mappings"]}}
            return 404, {}
        if path in self.fail:
            raise SinkError(self.fail[path])
        return 200, {"acknowledged": True}


PLANS = [
    IndexPlan("index", "new", {"settings": {}, "mappings": {"properties": {"a": {"type": "long"}}}}, ("r[0]",)),
    IndexPlan("index", "same", {"settings": {"number_of_shards": 1},
                                "mappings": {"properties": {"a": {"type": "long"}}}}, ("r[1]",)),
    IndexPlan("index", "other", {"settings": {}, "mappings": {"properties": {"a": {"type": "long"}}}}, ("r[2]",)),
    IndexPlan("template", "cdc-m", {"index_patterns": ["m-*"], "priority": 200,
                                    "template": {"settings": {}, "mappings": {}}}, ("r[3]",), pattern="m-*"),
]
EXISTING = {
    "same": {"mappings": {"properties": {"a": {"type": "long"}}}, "flat": {"index.number_of_shards": "1"}},
    "other": {"mappings": {"properties": {"a": {"type": "keyword"}}}},
}


def test_inspect_and_create_only_what_is_missing():
    sink = FakeSink(EXISTING)
    assert [(s.plan.name, s.state, s.differences) for s in inspect(PLANS, sink)] == [
        ("new", "create", []), ("same", "exists", []),
        ("other", "differs", ["a: keyword in Elasticsearch, long planned"]), ("cdc-m", "create", [])]
    assert not [c for c in sink.calls if c[0] != "GET"]
    sink = FakeSink(EXISTING)
    states = create_missing(PLANS, sink)
    assert [(s.plan.name, s.state) for s in states] == [("new", "created"), ("same", "exists"), ("other", "differs"),
                                                        ("cdc-m", "created")]
    puts = [(m, p) for m, p, _ in sink.calls if m == "PUT"]
    assert puts == [("PUT", "/new"), ("PUT", "/_index_template/cdc-m")]
    assert states[0].to_json()["state"] == "created"


def test_ensure_stops_when_creation_fails():
    sink = FakeSink(fail={"/new": "Elasticsearch answered 400: unknown type [geo_shape]"})
    with pytest.raises(PreflightError, match="index new .*unknown type"):
        create_and_raise(sink)


def create_and_raise(sink):
    from cdc.rules import IndexSetup, Rule

    rule = Rule("shop", "t", "new", ("id",), source="r[0]", create_index=IndexSetup(),
                table_columns=(ColumnInfo("id", "int", "int"),))
    return ensure([rule], sink, OPTIONS)
