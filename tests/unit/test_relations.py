"""Documents from several tables (issue 15): rule loading, resolving, change -> roots, and assembly.

The reads run against SQLite (in memory, the schema attached as `shop`) so the
SQL text of cdc/rules/relations.py is executed for real; the MySQL side is
tested in tests/integration/test_relations.py.
"""

from __future__ import annotations

import sqlite3
import textwrap

import pytest

from cdc.errors import ConfigError
from cdc.model import ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.rules import Catalog, ColumnInfo, TableInfo, load_rules, resolve_rules
from cdc.rules.relations import (Assembler, Need, document_actions, join_columns, missing_indexes, needs_for,
                                 read_documents, roots_of, roots_page)

from .fakes import doc_of

RULES = """
rules:
  - schema: shop
    table: orders
    index: orders
    exclude: [note]
    lookups:
      customer: {table: customers, key: customer_id, include: [name, email]}
    children:
      lines:
        table: order_lines
        key: order_id
        exclude: [order_id]
        rename: {qty: quantity}
        max_children: 3
        lookups:
          product:
            table: products
            key: product_id
            include: [name, category_id]
            lookups:
              category: {table: categories, key: category_id, include: [title], convert: {title: upper}}
"""

SCHEMA = {
    "orders": [("id", "int"), ("customer_id", "int"), ("note", "varchar"), ("total", "decimal")],
    "customers": [("id", "int"), ("name", "varchar"), ("email", "varchar")],
    "order_lines": [("id", "int"), ("order_id", "int"), ("product_id", "int"), ("qty", "int")],
    "products": [("id", "int"), ("name", "varchar"), ("category_id", "int")],
    "categories": [("id", "int"), ("title", "varchar")],
}


def catalog(schema=SCHEMA, keys=None) -> Catalog:
    keys = keys or {}
    tables = {}
    for name, columns in schema.items():
        infos = tuple(ColumnInfo(c, t, f"{t}(10,2)" if t == "decimal" else t, "utf8mb4" if t == "varchar" else None)
                      for c, t in columns)
        tables[("shop", name)] = TableInfo("shop", name, infos, keys.get(name, ("id",)))
    return Catalog(("shop",), tables)


def rules_from(tmp_path, text=RULES):
    path = tmp_path / "rules.yml"
    path.write_text(textwrap.dedent(text))
    return load_rules(path)


@pytest.fixture
def rule(tmp_path):
    return make_rule(tmp_path)


def make_rule(tmp_path):
    resolution = resolve_rules(rules_from(tmp_path), catalog())
    assert resolution.problems == ()
    return resolution.rules.rules[0]


@pytest.fixture
def db():
    return make_db()


def make_db():
    conn = sqlite3.connect(":memory:")
    conn.execute("ATTACH ':memory:' AS shop")
    for name, columns in SCHEMA.items():
        conn.execute(f"CREATE TABLE shop.{name} ({', '.join(c for c, _ in columns)})")
    rows: dict[str, list[tuple]] = {
        "customers": [(1, "Ann", "ann@x"), (2, "Bob", "bob@x")],
        "categories": [(1, "tea"), (2, "pots")],
        "products": [(10, "Green", 1), (11, "Teapot", 2), (12, "Loose", None)],
        "orders": [(100, 1, "n", "9.50"), (101, 2, None, "1.00"), (102, None, None, "0.00")],
        "order_lines": [(1000, 100, 10, 2), (1001, 100, 11, 1), (1002, 101, 12, 5)],
    }
    for name, values in rows.items():
        conn.executemany(f"INSERT INTO shop.{name} VALUES ({', '.join('?' * len(values[0]))})", values)
    return conn


def query_of(conn, log=None):
    def query(sql, args):
        if log is not None:
            log.append(sql)
        cur = conn.execute(sql.replace("%s", "?"), list(args))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    return query


def all_roots(query, rule, needs, page=1000):
    """roots_of, with its last step paged through to the end."""
    found, pages = roots_of(query, rule, needs)
    for root_query in pages:
        last = None
        while batch := roots_page(query, root_query, last, page):
            found |= set(batch)
            last = batch[-1]
    return found


def change(table, op, before=None, after=None):
    columns = tuple(Column(c, ColumnKind.INTEGER) for c, _ in SCHEMA[table])
    return RowChange(op, "shop", table, columns, before, after, BinlogPosition("binlog.000001", 500), 0)


# ---------------------------------------------------------------------- loading
def test_relations_load_to_a_tree(tmp_path):
    rule = rules_from(tmp_path).rules[0]
    assert [(r.field, r.kind, r.values.table, r.key) for r in rule.relations] == [
        ("lines", "children", "order_lines", "order_id"), ("customer", "lookup", "customers", "customer_id")]
    lines = rule.relations[0]
    assert lines.max_children == 3 and lines.values.rename == (("qty", "quantity"),)
    category = lines.lookups[0].lookups[0]
    assert (category.field, category.values.schema, category.values.conversions[0][1][0].name) == \
        ("category", "shop", "upper")
    assert rules_from(tmp_path).table_filter() >= {("shop", "orders"), ("shop", "categories"),
                                                   ("shop", "order_lines")}


@pytest.mark.parametrize("extra, message", [
    ("      lines: {table: order_lines, key: order_id, colour: red}\n", "children.lines.colour: unknown key"),
    ("      lines: {table: order_lines}\n", "children.lines.key: Field required"),
    ("      lines: {table: order_lines, key: order_id, lookups: {p: {table: products, key: x, max_children: 2}}}\n",
     "max_children: only children have a count to bound"),
    ("      lines: {table: order_lines, key: order_id, convert: {qty: frobnicate}}\n", "unknown conversion"),
])
def test_relation_errors_name_the_key(tmp_path, extra, message):
    text = "rules:\n  - schema: shop\n    table: orders\n    index: orders\n    children:\n" + extra
    with pytest.raises(ConfigError) as err:
        rules_from(tmp_path, text)
    assert message in str(err.value) and "rules[0]" in str(err.value)


@pytest.mark.parametrize("line, message", [
    ("    mode: update\n", "need mode: index"),
    ("    id: '{id}-x'\n", "id and routing are not supported"),
    ("    index: 'o-{customer_id}'\n", "must not be made from columns"),
])
def test_relational_rule_limits(tmp_path, line, message):
    text = "rules:\n  - schema: shop\n    table: orders\n" + (line if "index" in line else "    index: orders\n" + line) \
        + "    lookups:\n      c: {table: customers, key: customer_id}\n"
    with pytest.raises(ConfigError, match=message):
        rules_from(tmp_path, text)


def test_resolve_names_missing_tables_columns_and_clashes(tmp_path):
    schema = dict(SCHEMA)
    del schema["categories"]
    schema["order_lines"] = [("id", "int"), ("product_id", "int"), ("qty", "int")]  # no order_id
    schema["orders"] = SCHEMA["orders"] + [("customer", "varchar")]  # the lookup's field name
    problems = "\n".join(resolve_rules(rules_from(tmp_path), catalog(schema)).problems)
    keyless = RULES.replace("exclude: [order_id]", "include: [id]")
    assert "children.lines: key column order_id not in shop.order_lines" in \
        "\n".join(resolve_rules(rules_from(tmp_path, keyless), catalog(schema)).problems)
    assert "children.lines (shop.order_lines): exclude column(s) order_id not in shop.order_lines" in problems
    assert "lookups.category: table shop.categories does not exist" in problems
    assert "lookups.customer: the document of shop.orders already has a field 'customer'" in problems


def test_join_columns_are_the_keys(rule):
    assert [(t, c) for _, t, c, _ in join_columns(rule)] == [
        ("order_lines", "order_id"), ("orders", "customer_id"), ("order_lines", "product_id"),
        ("products", "category_id")]


# ---------------------------------------------------------------------- changes -> roots
def test_root_change_needs_its_ids_old_and_new(rule):
    needs = needs_for(rule, change("orders", Op.UPDATE, {"id": 100, "customer_id": 1}, {"id": 105, "customer_id": 1}))
    assert needs == [Need((), frozenset({100, 105}))]


def test_child_fk_change_needs_both_parents(rule):
    needs = needs_for(rule, change("order_lines", Op.UPDATE, {"id": 1, "order_id": 100, "product_id": 10},
                                   {"id": 1, "order_id": 101, "product_id": 10}))
    assert needs == [Need((), frozenset({100, 101}))]
    assert needs_for(rule, change("order_lines", Op.DELETE, {"id": 1, "order_id": 100})) == \
        [Need((), frozenset({100}))]


def test_lookup_change_needs_its_referrers(rule, db):
    needs = needs_for(rule, change("categories", Op.UPDATE, {"id": 1, "title": "tea"}, {"id": 1, "title": "TEA"}))
    assert needs == [Need((0, 0, 0), frozenset({1}))]
    sql: list[str] = []
    assert all_roots(query_of(db, sql), rule, needs) == {100}  # category 1 -> product 10 -> line 1000 -> order 100
    # Products by category, then pages of the lines' order_id by product (a child names its parent):
    # one page with the root, one that finds no more.
    assert len(sql) == 3 and all(" WHERE " in s and " IN (" in s for s in sql)
    assert "ORDER BY `order_id` LIMIT 1000" in sql[1] and "`order_id` > %s" in sql[2]
    customer = needs_for(rule, change("customers", Op.DELETE, {"id": 2, "name": "Bob"}))
    assert all_roots(query_of(db), rule, customer) == {101}


def test_unrelated_tables_need_nothing(rule):
    assert needs_for(rule, change("orders", Op.INSERT, None, {"id": None})) == []
    other = RowChange(Op.INSERT, "shop", "audit", (), None, {"id": 1}, BinlogPosition("b.000001", 4), 0)
    assert needs_for(rule, other) == []


# ---------------------------------------------------------------------- documents
def test_documents_are_assembled_with_every_level(rule, db):
    fetched = read_documents(query_of(db), rule, [100, 101, 102, 999])
    actions, refused = document_actions(Assembler(rule), [100, 101, 102, 999], fetched, 77,
                                        BinlogPosition("binlog.000001", 9))
    assert refused == []
    docs = {a.doc_id: (a.type, a.doc) for a in actions}
    found = {a.doc_id: a for a in actions}
    assert docs["100"] == (ActionType.INDEX, {
        "id": 100, "customer_id": 1, "total": "9.50",
        "lines": [{"id": 1000, "product_id": 10, "quantity": 2,
                   "product": {"name": "Green", "category_id": 1, "category": {"title": "TEA"}}},
                  {"id": 1001, "product_id": 11, "quantity": 1,
                   "product": {"name": "Teapot", "category_id": 2, "category": {"title": "POTS"}}}],
        "customer": {"name": "Ann", "email": "ann@x"}})
    assert doc_of(found["101"])["lines"][0]["product"] == {"name": "Loose", "category_id": None, "category": None}
    assert doc_of(found["102"])["lines"] == [] and doc_of(found["102"])["customer"] is None
    assert docs["999"] == (ActionType.DELETE, None)  # asked for, but gone
    assert {a.version for a in actions} == {77} and all(a.index == "orders" for a in actions)


def test_too_many_children_refuses_that_root_only(rule, db):
    db.executemany("INSERT INTO shop.order_lines VALUES (?, 101, 10, 1)", [(2000 + i,) for i in range(3)])
    fetched = read_documents(query_of(db), rule, [100, 101])
    assert fetched.too_many == {(0,): {101: 4}}
    assert all(row["order_id"] != 101 for rows in fetched.children[(0,)].values() for row in rows)  # never read
    actions, refused = document_actions(Assembler(rule), [100, 101], fetched, 1, None)
    assert [a.doc_id for a in actions] == ["100"]
    assert [r.action.doc_id for r in refused] == ["101"]
    assert "shop.orders id=101 has 4 rows in shop.order_lines (more than max_children: 3)" in refused[0].reason


def test_missing_indexes_say_what_to_create(rule):
    indexed = {("shop", "order_lines"): {"id", "order_id"}, ("shop", "orders"): {"id", "customer_id"},
               ("shop", "products"): {"id"}}
    warnings = missing_indexes(rule, lambda schema, table: indexed.get((schema, table), {"id"}))
    assert len(warnings) == 2
    assert warnings[0].endswith("CREATE INDEX `order_lines_product_id` ON `shop`.`order_lines` (`product_id`)")
    assert "shop.products.category_id (lookup category (shop.categories)) has no index" in warnings[1]


def test_children_may_have_a_composite_primary_key_lookups_may_not(tmp_path, db):
    # Lines keyed (order_id, id), as order lines often are: ordered by it, and walked up through `key`.
    resolution = resolve_rules(rules_from(tmp_path), catalog(keys={"order_lines": ("order_id", "id")}))
    assert resolution.problems == ()
    rule = resolution.rules.rules[0]
    needs = needs_for(rule, change("products", Op.UPDATE, {"id": 11, "category_id": 2}, {"id": 11, "category_id": 1}))
    assert all_roots(query_of(db), rule, needs) == {100}
    fetched = read_documents(query_of(db), rule, [100])
    assert [row["id"] for row in fetched.children[(0,)][100]] == [1000, 1001]
    problems = resolve_rules(rules_from(tmp_path), catalog(keys={"products": ("id", "name")})).problems
    assert any("shop.products needs a one-column primary key (it has id, name): a lookup is found by it" in p
               for p in problems), problems


def test_roots_of_a_lookup_come_a_page_at_a_time(rule, db):
    db.executemany("INSERT INTO shop.orders VALUES (?, 1, NULL, '1.00')", [(200 + i,) for i in range(5)])
    found, pages = roots_of(query_of(db), rule, needs_for(rule, change("customers", Op.UPDATE, {"id": 1}, {"id": 1})))
    assert found == set() and len(pages) == 1
    assert roots_page(query_of(db), pages[0], None, 4) == [100, 200, 201, 202]
    assert roots_page(query_of(db), pages[0], 202, 4) == [203, 204]


def test_grandchildren_reach_their_root_through_the_child(tmp_path, db):
    text = RULES.replace("        max_children: 3\n", "        max_children: 3\n"
                         "        children:\n          notes: {table: line_notes, key: line_id}\n")
    schema = {**SCHEMA, "line_notes": [("id", "int"), ("line_id", "int"), ("text", "varchar")]}
    resolution = resolve_rules(rules_from(tmp_path, text), catalog(schema))
    assert resolution.problems == ()
    rule = resolution.rules.rules[0]
    db.execute("CREATE TABLE shop.line_notes (id, line_id, text)")
    db.execute("INSERT INTO shop.line_notes VALUES (1, 1002, 'fragile'), (2, 1002, 'gift')")
    columns = tuple(Column(c, ColumnKind.INTEGER) for c in ("id", "line_id", "text"))
    moved = RowChange(Op.UPDATE, "shop", "line_notes", columns, {"id": 1, "line_id": 1000},
                      {"id": 1, "line_id": 1002}, BinlogPosition("binlog.000001", 500), 0)
    needs = needs_for(rule, moved)
    assert needs == [Need((0,), frozenset({1000, 1002}))]  # the lines, old and new
    assert all_roots(query_of(db), rule, needs) == {100, 101}
    fetched = read_documents(query_of(db), rule, [101])
    actions, _ = document_actions(Assembler(rule), [101], fetched, 1, None)
    assert [n["text"] for n in doc_of(actions[0])["lines"][0]["notes"]] == ["fragile", "gift"]
