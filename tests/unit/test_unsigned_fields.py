"""BIGINT UNSIGNED / BIT(64) fields of rules without create_index get a mapping that holds them before the
first write (issue 16): a dynamic `long` would reject values above 2^63-1 and stop cdc."""

import logging
from typing import Any

from cdc.errors import SinkAccessError, SinkError
from cdc.es.indices import map_unsigned_fields, unsigned_fields
from cdc.rules import Catalog, ColumnInfo, TableInfo, load_rules, resolve_rules
from cdc.rules.values import ValueOptions

from .fakes import AdminBase

OPTIONS = ValueOptions()
ORDERS = TableInfo("shop", "orders", (
    ColumnInfo("id", "bigint", "bigint(20) unsigned"), ColumnInfo("n", "bigint", "bigint(20)"),
    ColumnInfo("flags", "bit", "bit(64)"), ColumnInfo("small", "int", "int(10) unsigned"),
    ColumnInfo("at", "date", "date")), ("id",), frozenset())


def rules(tmp_path, text):
    (tmp_path / "r.yml").write_text(text)
    result = resolve_rules(load_rules(tmp_path / "r.yml"), Catalog(("shop",), {("shop", "orders"): ORDERS}))
    assert not result.problems, result.problems
    return result.rules.rules


class Admin(AdminBase):
    """Answers GET /<index>/_mapping from `mappings` (index -> properties, absent: 404); records PUTs."""

    def __init__(self, mappings: dict | None = None, unsigned_long: bool = True, refuse: Exception | None = None):
        self.mappings = dict(mappings or {})
        self.unsigned_long = unsigned_long
        self.refuse = refuse
        self.puts: list[tuple[str, dict | None]] = []

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        index = path.split("/")[1]
        if method == "GET":
            if index not in self.mappings:
                return 404, {"error": "index_not_found_exception"}
            return 200, {index: {"mappings": {"properties": self.mappings[index]}}}
        if self.refuse:
            raise self.refuse
        assert body is not None
        properties = (body.get("mappings") or body)["properties"]
        if not self.unsigned_long and any(p["type"] == "unsigned_long" for p in properties.values()):
            raise SinkError("Elasticsearch answered 400: mapper_parsing_exception The mapper type [unsigned_long] "
                            "declared on field [id] does not exist.")
        self.puts.append((path, body))
        self.mappings.setdefault(index, {}).update(properties)
        return 200, {"acknowledged": True}


def test_the_fields_are_those_of_unsigned_64_bit_columns_after_renames_and_excludes(tmp_path):
    (rule,) = rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o, rename: {id: order_id}}\n")
    assert unsigned_fields(rule, OPTIONS) == ["flags", "order_id"]  # not int unsigned: long holds it
    (rule,) = rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o, exclude: [flags]}\n")
    assert unsigned_fields(rule, OPTIONS) == ["id"]


def test_a_missing_index_is_created_with_only_these_fields_mapped(tmp_path, caplog):
    sink = Admin()
    with caplog.at_level(logging.INFO, logger="cdc.indices"):
        done = map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o}\n"), sink,
                                   OPTIONS)
    assert sink.puts == [("/o", {"mappings": {"properties": {"flags": {"type": "unsigned_long"},
                                                             "id": {"type": "unsigned_long"}}}})]
    assert done == ["o.flags: unsigned_long", "o.id: unsigned_long"]
    assert "mapped flags, id as unsigned_long, creating the index" in caplog.text


def test_an_existing_index_gets_the_missing_fields_added_and_long_is_only_warned_about(tmp_path, caplog):
    sink = Admin({"o": {"flags": {"type": "long"}, "at": {"type": "date"}}})
    with caplog.at_level(logging.INFO, logger="cdc.indices"):
        done = map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o}\n"), sink,
                                   OPTIONS)
    assert sink.puts == [("/o/_mapping", {"properties": {"id": {"type": "unsigned_long"}}})]
    assert done == ["o.id: unsigned_long"]
    assert "field flags is mapped as long, which cannot hold values above 2^63-1" in caplog.text


def test_without_unsigned_long_keyword_holds_them(tmp_path):
    sink = Admin(unsigned_long=False)
    done = map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o}\n"), sink,
                               OPTIONS)
    assert done == ["o.flags: keyword", "o.id: keyword"]
    assert sink.mappings["o"] == {"flags": {"type": "keyword"}, "id": {"type": "keyword"}}


def test_nothing_is_done_for_create_index_rules_mapped_fields_or_tables_without_such_columns(tmp_path):
    sink = Admin({"o": {"id": {"type": "unsigned_long"}, "flags": {"type": "keyword"}}})
    assert map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o}\n"), sink,
                               OPTIONS) == []
    assert map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: p, "
                                               "create_index: true}\n"), sink, OPTIONS) == []
    assert map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: q, "
                                               "include: [n, small, at]}\n"), sink, OPTIONS) == []
    assert sink.puts == []


def test_refused_access_is_a_warning_not_a_stop(tmp_path, caplog):
    sink = Admin(refuse=SinkAccessError("Elasticsearch denied access (403): action [indices:admin/create]"))
    with caplog.at_level(logging.WARNING, logger="cdc.indices"):
        assert map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o}\n"), sink,
                                   OPTIONS) == []
    assert "index o: could not map flags, id for unsigned 64-bit integers" in caplog.text


def test_an_index_name_from_columns_is_a_warning_pointing_to_create_index(tmp_path, caplog):
    sink = Admin()
    with caplog.at_level(logging.WARNING, logger="cdc.indices"):
        assert map_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, "
                                                   "index: \"o-{at:%Y}\"}\n"), sink, OPTIONS) == []
    assert "give the rule create_index" in caplog.text and sink.puts == []


def test_the_plan_shows_what_a_start_does_from_the_same_plan(tmp_path):
    """`cdc indices plan|create` and `cdc check` (plan_start) show the fields plan that `cdc run` carries
    out (map_unsigned_fields): the same index, fields and request, so the two cannot disagree."""
    from cdc.es.indices import create_missing, inspect, plan_start

    rule_text = "rules:\n  - {schema: shop, table: orders, index: o, also: true}\n  - {schema: shop, table: orders, " \
                "index: p, create_index: true, also: true}\n"
    plans = plan_start(rules(tmp_path, rule_text), OPTIONS)
    assert [(p.kind, p.name) for p in plans] == [("index", "p"), ("fields", "o")]
    [state] = [s for s in inspect(plans, Admin()) if s.plan.kind == "fields"]
    assert state.to_json() == {"kind": "fields", "name": "o", "state": "create", "rules": [plans[1].rules[0]],
                               "body": {"mappings": {"properties": {"flags": {"type": "unsigned_long"},
                                                                    "id": {"type": "unsigned_long"}}}}}
    by_run, by_command = Admin(), Admin()
    map_unsigned_fields(rules(tmp_path, rule_text), by_run, OPTIONS)
    created = create_missing([plans[1]], by_command)
    assert by_command.puts == by_run.puts == [("/o", {"mappings": {"properties": {
        "flags": {"type": "unsigned_long"}, "id": {"type": "unsigned_long"}}}})]
    assert created[0].to_json()["state"] == "created"
    assert created[0].added == {"flags": "unsigned_long", "id": "unsigned_long"}
    assert inspect([plans[1]], by_command)[0].state == "exists"


def test_an_index_lacking_some_fields_is_planned_as_an_update_and_a_long_as_a_difference(tmp_path):
    from cdc.es.indices import inspect, plan_unsigned_fields

    plans = plan_unsigned_fields(rules(tmp_path, "rules:\n  - {schema: shop, table: orders, index: o}\n"), OPTIONS)
    [state] = inspect(plans, Admin({"o": {"flags": {"type": "long"}}}))
    assert state.state == "update" and state.missing == ("id",)
    assert state.differences == ["field flags is mapped as long, which cannot hold values above 2^63-1 (BIGINT "
                                 "UNSIGNED): such rows will be rejected; rebuild the index with unsigned_long to "
                                 "fix it"]
    [state] = inspect(plans, Admin({"o": {"flags": {"type": "keyword"}, "id": {"type": "unsigned_long"}}}))
    assert state.state == "exists"
