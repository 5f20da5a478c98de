"""Index lifecycle (issue 31, docs/verify-and-rebuild.md "Rebuilding an index"): every fixed name behind an alias, and `cdc rebuild`.

On every engine (the `destination` fixture): the name a rule gives is an alias
onto `<name>_v1`, and every kind of write cdc makes (versioned index and delete,
`mode: update` upserts, verify's mget and scroll) goes through it; a concrete
index from before aliases keeps working, and `cdc indices plan` says how to move it.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
import yaml
from harness import CdcSetup, WriteLoad, create_two_tables, wait_for
import test_destinations
from test_destinations import Reader, setup_for
from test_verify import verify

search = test_destinations.search  # the fixture: a reader of the engine under test, its indices deleted after


def aliases_of(reader: Reader, name: str) -> dict:
    """{concrete index: {alias: {...}}} for the alias `name`; {} when no alias has that name."""
    body = reader.client.indices.get_alias(name=name, params={"ignore": 404})
    return {} if "error" in body or "status" in body else {k: v["aliases"] for k, v in body.items()}


def test_fixed_names_are_aliases_on_every_engine(destination, servers, db, database, search, unique_name,
                                                 tmp_path):
    db.execute("CREATE TABLE a (id INT PRIMARY KEY, v INT, s VARCHAR(20))",
               "CREATE TABLE u (id INT PRIMARY KEY, n INT)",
               "INSERT INTO a VALUES (1, 10, 'one'), (2, 20, 'two'), (3, 30, 'three')")
    old = f"{unique_name}-old"
    search.client.indices.create(index=old)  # a deployment from before aliases
    rules = [{"schema": database, "table": "a", "index": f"{unique_name}-a", "also": True},
             {"schema": database, "table": "a", "index": old, "also": True},
             {"schema": database, "table": "u", "index": f"{unique_name}-u", "mode": "update"}]
    setup: CdcSetup = setup_for(tmp_path, servers, destination, rules)
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done")
        assert aliases_of(search, f"{unique_name}-a") == {f"{unique_name}-a_v1": {f"{unique_name}-a": {
            "is_write_index": True}}}
        assert aliases_of(search, f"{unique_name}-u") == {f"{unique_name}-u_v1": {f"{unique_name}-u": {
            "is_write_index": True}}}
        assert aliases_of(search, old) == {}  # left as it is
        # Versioned index and delete, an update that moves nothing, and partial upserts, all through the alias.
        db.execute("UPDATE a SET v = 21 WHERE id = 2", "DELETE FROM a WHERE id = 3", "INSERT INTO a VALUES (4, 40, 'x')",
                   "INSERT INTO u VALUES (1, 1), (2, 2)", "UPDATE u SET n = 5 WHERE id = 1", "DELETE FROM u WHERE id = 2")
        want = {"1": {"id": 1, "v": 10, "s": "one"}, "2": {"id": 2, "v": 21, "s": "two"}, "4": {"id": 4, "v": 40, "s": "x"}}
        search.wait_docs(f"{unique_name}-a", want)
        search.wait_docs(old, want)
        search.wait_docs(f"{unique_name}-u", {"1": {"id": 1, "n": 5}})
        # A stale write through the alias is still refused on version: replaying the range changes nothing.
        code, out, log = verify(setup)
        assert code == 0, (out, log[-3000:])
        assert all(t["missing"] == t["differing"] == t["orphans"] == 0 for t in out["tables"]), out
    finally:
        assert cdc.stop() == 0
    code, text = setup.command("indices", "plan")
    assert code == 0, text
    plans = {p["name"]: p for p in json.loads(text[text.index("{"):])["indices"]}
    assert plans[f"{unique_name}-a"]["placement"] == {"name": f"{unique_name}-a", "is": "alias",
                                                      "indices": [f"{unique_name}-a_v1"],
                                                      "write_index": f"{unique_name}-a_v1"}
    assert plans[old]["placement"] == {"name": old, "is": "index"}
    assert f"cdc rebuild --index {old}" in plans[old]["move_behind_alias"]


# ------------------------------------------------------------------ cdc rebuild under load, killed at each step
ROWS = 4000
UNTOUCHED = 500  # WriteLoad changes ids below 404 only: the index holds exactly ROWS - UNTOUCHED + 1 ids from here up


class Searcher:
    """Queries the alias every 50 ms the whole time, as a search front end would: counts and errors."""

    def __init__(self, reader: Reader, alias: str):
        self.reader, self.alias = reader, alias
        self.errors: list[str] = []
        self.counts: list[tuple[int, int]] = []  # (all documents, documents of untouched ids)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Searcher":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)

    def _run(self) -> None:
        untouched = {"query": {"range": {"id": {"gte": UNTOUCHED}}}}
        while not self.stop.is_set():
            try:
                total = self.reader.client.count(index=self.alias)["count"]
                fixed = self.reader.client.count(index=self.alias, body=untouched)["count"]
                self.counts.append((total, fixed))
            except Exception as exc:  # every failure counts: the alias must always answer
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stop.wait(0.05)


def rebuild_process(setup: CdcSetup, *args: str, kill_at: str | None = None):
    proc = setup.process("rebuild", *args, "--log-format", "json", "--log-level", "DEBUG")
    if kill_at:
        proc.env = {**proc.env, "CDC_REBUILD_KILL_AT": kill_at}
    return proc.start()


def rebuild_state(setup: CdcSetup) -> dict:
    path = setup.checkpoint_path.with_name("checkpoint.json.rebuild.json")
    return json.loads(path.read_text()) if path.exists() else {}


def _rule(database: str, alias: str, mapping: dict) -> list[dict]:
    return [{"schema": database, "table": "a", "index": alias, "create_index": {"mappings": {"properties": mapping}}},
            {"schema": database, "table": "b", "index": f"{alias}-b"}]


def rebuild_under_load(setup: CdcSetup, reader: Reader, db, servers, database: str, alias: str,
                       kill_at: str | None) -> None:
    """The daemon streams a write load; a rule's mapping changes (s: text -> keyword); `cdc rebuild` runs, is
    SIGKILLed at `kill_at` (copy, mid-copy, swap, swapped, or None), and is run again to the end. A thread
    searches the alias every 50 ms all along."""
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=120)
        first = f"{alias}_v1"
        assert aliases_of(reader, alias) == {first: {alias: {"is_write_index": True}}}
        reader.client.indices.refresh(index=alias)  # the initial snapshot, searchable before the searches start
        with WriteLoad(servers, database, rate=100) as load, Searcher(reader, alias) as searcher:
            time.sleep(1)
            # The rule changes: a mapping Elasticsearch cannot change in place.
            (setup.dir / "rules" / "rules.yml").write_text(yaml.safe_dump({"rules": _rule(
                database, alias, {"s": {"type": "keyword"}})}))
            code, text = setup.command("indices", "plan")
            assert code == 0, text
            [plan] = [p for p in json.loads(text[text.index("{"):])["indices"] if p["name"] == alias]
            assert plan["state"] == "differs" and "s: text in Elasticsearch, keyword planned" in plan["differences"]
            if kill_at is not None:
                proc = rebuild_process(setup, "--index", alias, kill_at=None if kill_at == "mid-copy" else kill_at)
                if kill_at == "mid-copy":
                    progress = setup.checkpoint_path.with_name(f"checkpoint.json.rebuild-{alias}.snapshot.json")
                    wait_for("the copy under way", lambda: progress.exists() and any(
                        t["rows"] > 0 and not t["done"] for t in json.loads(progress.read_text())["tables"].values()),
                        timeout=120, interval=0.01)
                    proc.proc.send_signal(signal.SIGKILL)
                assert proc.wait(180) == -signal.SIGKILL, proc.text()[-3000:]
                killed = rebuild_state(setup)
                [entry] = killed["rebuilds"]
                assert entry["phase"] == {"copy": "copy", "mid-copy": "copy", "swap": "swap",
                                          "swapped": "swap"}[kill_at], killed
                # The alias is on a complete index: the old one, or (killed right after the swap) the new one.
                on = set(aliases_of(reader, alias))
                assert on == ({entry["index"]} if kill_at == "swapped" else {first}), on
                time.sleep(1)  # searches go on meanwhile
            proc = rebuild_process(setup, "--index", alias)
            assert proc.wait(300) == 0, proc.text()[-4000:]
            [outcome] = json.loads(proc.text()[proc.text().index('{"rebuilds"'):].splitlines()[0])["rebuilds"]
            assert outcome["result"] == "swapped" and outcome["replaces"] == [first], outcome
            second = outcome["index"]
            assert second == f"{alias}_v2"
            assert aliases_of(reader, alias) == {second: {alias: {"is_write_index": True}}}
            time.sleep(1)  # the daemon writes to the new index through the alias
            load.stop()
            time.sleep(0.5)
        assert searcher.errors == [], searcher.errors[:5]
        assert len(searcher.counts) > 40, len(searcher.counts)
        # Never a half-empty index: the untouched ids are all there in every answer, old index or new.
        assert {fixed for _, fixed in searcher.counts} == {ROWS - UNTOUCHED + 1}, sorted(set(searcher.counts))[:5]
        reader.wait_equal(db, "a", alias, ["id"])
        code, report, log = verify(setup)
        assert code == 0, (report, log[-3000:])
    finally:
        assert cdc.stop() == 0, cdc.text()[-3000:]
    assert "rebuild_dual_write" in cdc.text()
    mapping = next(iter(reader.client.indices.get_mapping(index=alias).values()))["mappings"]["properties"]
    assert mapping["s"] == {"type": "keyword"}
    # The replaced index is kept until indices.keep_previous has passed; --cleanup --now deletes it.
    assert [p["index"] for p in rebuild_state(setup)["previous"]] == [first]
    assert reader.client.indices.exists(index=first)
    code, text = setup.command("rebuild", "--cleanup", "--now")
    assert code == 0 and json.loads(text[text.index('{"deleted"'):].splitlines()[0]) == {"deleted": [first], "command": "rebuild", "ok": True}, text
    assert not reader.client.indices.exists(index=first)
    assert rebuild_state(setup) == {}


def _setup_rebuild(tmp_path, servers, db, database, alias, chunk_size: int = 100, **overrides) -> CdcSetup:
    create_two_tables(db, ROWS)
    return CdcSetup(tmp_path, servers, _rule(database, alias, {}), snapshot__chunk_size=chunk_size, **overrides)


@pytest.mark.parametrize("kill_at", [None, "copy", "mid-copy", "swap", "swapped"])
def test_rebuild_under_load_killed_at_each_step(servers, db, database, index_prefix, tmp_path, kill_at):
    alias = f"{index_prefix}-a"
    # Killed mid-copy from outside, timed off the progress file: chunks of 10 rows make the copy last
    # seconds on a quiet machine (of 100, it was over in 0.2 s, before the test could see it under way).
    setup = _setup_rebuild(tmp_path, servers, db, database, alias, chunk_size=10 if kill_at == "mid-copy" else 100)
    reader = Reader(servers.es_url)
    try:
        rebuild_under_load(setup, reader, db, servers, database, alias, kill_at)
    finally:
        reader.close()


@pytest.mark.parametrize("destination,kill_at", [
    *((engine, kill_at) for engine in ("es7", "opensearch") for kill_at in ("copy", "mid-copy", "swap", "swapped")),
    ("opensearch3", "swap")], indirect=["destination"])
def test_rebuild_on_the_other_engines(destination, servers, db, database, search, unique_name, tmp_path, kill_at):
    """The same on Elasticsearch 7.17 and OpenSearch 2 at every kill point, and on OpenSearch 3 killed between
    verify and the swap (Elasticsearch 8: test_rebuild_under_load_killed_at_each_step)."""
    alias = f"{unique_name}-a"
    setup = _setup_rebuild(tmp_path, servers, db, database, alias, chunk_size=10 if kill_at == "mid-copy" else 100,
                           elasticsearch__hosts=[destination.url])
    rebuild_under_load(setup, search, db, servers, database, alias, kill_at)
