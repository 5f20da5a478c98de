import dataclasses
import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cdc.errors import ConfigError
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.rules import (
    ActionBuilder,
    Catalog,
    ColumnInfo,
    IndexSetup,
    Rule,
    RowError,
    RuleSet,
    TableInfo,
    actions_for,
    document_id,
    document_version,
    load_rules,
    parse_template,
    resolve_rules,
)
from cdc.rules.values import ValueOptions

from .fakes import doc_of

P = BinlogPosition
K = ColumnKind
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- helpers
def _write(path, text):
    path.write_text(text)
    return path


def _load(tmp_path, text, name="r.yml"):
    return load_rules(_write(tmp_path / name, text))


def _error(tmp_path, text, name="r.yml") -> str:
    path = _write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    return str(info.value)


def table(schema, name, *columns, pk=("id",), json=(), view=False, unique=()):
    """`unique`: unique NOT NULL keys besides the primary key."""
    cols = tuple(ColumnInfo(c[0], c[1], c[2] if len(c) > 2 else c[1]) for c in columns)
    return TableInfo(schema, name, cols, tuple(pk), frozenset(json), view, tuple(tuple(k) for k in unique))


def catalog(*tables):
    return Catalog(tuple(sorted({t.schema for t in tables})), {(t.schema, t.table): t for t in tables})


def matched(rules: RuleSet, schema: str, table: str) -> Rule:
    """The rule of a table the test knows a rule matches."""
    rule = rules.match(schema, table)
    assert rule is not None, (schema, table)
    return rule


def resolved(tmp_path, text, *tables) -> RuleSet:
    result = resolve_rules(_load(tmp_path, text), catalog(*tables))
    assert not result.problems, result.problems
    return result.rules


POS = P("binlog.000002", 500)
V = document_version(POS)


def change(op, before=None, after=None, columns=None, schema="shop", table="products", position=POS, row_index=0):
    if columns is None:
        row = after if after is not None else before
        columns = tuple(Column(name, _kind(value)) for name, value in row.items())
    return RowChange(op, schema, table, columns, before, after, position, 1700000000, row_index)


def _kind(value):
    if isinstance(value, bool) or isinstance(value, int):
        return K.INTEGER
    if isinstance(value, Decimal):
        return K.DECIMAL
    if isinstance(value, datetime.datetime):
        return K.DATETIME
    if isinstance(value, datetime.date):
        return K.DATE
    if isinstance(value, bytes):
        return K.BINARY
    return K.STRING


# ---------------------------------------------------------------- load_rules: files and errors
def test_load_rules_from_directory(tmp_path):
    _write(tmp_path / "a.yml", (
        "rules:\n"
        "  - {schema: shop, table: orders, index: orders}\n"
        "  - {schema: shop, table: items, index: items, id: [order_id, line]}\n"
    ))
    _write(tmp_path / "b.yaml", "rules:\n  - {schema: crm, table: people, index: people-v1, id: person_id}\n")
    _write(tmp_path / "notes.txt", "not a rule file")
    rules = load_rules(tmp_path)
    assert isinstance(rules, RuleSet)
    assert len(rules) == 3
    orders = rules.match("shop", "orders")
    assert orders is not None
    assert orders.index == "orders"
    assert orders.id_columns is None
    assert orders.source == f"{tmp_path / 'a.yml'}:2: rules[0]"
    assert orders.name == "shop.orders"
    assert not orders.checked
    assert matched(rules, "shop", "items").id_columns == ("order_id", "line")
    assert matched(rules, "shop", "items").source == f"{tmp_path / 'a.yml'}:3: rules[1]"
    assert matched(rules, "crm", "people").id_columns == ("person_id",)
    assert matched(rules, "crm", "people").index == "people-v1"
    assert rules.match("shop", "nope") is None
    assert rules.matches("shop", "nope") == ()
    assert rules.schemas == frozenset({"shop", "crm"})


def test_load_rules_single_file(tmp_path):
    rules = _load(tmp_path, "rules:\n  - {schema: s, table: t, index: i}\n")
    assert len(rules) == 1
    assert matched(rules, "s", "t").index == "i"


def test_unknown_key_names_file_line_rule_and_key(tmp_path):
    _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: i}\n")
    bad = _write(tmp_path / "b.yml", "rules:\n  - schema: s\n    table: u\n    index: i\n    idx: [id]\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    assert str(info.value) == f"{bad}:5: rules[0]: idx: unknown key"


def test_unknown_top_level_key(tmp_path):
    message = _error(tmp_path, "rules: []\nrule: []\n")
    assert f"{tmp_path / 'r.yml'}: rule: unknown key" in message


def test_rules_must_be_a_list(tmp_path):
    assert "rules: expected a list" in _error(tmp_path, "rules: {schema: s}\n")
    assert "expected a mapping with a 'rules:' list" in _error(tmp_path, "- just a list\n")


def test_yaml_syntax_error_shows_the_line(tmp_path):
    message = _error(tmp_path, "rules:\n  - schema: s\n    table: [unclosed\n    index: i\n")
    assert f"{tmp_path / 'r.yml'}:4:" in message
    assert "invalid YAML" in message


def test_errors_of_all_files_are_reported_at_once(tmp_path):
    a = _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: I}\n")
    b = _write(tmp_path / "b.yml", "rules: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    message = str(info.value)
    assert f"{a}:2: rules[0]: index: index name 'I' must be lowercase" in message
    assert f"{b}:2:1: invalid YAML" in message


def test_missing_fields(tmp_path):
    message = _error(tmp_path, "rules:\n  - {schema: s}\n")
    assert "rules[0]: table: Field required" in message
    assert "rules[0]: index: Field required" in message


def test_missing_dir_empty_dir_and_no_rules(tmp_path):
    with pytest.raises(ConfigError, match="rules path does not exist"):
        load_rules(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no rule files"):
        load_rules(tmp_path / "empty")
    assert "hold no rules" in _error(tmp_path, "rules: []\n")


def test_uppercase_and_invalid_index_names(tmp_path):
    assert "must be lowercase" in _error(tmp_path, "rules:\n  - {schema: s, table: t, index: Orders}\n")
    for index in ["_hidden", "-x", "+x", "a b", "a/b", "a:b", "a*", "a,b"]:
        message = _error(tmp_path, f"rules:\n  - {{schema: s, table: t, index: '{index}'}}\n")
        assert "not a valid index name" in message, index
        assert "rules[0]: index:" in message


def test_index_templates_may_hold_upper_case_fields(tmp_path):
    rules = _load(tmp_path, "rules:\n  - {schema: s, table: T, index: 'x-{Created:%Y}-{table}'}\n")
    assert matched(rules, "s", "T").index == "x-{Created:%Y}-{table}"


@pytest.mark.parametrize("rule, message", [
    ("{schema: s, table: t, index: i, id: []}", "id: id list must not be empty"),
    ("{schema: s, table: t, index: i, id: [a, a]}", "names a column twice"),
    ("{schema: s, table: t, index: i, id: 5}", "expected a column name"),
    ("{schema: s, table: t, index: i, id: '{table}'}", "uses no column"),
    ("{schema: s, table: t, index: i, id_separator: '::'}", "exactly one character"),
    ("{schema: s, table: t, index: i, id_separator: '\\\\'}", "not a backslash"),
    ("{schema: s, table: t, index: 'i-{table.1}'}", "{table.1} is not a capture of t"),
    ("{schema: s, table: {glob: 't_*'}, index: 'i-{table.2}'}", "{table.2} is not a capture"),
    ("{schema: s, table: t, index: 'i-{table:%Y}'}", "a date format needs a date column"),
    ("{schema: s, table: t, index: 'i-{a!r}'}", "'!r' is not supported"),
    ("{schema: s, table: t, index: 'i-{}'}", "empty {}"),
    ("{schema: s, table: t, index: 'i-{a'}", "bad template"),
    ("{schema: {regex: '('}, table: t, index: i}", "invalid regex '('"),
    ("{schema: s, table: {glob: a, regex: b}, index: i}", "expected a name, {glob: PATTERN}"),
    ("{schema: s, table: {like: a}, index: i}", "expected a name, {glob: PATTERN}"),
    ("{schema: '', table: t, index: i}", "schema: must not be empty"),
    ("{schema: s, table: t, index: i, convert: {a: splt}}", "unknown conversion 'splt'"),
    ("{schema: s, table: t, index: i, convert: {a: datetime}}", "'datetime' needs an argument"),
    ("{schema: s, table: t, index: i, convert: {a: {lower: x}}}", "'lower' takes no argument"),
    ("{schema: s, table: t, index: i, convert: {a: {split: 1}}}", "must be a string"),
    ("{schema: s, table: t, index: i, include: [a], exclude: [b]}", "include and exclude"),
    ("{schema: s, table: t, index: i, mode: update, pipeline: p}", "no named ingest pipeline on updates"),
    ("{schema: s, table: t, index: i, soft_delete_field: gone}", "only for on_delete: soft"),
    ("{schema: s, table: t, index: i, mode: upsert}", "mode: Input should be 'index' or 'update'"),
    ("{schema: s, table: t, index: i, on_delete: drop}", "on_delete: Input should be"),
    ("{schema: s, table: t, index: i, fields: {since: 2024-01-01}}", "must be plain JSON"),
    ("{schema: s, table: t, index: i, routing: ''}", "routing: must not be empty"),
    ("{schema: s, table: t, index: i, refresh: true}", "refresh: Input should be False, 'false' or 'wait_for'"),
    ("{schema: s, table: t, index: i, create_index: {settings: {}, mapping: {}}}", "create_index: mapping: unknown key"),
])
def test_rule_errors_name_the_rule_and_key(tmp_path, rule, message):
    text = _error(tmp_path, f"rules:\n  - {{schema: ok, table: ok, index: ok}}\n  - {rule}\n")
    assert f"{tmp_path / 'r.yml'}:3: rules[1]" in text
    assert message in text


def test_refresh_wait_for_is_per_rule_and_off_by_default(tmp_path):
    rules = _load(tmp_path, "rules:\n  - {schema: s, table: a, index: a, refresh: wait_for}\n"
                            "  - {schema: s, table: b, index: b, refresh: false}\n"
                            "  - {schema: s, table: c, index: c}\n")
    assert [r.refresh_wait_for for r in rules.rules] == [True, False, False]
    assert rules.waits_for_refresh("s", "a") and not rules.waits_for_refresh("s", "c")


def test_duplicate_exact_tables_name_both_files(tmp_path):
    first = _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: one}\n")
    second = _write(tmp_path / "b.yml", "rules:\n  - {schema: s, table: t, index: two}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    message = str(info.value)
    assert f"{second}:2: rules[0]: table s.t is already mapped by {first}:2: rules[0]" in message
    assert "also: true" in message


def test_duplicates_allowed_when_both_say_also(tmp_path):
    rules = _load(tmp_path, (
        "rules:\n"
        "  - {schema: s, table: t, index: one, also: true}\n"
        "  - {schema: s, table: t, index: two, also: true}\n"
    ))
    assert [r.index for r in rules.matches("s", "t")] == ["one", "two"]
    assert "already mapped" in _error(tmp_path, (
        "rules:\n"
        "  - {schema: s, table: t, index: one, also: true}\n"
        "  - {schema: s, table: t, index: two}\n"
    ))


def test_exact_table_that_a_pattern_also_matches_is_an_error_at_load(tmp_path):
    message = _error(tmp_path, (
        "rules:\n"
        "  - {schema: s, table: orders_1, index: one}\n"
        "  - {schema: s, table: {glob: 'orders_*'}, index: all}\n"
    ))
    assert "rules[1]: pattern s.orders_* also matches s.orders_1" in message


def test_rule_keys_become_the_rule(tmp_path):
    rules = _load(tmp_path, """
rules:
  - schema: {glob: "tenant_*"}
    table: {regex: "orders_(?P<year>\\\\d{4})"}
    index: "orders-{schema.1}-{year_month:%Y.%m}"
    id: "{table.year}/{id}"
    routing: customer_id
    exclude: [secret]
    rename: {name: title}
    fields: {source: mysql, tags: [a, b], nested: {x: 1}}
    add_table_name: _table
    add_schema_name: _schema
    convert:
      tags: {split: "|"}
      email: [lower]
      flag: bool
      csv: split
    on_delete: soft
    soft_delete_field: gone
    pipeline: enrich
    create_index:
      settings: {number_of_shards: 2}
""")
    (rule,) = rules.rules
    assert rule.is_pattern and rule.name == "tenant_*./orders_(?P<year>\\d{4})/"
    assert rule.id_template == "{table.year}/{id}" and rule.id_columns is None
    assert rule.routing == "{customer_id}"
    assert rule.exclude == ("secret",) and rule.include is None
    assert rule.rename == (("name", "title"),)
    assert dict(rule.fields) == {"source": "mysql", "tags": ["a", "b"], "nested": {"x": 1}}
    assert (rule.add_table_name, rule.add_schema_name) == ("_table", "_schema")
    assert [(c, [(x.name, x.arg) for x in convs]) for c, convs in rule.conversions] == [
        ("tags", [("split", "|")]), ("email", [("lower", None)]), ("flag", [("bool", None)]),
        ("csv", [("split", ",")])]
    assert (rule.mode, rule.on_delete, rule.soft_delete_field, rule.pipeline) == ("index", "soft", "gone", "enrich")
    assert rule.create_index == IndexSetup({"number_of_shards": 2}, None)
    assert _load(tmp_path, "rules:\n  - {schema: s, table: t, index: i, create_index: true}\n").rules[0].create_index \
        == IndexSetup()


# ---------------------------------------------------------------- matching
def test_glob_and_regex_matching_with_captures(tmp_path):
    rules = _load(tmp_path, (
        "rules:\n"
        "  - {schema: {glob: 'shop_?'}, table: {glob: 'order_*'}, index: 'o-{schema.1}-{table.1}'}\n"
        "  - {schema: crm, table: {regex: 'p(\\d+)_(?P<kind>[a-z]+)'}, index: 'p-{table.kind}'}\n"
        "  - {schema: crm, table: {glob: 'x[0-9]'}, index: x}\n"
    ))
    (bound,) = rules.matches("shop_a", "order_0001")
    assert dict(bound.captures) == {"schema": "shop_a", "table": "order_0001", "schema.1": "a", "table.1": "0001"}
    assert (bound.schema, bound.table, bound.is_pattern) == ("shop_a", "order_0001", False)
    assert rules.matches("shop_ab", "order_1") == ()
    assert rules.matches("shop_a", "orders") == ()
    (bound,) = rules.matches("crm", "p12_vip")
    assert dict(bound.captures)["table.1"] == "12" and dict(bound.captures)["table.kind"] == "vip"
    assert rules.matches("crm", "p12_vip_extra") == ()  # regexes match the whole name
    assert matched(rules, "crm", "x7").index == "x"
    assert rules.match("crm", "xa") is None


def test_table_filter_lets_later_pattern_tables_through(tmp_path):
    rules = resolved(tmp_path, (
        "rules:\n"
        "  - {schema: s, table: {glob: 'o_*'}, index: o}\n"
        "  - {schema: s, table: t, index: t}\n"
    ), table("s", "o_1", ("id", "int")), table("s", "t", ("id", "int")))
    tables = rules.table_filter()
    assert set(tables) == {("s", "o_1"), ("s", "t")}
    assert sorted({schema for schema, _ in tables}) == ["s"]
    assert ("s", "o_2") in tables  # created after start-up: must reach ActionBuilder
    assert ("s", "u") not in tables
    assert ("other", "o_1") not in tables


# ---------------------------------------------------------------- resolve_rules
def test_resolve_expands_patterns_and_fills_keys(tmp_path):
    rules = resolved(tmp_path, (
        "rules:\n"
        "  - {schema: s, table: {regex: 'o_(\\d+)'}, index: 'o-{table.1}'}\n"
        "  - {schema: s, table: t, index: t, id: [a, b]}\n"
    ), table("s", "o_1", ("id", "int")), table("s", "o_2", ("id", "bigint"), pk=("id",)),
        table("s", "o_x", ("id", "int")), table("s", "t", ("a", "int"), ("b", "varchar"), ("j", "longtext"),
                                                  ("bin", "binary", "binary(16)"), pk=(), json=("j",),
                                                  unique=[("b", "a")]))
    assert [(r.schema, r.table, r.index, r.id_columns) for r in rules.rules] == [
        ("s", "o_1", "o-{table.1}", ("id",)), ("s", "o_2", "o-{table.1}", ("id",)), ("s", "t", "t", ("a", "b"))]
    t = matched(rules, "s", "t")
    assert t.checked and t.json_columns == frozenset({"j"}) and t.pad_binary == (("bin", 16),)
    assert [c.name for c in t.table_columns] == ["a", "b", "j", "bin"]


@pytest.mark.parametrize("rule, message", [
    ("{schema: s, table: nope, index: i}", "table s.nope does not exist"),
    ("{schema: s, table: v, index: i}", "s.v is a view"),
    ("{schema: s, table: nopk, index: i}", "has no primary key; name the column(s)"),
    ("{schema: s, table: t, index: i, id: [zz]}", "id column(s) zz not in s.t (columns: id, name, at, n, doc)"),
    ("{schema: s, table: t, index: i, id: '{zz}-{id}'}", "id column(s) zz not in s.t"),
    ("{schema: s, table: t, index: 'i-{zz}'}", "index column(s) zz not in s.t"),
    ("{schema: s, table: t, index: 'i-{name:%Y}'}", "formats a date, but name is varchar(20)"),
    ("{schema: s, table: t, index: i, routing: zz}", "routing column(s) zz not in"),
    ("{schema: s, table: t, index: i, include: [id, zz]}", "include column(s) zz not in"),
    ("{schema: s, table: t, index: i, exclude: [zz]}", "exclude column(s) zz not in"),
    ("{schema: s, table: t, index: i, rename: {zz: a}}", "rename column(s) zz not in"),
    ("{schema: s, table: t, index: i, convert: {zz: lower}}", "convert column(s) zz not in"),
    ("{schema: s, table: t, index: i, convert: {n: split}}", "split cannot take column n of type int(11)"),
    ("{schema: s, table: t, index: i, convert: {name: {datetime: '%Y'}}}", "datetime cannot take column name"),
    ("{schema: s, table: t, index: i, convert: {at: bool}}", "bool cannot take column at"),
    ("{schema: s, table: t, index: i, rename: {name: id}}", "field(s) id twice"),
    ("{schema: s, table: t, index: i, fields: {n: 1}}", "field(s) n twice"),
    ("{schema: s, table: t, index: i, add_table_name: name}", "field(s) name twice"),
    ("{schema: s, table: t, index: i, on_delete: soft, soft_delete_field: n}", "field(s) n twice"),
    ("{schema: s, table: u, index: i}", "column u has type uuid, which cdc cannot convert"),
    ("{schema: s, table: u, index: i, exclude: [u], id: u}", "(it makes the id, index name or routing)"),
])
def test_resolve_problems_name_the_rule(tmp_path, rule, message):
    rules = _load(tmp_path, f"rules:\n  - {rule}\n")
    result = resolve_rules(rules, catalog(
        table("s", "t", ("id", "int", "int(11)"), ("name", "varchar", "varchar(20)"), ("at", "datetime"),
              ("n", "int", "int(11)"), ("doc", "longtext"), json=("doc",)),
        table("s", "nopk", ("a", "int"), pk=()),
        table("s", "v", ("a", "int"), view=True),
        table("s", "u", ("id", "int"), ("u", "uuid"), unique=[("u",)]),
    ))
    assert len(result.problems) == 1, result.problems
    assert f"{tmp_path / 'r.yml'}:2: rules[0]" in result.problems[0]
    assert message in result.problems[0]


# Issue 27: `id: [a, b]` on a table where (1, 'x') appears twice made 3 rows 2 documents, and a
# DELETE of one row removed the document of the other, with nothing said.
NOPK = table("s", "nopk", ("a", "int"), ("b", "varchar"), ("c", "int"), pk=())


@pytest.mark.parametrize("rule, tables", [
    ("{schema: s, table: nopk, index: i, id: [a, b]}", [NOPK]),
    ("{schema: s, table: nopk, index: i, id: '{a}-{b}'}", [NOPK]),
    # a unique key over a nullable column lets rows share NULL: the catalog leaves it out
    ("{schema: s, table: nopk, index: i, id: [a]}", [table("s", "nopk", ("a", "int"), pk=())]),
    # a part of the primary key is not unique
    ("{schema: s, table: t, index: i, id: [a]}", [table("s", "t", ("a", "int"), ("b", "int"), pk=("a", "b"))]),
])
def test_an_id_no_unique_not_null_key_backs_is_refused(tmp_path, rule, tables):
    result = resolve_rules(_load(tmp_path, f"rules:\n  - {rule}\n"), catalog(*tables))
    assert len(result.problems) == 1, result.problems
    problem = result.problems[0]
    assert f"{tmp_path / 'r.yml'}:2: rules[0]" in problem and "are not a unique key of s." in problem
    assert "allow_duplicate_ids: true" in problem


@pytest.mark.parametrize("rule, tables", [
    ("{schema: s, table: nopk, index: i, id: [a, b], allow_duplicate_ids: true}", [NOPK]),
    ("{schema: s, table: nopk, index: i, id: [b, a]}", [dataclasses.replace(NOPK, unique_keys=(("a", "b"),))]),
    ("{schema: s, table: nopk, index: i, id: [c, b, a]}", [dataclasses.replace(NOPK, unique_keys=(("a", "b"),))]),  # wider: unique
    ("{schema: s, table: nopk, index: i, id: '{c}/{a}'}", [dataclasses.replace(NOPK, unique_keys=(("c",),))]),
    ("{schema: s, table: t, index: i, id: [b, a]}", [table("s", "t", ("a", "int"), ("b", "int"), pk=("a", "b"))]),
])
def test_an_id_backed_by_a_unique_not_null_key_or_accepted_explicitly_passes(tmp_path, rule, tables):
    result = resolve_rules(_load(tmp_path, f"rules:\n  - {rule}\n"), catalog(*tables))
    assert result.problems == ()


def test_resolve_accepts_what_the_checks_allow(tmp_path):
    rules = resolved(tmp_path, (
        "rules:\n"
        "  - {schema: s, table: u, index: 'i-{at:%Y}', exclude: [u], rename: {id: key, name: id},\n"
        "     convert: {doc: json, name: [lower, {split: ' '}], flag: bool, at: {datetime: '%Y'}}}\n"
    ), table("s", "u", ("id", "int"), ("name", "varchar"), ("doc", "longtext"), ("flag", "tinyint"),
             ("at", "timestamp"), ("u", "uuid"), json=("doc",)))
    assert matched(rules, "s", "u").checked


def test_resolve_pattern_with_no_table_is_a_warning(tmp_path):
    result = resolve_rules(_load(tmp_path, "rules:\n  - {schema: s, table: {glob: 'z*'}, index: z}\n"),
                           catalog(table("s", "t", ("id", "int"))))
    assert result.problems == ()
    assert "s.z* matches no table now" in result.warnings[0]
    assert len(result.rules) == 0


def test_resolve_overlapping_patterns(tmp_path):
    text = ("rules:\n"
            "  - {schema: s, table: {glob: 'o_*'}, index: a}\n"
            "  - {schema: s, table: {regex: 'o_\\d'}, index: b}\n")
    result = resolve_rules(_load(tmp_path, text), catalog(table("s", "o_1", ("id", "int")),
                                                          table("s", "o_x", ("id", "int"))))
    assert len(result.problems) == 1
    assert "table s.o_1 is matched by 2 rules" in result.problems[0]
    assert "rules[0]" in result.problems[0] and "rules[1]" in result.problems[0]
    text = text.replace("index: a}", "index: a, also: true}").replace("index: b}", "index: b, also: true}")
    result = resolve_rules(_load(tmp_path, text), catalog(table("s", "o_1", ("id", "int"))))
    assert result.problems == ()
    assert [r.index for r in result.rules.matches("s", "o_1")] == ["a", "b"]


def test_resolve_schema_patterns_skip_tables_elsewhere(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: {glob: 'tenant_*'}, table: users, index: 'u-{schema.1}'}\n",
                     table("tenant_a", "users", ("id", "int")), table("tenant_b", "users", ("id", "int")),
                     table("other", "users", ("id", "int")), table("tenant_a", "orders", ("id", "int")))
    assert sorted(r.name for r in rules.rules) == ["tenant_a.users", "tenant_b.users"]


# ---------------------------------------------------------------- document_id
def test_document_id_single_column():
    assert document_id({"id": 42, "name": "x"}, ["id"]) == "42"
    assert document_id({"code": "a:b"}, ["code"]) == "a:b"


def test_document_id_composite():
    assert document_id({"a": 1, "b": "x", "c": 3}, ["a", "b"]) == "1:x"
    assert document_id({"a": 1, "b": "x"}, ["b", "a"]) == "x:1"


def test_document_id_escaping_keeps_keys_distinct():
    one = document_id({"a": "a:b", "b": "c"}, ["a", "b"])
    two = document_id({"a": "a", "b": "b:c"}, ["a", "b"])
    assert one != two
    assert one == "a\\:b:c"
    assert two == "a:b\\:c"
    # A backslash is escaped too, so it cannot fake an escape.
    three = document_id({"a": "a\\", "b": "b"}, ["a", "b"])
    four = document_id({"a": "a", "b": "\\b"}, ["a", "b"])
    assert three != four
    assert three == "a\\\\:b"


def test_document_id_other_separator_escapes_it():
    assert document_id({"a": "x/y", "b": "z"}, ["a", "b"], "/") == "x\\/y/z"
    assert document_id({"a": "x:y", "b": "z"}, ["a", "b"], "/") == "x:y/z"
    assert document_id({"a": "x/", "b": "y"}, ["a", "b"], "/") != document_id({"a": "x", "b": "/y"}, ["a", "b"], "/")


def test_document_id_bytes_as_hex_and_bools():
    assert document_id({"k": b"\x01\xff"}, ["k"]) == "01ff"
    assert document_id({"k": True}, ["k"]) == "true"


def test_document_id_null_key_raises():
    with pytest.raises(ValueError, match="'id' is NULL"):
        document_id({"id": None}, ["id"])


def test_document_id_missing_key_raises_key_error():
    with pytest.raises(KeyError):
        document_id({"other": 1}, ["id"])


# ---------------------------------------------------------------- document_version
def test_document_version_monotonic_within_file():
    assert document_version(P("binlog.000001", 4)) < document_version(P("binlog.000001", 5))
    assert document_version(P("binlog.000001", 1000)) < document_version(P("binlog.000001", 2**32 - 1))


def test_document_version_monotonic_across_files():
    # String comparison would get this right only by luck; numbers must be compared.
    late_in_9 = document_version(P("binlog.000009", 2**32 - 1))
    early_in_10 = document_version(P("binlog.000010", 4))
    assert late_in_9 < early_in_10
    assert document_version(P("binlog.999999", 4)) < document_version(P("binlog.1000000", 4))


def test_document_version_layout():
    assert document_version(P("binlog.000003", 157)) == (3 << 32) | 157
    assert document_version(P("binlog.000003", 157), epoch=2) == (2 << 56) | (3 << 32) | 157


def test_document_version_epoch_beats_any_lower_epoch_position():
    highest_epoch0 = document_version(P("binlog.16777215", 2**32 - 1), epoch=0)
    lowest_epoch1 = document_version(P("binlog.000001", 4), epoch=1)
    assert highest_epoch0 < lowest_epoch1
    assert document_version(P("binlog.16777215", 2**32 - 1), epoch=5) < document_version(P("b.000001", 0), epoch=6)


def test_document_version_fits_signed_64_bit():
    biggest = document_version(P("binlog.16777215", 2**32 - 1), epoch=127)
    assert biggest == 2**63 - 1
    assert 0 <= biggest < 2**63


def test_document_version_out_of_range():
    with pytest.raises(ValueError, match="does not fit"):
        document_version(P("binlog.16777216", 4))
    with pytest.raises(ValueError, match="does not fit"):
        document_version(P("binlog.000001", 2**32))
    with pytest.raises(ValueError, match="no numeric suffix"):
        document_version(P("binlog", 4))


# ---------------------------------------------------------------- actions_for: the basics
COLUMNS = (
    Column("id", K.INTEGER),
    Column("name", K.STRING),
    Column("price", K.DECIMAL),
)
RULE = Rule("shop", "products", "products", ("id",))


def test_insert_gives_one_index_with_converted_doc():
    actions = actions_for(change(Op.INSERT, after={"id": 1, "name": "pen", "price": Decimal("1.50")},
                                 columns=COLUMNS), RULE, 99)
    assert actions == [Action(
        ActionType.INDEX, "products", "1", 99, doc={"id": 1, "name": "pen", "price": "1.50"},
        schema="shop", table="products", position=POS,
    )]


def test_update_without_key_change_gives_one_index():
    before = {"id": 1, "name": "pen", "price": Decimal("1.50")}
    after = {"id": 1, "name": "pen", "price": Decimal("2.00")}
    actions = actions_for(change(Op.UPDATE, before, after, COLUMNS), RULE, 7)
    assert len(actions) == 1
    assert actions[0].type is ActionType.INDEX
    assert actions[0].doc_id == "1"
    assert actions[0].doc == {"id": 1, "name": "pen", "price": "2.00"}
    assert actions[0].version == 7


def test_update_with_key_change_deletes_old_then_indexes_new():
    before = {"id": 1, "name": "pen", "price": Decimal("1")}
    after = {"id": 2, "name": "pen", "price": Decimal("1")}
    actions = actions_for(change(Op.UPDATE, before, after, COLUMNS), RULE, 7)
    assert [(a.type, a.doc_id) for a in actions] == [(ActionType.DELETE, "1"), (ActionType.INDEX, "2")]
    assert actions[0].doc is None
    assert actions[1].doc == {"id": 2, "name": "pen", "price": "1"}
    assert all(a.version == 7 and a.index == "products" for a in actions)


def test_delete_gives_delete():
    actions = actions_for(change(Op.DELETE, before={"id": 3, "name": "x", "price": None}, columns=COLUMNS), RULE, 8)
    assert actions == [Action(ActionType.DELETE, "products", "3", 8, schema="shop", table="products",
                              position=POS)]


def test_composite_key_rule():
    rule = Rule("shop", "lines", "lines", ("order", "line"))
    cols = (Column("order", K.STRING), Column("line", K.INTEGER))
    actions = actions_for(change(Op.INSERT, after={"order": "A:1", "line": 2}, columns=cols, table="lines"),
                          rule, 1)
    assert actions[0].doc_id == "A\\:1:2"


def test_row_missing_key_column_raises_row_error():
    with pytest.raises(RowError, match="row has no key column 'id'"):
        actions_for(change(Op.INSERT, after={"name": "pen"}), RULE, 1)


def test_null_key_raises_row_error():
    with pytest.raises(ValueError, match="'id' is NULL"):
        actions_for(change(Op.DELETE, before={"id": None}, columns=COLUMNS), RULE, 1)


def test_json_columns_parse_mariadb_json_text():
    cols = (Column("id", K.INTEGER), Column("attrs", K.STRING), Column("note", K.STRING))
    rule = Rule("shop", "products", "products", ("id",), json_columns=frozenset({"attrs"}))
    after = {"id": 1, "attrs": '{"color": "red", "sizes": [1, 2]}', "note": '{"not": "parsed"}'}
    (action,) = actions_for(change(Op.INSERT, after=after, columns=cols), rule, 1)
    assert action.doc == {"id": 1, "attrs": {"color": "red", "sizes": [1, 2]}, "note": '{"not": "parsed"}'}


def test_json_column_without_rule_stays_text():
    cols = (Column("id", K.INTEGER), Column("attrs", K.STRING))
    (action,) = actions_for(change(Op.INSERT, after={"id": 1, "attrs": '{"a": 1}'}, columns=cols), RULE, 1)
    assert doc_of(action)["attrs"] == '{"a": 1}'


def test_value_options_are_used():
    (action,) = actions_for(change(Op.INSERT, after={"id": 1, "name": "x", "price": Decimal("1.5")}, columns=COLUMNS),
                            RULE, 1, ValueOptions(decimal_as="number"))
    assert doc_of(action)["price"] == 1.5


def test_binary_columns_are_padded_from_the_catalog():
    rule = Rule("shop", "products", "products", ("id",), pad_binary=(("b", 4),))
    cols = (Column("id", K.INTEGER), Column("b", K.BINARY))
    (action,) = actions_for(change(Op.INSERT, after={"id": 1, "b": b"ab"}, columns=cols), rule, 1)
    assert doc_of(action)["b"] == "YWIAAA=="


def test_unresolved_rule_is_refused():
    with pytest.raises(AssertionError):
        actions_for(change(Op.INSERT, after={"id": 1}), Rule("shop", "products", "products", None), 1)


# ---------------------------------------------------------------- ids, index names, routing
def test_id_separator_and_template(tmp_path):
    rules = resolved(tmp_path, (
        "rules:\n"
        "  - {schema: shop, table: a, index: a, id: [x, y], id_separator: '/'}\n"
        "  - {schema: shop, table: {glob: 'b_*'}, index: b, id: '{table.1}-{x}-{when}'}\n"
    ), table("shop", "a", ("x", "varchar"), ("y", "int"), pk=("x", "y")),
        table("shop", "b_7", ("x", "binary"), ("when", "datetime"), pk=("x",)))
    builder = ActionBuilder(rules)
    (a,) = builder.actions(change(Op.INSERT, after={"x": "p/q", "y": 2}, table="a"))
    assert a.doc_id == "p\\/q/2"
    (b,) = builder.actions(change(Op.INSERT, after={"x": b"\x0f", "when": datetime.datetime(2024, 1, 2)},
                                  table="b_7"))
    assert b.doc_id == "7-0f-2024-01-02T00:00:00"
    assert b.doc == {"x": "Dw==", "when": "2024-01-02T00:00:00"}


def test_index_from_captures_is_lowercased(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: Shop, table: {regex: 'Orders_(\\d+)'}, index: 'o-{schema}-{table.1}'}\n",
                     table("Shop", "Orders_12", ("id", "int")))
    (action,) = ActionBuilder(rules).actions(change(Op.INSERT, after={"id": 1}, schema="Shop", table="Orders_12"))
    assert action.index == "o-shop-12"


@pytest.mark.parametrize("kind, value, options, index", [
    (K.DATETIME, datetime.datetime(2024, 1, 31, 23, 59, 59), None, "orders-2024.01"),
    (K.DATE, datetime.date(2023, 12, 1), None, "orders-2023.12"),
    (K.TIMESTAMP, datetime.datetime(2024, 1, 31, 20, 0), None, "orders-2024.01"),
    # The same instant is already February in Kolkata (+05:30): the zone of the documents decides.
    (K.TIMESTAMP, datetime.datetime(2024, 1, 31, 20, 0), ValueOptions(timestamp_tz=ZoneInfo("Asia/Kolkata")),
     "orders-2024.02"),
    (K.DATE, "0000-00-00", None, None),  # a zero date is null: the index cannot be named
])
def test_index_from_a_date_column(tmp_path, kind, value, options, index):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: o, index: 'orders-{at:%Y.%m}'}\n",
                     table("shop", "o", ("id", "int"), ("at", "datetime")))
    builder = ActionBuilder(rules, value_options=options)
    row_change = change(Op.INSERT, after={"id": 1, "at": value}, columns=(Column("id", K.INTEGER), Column("at", kind)),
                        table="o")
    if index is None:
        with pytest.raises(RowError, match="column 'at': is NULL, but the index name is made from it"):
            builder.actions(row_change)
    else:
        (action,) = builder.actions(row_change)
        assert action.index == index


def test_row_moving_months_deletes_old_and_indexes_new(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: o, index: 'orders-{at:%Y.%m}'}\n",
                     table("shop", "o", ("id", "int"), ("at", "date")))
    before = {"id": 1, "at": datetime.date(2024, 1, 31)}
    after = {"id": 1, "at": datetime.date(2024, 2, 1)}
    actions = ActionBuilder(rules).actions(change(Op.UPDATE, before, after, table="o"))
    assert [(a.type, a.index, a.doc_id, a.version) for a in actions] == [
        (ActionType.DELETE, "orders-2024.01", "1", V), (ActionType.INDEX, "orders-2024.02", "1", V)]
    same_month = ActionBuilder(rules).actions(change(Op.UPDATE, before, {"id": 1, "at": datetime.date(2024, 1, 2)},
                                                     table="o"))
    assert [a.type for a in same_month] == [ActionType.INDEX]


def test_index_name_formats_numbers_and_rejects_bad_names(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: o, index: 'o-{tenant:04d}-{region}'}\n",
                     table("shop", "o", ("id", "int"), ("tenant", "int"), ("region", "varchar")))
    builder = ActionBuilder(rules)
    (action,) = builder.actions(change(Op.INSERT, after={"id": 1, "tenant": 7, "region": "EU"}, table="o"))
    assert action.index == "o-0007-eu"
    with pytest.raises(RowError, match="not a valid index name"):
        builder.actions(change(Op.INSERT, after={"id": 1, "tenant": 7, "region": "a b"}, table="o"))
    with pytest.raises(RowError, match="cannot format 'x'"):
        builder.actions(change(Op.INSERT, after={"id": 1, "tenant": "x", "region": "eu"}, table="o"))


def test_routing_on_every_action_and_a_routing_change_moves_the_document(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: o, index: o, routing: customer}\n",
                     table("shop", "o", ("id", "int"), ("customer", "varchar")))
    builder = ActionBuilder(rules)
    (ins,) = builder.actions(change(Op.INSERT, after={"id": 1, "customer": "c1"}, table="o"))
    assert ins.routing == "c1"
    (upd,) = builder.actions(change(Op.UPDATE, {"id": 1, "customer": "c1"}, {"id": 1, "customer": "c1"}, table="o"))
    assert upd.routing == "c1"
    (dele,) = builder.actions(change(Op.DELETE, before={"id": 1, "customer": "c1"}, table="o"))
    assert (dele.type, dele.routing) == (ActionType.DELETE, "c1")
    moved = builder.actions(change(Op.UPDATE, {"id": 1, "customer": "c1"}, {"id": 1, "customer": "c2"}, table="o"))
    # Same index and id: both may land on one shard, where the index needs a higher version.
    assert [(a.type, a.routing, a.version) for a in moved] == [(ActionType.DELETE, "c1", V - 1),
                                                               (ActionType.INDEX, "c2", V)]
    assert moved[0].key != moved[1].key  # a batch keeps both


def test_routing_null_is_a_row_error(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: o, index: o, routing: customer}\n",
                     table("shop", "o", ("id", "int"), ("customer", "varchar")))
    with pytest.raises(RowError) as info:
        ActionBuilder(rules).actions(change(Op.INSERT, after={"id": 5, "customer": None}, table="o", row_index=3))
    message = str(info.value)
    assert "shop.o at binlog.000002:500 (row 3 of the event, key id=5)" in message
    assert "column 'customer': is NULL, but the routing is made from it" in message


# ---------------------------------------------------------------- documents
def test_document_shaping(tmp_path):
    rules = resolved(tmp_path, """
rules:
  - schema: shop
    table: p
    index: p
    exclude: [secret]
    rename: {name: title, id: product_id}
    fields: {source: mysql, v: 2}
    add_table_name: _table
    add_schema_name: _db
    convert:
      tags: {split: "|"}
      email: [lower]
      code: upper
      active: bool
      meta: json
      born: {datetime: "%d.%m.%Y"}
""", table("shop", "p", ("id", "int"), ("name", "varchar"), ("secret", "varchar"), ("tags", "varchar"),
           ("email", "varchar"), ("code", "char"), ("active", "tinyint"), ("meta", "text"), ("born", "date")))
    row = {"id": 1, "name": "Pen", "secret": "s", "tags": "a|b", "email": "A@B.C", "code": "ab", "active": 1,
           "meta": '{"k": [1]}', "born": datetime.date(2001, 2, 3)}
    (action,) = ActionBuilder(rules).actions(change(Op.INSERT, after=row, table="p"))
    assert action.doc == {"product_id": 1, "title": "Pen", "tags": ["a", "b"], "email": "a@b.c", "code": "AB",
                          "active": True, "meta": {"k": [1]}, "born": "03.02.2001", "source": "mysql", "v": 2,
                          "_table": "p", "_db": "shop"}
    assert action.doc_id == "1"  # the key is read before renames


def test_include_list(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p, include: [name]}\n",
                     table("shop", "p", ("id", "int"), ("name", "varchar"), ("blob", "blob")))
    (action,) = ActionBuilder(rules).actions(change(Op.INSERT, after={"id": 1, "name": "x", "blob": b"1"}, table="p"))
    assert (action.doc_id, action.doc) == ("1", {"name": "x"})


def test_conversion_error_names_table_row_and_column(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p, convert: {meta: json}}\n",
                     table("shop", "p", ("id", "int"), ("meta", "text")))
    with pytest.raises(RowError) as info:
        ActionBuilder(rules).actions(change(Op.INSERT, after={"id": 9, "meta": "{broken"}, table="p", row_index=2))
    message = str(info.value)
    assert "cannot convert row of shop.p at binlog.000002:500 (row 2 of the event, key id=9)" in message
    assert "column 'meta': invalid JSON text" in message


def test_a_column_added_later_that_clashes_is_a_row_error(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p, rename: {name: title}}\n",
                     table("shop", "p", ("id", "int"), ("name", "varchar")))
    with pytest.raises(RowError, match="already has a field 'title'"):
        ActionBuilder(rules).actions(change(Op.INSERT, after={"id": 1, "name": "a", "title": "b"}, table="p"))


# ---------------------------------------------------------------- write modes
def test_update_mode_writes_partial_unversioned_updates(tmp_path):
    rules = resolved(tmp_path, (
        "rules:\n"
        "  - {schema: shop, table: p, index: products, mode: update, also: true}\n"
        "  - {schema: shop, table: stock, index: products, id: product_id, mode: update}\n"
    ), table("shop", "p", ("id", "int"), ("name", "varchar")),
        table("shop", "stock", ("product_id", "int"), ("qty", "int"), pk=(), unique=[("product_id",)]))
    builder = ActionBuilder(rules)
    (a,) = builder.actions(change(Op.INSERT, after={"id": 1, "name": "pen"}, table="p"))
    (b,) = builder.actions(change(Op.UPDATE, {"product_id": 1, "qty": 1}, {"product_id": 1, "qty": 5},
                                  table="stock"))
    assert (a.type, a.index, a.doc_id, a.doc, a.versioned) == (ActionType.UPDATE, "products", "1",
                                                                {"id": 1, "name": "pen"}, False)
    assert (b.type, b.doc) == (ActionType.UPDATE, {"product_id": 1, "qty": 5})
    assert a.key != b.key  # partial updates from two tables never replace each other in a batch
    (d,) = builder.actions(change(Op.DELETE, before={"id": 1, "name": "pen"}, table="p"))
    assert (d.type, d.versioned) == (ActionType.DELETE, False)
    moved = builder.actions(change(Op.UPDATE, {"id": 1, "name": "pen"}, {"id": 2, "name": "pen"}, table="p"))
    assert [(x.type, x.doc_id) for x in moved] == [(ActionType.DELETE, "1"), (ActionType.UPDATE, "2")]


def test_update_mode_refuses_a_routing_change(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p, mode: update, routing: r}\n",
                     table("shop", "p", ("id", "int"), ("r", "varchar")))
    with pytest.raises(RowError, match="cannot move a document between routings"):
        ActionBuilder(rules).actions(change(Op.UPDATE, {"id": 1, "r": "a"}, {"id": 1, "r": "b"}, table="p"))


def test_soft_delete_in_index_mode(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p, on_delete: soft}\n",
                     table("shop", "p", ("id", "int"), ("name", "varchar")))
    builder = ActionBuilder(rules)
    (ins,) = builder.actions(change(Op.INSERT, after={"id": 1, "name": "a"}, table="p"))
    assert ins.doc == {"id": 1, "name": "a", "deleted": False}
    (gone,) = builder.actions(change(Op.DELETE, before={"id": 1, "name": "a"}, table="p"))
    assert (gone.type, gone.doc, gone.version, gone.versioned) == (
        ActionType.INDEX, {"id": 1, "name": "a", "deleted": True}, V, True)
    moved = builder.actions(change(Op.UPDATE, {"id": 1, "name": "a"}, {"id": 2, "name": "a"}, table="p"))
    assert [(a.doc_id, doc_of(a)["deleted"]) for a in moved] == [("1", True), ("2", False)]


def test_soft_delete_in_update_mode_and_its_field_name(tmp_path):
    rules = resolved(tmp_path, ("rules:\n  - {schema: shop, table: p, index: p, mode: update, on_delete: soft, "
                                "soft_delete_field: is_gone}\n"), table("shop", "p", ("id", "int")))
    (gone,) = ActionBuilder(rules).actions(change(Op.DELETE, before={"id": 1}, table="p"))
    assert (gone.type, gone.doc, gone.versioned) == (ActionType.UPDATE, {"is_gone": True}, False)


def test_ignore_deletes(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p, on_delete: ignore}\n",
                     table("shop", "p", ("id", "int")))
    builder = ActionBuilder(rules)
    assert builder.actions(change(Op.DELETE, before={"id": 1}, table="p")) == []
    moved = builder.actions(change(Op.UPDATE, {"id": 1}, {"id": 2}, table="p"))
    assert [(a.type, a.doc_id) for a in moved] == [(ActionType.INDEX, "2")]


def test_ingest_pipeline_on_index_actions(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p, pipeline: enrich}\n",
                     table("shop", "p", ("id", "int")))
    (action,) = ActionBuilder(rules).actions(change(Op.INSERT, after={"id": 1}, table="p"))
    assert action.pipeline == "enrich"
    (dele,) = ActionBuilder(rules).actions(change(Op.DELETE, before={"id": 1}, table="p"))
    assert dele.pipeline is None


# ---------------------------------------------------------------- ActionBuilder
def test_builder_applies_every_also_rule(tmp_path):
    rules = resolved(tmp_path, (
        "rules:\n"
        "  - {schema: shop, table: p, index: full, also: true}\n"
        "  - {schema: shop, table: p, index: names, include: [name], also: true}\n"
    ), table("shop", "p", ("id", "int"), ("name", "varchar"), ("price", "decimal")))
    actions = ActionBuilder(rules, version_epoch=1).actions(
        change(Op.INSERT, after={"id": 1, "name": "a", "price": Decimal("1.0")}, table="p"))
    assert [(a.index, a.doc) for a in actions] == [("full", {"id": 1, "name": "a", "price": "1.0"}),
                                                    ("names", {"name": "a"})]
    assert all(a.version == document_version(POS, 1) for a in actions)


def test_builder_ignores_unmapped_tables_and_stops_on_new_pattern_tables(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: {glob: 'o_*'}, index: o}\n",
                     table("shop", "o_1", ("id", "int")))
    builder = ActionBuilder(rules)
    assert builder.actions(change(Op.INSERT, after={"id": 1}, table="other")) == []
    assert len(builder.actions(change(Op.INSERT, after={"id": 1}, table="o_1"))) == 1
    with pytest.raises(RowError, match="shop.o_2 .* matches .*rules\\[0\\] but was not there when cdc checked its "
                                       "rules at start-up. Restart cdc"):
        builder.actions(change(Op.INSERT, after={"id": 1}, table="o_2"))


def test_builder_counts_rows_with_zero_dates(tmp_path, caplog):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: p}\n",
                     table("shop", "p", ("id", "int"), ("d", "date"), ("e", "date")))
    builder = ActionBuilder(rules)
    columns = (Column("id", K.INTEGER), Column("d", K.DATE), Column("e", K.DATE))
    for i in range(3):
        (action,) = builder.actions(change(Op.INSERT, after={"id": i, "d": "0000-00-00", "e": "2024-00-01"},
                                           columns=columns, table="p"))
        assert action.doc == {"id": i, "d": None, "e": None}
    builder.actions(change(Op.INSERT, after={"id": 9, "d": datetime.date(2024, 1, 1), "e": None}, columns=columns,
                           table="p"))
    assert builder.zero_date_rows == {"shop.p": 3}
    assert builder.stats.zero_dates == 6
    assert "zero date(s) in a row of shop.p" in caplog.text


def test_template_parsing():
    t = parse_template("a-{table.1}-{at:%Y.%m}-{{x}}")
    assert t.columns == ("at",)
    assert [f.name for f in t.fields] == ["table.1", "at"]
    assert t.literal == "a---{x}"


# ---------------------------------------------------------------- the rules/ examples
def test_every_example_in_rules_dir_loads():
    files = sorted((ROOT / "rules").glob("*.yml"))
    assert files, "rules/ holds the commented examples"
    for file in files:
        assert len(load_rules(file)) >= 1, file
    load_rules(ROOT / "rules")  # and together: no two examples claim one table


def test_schema_and_table_names_in_templates_of_exact_rules(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: p, index: '{schema}-{table}', id: '{table}:{id}'}\n",
                     table("shop", "p", ("id", "int")))
    (action,) = ActionBuilder(rules).actions(change(Op.INSERT, after={"id": 1}, table="p"))
    assert (action.index, action.doc_id) == ("shop-p", "p:1")


def test_point_columns_become_geo_points_when_asked(tmp_path):
    import struct

    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: places, index: places}\n",
                     table("shop", "places", ("id", "int"), ("at", "point"), ("area", "geometry")))
    assert matched(rules, "shop", "places").point_columns == frozenset({"at"})
    point = struct.pack("<I", 0) + b"\x01" + struct.pack("<Idd", 1, 1.5, -2.0)
    columns = (Column("id", K.INTEGER), Column("at", K.GEOMETRY), Column("area", K.GEOMETRY))
    (action,) = ActionBuilder(rules, value_options=ValueOptions(points="geo_point")).actions(
        change(Op.INSERT, after={"id": 1, "at": point, "area": point}, columns=columns, table="places"))
    assert action.doc == {"id": 1, "at": {"lat": -2.0, "lon": 1.5},
                          "area": {"type": "Point", "coordinates": [1.5, -2.0]}}


def test_binary_keys_are_hex_of_the_padded_value(tmp_path):
    rules = resolved(tmp_path, "rules:\n  - {schema: shop, table: b, index: b}\n",
                     table("shop", "b", ("k", "binary", "binary(4)"), pk=("k",)))
    columns = (Column("k", K.BINARY),)
    builder = ActionBuilder(rules)
    (stream,) = builder.actions(change(Op.INSERT, after={"k": b"ab"}, columns=columns, table="b"))
    (select,) = builder.actions(change(Op.INSERT, after={"k": b"ab\0\0"}, columns=columns, table="b"))
    assert stream.doc_id == select.doc_id == "61620000"


# ---------------------------------------------------------------- column maps, built once per table definition
def test_column_map_is_reused_for_the_same_columns_and_rebuilt_when_they_change():
    from cdc.rules import ColumnMaps

    rule = Rule("shop", "products", "products", ("id",), json_columns=frozenset({"attrs"}))
    maps = ColumnMaps()
    cols = (Column("id", K.INTEGER), Column("attrs", K.STRING))
    first = maps.get(cols, rule)
    assert first == {"id": Column("id", K.INTEGER), "attrs": Column("attrs", K.JSON)}
    assert maps.get(cols, rule) is first
    # Another event of the same table: a new tuple with equal columns.
    assert maps.get(tuple(cols), rule) is first and maps.get((Column("id", K.INTEGER), Column("attrs", K.STRING)),
                                                             rule) is first
    # ALTER TABLE: a column added, a column's type changed, a column renamed.
    for altered in ((Column("id", K.INTEGER), Column("attrs", K.STRING), Column("b", K.BINARY)),
                    (Column("id", K.INTEGER), Column("attrs", K.INTEGER)),
                    (Column("id", K.INTEGER), Column("attributes", K.STRING))):
        json = {"attrs": Column("attrs", K.JSON)} if Column("attrs", K.STRING) in altered else {}
        assert maps.get(altered, rule) == {**{c.name: c for c in altered}, **json}
    assert maps.get(cols, rule) == first
    # An equal rule that is another object (say, rules resolved again) gets its own map.
    other = Rule("shop", "products", "products", ("id",), json_columns=frozenset())
    assert maps.get(cols, other) == {"id": Column("id", K.INTEGER), "attrs": Column("attrs", K.STRING)}
    assert maps.get(cols, rule)["attrs"].kind is K.JSON


def test_column_map_cache_starts_over_past_its_limit(monkeypatch):
    from cdc.rules import ColumnMaps

    monkeypatch.setattr(ColumnMaps, "LIMIT", 2)
    maps = ColumnMaps()
    cols = (Column("id", K.INTEGER),)
    rules = [Rule("shop", f"t{i}", "i", ("id",)) for i in range(5)]
    for rule in rules:
        assert maps.get(cols, rule) == {"id": Column("id", K.INTEGER)}
    assert len(maps._maps) <= 2


def test_builder_follows_alter_table_between_rows():
    # The stream converts with the columns each event carries; a cached map must not outlive them.
    rule = Rule("shop", "products", "products", ("id",), json_columns=frozenset({"attrs"}), pad_binary=(("b", 4),))
    builder = ActionBuilder(RuleSet([rule]))
    before_alter = (Column("id", K.INTEGER), Column("attrs", K.STRING))
    after_alter = (Column("id", K.INTEGER), Column("attrs", K.STRING), Column("b", K.BINARY))
    (one,) = builder.actions(change(Op.INSERT, after={"id": 1, "attrs": '{"a": 1}'}, columns=before_alter))
    (two,) = builder.actions(change(Op.INSERT, after={"id": 2, "attrs": '{"a": 2}', "b": b"ab"}, columns=after_alter))
    (three,) = builder.actions(change(Op.INSERT, after={"id": 3, "attrs": "[3]"}, columns=before_alter))
    assert one.doc == {"id": 1, "attrs": {"a": 1}}
    assert two.doc == {"id": 2, "attrs": {"a": 2}, "b": "YWIAAA=="}
    assert three.doc == {"id": 3, "attrs": [3]}
    # The same as converting the row without the builder's cache.
    assert [two] == actions_for(change(Op.INSERT, after={"id": 2, "attrs": '{"a": 2}', "b": b"ab"},
                                       columns=after_alter), rule, V)
