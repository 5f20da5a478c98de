"""Index lifecycle (issue 31): every fixed name behind an alias.

On every engine (the `destination` fixture): the name a rule gives is an alias
onto `<name>_v1`, and every kind of write cdc makes (versioned index and delete,
`mode: update` upserts, verify's mget and scroll) goes through it; a concrete
index from before aliases keeps working, and `cdc indices plan` says how to move it.
"""

from __future__ import annotations

import json

from harness import CdcSetup
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

