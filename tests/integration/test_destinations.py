"""The same cdc on every engine it writes to (issue 18, docs/destinations.md "Destinations").

Each test runs once per engine (the `destination` fixture: Elasticsearch 8 on
the shared server; Elasticsearch 7.17, OpenSearch 2 and OpenSearch 3 started
once per run by scripts/servers.py): streaming with SIGKILLs under load, a
snapshot followed by `cdc verify --repair`, the type table with the mapping cdc
creates, and a refused engine mismatch. The last test runs the same rows into
all of them at once and compares the documents.

The documents are read back with opensearch-py, which talks to all of them
(plain `application/json`, no product check): an oracle independent of the
client cdc uses for each engine.
"""

from __future__ import annotations

import signal
import time

import pytest
from harness import CdcSetup, WriteLoad, binlog_position, create_two_tables, db_docs, index_rules, wait_for
from opensearchpy import OpenSearch, helpers
from test_rules_values import ALL_TYPES, MAX_DOC, MAX_ROW, MIN_DOC, MIN_ROW, NULL_DOC, NULL_ROW, ZERO_DOC, ZERO_ROW
from test_verify import _found, verify

pytestmark = pytest.mark.serial  # the whole module (tests/conftest.py says what serial means)

ENGINE_NAMES = {"es8": "Elasticsearch 8.", "es7": "Elasticsearch 7.17.", "opensearch": "OpenSearch 2.",
                "opensearch3": "OpenSearch 3."}


class Reader:
    """What an index holds, read with opensearch-py."""

    def __init__(self, url: str):
        self.client = OpenSearch([url], timeout=30, max_retries=0)

    def docs(self, index: str) -> dict[str, dict]:
        if not self.client.indices.exists(index=index):
            return {}
        self.client.indices.refresh(index=index)
        return {h["_id"]: h["_source"] for h in helpers.scan(self.client, index=index, query={"query": {"match_all": {}}})}

    def mapping(self, index: str) -> dict:
        # Keyed by the concrete index: the name is an alias onto <name>_v1 (docs/verify-and-rebuild.md "Rebuilding an index").
        return next(iter(self.client.indices.get_mapping(index=index).values()))["mappings"]["properties"]

    def wait_docs(self, index: str, expected: dict, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                have = self.docs(index)
            except Exception:  # a just-created index answers 503 until its shard is active
                have = {}
            if have == expected:
                return
            if time.monotonic() > deadline:
                differ = {k: (expected[k], have[k]) for k in expected if k in have and expected[k] != have[k]}
                raise AssertionError(f"{index}: {len(have)} docs, {len(expected)} expected; missing "
                                     f"{sorted(set(expected) - set(have))[:10]}, extra "
                                     f"{sorted(set(have) - set(expected))[:10]}, differ {list(differ.items())[:3]}")
            time.sleep(0.3)

    def wait_equal(self, db, table: str, index: str, id_columns: list[str], timeout: float = 90) -> None:
        """Until the index holds exactly the table's rows (ids and values), while the table may change."""
        deadline = time.monotonic() + timeout
        while True:
            want = db_docs(db, table, id_columns)
            try:
                have = self.docs(index)
            except Exception:
                have = {}
            if have == want:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{index} != {table}: {len(want)} rows, {len(have)} docs; missing "
                                     f"{sorted(set(want) - set(have))[:10]}, extra {sorted(set(have) - set(want))[:10]}")
            time.sleep(0.3)

    def delete_prefix(self, prefix: str) -> None:
        names = list(self.client.indices.get(index=f"{prefix}*", params={"expand_wildcards": "all"}))
        if names:
            self.client.indices.delete(index=",".join(names))
        # Index templates cdc created for the prefix's indices.
        for name in self.client.indices.get_index_template(params={"ignore": 404}).get("index_templates", []):
            if name["name"].startswith(f"cdc-{prefix}"):
                self.client.indices.delete_index_template(name=name["name"])

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def search(destination, unique_name):
    reader = Reader(destination.url)
    yield reader
    reader.delete_prefix(unique_name)
    reader.close()


def setup_for(tmp_path, servers, destination, rules, **overrides) -> CdcSetup:
    return CdcSetup(tmp_path, servers, rules, elasticsearch__hosts=[destination.url], **overrides)


def _checkpoint_moves(setup: CdcSetup, cdc, since, timeout: float = 60) -> None:
    """Wait until cdc saved a checkpoint past `since` (the event a kill should land after)."""
    deadline = time.monotonic() + timeout
    while setup.position() == since:
        assert cdc.popen.poll() is None, cdc.text()[-3000:]
        assert time.monotonic() < deadline, f"checkpoint stayed at {since}"
        time.sleep(0.05)


# ------------------------------------------------------------------ streaming, SIGKILL
def test_streams_and_loses_nothing_when_killed_under_load(destination, servers, db, database, search, unique_name,
                                                          tmp_path):
    create_two_tables(db)
    setup = setup_for(tmp_path, servers, destination, index_rules(database, unique_name, "a", "b"),
                      batch__max_actions=50, batch__max_interval=0.1)
    cdc = None
    try:
        with WriteLoad(servers, database) as load:
            for _ in range(4):
                cdc = setup.run()
                # Killed once it has acknowledged writes and moved its checkpoint past where it
                # started, with the next batches in flight.
                _checkpoint_moves(setup, cdc, setup.position())
                cdc.stop(signal.SIGKILL)
            cdc = setup.run()
            _checkpoint_moves(setup, cdc, setup.position())
        assert load.ops > 50
        search.wait_equal(db, "a", f"{unique_name}-a", ["id"])
        search.wait_equal(db, "b", f"{unique_name}-b", ["k1", "k2"])
    finally:
        # Also when the load failed: no cdc is left running behind the test.
        if cdc is not None and cdc.popen.poll() is None:
            assert cdc.stop() == 0
    assert f"destination: {ENGINE_NAMES[destination.name]}" in cdc.text()


# ------------------------------------------------------------------ snapshot and verify
def test_snapshot_then_verify_finds_and_repairs(destination, servers, db, database, search, unique_name, tmp_path):
    create_two_tables(db, 300)
    setup = setup_for(tmp_path, servers, destination, index_rules(database, unique_name, "a", "b"),
                      snapshot__chunk_size=40)
    ia, ib = f"{unique_name}-a", f"{unique_name}-b"
    # Writes before, during and after the snapshot: the load starts first and goes on past
    # the snapshot's end (600 rows take a fraction of a second to copy, less than 10 writes).
    cdc = None
    try:
        with WriteLoad(servers, database, rate=100) as load:
            wait_for("the write load to start", lambda: load.ops >= 3, interval=0.02)
            cdc = setup.run()
            cdc.wait_for_event("snapshot_done", timeout=120)
            ops_at_snapshot_end = load.ops
            wait_for("writes after the snapshot", lambda: load.ops >= ops_at_snapshot_end + 10, interval=0.02)
        search.wait_equal(db, "a", ia, ["id"])
        search.wait_equal(db, "b", ib, ["k1", "k2"])
        # Corruption above what WriteLoad writes (a.id < 403), so the findings are exact.
        db.execute("INSERT INTO a SELECT seq, seq, 'x' FROM seq_501_to_503")
        search.wait_equal(db, "a", ia, ["id"])
        client = search.client
        client.delete(index=ia, id="501")
        client.update(index=ia, id="502", body={"doc": {"v": -1}})
        client.index(index=ia, id="9001", body={"id": 9001})
        client.indices.refresh(index=ia)

        code, report, log = verify(setup, "--table", f"{database}.a")
        assert code == 1, log[-3000:]
        assert _found(report, "a") == {"missing": {"501"}, "differ": {"502"}, "orphan": {"9001"}}, report
        code, report, log = verify(setup, "--table", f"{database}.a", "--repair")
        assert code == 0 and report["summary"]["repaired"] == 3, (report, log[-3000:])
        client.indices.refresh(index=ia)
        code, report, log = verify(setup)
        assert code == 0 and report["summary"]["ok"], report
        search.wait_equal(db, "a", ia, ["id"])
    finally:
        assert cdc is None or cdc.stop() == 0


# ------------------------------------------------------------------ the type table and its mapping
def _type_rule(destination, database: str, index: str) -> dict:
    # The integ-test-zips lack what plugins and x-pack add: geo_shape (OpenSearch's
    # geo module, Elasticsearch's x-pack spatial) on all but OpenSearch 3.6 (its zip
    # has every module), unsigned_long on both Elasticsearch zips (x-pack). Those
    # fields are given in the rule; every other field is the mapping cdc generates
    # from the column types.
    given: dict = {} if destination.name == "opensearch3" else {"g": {"type": "object", "enabled": False}}
    if destination.engine == "elasticsearch":
        given |= {"bu": {"type": "keyword"}, "bit64": {"type": "keyword"}}
    return {"schema": database, "table": "all_types", "index": index, "create_index": {"mappings": {"properties": given}}}


def test_type_table_with_the_mapping_cdc_creates(destination, servers, db, database, search, unique_name, tmp_path):
    db.execute(ALL_TYPES)
    index = f"{unique_name}-all"
    setup = setup_for(tmp_path, servers, destination, [_type_rule(destination, database, index)],
                      elasticsearch__engine=destination.engine, values__points="geo_point")
    cdc = setup.run()
    try:
        db.execute("SET SESSION sql_mode=''", "SET SESSION time_zone='+00:00'")
        db.execute(MAX_ROW, MIN_ROW, NULL_ROW, ZERO_ROW)
        search.wait_docs(index, {"1": MAX_DOC, "2": MIN_DOC, "3": NULL_DOC, "4": ZERO_DOC})
        db.execute("UPDATE all_types SET vc='updated ✓', bit1=b'0', st='b' WHERE id=1", "DELETE FROM all_types WHERE id=2")
        expected = {"1": MAX_DOC | {"vc": "updated ✓", "bit1": False, "st": ["b"]}, "3": NULL_DOC, "4": ZERO_DOC}
        search.wait_docs(index, expected)
    finally:
        assert cdc.stop() == 0
    assert f"created index {index}" in cdc.text()
    # The log names what answered; the client's node pool raises no false alarm (the Elasticsearch
    # integ-test build answers the engine probe's GET / with 405, which is no failed node).
    product = "OpenSearch" if destination.engine == "opensearch" else "Elasticsearch"
    assert [r for r in cdc.logs() if r.get("msg", "").startswith(f"{product} cluster is ")], cdc.text()[-3000:]
    assert not [r for r in cdc.logs() if r.get("logger") == "elastic_transport.node_pool"], cdc.text()[-3000:]
    mapping = search.mapping(index)
    unsigned = {"type": "unsigned_long"} if destination.engine == "opensearch" else {"type": "keyword"}
    assert mapping["bu"] == unsigned and mapping["bit64"] == unsigned
    assert mapping["iu"] == {"type": "long"} and mapping["dtm6"] == {"type": "date"} and mapping["d"] == {"type": "keyword"}
    assert mapping["fl"] == {"type": "float"} and mapping["db"] == {"type": "double"}
    assert mapping["vc"]["type"] == "text" and mapping["vc"]["fields"]["keyword"]["type"] == "keyword"
    assert mapping["pt"] == {"type": "geo_point"} and mapping["bit1"] == {"type": "boolean"}
    assert mapping["bn"] == {"type": "binary"} and mapping["js"].get("type", "object") == "object"
    if destination.name == "opensearch3":
        assert mapping["g"] == {"type": "geo_shape"}
    # `cdc indices plan` finds the index it created as planned.
    code, out = setup.command("indices", "plan")
    assert code == 0 and '"state": "exists"' in out, out
    # `cdc check` names the engine it found, in its section's title too.
    code, out = setup.command("check")
    assert code == 0 and f"\n{product.lower()}:\n  {ENGINE_NAMES[destination.name]}" in out, out
    assert ", cluster health " in out, out


# ------------------------------------------------------------------ 429: retried alone, nothing saved past them
def test_items_refused_with_429_are_retried_until_accepted(destination, servers, db, database, search, unique_name,
                                                           tmp_path):
    create_two_tables(db)
    ia, ib = f"{unique_name}-a", f"{unique_name}-b"
    for index in (ia, ib):
        search.client.indices.create(index=index)
    # The flood-stage block: every engine answers 429 for each write to b, and only to b.
    search.client.indices.put_settings(index=ib, body={"index.blocks.read_only_allow_delete": True})
    setup = setup_for(tmp_path, servers, destination, index_rules(database, unique_name, "a", "b"),
                      snapshot__mode="never")
    cdc = setup.run()
    try:
        before = binlog_position(db)
        db.execute("BEGIN", "INSERT INTO a VALUES (1, 1, 'x'), (2, 2, 'y')", "INSERT INTO b VALUES (1, 1, 1.5)",
                   "COMMIT")
        cdc.wait_for_log("items failed with 429", timeout=60)
        search.wait_equal(db, "a", ia, ["id"])  # the accepted part of the bulk is in
        saved = setup.position()
        assert saved is not None and _ordered(saved) <= _ordered(before)  # but not the transaction
        search.client.indices.put_settings(index=ib, body={"index.blocks.read_only_allow_delete": None})
        search.wait_equal(db, "b", ib, ["k1", "k2"])
        _checkpoint_passes(setup, cdc, before)
    finally:
        assert cdc.stop() == 0


def _ordered(position: tuple[str, int]) -> tuple[int, int]:
    return int(position[0].rsplit(".", 1)[1]), position[1]


def _checkpoint_passes(setup: CdcSetup, cdc, position: tuple[str, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (now := setup.position()) is None or _ordered(now) <= _ordered(position):
        assert cdc.popen.poll() is None, cdc.text()[-3000:]
        assert time.monotonic() < deadline, f"checkpoint {setup.position()} never passed {position}"
        time.sleep(0.05)


# ------------------------------------------------------------------ refusals
def test_an_engine_mismatch_stops_at_start_up(destination, servers, db, database, search, unique_name, tmp_path):
    db.execute("CREATE TABLE a (id INT PRIMARY KEY)")
    other = "opensearch" if destination.engine == "elasticsearch" else "elasticsearch"
    setup = setup_for(tmp_path, servers, destination, index_rules(database, unique_name, "a"),
                      elasticsearch__engine=other)
    proc = setup.process("run").start()
    assert proc.wait(60) == 2
    assert (f"elasticsearch.engine is {other}, but the server at elasticsearch.hosts is "
            f"{ENGINE_NAMES[destination.name]}") in proc.text()
    assert setup.checkpoint() is None


# ------------------------------------------------------------------ the same documents everywhere
def test_the_same_rows_give_the_same_documents_on_every_engine(servers, destination_pool, db, database, unique_name,
                                                               tmp_path):
    db.execute(ALL_TYPES, "CREATE TABLE b (k1 INT, k2 INT, amount DECIMAL(12,2), at DATE, PRIMARY KEY (k1, k2))")
    db.execute("SET SESSION sql_mode=''", "SET SESSION time_zone='+00:00'")
    db.execute(MAX_ROW, MIN_ROW)  # copied by the snapshot
    db.execute("INSERT INTO b SELECT seq DIV 10, seq MOD 10, seq / 4, '2024-01-01' + INTERVAL seq DAY FROM seq_1_to_60")
    runs = []
    for name in ("es8", "es7", "opensearch", "opensearch3"):
        destination = destination_pool.get(name, servers)
        rules = [_type_rule(destination, database, f"{unique_name}-all"),
                 # routing, a composite id and monthly indices (an index template cdc creates)
                 {"schema": database, "table": "b", "index": f"{unique_name}-b-{{at:%Y.%m}}", "routing": "k1",
                  "create_index": True, "also": True},
                 # partial documents (mode: update: upserts, unversioned, retry_on_conflict)
                 {"schema": database, "table": "b", "index": f"{unique_name}-upd", "mode": "update",
                  "include": ["k1", "k2", "amount"], "also": True}]
        (tmp_path / name).mkdir()
        setup = setup_for(tmp_path / name, servers, destination, rules, values__points="geo_point")
        runs.append((destination, setup, setup.run(), Reader(destination.url)))
    try:
        for _, _, cdc, _ in runs:
            cdc.wait_for_event("snapshot_done", timeout=120)
        db.execute(NULL_ROW, ZERO_ROW, "UPDATE all_types SET tx='now set' WHERE id=1", "DELETE FROM all_types WHERE id=2",
                   "UPDATE b SET at = at + INTERVAL 1 MONTH, amount = amount + 1 WHERE k1 = 3",
                   "DELETE FROM b WHERE k1 = 4")
        expected_all = {"1": MAX_DOC | {"tx": "now set"}, "3": NULL_DOC, "4": ZERO_DOC}
        for destination, _, _, reader in runs:
            reader.wait_docs(f"{unique_name}-all", expected_all)
        # Every engine, polled until b is settled (k1=4 deleted, k1=3 moved to the next month) and
        # all agree; the index, id, routing and source of every document are compared.
        deadline = time.monotonic() + 90
        while True:
            documents = {destination.name: (reader.docs(f"{unique_name}-all"), _hits(reader, f"{unique_name}-b-*"),
                                            reader.docs(f"{unique_name}-upd"))
                         for destination, _, _, reader in runs}
            b_docs = documents["es8"][1]
            settled = (len(b_docs) == 50 and b_docs.get((f"{unique_name}-b-2024.02", "3:0")) ==
                       ("3", {"k1": 3, "k2": 0, "amount": "8.50", "at": "2024-02-29"})
                       and documents["es8"][2] == _partial(b_docs))
            if settled and all(docs == documents["es8"] for docs in documents.values()):
                break
            assert time.monotonic() < deadline, {name: tuple(map(len, docs)) for name, docs in documents.items()}
            time.sleep(0.5)
        assert documents["es8"][0] == expected_all
        assert documents["es8"][2] == _partial(b_docs)
    finally:
        for destination, setup, cdc, reader in runs:
            assert cdc.stop() == 0, destination.name
            reader.delete_prefix(unique_name)
            reader.close()


def _hits(reader: Reader, pattern: str) -> dict:
    """(index, id) -> (routing, source) of every document of the indices matching `pattern`."""
    reader.client.indices.refresh(index=pattern, params={"allow_no_indices": "true"})
    resp = reader.client.search(index=pattern, body={"query": {"match_all": {}}, "size": 1000})
    return {(h["_index"], h["_id"]): (h.get("_routing"), h["_source"]) for h in resp["hits"]["hits"]}


def _partial(b_docs: dict) -> dict:
    """The mode: update documents of b: the rule's fields of every row (a deleted row's document is deleted)."""
    return {f"{d['k1']}:{d['k2']}": {"k1": d["k1"], "k2": d["k2"], "amount": d["amount"]} for _, d in b_docs.values()}


# ------------------------------------------------------------------ ingest pipelines (where a zip has processors)
def test_ingest_pipeline_on_opensearch_3(servers, destination_pool, db, database, unique_name, tmp_path):
    """Only OpenSearch 3.6's integ-test-zip has ingest-common (the others have no processors at all)."""
    destination = destination_pool.get("opensearch3", servers)
    reader = Reader(destination.url)
    pipeline = f"{unique_name}-pipe"
    reader.client.ingest.put_pipeline(id=pipeline, body={"processors": [
        {"set": {"field": "via", "value": "pipeline"}}, {"uppercase": {"field": "s"}}]})
    db.execute("CREATE TABLE a (id INT PRIMARY KEY, s VARCHAR(20))", "INSERT INTO a VALUES (1, 'one')")
    index = f"{unique_name}-a"
    setup = setup_for(tmp_path, servers, destination, [{"schema": database, "table": "a", "index": index,
                                                         "pipeline": pipeline}])
    cdc = setup.run()
    try:
        db.execute("INSERT INTO a VALUES (2, 'two')", "UPDATE a SET s = 'uno' WHERE id = 1")
        reader.wait_docs(index, {"1": {"id": 1, "s": "UNO", "via": "pipeline"},
                                 "2": {"id": 2, "s": "TWO", "via": "pipeline"}})
    finally:
        assert cdc.stop() == 0
        reader.delete_prefix(unique_name)
        reader.client.ingest.delete_pipeline(id=pipeline)
        reader.close()
