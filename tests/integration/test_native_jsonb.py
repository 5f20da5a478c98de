"""MySQL's binary JSON on the native row path over a real MySQL 9.7 binlog (issue 28, part 2).

The same binlog range is read twice through `BinlogSource` (test_native_rowpath.py `_read`):
with the library decoding every row and `ActionBuilder` converting it (the reference), and
with the rows handed undecoded to `RowPath` (native/src/jsonb.rs reads the JSON). Both must
give the same actions with byte-identical documents, and every event must have run natively.
The documents are also compared with what MySQL itself prints for the column (`SELECT j`,
converted as a snapshot converts it): the same for JSON written as text; for values MySQL keeps
as its own types inside the JSON, what docs/values.md "Values" ("Inside MySQL's binary JSON") says.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pytest
import yaml
from harness import CdcSetup, binlog_position, es_docs, mysql_only, wait_for
from test_native_rowpath import _fields, _read, resolved

from cdc.model import BinlogPosition, Column, ColumnKind
from cdc.mysql import replication_hooks as hooks
from cdc.rules import rowpath
from cdc.rules.values import convert_value

pytestmark = [pytest.mark.integration, mysql_only,
              pytest.mark.skipif(not rowpath.NATIVE_AVAILABLE, reason="cdc._native is not built")]

JSON = Column("j", ColumnKind.JSON)
TABLE = "CREATE TABLE jdocs (id INT PRIMARY KEY, j JSON, note VARCHAR(20))"

# JSON written as text: MySQL parses it into its binary format (and keeps no SQL types in it).
TEXTS = {
    1: {"a": 1, "bb": [True, False, None], "c": {"d": "é😀\n\"\\\u0001\u2028"}, "": 0, "ключ": {"😀": []}},
    2: [0, -1, 32767, 32768, -32769, 2147483647, 2147483648, -2147483649, 9223372036854775807,
        18446744073709551615, -9223372036854775808, 12345678901234567890123],
    3: [0.1, -0.0, 1e300, 5e-324, 1.7976931348623157e308, 2.5, 1e16, 1e-7, 123456789012.25, 0.30000000000000004],
    4: "just a string",
    5: 42,
    6: True,
    7: None,  # the JSON null literal, not SQL NULL
    8: [],
    9: {},
    10: {f"key{i:03d}": [i, str(i) * (i % 7)] for i in range(300)},
    11: ["x" * 70_000, {"y": "z" * 70_000}],  # past 64 KB: large objects and arrays
    12: json.loads("[" * 99 + "{\"deep\": 1}" + "]" * 99),  # 100 levels, MySQL's most
}
# Values MySQL keeps as its own types inside the JSON, and what the binlog gives for them.
TYPED: dict[int, tuple[str, Any]] = {
    20: ("JSON_OBJECT('dec', CAST(1.50 AS DECIMAL(5,2)), 'big', CAST('12345678901234567890.5' AS DECIMAL(30,1)), "
         "'neg', CAST(-0.25 AS DECIMAL(4,2)), 'lit', 12345678901234567890123, 'd', DATE'2024-02-29', "
         "'dt', TIMESTAMP'2024-01-02 03:04:05.123456', 'tm', CAST('-01:30:00.25' AS TIME(2)), "
         "'t0', CAST('00:00:00' AS TIME), 'bin', x'41ff42', 'bit', b'101', 'y', CAST(2024 AS YEAR), "
         "'t30', CAST('30:00:00' AS TIME))",
         {"dec": 1.5, "big": "12345678901234567890.5", "neg": -0.25, "lit": "12345678901234567890123",
          "d": "2024-02-29", "dt": "2024-01-02 03:04:05.123456", "tm": "-01:30:00.250000", "t0": "00:00:00.000000",
          "bin": "AB", "bit": "\u0005", "y": 2024, "t30": "30:00:00.000000"}),
    21: ("CAST(CAST('2024-01-02 03:04:05' AS DATETIME) AS JSON)", "2024-01-02 03:04:05.000000"),
    22: ("CAST(CAST(2.50 AS DECIMAL(4,2)) AS JSON)", 2.5),
    23: ("CAST(x'5b312c2022225d' AS JSON)", [1, ""]),  # a binary string: the Python path parses its text
    24: ("CAST(CAST('-838:59:59' AS TIME) AS JSON)", "-838:59:59.000000"),
}
# Members whose text MySQL's SELECT gives too (dates and times, as cdc/mysql/source.py _json_opaque reads them).
_AS_SELECTED = {20: ("d", "dt", "tm", "t0", "t30"), 21: None, 24: None}


def _rules(tmp_path, servers, database: str, rules: list[dict]):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"rules": [dict(r, schema=database) for r in rules]}))
    return resolved(servers, path)


def _both_paths(servers, database, rules, start, end, monkeypatch):
    """The range through the Python path and the native one, compared: the native actions."""
    py_rows, python, _ = _read(servers, database, rules, start, end, native=False, tables=("jdocs",))
    by_library = []  # rows events the library framed on the native run (hooks.Framer frames the others)
    library_wrapper = hooks._library_packet_wrapper

    def count_library(*args):
        wrapper = library_wrapper(*args)
        if hasattr(wrapper.event, "rows"):
            by_library.append(wrapper.event.table)
        return wrapper

    with monkeypatch.context() as patch:
        patch.setattr(hooks, "_library_packet_wrapper", count_library)
        nat_rows, native, path = _read(servers, database, rules, start, end, native=True, tables=("jdocs",))
    assert by_library == []  # MySQL's bitmaps (unused bits set) are framed by cdc too
    assert py_rows == nat_rows > 0
    assert len(python) == len(native)
    for i, (a, b) in enumerate(zip(python, native)):
        assert _fields(a) == _fields(b), f"action {i}"
    assert path.tables == {f"{database}.jdocs": "native"}
    assert all(isinstance(a, rowpath.NativeAction) for a in native), "an event was declined"
    return native


def _selected(db) -> dict[int, bytes]:
    """`SELECT j` of every row as MySQL prints it, converted as a snapshot converts it (PyMySQL's text)."""
    return {key: orjson.dumps(convert_value(text, JSON)) for key, text in db.execute("SELECT id, j FROM jdocs")}


def _last_docs(actions, index: str) -> dict[int, bytes]:
    """The JSON column of each row's last document in `index`, as written (re-encoded by orjson)."""
    docs = {}
    for action in actions:
        if action.index == index and action.doc_json is not None:
            doc = orjson.loads(action.doc_json)
            docs[doc["id"]] = orjson.dumps(doc["j"])
    return docs


def test_a_json_column_streams_natively_as_the_python_path_and_mysql_give_it(source_servers, db, database, tmp_path,
                                                                                caplog, monkeypatch):
    servers = source_servers
    db.execute(TABLE)
    rules = _rules(tmp_path, servers, database, [
        {"table": "jdocs", "index": f"{database}-all", "also": True},
        {"table": "jdocs", "index": f"{database}-notes", "also": True, "exclude": ["j"]}])
    start = BinlogPosition(*binlog_position(db))
    with db.conn.cursor() as cur:
        cur.executemany("INSERT INTO jdocs (id, j, note) VALUES (%s, CAST(%s AS JSON), 'n')",
                        [(key, json.dumps(value)) for key, value in TEXTS.items()])
        for key, (sql, _) in TYPED.items():
            cur.execute(f"INSERT INTO jdocs (id, j) VALUES ({key}, {sql})")
    db.execute(
        "INSERT INTO jdocs (id, j) VALUES (30, NULL)",
        # Partial updates MySQL makes in place, leaving unused bytes inside the stored value
        # (the binlog still carries the whole value: binlog_row_value_options is '').
        "UPDATE jdocs SET j = JSON_SET(j, '$.a', 2, '$.c.d', 'x') WHERE id = 1",
        "UPDATE jdocs SET j = JSON_REPLACE(j, '$[0]', 'short') WHERE id = 11",
        "UPDATE jdocs SET j = JSON_REMOVE(j, '$[1]', '$[3]') WHERE id = 2",
        "UPDATE jdocs SET j = JSON_ARRAY_APPEND(j, '$', JSON_OBJECT('k', 1.25)) WHERE id = 3",
        "UPDATE jdocs SET j = JSON_SET(j, '$.dec', CAST(3.75 AS DECIMAL(5,2))) WHERE id = 20",
        "UPDATE jdocs SET note = 'only the note' WHERE id IN (4, 10)",
        "UPDATE jdocs SET j = NULL WHERE id = 9",
        "DELETE FROM jdocs WHERE id IN (5, 8)",
    )
    end = BinlogPosition(*binlog_position(db))
    caplog.set_level(logging.INFO, logger="cdc.rowpath")
    native = _both_paths(servers, database, rules, start, end, monkeypatch)
    assert [r.getMessage() for r in caplog.records if "jdocs" in r.getMessage()] == [
        f"row path for {database}.jdocs: native"]

    docs, selected = _last_docs(native, f"{database}-all"), _selected(db)
    assert set(selected) - set(docs) == set() and len(selected) == len(TEXTS) + len(TYPED) - 1
    for key in selected:
        if key in TYPED:
            # MySQL's own types inside the JSON: as the library decodes them (DECIMAL, binary strings, BIT
            # differ from what SELECT prints), but dates and times as MySQL itself writes them.
            assert orjson.loads(docs[key]) == (TYPED[key][1] if key != 20 else dict(TYPED[20][1], dec=3.75)), key
            if key in _AS_SELECTED:
                doc, select = orjson.loads(docs[key]), orjson.loads(selected[key])
                members = _AS_SELECTED[key]
                assert (doc == select if members is None else
                        {m: doc[m] for m in members} == {m: select[m] for m in members}), (key, doc, select)
        else:
            assert docs[key] == selected[key], key
    assert orjson.loads(docs[1]) == dict(TEXTS[1], a=2, c={"d": "x"})
    assert docs[30] == b"null" and orjson.loads(docs[9]) is None


def test_random_json_documents_give_the_same_actions_on_both_paths(source_servers, db, database, tmp_path,
                                                                   monkeypatch):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    servers = source_servers
    db.execute(TABLE)
    rules = _rules(tmp_path, servers, database, [{"table": "jdocs", "index": f"{database}-r"}])
    text = st.text(st.characters(codec="utf-8"), max_size=12)
    documents = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.integers(-(2**80), 2**80)
        | st.floats(allow_nan=False, allow_infinity=False) | text,
        lambda c: st.lists(c, max_size=6) | st.dictionaries(text, c, max_size=6), max_leaves=30)
    compared = []

    @given(st.lists(documents, min_size=10, max_size=30))
    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(values):
        db.execute("DELETE FROM jdocs")
        start = BinlogPosition(*binlog_position(db))
        with db.conn.cursor() as cur:
            cur.executemany("INSERT INTO jdocs (id, j) VALUES (%s, CAST(%s AS JSON))",
                            [(n, json.dumps(v)) for n, v in enumerate(values)])
            # each row's document replaced by another's, one in three set in place, then deletes
            for n in range(0, len(values), 2):
                other = json.dumps(values[(n + 1) % len(values)])
                if n % 3:
                    cur.execute("UPDATE jdocs SET j = CAST(%s AS JSON) WHERE id = %s", (other, n))
                else:
                    cur.execute("UPDATE jdocs SET j = JSON_SET(j, '$.k', CAST(%s AS JSON)) WHERE id = %s", (other, n))
            cur.execute("DELETE FROM jdocs WHERE id % 5 = 0")
        end = BinlogPosition(*binlog_position(db))
        native = _both_paths(servers, database, rules, start, end, monkeypatch)
        docs, selected = _last_docs(native, f"{database}-r"), _selected(db)
        assert {k: docs[k] for k in selected} == selected
        compared.append(len(native))

    check()
    assert len(compared) == 8 and min(compared) >= 10


def test_cdc_run_streams_a_json_table_natively_into_elasticsearch(source_servers, db, database, es, index_prefix,
                                                                  tmp_path):
    """`cdc run` itself: the stream's documents in Elasticsearch are `SELECT j` as a snapshot converts it."""
    db.execute(TABLE)
    index = f"{index_prefix}-j"
    # j holds objects, arrays and scalars from row to row: kept in _source, not mapped.
    es.indices.create(index=index, mappings={"properties": {"j": {"type": "object", "enabled": False}}})
    setup = CdcSetup(tmp_path, source_servers, [{"schema": database, "table": "jdocs", "index": index}])
    cdc = setup.run()
    try:
        with db.conn.cursor() as cur:
            cur.executemany("INSERT INTO jdocs (id, j, note) VALUES (%s, CAST(%s AS JSON), 'n')",
                            [(key, json.dumps(value)) for key, value in TEXTS.items()])
        db.execute("UPDATE jdocs SET j = JSON_SET(j, '$.a', 2) WHERE id = 1", "DELETE FROM jdocs WHERE id = 5")
        expected = {str(key): {"id": key, "j": orjson.loads(j), "note": "n"} for key, j in _selected(db).items()}
        wait_for("the streamed documents", lambda: es_docs(es, index) == expected)
    finally:
        assert cdc.stop() == 0
    assert f"row path for {database}.jdocs: native" in cdc.text()
