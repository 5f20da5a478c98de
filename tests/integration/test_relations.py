"""Documents built from several tables (issue 15), on the real servers.

Orders with their lines (children), each line's product and the product's
category (lookups two levels down), and the order's customer (a lookup). What
Elasticsearch holds is compared with a build made here straight from MariaDB
(plain SQL, not cdc's code), after snapshots, streamed changes at every level,
and a random workload with SIGKILLs of cdc.
"""

from __future__ import annotations

import time

import random
import signal
import threading

import pytest
from harness import Admin, CdcSetup, both_sources, es_docs, plain
from test_verify import verify

pytestmark = pytest.mark.integration

SCHEMA = (
    "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), email VARCHAR(80))",
    "CREATE TABLE categories (id INT PRIMARY KEY, title VARCHAR(40))",
    "CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(40), category_id INT, KEY (category_id))",
    "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, status VARCHAR(20), total DECIMAL(10,2), "
    "KEY (customer_id))",
    "CREATE TABLE order_lines (id INT PRIMARY KEY, order_id INT, product_id INT, qty INT, KEY (order_id), "
    "KEY (product_id))",
    "CREATE TABLE line_notes (id INT PRIMARY KEY, line_id INT, text VARCHAR(40), KEY (line_id))",
)


def rules(database: str, index: str, max_children: int = 10_000) -> list[dict]:
    return [{
        "schema": database, "table": "orders", "index": index,
        "lookups": {"customer": {"table": "customers", "key": "customer_id", "include": ["name"]}},
        "children": {"lines": {
            "table": "order_lines", "key": "order_id", "include": ["id", "product_id", "qty"],
            "rename": {"qty": "quantity"}, "max_children": max_children,
            "children": {"notes": {"table": "line_notes", "key": "line_id", "include": ["id", "text"]}},
            "lookups": {"product": {
                "table": "products", "key": "product_id", "include": ["name", "category_id"],
                "lookups": {"category": {"table": "categories", "key": "category_id", "include": ["title"]}}}}}},
    }]


def fresh_build(db) -> dict[str, dict]:
    """Every order's document, built from the tables by plain SQL (the expectation, independent of cdc)."""
    customers = {r["id"]: r for r in db.query("SELECT * FROM customers")}
    categories = {r["id"]: r for r in db.query("SELECT * FROM categories")}
    products = {r["id"]: r for r in db.query("SELECT * FROM products")}
    notes: dict[int, list[dict]] = {}
    for note in db.query("SELECT * FROM line_notes ORDER BY id"):
        notes.setdefault(note["line_id"], []).append({"id": note["id"], "text": note["text"]})
    lines: dict[int, list[dict]] = {}
    for line in db.query("SELECT * FROM order_lines ORDER BY id"):
        product = products.get(line["product_id"])
        category = categories.get(product["category_id"]) if product else None
        lines.setdefault(line["order_id"], []).append({
            "id": line["id"], "product_id": line["product_id"], "quantity": line["qty"],
            "notes": notes.get(line["id"], []),
            "product": None if product is None else {
                "name": product["name"], "category_id": product["category_id"],
                "category": None if category is None else {"title": category["title"]}}})
    out = {}
    for order in db.query("SELECT * FROM orders"):
        customer = customers.get(order["customer_id"])
        out[str(order["id"])] = {**{k: plain(v) for k, v in order.items()},
                                 "customer": None if customer is None else {"name": customer["name"]},
                                 "lines": lines.get(order["id"], [])}
    return out


def wait_equal(db, es, index: str, timeout: float = 60, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        want, have = fresh_build(db), es_docs(es, index)
        if want == have:
            return
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"cdc exited with {proc.popen.returncode}:\n{proc.text()[-4000:]}")
        if time.monotonic() > deadline:
            differ = [(k, want.get(k), have.get(k)) for k in sorted(set(want) | set(have))
                      if want.get(k) != have.get(k)][:4]
            raise AssertionError(f"{index} differs from a fresh build after {timeout}s: {len(want)} orders, "
                                 f"{len(have)} documents; first differences {differ}")
        time.sleep(0.3)


def seed(db, orders: int = 6) -> None:
    db.execute(*SCHEMA)
    db.execute("INSERT INTO customers VALUES (1, 'Ann', 'a@x'), (2, 'Bob', 'b@x'), (3, 'Cy', 'c@x')",
               "INSERT INTO categories VALUES (1, 'tea'), (2, 'pots')",
               "INSERT INTO products VALUES (10, 'Green', 1), (11, 'Black', 1), (12, 'Teapot', 2), (13, 'Cup', NULL)")
    for o in range(1, orders + 1):
        db.execute(f"INSERT INTO orders VALUES ({o}, {o % 3 + 1}, 'new', {o}.50)")
        db.execute(f"INSERT INTO order_lines VALUES ({o * 10}, {o}, {10 + o % 4}, {o}), "
                   f"({o * 10 + 1}, {o}, {10 + (o + 1) % 4}, 1)")
        db.execute(f"INSERT INTO line_notes VALUES ({o * 100}, {o * 10}, 'note {o}')")


def test_changes_at_every_level_rebuild_exactly_the_affected_documents(tmp_path, servers, db, es, database,
                                                                       index_prefix):
    index = f"{index_prefix}-orders"
    seed(db)
    # order_lines also has a plain rule of its own (the native row path must leave its rows to Python).
    plain_rule = {"schema": database, "table": "order_lines", "index": f"{index}-lines"}
    setup = CdcSetup(tmp_path, servers, rules(database, index) + [plain_rule])
    proc = setup.run()
    try:
        wait_equal(db, es, index, proc=proc)  # the initial snapshot builds the same documents
        versions = {h["_id"]: h["_version"] for h in es.search(index=index, version=True, size=100)["hits"]["hits"]}
        db.execute("UPDATE categories SET title = 'TEA' WHERE id = 1")  # a lookup two levels down
        db.execute("UPDATE customers SET name = 'Bobby' WHERE id = 2")  # a lookup of the root
        db.execute("UPDATE order_lines SET qty = 9 WHERE id = 20")  # a child
        db.execute("UPDATE line_notes SET line_id = 61 WHERE id = 300")  # a grandchild moves to order 6
        db.execute("INSERT INTO line_notes VALUES (301, 40, 'new')")
        db.execute("UPDATE order_lines SET order_id = 3 WHERE id = 41")  # a child moves between roots
        db.execute("DELETE FROM order_lines WHERE id = 50")
        db.execute("INSERT INTO order_lines VALUES (62, 6, 12, 4)")
        db.execute("UPDATE products SET category_id = 2 WHERE id = 11")  # a lookup's own key changes
        db.execute("DELETE FROM products WHERE id = 13")  # lookups become null
        db.execute("UPDATE orders SET id = 7 WHERE id = 1")  # the root's key: document 1 goes, 7 comes
        db.execute("UPDATE order_lines SET order_id = 7 WHERE order_id = 1")
        db.execute("BEGIN", "INSERT INTO orders VALUES (8, 3, 'new', 1.00)",
                   "INSERT INTO order_lines VALUES (80, 8, 10, 1)", "COMMIT")
        db.execute("DELETE FROM order_lines WHERE order_id = 2", "DELETE FROM orders WHERE id = 2")
        db.execute("INSERT INTO order_lines VALUES (90, 99, 10, 1)")  # no such order: no document
        wait_equal(db, es, index, proc=proc)
        after = {h["_id"]: h["_version"] for h in es.search(index=index, version=True, size=100)["hits"]["hits"]}
        # Versions are binlog positions of the reads: every rebuilt document moved forward.
        assert all(after[k] > versions[k] for k in after if k in versions)
        assert "1" not in after and "2" not in after and "7" in after
        lines = es_docs(es, f"{index}-lines")
        assert sorted(lines) == sorted(str(r["id"]) for r in db.query("SELECT id FROM order_lines"))
    finally:
        assert proc.stop() == 0
    assert "Traceback" not in proc.text()


class ThreeTableLoad:
    """Random inserts, updates (incl. foreign keys) and deletes over customers, orders, lines, products."""

    def __init__(self, servers, database: str, seed: int):
        self.db = Admin(servers, database)
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.statements = 0

    def __enter__(self) -> "ThreeTableLoad":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
        self.db.close()
        if self.error is not None and exc[0] is None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self._one()
                self.statements += 1
                time.sleep(self.rng.uniform(0, 0.01))
        except BaseException as exc:
            self.error = exc

    def _one(self) -> None:
        r, order, line = self.rng, self.rng.randint(1, 30), self.rng.randint(1, 120)
        choice = r.random()
        if choice < 0.2:
            self.db.execute("INSERT INTO orders VALUES (%s, %s, 'new', %s) ON DUPLICATE KEY UPDATE "
                            "customer_id = VALUES(customer_id), total = VALUES(total)",
                            args=(order, r.randint(1, 4), r.randint(1, 999)))
        elif choice < 0.45:
            self.db.execute("INSERT INTO order_lines VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
                            "order_id = VALUES(order_id), qty = VALUES(qty)",
                            args=(line, order, r.randint(10, 14), r.randint(1, 9)))
        elif choice < 0.6:
            self.db.execute("UPDATE order_lines SET order_id = %s, product_id = %s WHERE id = %s",
                            args=(order, r.randint(10, 14), line))
        elif choice < 0.7:
            self.db.execute("DELETE FROM order_lines WHERE id = %s", args=(line,))
        elif choice < 0.75:
            self.db.execute("DELETE FROM orders WHERE id = %s", args=(order,))
        elif choice < 0.8:  # a grandchild: inserted, moved between lines, or deleted
            note = r.randint(1, 60)
            self.db.execute(r.choice(["INSERT INTO line_notes VALUES (%s, %s, 'n') ON DUPLICATE KEY UPDATE "
                                      "line_id = VALUES(line_id), text = CONCAT(text, '+')",
                                      "DELETE FROM line_notes WHERE id = %s AND line_id <> %s"]), args=(note, line))
        elif choice < 0.85:
            self.db.execute("UPDATE customers SET name = %s WHERE id = %s", args=(f"n{r.randint(0, 99)}",
                                                                                  r.randint(1, 4)))
        elif choice < 0.93:
            self.db.execute("INSERT INTO products VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE "
                            "name = VALUES(name), category_id = VALUES(category_id)",
                            args=(r.randint(10, 14), f"p{r.randint(0, 99)}", r.choice([1, 2, 3, None])))
        elif choice < 0.97:
            self.db.execute("UPDATE categories SET title = %s WHERE id = %s", args=(f"c{r.randint(0, 99)}",
                                                                                    r.randint(1, 3)))
        else:  # one transaction over three tables
            self.db.execute("BEGIN", f"UPDATE customers SET email = 'e{line}' WHERE id = {order % 4 + 1}",
                            f"UPDATE orders SET status = 'paid{line}' WHERE id = {order}",
                            f"UPDATE order_lines SET qty = qty + 1 WHERE order_id = {order}", "COMMIT")


def test_random_three_table_workload_with_sigkills_ends_equal_to_a_fresh_build(tmp_path, servers, db, es, database,
                                                                                 index_prefix):
    index = f"{index_prefix}-orders"
    seed(db)
    db.execute("INSERT INTO customers VALUES (4, 'Di', 'd@x')", "INSERT INTO categories VALUES (3, 'cups')",
               "INSERT INTO products VALUES (14, 'Mug', 3)")
    setup = CdcSetup(tmp_path, servers, rules(database, index), batch__concurrency=3)
    kills = 0
    proc = None
    try:
        with ThreeTableLoad(servers, database, seed=15) as load:
            proc = setup.run()
            for _ in range(3):
                # Kill once rebuilds have been acknowledged past the start (the checkpoint moved), mid-load.
                start = setup.position()
                deadline = time.monotonic() + 30
                while setup.position() == start and time.monotonic() < deadline and proc.popen.poll() is None:
                    time.sleep(0.05)
                time.sleep(random.Random(kills).uniform(0.2, 1.5))
                assert proc.popen.poll() is None, proc.text()[-4000:]
                proc.stop(signal.SIGKILL)
                kills += 1
                proc = setup.run()
            time.sleep(1)
        assert load.statements > 100
        wait_equal(db, es, index, timeout=90, proc=proc)
        assert proc.stop() == 0
    finally:
        if proc is not None and proc.proc is not None and proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)  # a failure above must not leave cdc running
    assert kills == 3
    assert "Traceback" not in proc.text()


@both_sources  # on MySQL under its default sql_mode: ONLY_FULL_GROUP_BY for the children counts
def test_check_snapshot_verify_and_repair_build_the_same_documents(tmp_path, source_servers, db, es, database,
                                                                   index_prefix):
    index = f"{index_prefix}-orders"
    seed(db, orders=30)
    db.execute("ALTER TABLE products DROP INDEX category_id")
    setup = CdcSetup(tmp_path, source_servers, rules(database, index), snapshot__chunk_size=7)

    code, out = setup.command("check")
    assert code == 0, out
    assert (f"{database}.products.category_id (lookup category ({database}.categories)) has no index" in out and
            f"CREATE INDEX `products_category_id` ON `{database}`.`products` (`category_id`)" in out), out
    assert "order_lines.order_id" not in out  # indexed: no warning
    assert f"{database}.orders, with " in out and f"{database}.line_notes" in out, out

    code, out = setup.command("snapshot", "--table", f"{database}.orders")
    assert code == 0, out[-3000:]
    wait_equal(db, es, index, timeout=10)

    # Changes no daemon streams, and a damaged index: verify finds each, repair mends them.
    db.execute("UPDATE categories SET title = 'green tea' WHERE id = 1")  # many documents differ
    db.execute("DELETE FROM order_lines WHERE id = 50")  # one document differs
    es.delete(index=index, id="7")  # missing
    es.index(index=index, id="999", document={"id": 999, "lines": []})  # orphan
    es.indices.refresh(index=index)
    affected = {k for k, doc in fresh_build(db).items()
                if any(line["product"] and line["product"]["category_id"] == 1 for line in doc["lines"])} | {"5"}
    code, report, log = verify(setup)
    assert code == 1, log[-3000:]
    [table] = report["tables"]
    assert (table["rows"], table["missing"], table["differing"], table["orphans"]) == (30, 1, len(affected) - 1, 1)
    examples = {e["kind"]: e for e in table["examples"]}  # the first few only
    assert examples["missing"]["id"] == "7"
    assert examples["differ"]["fields"][0]["field"] == "lines", examples["differ"]

    code, report, log = verify(setup, "--repair")
    assert code == 0, log[-3000:]
    assert report["tables"][0]["repaired"] == len(affected) + 1
    wait_equal(db, es, index, timeout=10)
    code, report, log = verify(setup)
    assert code == 0 and report["tables"][0]["differing"] == 0, log[-3000:]


def test_a_root_over_max_children_is_dead_lettered_and_the_stream_goes_on(tmp_path, servers, db, es, database,
                                                                          index_prefix):
    index = f"{index_prefix}-orders"
    seed(db, orders=2)
    setup = CdcSetup(tmp_path, servers, rules(database, index, max_children=3), dead_letter__on_rejected="dead_letter")
    proc = setup.run()
    try:
        wait_equal(db, es, index, proc=proc)
        db.execute("INSERT INTO order_lines VALUES (100, 1, 10, 1), (101, 1, 10, 1)")  # order 1: 4 lines
        db.execute("UPDATE orders SET status = 'paid' WHERE id = 2")
        letter = proc.wait_for_event("dead_letter", doc_id="1")
        assert "has 4 rows in" in letter["error"] and "max_children: 3" in letter["error"], letter
        want = fresh_build(db)
        deadline = time.monotonic() + 30
        while es_docs(es, index).get("2") != want["2"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert es_docs(es, index)["2"]["status"] == "paid"  # the rest of the stream went on
        db.execute("DELETE FROM order_lines WHERE id = 101")  # back within the bound: rebuilt
        wait_equal(db, es, index, proc=proc)
    finally:
        assert proc.stop() == 0
