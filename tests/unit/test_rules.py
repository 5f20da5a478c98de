from decimal import Decimal

import pytest

from cdc.errors import ConfigError
from cdc.model import Action, ActionType, BinlogPosition, Column, ColumnKind, Op, RowChange
from cdc.rules import Rule, RowError, RuleSet, actions_for, document_id, document_version, load_rules
from cdc.values import ValueOptions

P = BinlogPosition
K = ColumnKind


# ---------------------------------------------------------------- load_rules
def _write(path, text):
    path.write_text(text)
    return path


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
    assert orders.source == f"{tmp_path / 'a.yml'}: rules[0]"
    assert orders.name == "shop.orders"
    assert rules.match("shop", "items").id_columns == ("order_id", "line")
    assert rules.match("crm", "people").id_columns == ("person_id",)
    assert rules.match("crm", "people").index == "people-v1"
    assert rules.match("shop", "nope") is None
    assert rules.schemas == frozenset({"shop", "crm"})


def test_load_rules_single_file(tmp_path):
    path = _write(tmp_path / "one.yml", "rules:\n  - {schema: s, table: t, index: i}\n")
    rules = load_rules(path)
    assert len(rules) == 1
    assert rules.match("s", "t").index == "i"


def test_load_rules_unknown_key_names_file_and_key(tmp_path):
    _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: i}\n")
    bad = _write(tmp_path / "b.yml", "rules:\n  - {schema: s, table: u, index: i, idx: [id]}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    message = str(info.value)
    assert str(bad) in message
    assert "rules.0.idx: unknown key" in message


def test_load_rules_unknown_top_level_key(tmp_path):
    bad = _write(tmp_path / "a.yml", "rules: []\nrule: []\n")
    with pytest.raises(ConfigError, match="rule: unknown key") as info:
        load_rules(tmp_path)
    assert str(bad) in str(info.value)


def test_load_rules_duplicate_table_names_both_files(tmp_path):
    first = _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: one}\n")
    second = _write(tmp_path / "b.yml", "rules:\n  - {schema: s, table: t, index: two}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    message = str(info.value)
    assert str(first) in message
    assert str(second) in message
    assert "s.t is already mapped" in message


def test_load_rules_uppercase_index_rejected(tmp_path):
    path = _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: Orders}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    assert str(path) in str(info.value)
    assert "rules.0.index" in str(info.value)
    assert "must be lowercase" in str(info.value)


@pytest.mark.parametrize("index", ["_hidden", "-x", "+x", "a b", "a/b", "a:b", "a*"])
def test_load_rules_invalid_index_names(tmp_path, index):
    _write(tmp_path / "a.yml", f"rules:\n  - {{schema: s, table: t, index: '{index}'}}\n")
    with pytest.raises(ConfigError, match="not a valid index name"):
        load_rules(tmp_path)


def test_load_rules_empty_id_list_rejected(tmp_path):
    _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: i, id: []}\n")
    with pytest.raises(ConfigError, match="id list must not be empty") as info:
        load_rules(tmp_path)
    assert "rules.0.id" in str(info.value)


def test_load_rules_missing_required_fields(tmp_path):
    _write(tmp_path / "a.yml", "rules:\n  - {schema: s}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    assert "rules.0.table: Field required" in str(info.value)
    assert "rules.0.index: Field required" in str(info.value)


def test_load_rules_reports_errors_of_all_files(tmp_path):
    a = _write(tmp_path / "a.yml", "rules:\n  - {schema: s, table: t, index: I}\n")
    b = _write(tmp_path / "b.yml", "rules: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    message = str(info.value)
    assert f"{a}: rules.0.index" in message
    assert f"{b}: invalid YAML" in message


def test_load_rules_missing_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="rules path does not exist") as info:
        load_rules(missing)
    assert str(missing) in str(info.value)


def test_load_rules_empty_dir(tmp_path):
    with pytest.raises(ConfigError, match="no rule files"):
        load_rules(tmp_path)


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


def test_document_id_bytes_as_hex():
    assert document_id({"k": b"\x01\xff"}, ["k"]) == "01ff"


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


# ---------------------------------------------------------------- actions_for
COLUMNS = (
    Column("id", K.INTEGER),
    Column("name", K.STRING),
    Column("price", K.DECIMAL),
)
RULE = Rule("shop", "products", "products", ("id",))
POS = P("binlog.000002", 500)


def change(op, before=None, after=None, columns=COLUMNS, table="products", position=POS):
    return RowChange(op, "shop", table, columns, before, after, position, 1700000000)


def test_insert_gives_one_index_with_converted_doc():
    actions = actions_for(change(Op.INSERT, after={"id": 1, "name": "pen", "price": Decimal("1.50")}), RULE, 99)
    assert actions == [Action(
        ActionType.INDEX, "products", "1", 99, doc={"id": 1, "name": "pen", "price": "1.50"},
        schema="shop", table="products", position=POS,
    )]


def test_update_without_key_change_gives_one_index():
    before = {"id": 1, "name": "pen", "price": Decimal("1.50")}
    after = {"id": 1, "name": "pen", "price": Decimal("2.00")}
    actions = actions_for(change(Op.UPDATE, before, after), RULE, 7)
    assert len(actions) == 1
    assert actions[0].type is ActionType.INDEX
    assert actions[0].doc_id == "1"
    assert actions[0].doc == {"id": 1, "name": "pen", "price": "2.00"}
    assert actions[0].version == 7


def test_update_with_key_change_deletes_old_then_indexes_new():
    before = {"id": 1, "name": "pen", "price": Decimal("1")}
    after = {"id": 2, "name": "pen", "price": Decimal("1")}
    actions = actions_for(change(Op.UPDATE, before, after), RULE, 7)
    assert [(a.type, a.doc_id) for a in actions] == [(ActionType.DELETE, "1"), (ActionType.INDEX, "2")]
    assert actions[0].doc is None
    assert actions[1].doc == {"id": 2, "name": "pen", "price": "1"}
    assert all(a.version == 7 and a.index == "products" for a in actions)


def test_delete_gives_delete():
    actions = actions_for(change(Op.DELETE, before={"id": 3, "name": "x", "price": None}), RULE, 8)
    assert actions == [Action(ActionType.DELETE, "products", "3", 8, schema="shop", table="products",
                              position=POS)]


def test_composite_key_rule():
    rule = Rule("shop", "lines", "lines", ("order", "line"))
    cols = (Column("order", K.STRING), Column("line", K.INTEGER))
    actions = actions_for(change(Op.INSERT, after={"order": "A:1", "line": 2}, columns=cols, table="lines"),
                          rule, 1)
    assert actions[0].doc_id == "A\\:1:2"


def test_row_missing_key_column_raises_row_error_with_table():
    with pytest.raises(RowError) as info:
        actions_for(change(Op.INSERT, after={"name": "pen"}), RULE, 1)
    message = str(info.value)
    assert "shop.products" in message
    assert "'id'" in message
    assert str(POS) in message


def test_null_key_raises_row_error():
    with pytest.raises(RowError, match=r"shop\.products.*'id' is NULL"):
        actions_for(change(Op.DELETE, before={"id": None}), RULE, 1)


def test_update_before_image_missing_key_raises():
    with pytest.raises(RowError, match="shop.products"):
        actions_for(change(Op.UPDATE, before={"name": "x"}, after={"id": 1, "name": "y"}), RULE, 1)


def test_json_columns_parse_mariadb_json_text():
    cols = (Column("id", K.INTEGER), Column("attrs", K.STRING), Column("note", K.STRING))
    rule = Rule("shop", "products", "products", ("id",), json_columns=frozenset({"attrs"}))
    after = {"id": 1, "attrs": '{"color": "red", "sizes": [1, 2]}', "note": '{"not": "parsed"}'}
    (action,) = actions_for(change(Op.INSERT, after=after, columns=cols), rule, 1)
    assert action.doc == {"id": 1, "attrs": {"color": "red", "sizes": [1, 2]}, "note": '{"not": "parsed"}'}


def test_json_column_without_rule_stays_text():
    cols = (Column("id", K.INTEGER), Column("attrs", K.STRING))
    (action,) = actions_for(change(Op.INSERT, after={"id": 1, "attrs": '{"a": 1}'}, columns=cols), RULE, 1)
    assert action.doc["attrs"] == '{"a": 1}'


def test_value_options_are_used():
    (action,) = actions_for(change(Op.INSERT, after={"id": 1, "name": "x", "price": Decimal("1.5")}), RULE, 1,
                            ValueOptions(decimal_as="number"))
    assert action.doc["price"] == 1.5


def test_unresolved_rule_is_refused():
    with pytest.raises(AssertionError):
        actions_for(change(Op.INSERT, after={"id": 1}), Rule("shop", "products", "products", None), 1)
