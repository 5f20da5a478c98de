"""A second `make demo` starts from a clean slate (issue 16): scripts/demo.py's reset, then `cdc run`
and `cdc verify` on the demo's own config, rules and `shop` database; the interactive part (the
banner and an endless `cdc run`) is not run."""

from __future__ import annotations

import json
import shutil
import time

from harness import CdcProcess, es_docs

import demo  # scripts/demo.py (tests/conftest.py puts scripts/ on the path)


def run_demo_cdc(tmp_path, name: str) -> CdcProcess:
    """`cdc run` as `make demo` starts it, until its snapshot is done."""
    proc = CdcProcess(["run", "--config", str(tmp_path / "demo" / "cdc.yml")], tmp_path / f"{name}.log").start()
    proc.wait_for_event("snapshot_done")
    return proc


def test_a_second_demo_leaves_nothing_of_the_first(servers, db, es, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo.DEMO, copy, ignore=shutil.ignore_patterns("state"))  # not the checkout's demo/state
    indices = demo.demo_indices(copy)
    assert indices == ["shop-order-lines", "shop-orders", "shop-products"]

    demo.reset(servers.es_url, copy)
    first = run_demo_cdc(tmp_path, "first")
    try:
        # What a user of the first demo does: add rows, which cdc indexes.
        db.execute("INSERT INTO shop.orders (customer) VALUES ('a'), ('b'), ('c'), ('d'), ('e')")
        deadline = time.monotonic() + 60
        while len(es_docs(es, "shop-orders")) != 7:
            assert first.popen.poll() is None, first.text()
            assert time.monotonic() < deadline, f"7 orders expected in shop-orders:\n{first.text()[-3000:]}"
            time.sleep(0.1)
    finally:
        assert first.stop() == 0

    # The second `make demo`: the tables are loaded again (2 orders), and so must the indices be.
    deleted = demo.reset(servers.es_url, copy)
    assert deleted == indices
    assert not (copy / "state").exists()
    second = run_demo_cdc(tmp_path, "second")
    assert second.stop() == 0
    assert set(es_docs(es, "shop-orders")) == {"1", "2"}

    check = CdcProcess(["verify", "--config", str(copy / "cdc.yml"), "--json"], tmp_path / "verify.log").start()
    assert check.wait() == 0, check.text()
    [report] = [json.loads(line) for line in check.text().splitlines() if line.startswith('{"tables"')]
    assert all(t["orphans"] == 0 and t["missing"] == 0 for t in report["tables"]), report
