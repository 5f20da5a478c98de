"""Mappings that follow the table (cdc/es/fields.py) against real MariaDB / MySQL 9.7 and Elasticsearch 8:
columns added by ALTER TABLE while cdc streams get the fields `cdc indices plan` gives their types; JSON
columns with `json_mapping: flattened` take values dynamic mapping refuses, on every engine."""

from __future__ import annotations

import json

import pytest
import test_destinations
from harness import CdcSetup, both_sources, es_docs, wait_for
from test_destinations import setup_for

search = test_destinations.search  # the fixture: a reader of the engine under test, its indices deleted after

ADDED = ("n", "d", "at", "j", "day")


def _mapping(es, index: str) -> dict:
    return next(iter(es.indices.get_mapping(index=index).body.values()))["mappings"].get("properties", {})


# MariaDB and MySQL on Elasticsearch 8; MariaDB on the other engines (the binlog side is the same there).
@pytest.mark.parametrize("source,destination", [("mariadb", "es8"), ("mysql", "es8"), ("mariadb", "es7"),
                                                ("mariadb", "opensearch"), ("mariadb", "opensearch3")],
                         indirect=True)
def test_columns_added_mid_stream_get_the_planned_fields(source_servers, destination, db, database, search,
                                                         unique_name, tmp_path):
    # `planned` has create_index (its plan lists every column's field); `plain` has none (the default rule).
    db.execute("CREATE TABLE planned (id INT PRIMARY KEY, v INT)", "CREATE TABLE plain (id INT PRIMARY KEY, v INT)")
    rules = [{"schema": database, "table": "planned", "index": f"{unique_name}-planned", "create_index": True},
             {"schema": database, "table": "plain", "index": f"{unique_name}-plain"}]
    setup = setup_for(tmp_path, source_servers, destination, rules, snapshot__mode="never")
    cdc = setup.run()
    try:
        for table in ("planned", "plain"):
            db.execute(f"INSERT INTO {table} VALUES (1, 1)")
            wait_for(f"{table} 1", lambda t=table: "1" in search.docs(f"{unique_name}-{t}"))
            db.execute(f"ALTER TABLE {table} ADD COLUMN n INT, ADD COLUMN d DECIMAL(10,2), ADD COLUMN at DATETIME(6), "
                       "ADD COLUMN j JSON, ADD COLUMN day VARCHAR(20)")
            # The first document with the new columns carries values dynamic mapping maps otherwise than their
            # types: a DECIMAL string (text), a VARCHAR that looks like a date (date), a number in a JSON object.
            # Were the fields mapped after it, or not at all, its values would have fixed them so.
            db.execute(f"INSERT INTO {table} VALUES (2, 2, 7, 12.30, '2024-01-02 03:04:05.123456', '{{\"a\": 1}}', "
                       "'2024-01-02')")
            wait_for(f"{table} 2", lambda t=table: "2" in search.docs(f"{unique_name}-{t}"))
        # MariaDB's binlog does not mark JSON (it is LONGTEXT with a CHECK): a JSON column added while cdc streams
        # is text until cdc restarts and reads information_schema (docs/rules.md "Creating indices").
        j = {"a": 1} if db.mysql else '{"a": 1}'
        assert search.docs(f"{unique_name}-plain")["2"] == {"id": 2, "v": 2, "n": 7, "d": "12.30",
                                                           "at": "2024-01-02T03:04:05.123456", "j": j,
                                                           "day": "2024-01-02"}
    finally:
        assert cdc.stop() == 0
    code, out = setup.command("indices", "plan")
    assert code == 0, out
    plans = {p["name"]: p for p in json.loads(out[out.index("{"):])["indices"]}
    plan = plans[f"{unique_name}-planned"]
    # The index it created at start-up has every field as planned now (on MariaDB but j: see above).
    if db.mysql:
        assert plan["state"] == "exists", plan
    else:
        assert plan["state"] == "differs" and plan["differences"] == ["j: text in Elasticsearch, object planned"], plan
    want = plan["body"]["mappings"]["properties"]
    assert {name: want[name].get("type") for name in ADDED} == {"n": "long", "d": "keyword", "at": "date",
                                                                 "j": "object", "day": "text"}, want
    for index in ("planned", "plain"):
        have = search.mapping(f"{unique_name}-{index}")
        for name in ("n", "d", "at", "day"):
            assert have[name] == want[name], (index, name, have)
        if db.mysql:
            assert have["j"].get("type", "object") == "object" and "a" in have["j"]["properties"], have
        else:
            assert have["j"]["type"] == "text", have
    j = "object" if db.mysql else "text"
    assert f"mapped n as long, d as keyword, at as date, j as {j}, day as text" in cdc.text(), cdc.text()[-3000:]


@both_sources
def test_a_changed_column_type_is_reported_with_the_rebuild_that_puts_it_right(source_servers, db, database, es,
                                                                              index_prefix, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    index = f"{index_prefix}-t"
    setup = CdcSetup(tmp_path, source_servers, [{"schema": database, "table": "t", "index": index}],
                     snapshot__mode="never")
    cdc = setup.run()
    try:
        db.execute("INSERT INTO t VALUES (1, 1)")
        wait_for("doc 1", lambda: "1" in es_docs(es, index))
        db.execute("ALTER TABLE t MODIFY COLUMN v VARCHAR(20)", "INSERT INTO t VALUES (2, '42')")
        # "42" still fits the `long` field: the stream goes on, and the log says what to do before a value that
        # does not fit comes.
        wait_for("doc 2", lambda: "2" in es_docs(es, index))
        wait_for("the report", lambda: f"cdc rebuild --index {index}" in cdc.text())
        errors = [r for r in cdc.logs() if r.get("level") == "error"]
        assert any("field v is mapped as long, and the table now gives text values" in r["msg"] for r in errors), \
            errors
        assert _mapping(es, index)["v"] == {"type": "long"}
        # The command it names, run beside the daemon, puts the table's type in place; a value the old field
        # refused is then indexed, and the daemon never stopped.
        code, text = setup.command("rebuild", "--index", index)
        assert code == 0, text[-3000:]
        assert _mapping(es, index)["v"]["type"] == "text"
        db.execute("INSERT INTO t VALUES (3, 'three')")
        wait_for("doc 3", lambda: es_docs(es, index).get("3") == {"id": 3, "v": "three"})
        assert cdc.popen.poll() is None
    finally:
        assert cdc.stop() == 0


# Values `object` mapping refuses: a number array that turns float, then text (`mapper [j.k] cannot be changed
# from type [long] to [float]`), a key that is an array in one row and an object in the next; and a bare array,
# which `flattened` refuses too (its value must be an object) and `disabled` takes.
JSON_ROWS = {
    "1": ('{"k": [1, 2]}', {"k": [1, 2]}),
    "2": ('{"k": [1, 2.5, "x"]}', {"k": [1, 2.5, "x"]}),
    "3": ('{"k": {"a": true}}', {"k": {"a": True}}),
    "4": ('[1, "two", {"three": 3}]', [1, "two", {"three": 3}]),
    "5": ('{"k": [1, 2]}', {"k": [1, 2]}),
}


@pytest.mark.parametrize("mode", ["flattened", "disabled"])
def test_json_mapping_takes_heterogeneous_values_on_every_engine(mode, destination, servers, db, database, search,
                                                                 unique_name, tmp_path):
    db.execute("CREATE TABLE t (id INT PRIMARY KEY, j JSON)")
    index = f"{unique_name}-t"
    setup = setup_for(tmp_path, servers, destination, [{"schema": database, "table": "t", "index": index,
                                                        "json_mapping": mode}], snapshot__mode="never")
    rows = {n: v for n, v in JSON_ROWS.items() if mode == "disabled" or n != "4"}
    cdc = setup.run()
    try:
        db.execute(*(f"INSERT INTO t VALUES ({n}, '{text}')" for n, (text, _) in rows.items()))
        search.wait_docs(index, {n: {"id": int(n), "j": doc} for n, (_, doc) in rows.items()})
        assert cdc.popen.poll() is None
    finally:
        assert cdc.stop() == 0
    mapping = search.mapping(index)
    disabled = {"type": "object", "enabled": False}
    if mode == "disabled":
        assert mapping["j"] == disabled
    elif destination.engine == "opensearch":  # 2.19 and 3: flat_object (since 2.7)
        assert mapping["j"] == {"type": "flat_object"}, mapping
    else:  # flattened where the build has it, else what takes anything
        assert mapping["j"] in ({"type": "flattened"}, disabled), mapping
    assert f"mapped id as long, j as {mapping['j'].get('type')}" in cdc.text(), cdc.text()[-2000:]
    code, out = setup.command("indices", "plan")
    assert code == 0 and '"differs"' not in out, out
