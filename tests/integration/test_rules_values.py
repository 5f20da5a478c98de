"""Rules and values against real MariaDB and Elasticsearch (issue 4).

Every document is compared with the exact JSON it must be, written out here by
hand from docs/values.md "Values" and "Rules reference".
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from elasticsearch import ApiError
from harness import CdcSetup, both_sources, es_docs

ROOT = Path(__file__).resolve().parents[2]


def wait_docs(es, index: str, expected: dict, timeout: float = 60, ignore: tuple[str, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    expected = {k: {f: v for f, v in doc.items() if f not in ignore} for k, doc in expected.items()}
    while True:
        try:
            have = es_docs(es, index)
        except Exception:  # the index may not exist yet
            have = {}
        have = {k: {f: v for f, v in doc.items() if f not in ignore} for k, doc in have.items()}
        if have == expected:
            return
        if time.monotonic() > deadline:
            missing = sorted(set(expected) - set(have))
            extra = sorted(set(have) - set(expected))
            differ = {k: {f: (expected[k].get(f), have[k].get(f)) for f in set(expected[k]) | set(have[k])
                          if expected[k].get(f) != have[k].get(f)} for k in expected if k in have and expected[k] != have[k]}
            raise AssertionError(f"{index}: missing {missing}, extra {extra}, differ (expected, found) {differ}")
        time.sleep(0.3)


def hits(es, pattern: str) -> dict[tuple[str, str], tuple[str | None, dict]]:
    """(index, id) -> (routing, source) for every document of the indices matching `pattern`."""
    es.indices.refresh(index=pattern, allow_no_indices=True)
    resp = es.search(index=pattern, size=1000, query={"match_all": {}}, allow_no_indices=True)
    return {(h["_index"], h["_id"]): (h.get("_routing"), h["_source"]) for h in resp["hits"]["hits"]}


def wait_hits(es, pattern: str, expected: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            have = hits(es, pattern)
        except ApiError as exc:
            if exc.meta.status != 503:  # 503: a just-created index whose shards are not active yet
                raise
            have = {}
        if have == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern}:\n have {sorted(have.items())}\n want {sorted(expected.items())}")
        time.sleep(0.3)


# ------------------------------------------------------------------------------ every type
ALL_TYPES = """
CREATE TABLE all_types (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, mu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, b1 TINYINT(1),
  d DECIMAL(65,30), d2 DECIMAL(10,2), fl FLOAT, db DOUBLE,
  dt DATE, dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6), ts TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL,
  tm TIME, tm6 TIME(6), yr YEAR,
  c CHAR(10), vc VARCHAR(100), tx TEXT, l1 VARCHAR(20) CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  e ENUM('small','medium','large'), st SET('a','b','c'),
  bit1 BIT(1), bit10 BIT(10), bit64 BIT(64),
  js JSON, g GEOMETRY, pt POINT
)
"""
MAX_ROW = """INSERT INTO all_types VALUES (1,
  127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615, 1,
  '99999999999999999999999999999999999.999999999999999999999999999999', 12345678.90, 3.4028234663852886e38,
  1.7976931348623157e308,
  '9999-12-31', '9999-12-31 23:59:59', '2024-01-02 03:04:05.123', '2024-01-02 03:04:05.123456',
  '2038-01-19 03:14:07', '2024-01-02 03:04:05.000001',
  '838:59:59', '838:59:59.999999', 2155,
  'abc  ', 'héllo 😀', 'a text', 'café',
  'ab', 'x\\0y', 0x00FF,
  'medium', 'a,c', b'1', b'1000000011', b'1111111111111111111111111111111111111111111111111111111111111111',
  '{"a": [1, 2, 3], "b": {"c": null, "s": "x"}, "f": 2.5, "big": 12345678901234567890123}',
  ST_GeomFromText('POLYGON((0 0,4 0,4 4,0 0))'), ST_GeomFromText('POINT(1.5 -2)'))"""
MIN_ROW = """INSERT INTO all_types VALUES (2,
  -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0,
  '-99999999999999999999999999999999999.999999999999999999999999999999', -0.01, -0.1, -1.7976931348623157e308,
  '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000', '1000-01-01 00:00:00.000000',
  '1970-01-01 00:00:01', '1970-01-01 00:00:01.000000',
  '-838:59:59', '-01:30:00.25', 1901,
  '', '', '', '',
  '', '', '',
  'small', '', b'0', b'0', b'0',
  '[]', ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(0 0)'))"""
NULL_ROW = "INSERT INTO all_types (id) VALUES (3)"
# sql_mode='' (set for the session) lets these in: zero dates, an invalid ENUM
# (stored as index 0, ''), YEAR 0 and an emoji that latin1 cannot hold ('?').
ZERO_ROW = """INSERT INTO all_types (id, dt, dtm, dtm6, ts, ts6, yr, e, fl, db, tm, l1, st) VALUES (4,
  '0000-00-00', '2024-02-00 10:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00',
  0, 'bogus', 1.2345678, 1.2345678, '00:00:00', 'x😀', '')"""

MAX_DOC: dict[str, Any] = {
    "id": 1, "ti": 127, "tu": 255, "si": 32767, "su": 65535, "mi": 8388607, "mu": 16777215, "i": 2147483647,
    "iu": 4294967295, "bi": 9223372036854775807, "bu": 18446744073709551615, "b1": 1,
    "d": "99999999999999999999999999999999999.999999999999999999999999999999", "d2": "12345678.90",
    "fl": 3.4028235e38, "db": 1.7976931348623157e308,
    "dt": "9999-12-31", "dtm": "9999-12-31T23:59:59", "dtm3": "2024-01-02T03:04:05.123000",
    "dtm6": "2024-01-02T03:04:05.123456", "ts": "2038-01-19T03:14:07Z", "ts6": "2024-01-02T03:04:05.000001Z",
    "tm": "838:59:59", "tm6": "838:59:59.999999", "yr": 2155,
    "c": "abc", "vc": "héllo 😀", "tx": "a text", "l1": "café",
    "bn": "YWIAAA==", "vb": "eAB5", "bl": "AP8=",
    "e": "medium", "st": ["a", "c"], "bit1": True, "bit10": 515, "bit64": 18446744073709551615,
    "js": {"a": [1, 2, 3], "b": {"c": None, "s": "x"}, "f": 2.5, "big": "12345678901234567890123"},
    "g": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 0.0]]]},
    "pt": {"lat": -2.0, "lon": 1.5},
}
MIN_DOC = {
    "id": 2, "ti": -128, "tu": 0, "si": -32768, "su": 0, "mi": -8388608, "mu": 0, "i": -2147483648, "iu": 0,
    "bi": -9223372036854775808, "bu": 0, "b1": 0,
    "d": "-99999999999999999999999999999999999.999999999999999999999999999999", "d2": "-0.01",
    "fl": -0.1, "db": -1.7976931348623157e308,
    "dt": "1000-01-01", "dtm": "1000-01-01T00:00:00", "dtm3": "1000-01-01T00:00:00",
    "dtm6": "1000-01-01T00:00:00", "ts": "1970-01-01T00:00:01Z", "ts6": "1970-01-01T00:00:01Z",
    "tm": "-838:59:59", "tm6": "-01:30:00.250000", "yr": 1901,
    "c": "", "vc": "", "tx": "", "l1": "", "bn": "AAAAAA==", "vb": "", "bl": "",
    "e": "small", "st": [], "bit1": False, "bit10": 0, "bit64": 0,
    "js": [], "g": {"type": "Point", "coordinates": [0.0, 0.0]}, "pt": {"lat": 0.0, "lon": 0.0},
}
NULL_DOC: dict[str, Any] = {name: None for name in MAX_DOC} | {"id": 3}
ZERO_DOC = NULL_DOC | {"id": 4, "dt": None, "dtm": None, "dtm6": None, "ts": None, "ts6": None, "yr": 0, "e": "",
                       "fl": 1.2345678, "db": 1.2345678, "tm": "00:00:00", "l1": "x?", "st": []}


@both_sources
def test_every_type_inserted_updated_deleted(source_servers, db, database, es, index_prefix, tmp_path):
    db.execute(ALL_TYPES)
    index = f"{index_prefix}-all"
    rule = {"schema": database, "table": "all_types", "index": index,
            # Generated mappings, with three given instead: the integ-test-zip
            # Elasticsearch has no x-pack mappers, so neither unsigned_long (BIGINT
            # UNSIGNED, BIT(64)) nor geo_shape (GEOMETRY) exists there.
            "create_index": {"mappings": {"properties": {
                "g": {"type": "object", "enabled": False}, "bu": {"type": "keyword"},
                "bit64": {"type": "keyword"}}}}}
    setup = CdcSetup(tmp_path, source_servers, [rule], values__points="geo_point")
    cdc = setup.run()
    try:
        # sql_mode '' lets ZERO_ROW in (MySQL's default sql_mode is strict: NO_ZERO_DATE, ...). MySQL
        # then clips TIME(6) to 838:59:59 (MariaDB keeps the fraction), and keeps a JSON number past
        # 64 bits as a double (MariaDB's JSON is text: cdc writes the exact digits as a string).
        db.execute("SET SESSION sql_mode=''", "SET SESSION time_zone='+00:00'")
        max_doc = MAX_DOC | ({"tm6": "838:59:59", "js": MAX_DOC["js"] | {"big": 1.2345678901234568e22}}
                             if db.mysql else {})
        db.execute(MAX_ROW, MIN_ROW, NULL_ROW, ZERO_ROW)
        wait_docs(es, index, {"1": max_doc, "2": MIN_DOC, "3": NULL_DOC, "4": ZERO_DOC})

        db.execute("UPDATE all_types SET vc='updated ✓', fl=16777217, d='0.000000000000000000000000000001', "
                   "tm6='-00:00:00.000001', bit1=b'0', st='b' WHERE id=1")
        db.execute("DELETE FROM all_types WHERE id=2")
        db.execute("UPDATE all_types SET tx='now set', yr=2000 WHERE id=3")
        updated = max_doc | {"vc": "updated ✓", "fl": 16777216.0, "d": "0.000000000000000000000000000001",
                             "tm6": "-00:00:00.000001", "bit1": False, "st": ["b"]}
        expected = {"1": updated, "3": NULL_DOC | {"tx": "now set", "yr": 2000}, "4": ZERO_DOC}
        wait_docs(es, index, expected)
    finally:
        assert cdc.stop() == 0
    assert "zero date(s) in a row of" in cdc.text()
    mapping = next(iter(es.indices.get_mapping(index=index).values()))["mappings"]["properties"]  # <index>_v1's
    assert mapping["bu"] == {"type": "keyword"} and mapping["dtm6"] == {"type": "date"}
    assert mapping["iu"] == {"type": "long"} and mapping["d"] == {"type": "keyword"} and mapping["fl"] == {"type": "float"}
    assert mapping["vc"]["type"] == "text" and mapping["vc"]["fields"]["keyword"]["type"] == "keyword"
    assert mapping["pt"] == {"type": "geo_point"} and mapping["bit1"] == {"type": "boolean"}

    # The same rows copied by a snapshot give the same documents (FLOAT aside: see below).
    code, out = setup.command("snapshot")
    assert code == 0, out
    wait_docs(es, index, expected, ignore=("fl",))


def test_snapshot_float_equals_stream_float(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE f (id INT PRIMARY KEY, fl FLOAT)")
    index = f"{index_prefix}-f"
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "f", "index": index}])
    cdc = setup.run()
    try:
        db.execute("INSERT INTO f VALUES (1, 1.2345678), (2, 16777217), (3, 0.1)")
        expected = {"1": {"id": 1, "fl": 1.2345678}, "2": {"id": 2, "fl": 16777216.0}, "3": {"id": 3, "fl": 0.1}}
        wait_docs(es, index, expected)
    finally:
        assert cdc.stop() == 0
    code, out = setup.command("snapshot")
    assert code == 0, out
    # The snapshot's writes (acknowledged before it exited), searchable now: the documents read
    # next are the ones it wrote over the stream's, not still the stream's.
    es.indices.refresh(index=index)
    wait_docs(es, index, expected, timeout=5)


# ------------------------------------------------------------------------------ sharded tables
def test_sharded_tables_into_one_index_and_a_new_shard(servers, db, database, es, index_prefix, tmp_path):
    for shard in ("order_01", "order_02"):
        db.execute(f"CREATE TABLE {shard} (id INT PRIMARY KEY, total DECIMAL(8,2))")
    index = f"{index_prefix}-orders"
    rule = {"schema": database, "table": {"regex": r"order_(\d+)"}, "index": index, "id": "{table.1}-{id}",
            "add_table_name": "shard"}
    setup = CdcSetup(tmp_path, servers, [rule])
    cdc = setup.run()
    try:
        db.execute("INSERT INTO order_01 VALUES (1, 10.00), (2, 20.00)", "INSERT INTO order_02 VALUES (1, 99.50)")
        db.execute("UPDATE order_02 SET total=100 WHERE id=1", "DELETE FROM order_01 WHERE id=2")
        db.execute("UPDATE order_01 SET id=3 WHERE id=1")
        wait_docs(es, index, {
            "01-3": {"id": 3, "total": "10.00", "shard": "order_01"},
            "02-1": {"id": 1, "total": "100.00", "shard": "order_02"},
        })
        # A shard created while cdc runs: cdc stops rather than skip its rows ...
        db.execute("CREATE TABLE order_03 (id INT PRIMARY KEY, total DECIMAL(8,2))",
                   "INSERT INTO order_03 VALUES (7, 7.00)")
        assert cdc.wait(60) == 1
    finally:
        if cdc.popen.poll() is None:
            cdc.stop()
    assert "matches" in cdc.text() and "Restart cdc to pick it up" in cdc.text()
    # ... and a restart picks it up, from a checkpoint before its rows.
    again = setup.run()
    try:
        wait_docs(es, index, {
            "01-3": {"id": 3, "total": "10.00", "shard": "order_01"},
            "02-1": {"id": 1, "total": "100.00", "shard": "order_02"},
            "03-7": {"id": 7, "total": "7.00", "shard": "order_03"},
        })
    finally:
        assert again.stop() == 0


# ------------------------------------------------------------------------------ monthly indices and routing
def test_monthly_indices_with_routing_and_moving_rows(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE invoices (id INT PRIMARY KEY, customer VARCHAR(10) NOT NULL, issued DATE NOT NULL, "
               "amount DECIMAL(8,2))")
    rule = {"schema": database, "table": "invoices", "index": index_prefix + "-inv-{issued:%Y.%m}",
            "routing": "customer"}
    setup = CdcSetup(tmp_path, servers, [rule])
    jan, feb, mar = (f"{index_prefix}-inv-2024.{m}" for m in ("01", "02", "03"))
    cdc = setup.run()
    try:
        db.execute("INSERT INTO invoices VALUES (1, 'c1', '2024-01-31', 10), (2, 'c2', '2024-02-01', 20), "
                   "(3, 'c3', '2024-01-15', 30)")
        wait_hits(es, f"{index_prefix}-inv-*", {
            (jan, "1"): ("c1", {"id": 1, "customer": "c1", "issued": "2024-01-31", "amount": "10.00"}),
            (feb, "2"): ("c2", {"id": 2, "customer": "c2", "issued": "2024-02-01", "amount": "20.00"}),
            (jan, "3"): ("c3", {"id": 3, "customer": "c3", "issued": "2024-01-15", "amount": "30.00"}),
        })
        db.execute("UPDATE invoices SET issued='2024-03-01' WHERE id=1")  # moves to March
        db.execute("UPDATE invoices SET customer='c9' WHERE id=2")  # same index, new routing
        db.execute("UPDATE invoices SET customer='c8', issued='2024-02-10' WHERE id=3")  # both
        db.execute("DELETE FROM invoices WHERE id=2")  # the delete must carry the new routing
        db.execute("INSERT INTO invoices VALUES (4, 'c4', '2024-02-29', 40)")
        db.execute("UPDATE invoices SET customer='c5' WHERE id=4", "UPDATE invoices SET customer='c4' WHERE id=4")
        wait_hits(es, f"{index_prefix}-inv-*", {
            (mar, "1"): ("c1", {"id": 1, "customer": "c1", "issued": "2024-03-01", "amount": "10.00"}),
            (feb, "3"): ("c8", {"id": 3, "customer": "c8", "issued": "2024-02-10", "amount": "30.00"}),
            (feb, "4"): ("c4", {"id": 4, "customer": "c4", "issued": "2024-02-29", "amount": "40.00"}),
        })
    finally:
        assert cdc.stop() == 0


# ------------------------------------------------------------------------------ ids, soft delete, columns
def test_composite_ids_soft_delete_and_columns(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE lines_ (code VARCHAR(10), line INT, sku VARCHAR(20), tags VARCHAR(50), "
               "active TINYINT(1), secret VARCHAR(10), meta TEXT, PRIMARY KEY (code, line))")
    index = f"{index_prefix}-lines"
    rule = {"schema": database, "table": "lines_", "index": index, "id_separator": "/",
            "on_delete": "soft", "exclude": ["secret"], "rename": {"sku": "product"},
            "fields": {"source": "erp"}, "add_table_name": "_table", "add_schema_name": "_schema",
            "convert": {"tags": {"split": ","}, "active": "bool", "meta": "json", "code": "lower"}}
    setup = CdcSetup(tmp_path, servers, [rule])
    cdc = setup.run()
    base = {"source": "erp", "_table": "lines_", "_schema": database}
    try:
        db.execute("INSERT INTO lines_ VALUES ('A/1', 1, 'pen', 'x,y', 1, 's', '{\"k\": 1}'), "
                   "('A', 2, 'ink', '', 0, 's', NULL), ('B\\\\', 1, 'cap', 'z', 2, 's', '{\"n\": [1]}')")
        db.execute("UPDATE lines_ SET sku='pencil' WHERE code='A/1'")
        db.execute("UPDATE lines_ SET line=3 WHERE code='A' AND line=2")  # key change: old doc soft-deleted
        db.execute("DELETE FROM lines_ WHERE code='B\\\\'")
        wait_docs(es, index, {
            "A\\/1/1": {"code": "a/1", "line": 1, "product": "pencil", "tags": ["x", "y"], "active": True,
                        "meta": {"k": 1}, "deleted": False} | base,
            "A/2": {"code": "a", "line": 2, "product": "ink", "tags": [], "active": False, "meta": None,
                    "deleted": True} | base,
            "A/3": {"code": "a", "line": 3, "product": "ink", "tags": [], "active": False, "meta": None,
                    "deleted": False} | base,
            "B\\\\/1": {"code": "b\\", "line": 1, "product": "cap", "tags": ["z"], "active": True, "meta": {"n": [1]},
                        "deleted": True} | base,
        })
        db.execute("INSERT INTO lines_ VALUES ('A', 2, 'ink2', 'w', 1, 's', NULL)")  # back to life
        wait_docs(es, index, {
            "A\\/1/1": {"code": "a/1", "line": 1, "product": "pencil", "tags": ["x", "y"], "active": True,
                        "meta": {"k": 1}, "deleted": False} | base,
            "A/2": {"code": "a", "line": 2, "product": "ink2", "tags": ["w"], "active": True, "meta": None,
                    "deleted": False} | base,
            "A/3": {"code": "a", "line": 3, "product": "ink", "tags": [], "active": False, "meta": None,
                    "deleted": False} | base,
            "B\\\\/1": {"code": "b\\", "line": 1, "product": "cap", "tags": ["z"], "active": True, "meta": {"n": [1]},
                        "deleted": True} | base,
        })
    finally:
        assert cdc.stop() == 0


def test_update_mode_builds_one_document_from_two_tables(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE items (id INT PRIMARY KEY, title VARCHAR(20))",
               "CREATE TABLE stock (item_id INT PRIMARY KEY, qty INT)")
    index = f"{index_prefix}-items"
    rules = [{"schema": database, "table": "items", "index": index, "mode": "update"},
             {"schema": database, "table": "stock", "index": index, "id": "item_id", "mode": "update",
              "exclude": ["item_id"], "on_delete": "ignore"}]
    setup = CdcSetup(tmp_path, servers, rules)
    cdc = setup.run()
    try:
        # One transaction writes both parts of document 1: neither may replace the other.
        db.execute("BEGIN", "INSERT INTO items VALUES (1, 'pen'), (2, 'ink')", "INSERT INTO stock VALUES (1, 5)",
                   "COMMIT")
        db.execute("INSERT INTO stock VALUES (3, 7)")  # stock before its item: an upsert creates the document
        db.execute("UPDATE stock SET qty=4 WHERE item_id=1", "UPDATE items SET title='ink!' WHERE id=2")
        db.execute("DELETE FROM stock WHERE item_id=1")  # ignored
        db.execute("INSERT INTO items VALUES (3, 'cap')")
        wait_docs(es, index, {"1": {"id": 1, "title": "pen", "qty": 4}, "2": {"id": 2, "title": "ink!"},
                              "3": {"qty": 7, "id": 3, "title": "cap"}})
        db.execute("DELETE FROM items WHERE id=1")
        wait_docs(es, index, {"2": {"id": 2, "title": "ink!"}, "3": {"qty": 7, "id": 3, "title": "cap"}})
    finally:
        assert cdc.stop() == 0


# ------------------------------------------------------------------------------ cdc check, the rules/ examples
EXAMPLE_SCHEMA = """
CREATE TABLE {shop}.products (id INT PRIMARY KEY, sku VARCHAR(20), price DECIMAL(10,2));
CREATE TABLE {shop}.order_0001 (id INT PRIMARY KEY, customer_id INT, total DECIMAL(10,2));
CREATE TABLE {shop}.order_0002 LIKE {shop}.order_0001;
CREATE TABLE {billing}.invoices (id INT PRIMARY KEY, customer_id INT NOT NULL, issued_at DATE NOT NULL,
  amount DECIMAL(12,2));
CREATE TABLE {crm}.people (id INT PRIMARY KEY, name VARCHAR(50), password_hash BINARY(32), tags VARCHAR(200),
  email VARCHAR(100), country CHAR(2), newsletter TINYINT(1), preferences TEXT, birthday DATE);
CREATE TABLE {catalog}.items (id INT PRIMARY KEY, title VARCHAR(100));
CREATE TABLE {catalog}.item_stock (item_id INT PRIMARY KEY, qty INT,
  FOREIGN KEY (item_id) REFERENCES {catalog}.items (id) ON DELETE CASCADE);
CREATE TABLE {hr}.employees (id INT PRIMARY KEY, name VARCHAR(50));
CREATE TABLE {hr}.extra (id INT PRIMARY KEY, name VARCHAR(50));
CREATE TABLE {tenant_acme}.users (id INT PRIMARY KEY, login VARCHAR(50));
CREATE TABLE {blog}.posts (id INT PRIMARY KEY, title VARCHAR(200), body LONGTEXT, meta JSON, published DATETIME);
CREATE TABLE {sales}.customers (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100));
CREATE TABLE {sales}.products (id INT PRIMARY KEY, sku VARCHAR(20), name VARCHAR(100));
CREATE TABLE {sales}.orders (id INT PRIMARY KEY, customer_id INT, internal_note TEXT, KEY (customer_id));
CREATE TABLE {sales}.order_lines (order_id INT, line INT, product_id INT, qty INT, price DECIMAL(10,2),
  PRIMARY KEY (order_id, line), KEY (product_id))
"""
EXAMPLE_SCHEMAS = ("shop", "billing", "crm", "catalog", "hr", "tenant_acme", "blog", "sales")


def test_cdc_check_accepts_the_rules_examples(servers, db, database, es, index_prefix, tmp_path):
    # The examples name schemas such as `shop`; here each gets this test's prefix.
    names = {s: f"{database}_{s}" for s in EXAMPLE_SCHEMAS}
    for name in names.values():
        db.execute(f"CREATE DATABASE `{name}`")
    try:
        for statement in EXAMPLE_SCHEMA.format(**names).split(";"):
            db.execute(statement)
        rules_dir = tmp_path / "examples"
        shutil.copytree(ROOT / "rules", rules_dir)
        for file in rules_dir.glob("*.yml"):
            text = file.read_text()
            for schema, name in names.items():
                text = re.sub(rf"schema: {schema}\b", f"schema: {name}", text)
            text = text.replace('schema: {glob: "tenant_*"}', f'schema: {{glob: "{database}_tenant_*"}}')
            # Index names get the test's prefix, so the index_prefix fixture cleans them up.
            text = re.sub(r"^(\s+)index: (\"?)", rf"\g<1>index: \g<2>{index_prefix}-", text, flags=re.M)
            file.write_text(text)
        setup = CdcSetup(tmp_path, servers, [])
        config = yaml.safe_load(setup.config_path.read_text())
        config["rules"] = str(rules_dir)
        setup.config_path.write_text(yaml.safe_dump(config))

        code, out = setup.command("check")
        assert code == 0, out
        assert "result: OK with" in out
        assert f"{names['shop']}.order_0001, {names['shop']}.order_0002 -> {index_prefix}-shop-orders" in out
        assert f"{names['catalog']}.item_stock: foreign key" in out and "ON DELETE CASCADE" in out
        assert f"template cdc-{index_prefix}-invoices: create" in out
        assert f"{names['sales']}.orders" in out and "CREATE INDEX" not in out  # every join column is indexed

        code, out = setup.command("indices", "create")
        assert code == 0, out
        assert es.indices.exists(index=f"{index_prefix}-blog-posts")
        assert es.indices.exists_index_template(name=f"cdc-{index_prefix}-invoices")
        es.indices.delete_index_template(name=f"cdc-{index_prefix}-invoices")

        (rules_dir / "99-broken.yml").write_text(
            f"rules:\n  - {{schema: {names['hr']}, table: extra, index: x, convert: {{name: bool}}}}\n"
            f"  - {{schema: {names['hr']}, table: nope, index: y}}\n")
        code, out = setup.command("check")
        assert code == 2, out
        assert "convert: bool cannot take column name of type varchar(50)" in out
        assert f"table {names['hr']}.nope does not exist" in out
        assert "result: FAILED, 2 problem(s)" in out
    finally:
        for name in names.values():
            db.execute(f"DROP DATABASE IF EXISTS `{name}`")


def test_snapshot_into_monthly_indices(servers, db, database, es, index_prefix, tmp_path):
    """Rows there before the first start are copied into the index their date names."""
    db.execute("CREATE TABLE invoices (id INT PRIMARY KEY, issued DATE NOT NULL)",
               "INSERT INTO invoices VALUES (1, '2024-01-31'), (2, '2024-02-01')")
    rule = {"schema": database, "table": "invoices", "index": index_prefix + "-inv-{issued:%Y.%m}"}
    setup = CdcSetup(tmp_path, servers, [rule])
    cdc = setup.run()
    try:
        wait_hits(es, f"{index_prefix}-inv-*", {
            (f"{index_prefix}-inv-2024.01", "1"): (None, {"id": 1, "issued": "2024-01-31"}),
            (f"{index_prefix}-inv-2024.02", "2"): (None, {"id": 2, "issued": "2024-02-01"}),
        }, timeout=20)
    finally:
        if cdc.popen.poll() is None:
            cdc.stop()


def test_online_snapshot_into_monthly_indices(servers, db, database, es, index_prefix, tmp_path):
    db.execute("CREATE TABLE invoices (id INT PRIMARY KEY, issued DATE NOT NULL)",
               "INSERT INTO invoices VALUES (1, '2024-01-31')")
    setup = CdcSetup(tmp_path, servers, [{"schema": database, "table": "invoices",
                                          "index": index_prefix + "-inv-{issued:%Y.%m}"}])
    code, out = setup.command("snapshot")
    assert code == 0, out
    wait_hits(es, f"{index_prefix}-inv-*", {
        (f"{index_prefix}-inv-2024.01", "1"): (None, {"id": 1, "issued": "2024-01-31"})}, timeout=10)
