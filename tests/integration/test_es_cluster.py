"""Faults of a three-node Elasticsearch 8 or OpenSearch 2 cluster (scripts/servers.py cluster_up) under a
streaming cdc.

The tests read the clusters with opensearch-py, which talks to both engines. Each prints how long cdc took to
recover (RELIABILITY.md "Elasticsearch faults" quotes them; `pytest -s` shows them).
"""

from __future__ import annotations

import re
import time

import pytest
from harness import CdcSetup, WriteLoad, create_two_tables, wait_for, wait_until_equal
from opensearchpy import OpenSearch

# The logger of each client's node pool, which warns when a request to a node fails and the node is set
# aside: "Node <Urllib3HttpNode(URL)> has failed for N times in a row, putting on T second timeout"
# (elastic_transport) or "Connection <Urllib3HttpConnection: URL> has failed for N times in a row, ..."
# (opensearch-py, cdc/es/transport.py lets these through).
POOL = {"elasticsearch": "elastic_transport.node_pool", "opensearch": "opensearch"}


def _pool_lines(cdc, engine: str, url: str, what: str) -> list[dict]:
    """The client's node-pool warnings about the node at `url`: `failed` (a request to it failed and the
    pool set it aside for a while) or `alive` (a request to it succeeded again: elastic_transport only,
    opensearch-py takes a node back without a word)."""
    needle = {"failed": "has failed for", "alive": "has been marked alive"}[what]
    return [r for r in cdc.logs() if r.get("logger") == POOL[engine] and needle in r["msg"]
            and (f"{url})" in r["msg"] or f"{url}>" in r["msg"])]


def _failure_numbers(lines: list[dict]) -> list[int]:
    """The N of each "has failed for N times in a row" line (every line given is one: _pool_lines)."""
    found = [re.search(r"for (\d+) times", r["msg"]) for r in lines]
    assert all(found), [r["msg"] for r in lines]
    return [int(m.group(1)) for m in found if m]


def _log_ts() -> str:
    """Now, as cdc's log lines stamp it (UTC, milliseconds), to compare with their `ts`."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


@pytest.fixture
def client(request, unique_name):
    """An opensearch-py client of the test's cluster (`search_cluster` or `es_cluster`); the test's indices
    are deleted at the end, also after a failure: left behind, their shards moved about as the later
    tests killed nodes (seen: the primary a test had picked to kill rebalanced away before the kill)."""
    cluster = request.getfixturevalue("search_cluster" if "search_cluster" in request.fixturenames else "es_cluster")
    client = OpenSearch(list(cluster.urls), timeout=30)  # its own retries go round a dead node
    yield client
    try:
        names = list(client.indices.get(index=f"{unique_name}-*"))
        if names:  # named: Elasticsearch 8 refuses wildcard deletes (action.destructive_requires_name)
            client.indices.delete(index=",".join(names))
    finally:
        client.close()


def primary_node(client, index: str) -> str | None:
    """The name of the node holding the index's (one) primary shard, None while it is not started."""
    return next((s["node"] for s in client.cat.shards(index=index, format="json")
                 if s["prirep"] == "p" and s["state"] == "STARTED"), None)


def _green_primary(client, index: str, every: str | None = None) -> int:
    """The number of the node holding the index's primary, once all copies of the indices `every` (a
    pattern; default the index) are placed (so the primary's node has a replica elsewhere to promote)."""
    wait_for(f"{every or index} green", lambda: client.cluster.health(index=every or index)["status"] == "green",
             timeout=60)
    name = primary_node(client, index)
    assert name is not None, f"{index}: green, yet no started primary"
    return int(name.rsplit("-", 1)[1])


def _coordinated_bytes(client, node: str) -> int:
    """Bytes of bulk requests the node has received from a client (and spread to the shards) since it started:
    only cdc writes here, so more than 0 on a restarted node means cdc's client sends to it again."""
    stats = client.nodes.stats(node_id=node, metric="indexing_pressure")["nodes"]
    return sum(n["indexing_pressure"]["memory"]["total"]["coordinating_in_bytes"] for n in stats.values())


def _setup(cluster, servers, database: str, unique_name: str, tmp_path, tables=("a", "b"), **overrides) -> CdcSetup:
    """cdc on all three nodes, into indices of one primary and one replica; a rejected write would be
    dead-lettered (and the tests assert none was)."""
    settings = {"number_of_shards": 1, "number_of_replicas": 1}
    rules = [{"schema": database, "table": t, "index": f"{unique_name}-{t}", "create_index": {"settings": settings}}
             for t in tables]
    return CdcSetup(tmp_path, servers, rules, elasticsearch__hosts=list(cluster.urls),
                    elasticsearch__engine=cluster.engine, dead_letter__on_rejected="dead_letter", **overrides)


class _TrailLoad(WriteLoad):
    """WriteLoad, and with each of its operations a row inserted into table `c` and never touched again:
    WriteLoad writes the same few hundred keys over and over, so a write cdc dropped would soon be
    written over and the index heal (seen: a cdc that dropped each failed request passed those checks);
    a dropped insert into `c` stays a missing document."""

    def _one(self) -> None:
        super()._one()
        self.admin.execute("INSERT INTO c () VALUES ()")


# Each table's document id columns.
IDS = {"a": ["id"], "b": ["k1", "k2"], "c": ["id"], "big": ["id"]}


def _load_setup(cluster, servers, db, database: str, unique_name: str, tmp_path) -> tuple[CdcSetup, tuple]:
    """The tables of _TrailLoad, and cdc set up to stream them: (setup, tables)."""
    create_two_tables(db)
    db.execute("CREATE TABLE c (id INT AUTO_INCREMENT PRIMARY KEY)")
    tables = ("a", "b", "c")
    return _setup(cluster, servers, database, unique_name, tmp_path, tables), tables


def _primary_of_a(client, unique_name: str) -> int:
    """The node holding the primary of index a, once it has documents and both copies of every index of
    the test are placed (a kill before the replica of a new index is placed takes its only copy)."""
    index = f"{unique_name}-a"
    wait_for("index a with documents", lambda: client.indices.exists(index=index)
             and client.count(index=index)["count"] > 0, timeout=60)
    return _green_primary(client, index, f"{unique_name}-*")


def _wait_all_equal(db, client, unique_name: str, tables) -> None:
    for table in tables:
        wait_until_equal(db, client, table, f"{unique_name}-{table}", IDS[table], timeout=120)


def _moved_after(setup: CdcSetup, before, since: float, what: str, timeout: float = 120) -> float:
    """Seconds from `since` (a monotonic time) until the checkpoint's position differs from `before`."""
    wait_for(what, lambda: setup.position() != before, timeout=timeout, interval=0.05)
    return time.monotonic() - since


def _check(setup: CdcSetup, cdc) -> None:
    """After cdc has stopped: nothing dead-lettered, and `cdc verify` agrees."""
    # Waiting, not giving up: nothing was set aside as rejected.
    assert not cdc.events("dead_letter"), cdc.text()[-3000:]
    verified = setup.output("verify", timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]


def test_a_killed_node_holding_a_primary_is_waited_out_and_nothing_is_lost(servers, search_cluster, client, db,
                                                                           database, unique_name, tmp_path):
    """SIGKILL of the node holding the primary shard of an index with one replica, while cdc streams a write
    load into it with all three nodes in elasticsearch.hosts, on Elasticsearch 8 and on OpenSearch 2: the
    replica is promoted, cdc retries what the dead node did not answer (nothing dead-lettered, nothing
    skipped), the node is started again and used again, and at the end every document equals MariaDB and
    `cdc verify` agrees."""
    cluster = search_cluster
    setup, tables = _load_setup(cluster, servers, db, database, unique_name, tmp_path)
    killed = None
    cdc = setup.run()
    try:
        with _TrailLoad(servers, database, rate=100) as load:
            killed = _primary_of_a(client, unique_name)
            index = f"{unique_name}-a"
            dead_url, dead_name = cluster.urls[killed - 1], cluster.node_name(killed)
            at_kill = setup.position()
            kill_time = time.monotonic()
            cluster.node_kill(killed)
            # cdc goes on through the other two nodes: the checkpoint (saved only after the cluster
            # acknowledged everything before it) moves while the node is down, and the client has tried
            # the dead node, failed and set it aside more than once.
            recovered = _moved_after(setup, at_kill, kill_time, "the checkpoint to move with the node down")
            print(f"\n{cluster.engine}: the checkpoint moved again {recovered:.1f} s after the kill")
            # The cluster promoted the replica on another node (the new primary the writes went to).
            wait_for("the replica promoted", lambda: primary_node(client, index) not in (None, dead_name),
                     timeout=120)
            wait_for("two failed tries of the dead node",
                     lambda: len(_pool_lines(cdc, cluster.engine, dead_url, "failed")) >= 2, timeout=120)
            assert cdc.popen.poll() is None, cdc.text()[-3000:]
            cluster.node_up(killed)
            cluster.wait(3)
            back = _log_ts()  # the node is in the cluster again
            killed = None
            # The client takes the node back after its set-aside time, once a request to it succeeds: it
            # sends cdc's bulk requests there again.
            wait_for("the client to use the restarted node again", lambda: _coordinated_bytes(client, dead_name) > 0,
                     timeout=120)
            print(f"{cluster.engine}: the restarted node took bulk requests again "
                  f"{time.monotonic() - kill_time:.1f} s after the kill")
            if cluster.engine == "elasticsearch":
                wait_for("the pool's word that the node is alive",
                         lambda: _pool_lines(cdc, cluster.engine, dead_url, "alive"), timeout=60)
            assert load.ops > 100
        _wait_all_equal(db, client, unique_name, tables)
    finally:
        if killed is not None:
            cluster.node_up(killed)
        assert cdc.stop() == 0, cdc.text()[-3000:]
    # What the client did with the dead node, from its node pool's warnings (each request to a node that
    # fails is logged): until the node was back in the cluster the failures are numbered in a row ("has
    # failed for N times in a row, putting on T second timeout"), so between them the node was never taken
    # for alive and was tried again only when its set-aside time was up; meanwhile cdc kept saving
    # checkpoints, each after the cluster acknowledged a bulk: those went to the live nodes.
    failed = [r for r in _pool_lines(cdc, cluster.engine, dead_url, "failed") if r["ts"] < back]
    numbers = _failure_numbers(failed)
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    saved = [r for r in cdc.logs() if r.get("logger") == "cdc.pipeline" and r["msg"].startswith("checkpoint ")
             and failed[0]["ts"] < r["ts"] < back]
    assert len(saved) > len(failed), (len(saved), [r["msg"] for r in failed])
    _check(setup, cdc)


def test_a_node_stopped_for_a_minute_is_written_around_and_used_again(servers, es_cluster, client, db, database,
                                                                       unique_name, tmp_path):
    """A clean shutdown (SIGTERM) of the node holding a primary, the node kept down for a minute while cdc
    streams a write load, then started again: cdc writes through the other two nodes the whole minute,
    takes the node back once it is up, and at the end every document equals MariaDB and `cdc verify`
    agrees; nothing dead-lettered."""
    cluster = es_cluster
    setup, tables = _load_setup(cluster, servers, db, database, unique_name, tmp_path)
    stopped = None
    cdc = setup.run()
    try:
        with _TrailLoad(servers, database, rate=100) as load:
            stopped = _primary_of_a(client, unique_name)
            url, name = cluster.urls[stopped - 1], cluster.node_name(stopped)
            last = setup.position()
            stop_time = time.monotonic()
            cluster.node_stop(stopped)  # returns once the node has exited
            print(f"\nthe node's clean shutdown took {time.monotonic() - stop_time:.1f} s")
            # The fault is a node down for a minute (a fixed span, not a wait for something): meanwhile
            # the times the checkpoint was seen to move.
            moves = []
            while (elapsed := time.monotonic() - stop_time) < 60:
                if (position := setup.position()) != last:
                    moves.append(elapsed)
                    last = position
                assert cdc.popen.poll() is None, cdc.text()[-3000:]
                time.sleep(0.1)
            gaps = [b - a for a, b in zip([0.0, *moves], moves)]
            print(f"the checkpoint moved {len(moves)} times in the minute, first {moves[0] if moves else None:.1f} "
                  f"s after the stop; longest pause {max(gaps, default=60):.1f} s")
            # Through the whole minute, not only at its start (a batch already on its way) or its end.
            assert any(t < 30 for t in moves) and any(t >= 30 for t in moves), moves
            # The client did try the stopped node (and set it aside each time).
            assert len(_pool_lines(cdc, cluster.engine, url, "failed")) >= 2, cdc.text()[-3000:]
            cluster.node_up(stopped)
            cluster.wait(3)
            back = time.monotonic()
            stopped = None
            # After many failures in a row the client sets a node aside for 30 s at a time.
            wait_for("the client to use the restarted node again", lambda: _coordinated_bytes(client, name) > 0,
                     timeout=120)
            print(f"the node was back in the cluster {back - stop_time - 60:.1f} s after the minute and took "
                  f"bulk requests again {time.monotonic() - back:.1f} s later")
            assert load.ops > 100
        _wait_all_equal(db, client, unique_name, tables)
    finally:
        if stopped is not None:
            cluster.node_up(stopped)
        assert cdc.stop() == 0, cdc.text()[-3000:]
    _check(setup, cdc)


@pytest.mark.parametrize("bulk_settings", [True, False], ids=["bulk_settings", "replicated"])
def test_a_node_holding_a_primary_killed_during_a_snapshot(servers, es_cluster, client, db, database, unique_name,
                                                           tmp_path, bulk_settings):
    """SIGKILL of the node holding the primary of the index an initial snapshot is copying 20,000 rows into,
    in chunks of 50, while a write load goes on, then the node started again: the snapshot finishes with
    every row, streaming continues, and at the end every index equals MariaDB and `cdc verify` agrees;
    nothing dead-lettered.

    The replica is promoted and the copy goes on through the other nodes while the node is down, with
    snapshot.bulk_settings: true (refreshes off during the copy) and without. The bulk settings once
    dropped the replica too, and the kill then took the only copy of the shard: the copy waited for the node,
    and a node that never came back would have taken acknowledged chunks along (cdc/copy/bulkload.py)."""
    cluster = es_cluster
    rows = 20_000
    create_two_tables(db)
    db.execute("CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(200))")
    db.execute(f"INSERT INTO big SELECT seq, REPEAT('x', 150) FROM {db.seq(rows)}")
    tables = ("big", "a", "b")
    # One chunk of 50 rows in flight at a time: with the default 4 of 100 the copy took under 2 s on a quiet
    # machine, too short to be sure the kill lands in it.
    setup = _setup(cluster, servers, database, unique_name, tmp_path, tables, snapshot__chunk_size=50,
                   snapshot__concurrency=1, snapshot__bulk_settings=bulk_settings)
    table, index = f"{database}.big", f"{unique_name}-big"

    def copied() -> dict:
        return ((setup.checkpoint() or {}).get("snapshot") or {}).get(table, {})

    # Made here, both copies placed before cdc starts, so that the kill can come early in the copy (cdc
    # would make it at its start, and the copy could be well on by the time the replica is placed). It is
    # empty, so bulk_settings turns its refreshes off for the copy.
    client.indices.create(index=index, body={"settings": {"number_of_shards": 1, "number_of_replicas": 1}})
    _green_primary(client, index)
    killed = None
    with WriteLoad(servers, database, rate=100) as load:
        cdc = setup.run()
        try:
            wait_for("2,000 rows copied", lambda: copied().get("rows", 0) >= 2000, timeout=120, interval=0.02)
            settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
            assert settings["number_of_replicas"] == "1", settings  # the replica stays, bulk settings or not
            assert settings.get("refresh_interval") == ("-1" if bulk_settings else None), settings
            # The node holding the primary now (not before the copy: a lone copy may be moved to balance).
            killed = int(wait_for("a started primary", lambda: primary_node(client, index)).rsplit("-", 1)[1])
            dead_url, dead_name = cluster.urls[killed - 1], cluster.node_name(killed)
            kill_time = time.monotonic()
            cluster.node_kill(killed)
            at_kill = copied()
            assert not at_kill["done"] and at_kill["rows"] < rows, at_kill  # the copy is under way

            def went_on() -> bool:
                return copied().get("rows", 0) > at_kill["rows"] or bool(copied().get("done"))

            wait_for("the copy to go on with the node down", went_on, timeout=120, interval=0.05)
            print(f"\nthe copy moved again {time.monotonic() - kill_time:.1f} s after the kill "
                  f"(at {at_kill['rows']} of {rows} rows)")
            wait_for("the replica promoted", lambda: primary_node(client, index) not in (None, dead_name),
                     timeout=120)
            cluster.node_up(killed)
            cluster.wait(3)
            killed = None
            done = cdc.wait_for_event("snapshot_done", timeout=180)
            print(f"the snapshot finished {time.monotonic() - kill_time:.1f} s after the kill")
            # The kill hit the copy: requests of it failed and were sent again; those to the dead node when the
            # copy went on around it. (With no copy of the index left, a request to a live node waits for the
            # primary and times out, and the client sets that node aside too: a request to the dead node
            # during the outage is likely, not certain.)
            assert [r for r in cdc.events("retry") if r["ts"] < done["ts"]], cdc.text()[-3000:]
            failed = _pool_lines(cdc, cluster.engine, dead_url, "failed")
            assert failed and failed[0]["ts"] < done["ts"], cdc.text()[-3000:]
            assert f"snapshot of {table} done: {rows} rows" in cdc.text()
            # Streaming continues after the copy.
            _moved_after(setup, setup.position(), time.monotonic(), "the checkpoint to move after the snapshot")
            assert load.ops > 100
            load.stop()
            _wait_all_equal(db, client, unique_name, tables)
        finally:
            if killed is not None:
                cluster.node_up(killed)
            assert cdc.stop() == 0, cdc.text()[-3000:]
    # The index's own settings are back after the copy (its replica too).
    assert client.indices.get_settings(index=index)[index]["settings"]["index"]["number_of_replicas"] == "1"
    _check(setup, cdc)
