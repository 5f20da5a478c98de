"""Faults of a three-node Elasticsearch cluster (scripts/servers.py es_cluster_up) under a streaming cdc."""

from __future__ import annotations

import re

from elasticsearch import Elasticsearch
from harness import CdcSetup, WriteLoad, create_two_tables, wait_for, wait_until_equal

POOL = "elastic_transport.node_pool"


def _pool_lines(cdc, url: str, what: str) -> list[dict]:
    """The client's node-pool warnings about the node at `url`: `failed` (a request to it failed and the
    pool set it aside for a while) or `alive` (a request to it succeeded again)."""
    needle = {"failed": "has failed for", "alive": "has been marked alive"}[what]
    return [r for r in cdc.logs() if r.get("logger") == POOL and f"({url})" in r["msg"] and needle in r["msg"]]


def primary_node(es, index: str) -> str | None:
    """The name of the node holding the index's (one) primary shard, None while it is not started."""
    return next((s["node"] for s in es.cat.shards(index=index, format="json")
                 if s["prirep"] == "p" and s["state"] == "STARTED"), None)


def test_a_killed_node_holding_a_primary_is_waited_out_and_nothing_is_lost(servers, es_cluster, db, database,
                                                                           unique_name, tmp_path):
    """SIGKILL of the node holding the primary shard of an index with one replica, while cdc streams a write
    load into it with all three nodes in elasticsearch.hosts: the replica is promoted, cdc retries what the
    dead node did not answer (nothing dead-lettered, nothing skipped), the node is started again, and at the
    end every document equals MariaDB and `cdc verify` agrees."""
    import servers as dev

    urls = list(es_cluster.urls)
    es = Elasticsearch(urls, request_timeout=30)  # its own retries go round a dead node
    create_two_tables(db)
    settings = {"number_of_shards": 1, "number_of_replicas": 1}
    rules = [{"schema": database, "table": t, "index": f"{unique_name}-{t}", "create_index": {"settings": settings}}
             for t in ("a", "b")]
    setup = CdcSetup(tmp_path, servers, rules, elasticsearch__hosts=urls,
                     dead_letter__on_rejected="dead_letter")
    killed = None
    cdc = setup.run()
    try:
        with WriteLoad(servers, database, rate=100) as load:
            index = f"{unique_name}-a"
            wait_for("index a with documents", lambda: es.indices.exists(index=index)
                     and es.count(index=index)["count"] > 0, timeout=60)
            # Both copies placed, so the primary's node has a replica elsewhere to promote.
            es.cluster.health(index=index, wait_for_status="green", timeout="60s")
            killed = int(primary_node(es, index).rsplit("-", 1)[1])
            dead_url = urls[killed - 1]
            at_kill = setup.position()
            dev.es_cluster_node_kill(killed)
            # cdc goes on through the other two nodes: the checkpoint (saved only after Elasticsearch
            # acknowledged everything before it) moves while the node is down, and the client has tried
            # the dead node, failed and set it aside more than once.
            wait_for("the checkpoint to move with the node down", lambda: setup.position() != at_kill, timeout=120)
            # Elasticsearch promoted the replica on another node (the new primary the writes went to).
            dead_name = dev.EsCluster.node_name(killed)
            wait_for("the replica promoted", lambda: primary_node(es, index) not in (None, dead_name), timeout=120)
            wait_for("two failed tries of the dead node", lambda: len(_pool_lines(cdc, dead_url, "failed")) >= 2,
                     timeout=120)
            assert cdc.proc.poll() is None, cdc.text()[-3000:]
            dev.es_cluster_node_up(killed)
            dev.es_cluster_wait(3)
            killed = None
            # The client takes the node back after its set-aside time, once a request to it succeeds.
            wait_for("the client to use the restarted node again", lambda: _pool_lines(cdc, dead_url, "alive"),
                     timeout=120)
            assert load.ops > 100
        wait_until_equal(db, es, "a", f"{unique_name}-a", ["id"], timeout=120)
        wait_until_equal(db, es, "b", f"{unique_name}-b", ["k1", "k2"], timeout=120)
    finally:
        if killed is not None:
            dev.es_cluster_node_up(killed)
        assert cdc.stop() == 0, cdc.text()[-3000:]
    # Waiting, not giving up: nothing was set aside as rejected.
    assert not cdc.events("dead_letter"), cdc.text()[-3000:]
    # What the client did with the dead node, from its node pool's warnings (elastic_transport logs each
    # request to a node that fails, and the first that succeeds after): each failure is numbered in a
    # row ("has failed for N times in a row, putting on T second timeout"), so between them the node was
    # never taken for alive and was tried again only when its set-aside time was up; meanwhile cdc kept
    # saving checkpoints, each after Elasticsearch acknowledged a bulk: those went to the live nodes.
    alive = _pool_lines(cdc, dead_url, "alive")[0]
    # Up to the first success: a request to the restarted node before it rejoined may still fail (503).
    failed = [r for r in _pool_lines(cdc, dead_url, "failed") if r["ts"] <= alive["ts"]]
    numbers = [int(re.search(r"for (\d+) times", r["msg"]).group(1)) for r in failed]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    saved = [r for r in cdc.logs() if r.get("logger") == "cdc.pipeline" and r["msg"].startswith("checkpoint ")
             and failed[0]["ts"] < r["ts"] < alive["ts"]]
    assert len(saved) > len(failed), (len(saved), [r["msg"] for r in failed])
    verified = setup.output("verify", timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
    for table in ("a", "b"):
        es.indices.delete(index=[name for name in es.indices.get(index=f"{unique_name}-{table}*")])
    es.close()
