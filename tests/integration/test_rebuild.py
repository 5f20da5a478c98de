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
# The rule change that needs a new index: `s` gets an analyzer of the index's own settings (tokens of at most 3
# characters: "s1234" -> "s12", "34"), and each document of `a` gains the rows of `b` whose k1 is its id.
ANALYSIS = {"analysis": {"analyzer": {"short_words": {"type": "standard", "max_token_length": 3}}}}
LINES = {"lines": {"table": "b", "key": "k1", "include": ["k2", "amount"]}}


class Searcher:
    """Queries the alias every 50 ms the whole time, as a search front end would: counts and errors."""

    def __init__(self, reader: Reader, alias: str, load: WriteLoad):
        self.reader, self.alias, self.load = reader, alias, load
        self.errors: list[str] = []
        self.counts: list[tuple[int, int]] = []  # (all documents, documents of untouched ids)
        self.short: list[tuple[int, int]] = []  # (all documents, the least the table held): fewer than it held
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
                # The index held the table's ROWS rows when the searches began; since then at most the rows deleted
                # so far can have left it (read after the answer, so every delete it may reflect is counted).
                least = ROWS - self.load.deleted_a
                if total < least:
                    self.short.append((total, least))
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


def _rules(database: str, alias: str, changed: bool = False) -> list[dict]:
    a: dict = {"schema": database, "table": "a", "index": alias, "create_index": {"mappings": {"properties": {}}}}
    if changed:
        a = {**a, "create_index": {"settings": ANALYSIS, "mappings": {"properties": {
            "s": {"type": "text", "analyzer": "short_words"}}}}, "children": LINES}
    return [a, {"schema": database, "table": "b", "index": f"{alias}-b"}]


def change_the_rule(setup: CdcSetup, cdc, database: str, alias: str):
    """The rule changes in ways Elasticsearch cannot apply to an index in place (an analyzer), and in what the
    documents hold (children): the daemon goes on with the new rules (restarted), as the docs say. Its start-up
    reports the difference with the command. The new daemon."""
    (setup.dir / "rules" / "rules.yml").write_text(yaml.safe_dump({"rules": _rules(database, alias, True)}))
    assert cdc.stop() == 0, cdc.text()[-3000:]
    cdc = setup.run()
    assert f"cdc rebuild --index {alias}" in cdc.wait_for_event("index_differs", index=alias)["msg"]
    return cdc


def rebuild_under_load(setup: CdcSetup, reader: Reader, db, servers, database: str, alias: str,
                       kill_at: str | None) -> None:
    """The daemon streams a write load; the rule changes (an analyzer on `s`, and `b`'s rows embedded as children),
    and the daemon is restarted on it; `cdc rebuild` runs, is SIGKILLed at `kill_at` (copy, mid-copy, swap,
    swapped, or None), and is run again to the end. A thread searches the alias every 50 ms all along."""
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=120)
        first = f"{alias}_v1"
        assert aliases_of(reader, alias) == {first: {alias: {"is_write_index": True}}}
        reader.client.indices.refresh(index=alias)  # the initial snapshot, searchable before the searches start
        with WriteLoad(servers, database, rate=100) as load, Searcher(reader, alias, load) as searcher:
            wait_for("searches", lambda: len(searcher.counts) >= 5, interval=0.05)
            cdc = change_the_rule(setup, cdc, database, alias)
            code, text = setup.command("indices", "plan")
            assert code == 0, text
            [plan] = [p for p in json.loads(text[text.index("{"):])["indices"] if p["name"] == alias]
            # Both the field's analyzer and the settings that define it: either alone names the rebuild.
            assert plan["state"] == "differs" and "s: analyzer default in Elasticsearch, short_words planned" in \
                plan["differences"] and any(d.startswith("setting index.analysis.analyzer.short_words")
                                            for d in plan["differences"]), plan
            assert f"cdc rebuild --index {alias}" in plan["rebuild"], plan
            if kill_at is not None:
                proc = rebuild_process(setup, "--index", alias, kill_at=None if kill_at == "mid-copy" else kill_at)
                if kill_at == "mid-copy":
                    progress = setup.checkpoint_path.with_name(f"checkpoint.json.rebuild-{alias}.snapshot.json")
                    wait_for("the copy under way", lambda: progress.exists() and any(
                        t["rows"] > 0 and not t["done"] for t in json.loads(progress.read_text())["tables"].values()),
                        timeout=120, interval=0.01)
                    proc.popen.send_signal(signal.SIGKILL)
                assert proc.wait(180) == -signal.SIGKILL, proc.text()[-3000:]
                killed = rebuild_state(setup)
                [entry] = killed["rebuilds"]
                assert entry["phase"] == {"copy": "copy", "mid-copy": "copy", "swap": "swap",
                                          "swapped": "swap"}[kill_at], killed
                # The alias is on a complete index: the old one, or (killed right after the swap) the new one.
                on = set(aliases_of(reader, alias))
                assert on == ({entry["index"]} if kill_at == "swapped" else {first}), on
                searched = len(searcher.counts)
                wait_for("searches meanwhile", lambda: len(searcher.counts) >= searched + 5, interval=0.05)
            proc = rebuild_process(setup, "--index", alias)
            assert proc.wait(300) == 0, proc.text()[-4000:]
            [outcome] = json.loads(proc.text()[proc.text().index('{"rebuilds"'):].splitlines()[0])["rebuilds"]
            assert outcome["result"] == "swapped" and outcome["replaces"] == [first], outcome
            second = outcome["index"]
            assert second == f"{alias}_v2"
            assert aliases_of(reader, alias) == {second: {alias: {"is_write_index": True}}}
            # The daemon writes to the new index through the alias, while the searches go on.
            searched = len(searcher.counts)
            wait_for("searches after the swap", lambda: len(searcher.counts) >= searched + 10, interval=0.05)
            load.stop()
        assert_searches_never_fell_short(searcher, load)
        assert_verified(setup)
    finally:
        assert cdc.stop() == 0, cdc.text()[-3000:]
    assert "rebuild_dual_write" in cdc.text()
    assert_rebuilt(reader, db, alias)
    # The replaced index is kept until indices.keep_previous has passed; --cleanup --now deletes it.
    assert [p["index"] for p in rebuild_state(setup)["previous"]] == [first]
    assert reader.client.indices.exists(index=first)
    code, text = setup.command("rebuild", "--cleanup", "--now")
    assert code == 0 and json.loads(text[text.index('{"deleted"'):].splitlines()[0]) == {"deleted": [first], "command": "rebuild", "ok": True}, text
    assert not reader.client.indices.exists(index=first)
    assert rebuild_state(setup) == {}


def assert_searches_never_fell_short(searcher: Searcher, load: WriteLoad) -> None:
    assert searcher.errors == [], searcher.errors[:5]
    assert len(searcher.counts) > 40, len(searcher.counts)
    # Never a half-empty index: the untouched ids are all there in every answer, old index or new, and no answer
    # counted fewer documents than the table held less the rows deleted meanwhile.
    assert {fixed for _, fixed in searcher.counts} == {ROWS - UNTOUCHED + 1}, sorted(set(searcher.counts))[:5]
    assert searcher.short == [], searcher.short[:5]
    assert load.deleted_a > 0


def assert_verified(setup: CdcSetup) -> None:
    """After the swap, `cdc verify` finds the new index equal to the table."""
    code, report, log = verify(setup)
    assert code == 0, (report, log[-3000:])


def assert_rebuilt(reader: Reader, db, alias: str) -> None:
    """The new index really has the new rule's analyzer and the children's field."""
    mapping = reader.mapping(alias)
    assert mapping["s"] == {"type": "text", "analyzer": "short_words"}, mapping["s"]
    assert set(mapping["lines"]["properties"]) == {"k2", "amount"}, mapping.get("lines")
    tokens = reader.client.indices.analyze(index=alias, body={"field": "s", "text": "s1234"})["tokens"]
    assert [t["token"] for t in tokens] == ["s12", "34"], tokens
    doc = reader.client.get(index=alias, id=str(ROWS))["_source"]  # untouched; b rows with k1 = 4000: none
    assert doc["lines"] == [], doc
    lines = [{"k2": k2, "amount": str(amount)} for k2, amount in db.execute(
        f"SELECT k2, amount FROM b WHERE k1 = {UNTOUCHED - 100} ORDER BY k1, k2")]
    assert lines and reader.client.get(index=alias, id=str(UNTOUCHED - 100))["_source"]["lines"] == lines


def _setup_rebuild(tmp_path, servers, db, database, alias, chunk_size: int = 100, **overrides) -> CdcSetup:
    create_two_tables(db, ROWS)
    return CdcSetup(tmp_path, servers, _rules(database, alias), snapshot__chunk_size=chunk_size, **overrides)


@pytest.mark.parametrize("kill_at", [None, "copy", "mid-copy", "swap", "swapped"])
def test_rebuild_under_load_killed_at_each_step(servers, db, database, index_prefix, tmp_path, kill_at):
    alias = f"{index_prefix}-a"
    # Killed mid-copy from outside, timed off the progress file: chunks of 25 rows (each with its children) make
    # the copy last seconds (of 100 rows without children, it was over in 0.2 s, before the test could see it
    # under way; of 10 with children, the run took a minute).
    setup = _setup_rebuild(tmp_path, servers, db, database, alias, chunk_size=25 if kill_at == "mid-copy" else 100)
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
    setup = _setup_rebuild(tmp_path, servers, db, database, alias, chunk_size=25 if kill_at == "mid-copy" else 100,
                           elasticsearch__hosts=[destination.url])
    rebuild_under_load(setup, search, db, servers, database, alias, kill_at)


def test_cdc_run_rebuilds_by_itself_with_on_change_rebuild_and_finishes_after_a_kill(servers, db, database,
                                                                                    index_prefix, tmp_path):
    """indices.on_change: rebuild: the daemon restarted on the changed rule rebuilds the index in the background
    while it streams (progress in `cdc status`); SIGKILLed mid-copy and started again, it resumes and swaps. The
    same searches and checks as above."""
    alias = f"{index_prefix}-a"
    first = f"{alias}_v1"
    setup = _setup_rebuild(tmp_path, servers, db, database, alias, chunk_size=25, indices__on_change="rebuild")
    reader = Reader(servers.es_url)
    cdc = setup.run()
    try:
        cdc.wait_for_event("snapshot_done", timeout=120)
        reader.client.indices.refresh(index=alias)
        with WriteLoad(servers, database, rate=100) as load, Searcher(reader, alias, load) as searcher:
            wait_for("searches", lambda: len(searcher.counts) >= 5, interval=0.05)
            assert not cdc.events("rebuild_background")  # nothing differed: nothing to rebuild
            cdc = change_the_rule(setup, cdc, database, alias)
            # The copy takes a second or two (chunks of 25 rows): polled from its progress file, not the log.
            progress = setup.checkpoint_path.with_name(f"checkpoint.json.rebuild-{alias}.snapshot.json")
            wait_for("the copy under way", lambda: progress.exists() and any(
                t["rows"] > 0 and not t["done"] for t in json.loads(progress.read_text())["tables"].values()),
                timeout=120, interval=0.01)
            cdc.stop(signal.SIGKILL)
            assert cdc.events("rebuild_background", index=alias), cdc.text()[-3000:]
            [entry] = rebuild_state(setup)["rebuilds"]
            assert entry["phase"] == "copy" and set(aliases_of(reader, alias)) == {first}, entry
            # Shown as a snapshot's progress is, by table, in `cdc status`: where the next start resumes.
            [shown] = json.loads(setup.output("status", "--json").stdout)["rebuilds"]
            assert shown["alias"] == alias and shown["index"] == f"{alias}_v2" and shown["phase"] == "copy", shown
            [(table, copied)] = shown["copy"].items()
            assert table == f"{database}.a" and 0 < copied["rows"] < ROWS and not copied["done"], shown
            cdc = setup.run()
            assert cdc.wait_for_event("rebuild_resume")["index"] == f"{alias}_v2"
            cdc.wait_for_event("rebuild_done", timeout=180, index=f"{alias}_v2")
            assert aliases_of(reader, alias) == {f"{alias}_v2": {alias: {"is_write_index": True}}}
            assert json.loads(setup.output("status", "--json").stdout)["rebuilds"] == []
            searched = len(searcher.counts)
            wait_for("searches after the swap", lambda: len(searcher.counts) >= searched + 10, interval=0.05)
            load.stop()
        assert_searches_never_fell_short(searcher, load)
        assert_verified(setup)
        assert_rebuilt(reader, db, alias)
        # The next start finds the index as the rules want it: no rebuild.
        assert cdc.stop() == 0, cdc.text()[-3000:]
        cdc = setup.run()
        cdc.wait_for_event("start")
        assert not cdc.events("index_differs") and not cdc.events("rebuild_background"), cdc.text()[-3000:]
    finally:
        assert cdc.stop() == 0, cdc.text()[-3000:]
        reader.close()
