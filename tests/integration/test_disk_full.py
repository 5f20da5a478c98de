"""cdc's own disk full (issue 33, step 3): the checkpoint's and the dead letters' filesystem fills.

The state directory is a small tmpfs of its own (this needs root, as the suite has on the project
machines). While cdc streams a write load, a filler file takes every free byte; cdc must stop with
a message that names the path, leave the checkpoint file whole (the last one saved, valid JSON,
never truncated: cdc/durable.py writes a temp file and renames it), and after the space is freed
a restart must resume from that checkpoint with nothing lost.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from harness import CdcSetup, WriteLoad, binlog_position, create_two_tables, index_rules, wait_for, wait_until_equal

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")]


def _fill(path) -> int:
    """Write zeros into `path` until the filesystem refuses; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        block = bytes(4096)
        while True:
            try:
                written += f.write(block)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC
                break
        # A last partial block: the few bytes left after the last whole one.
        for size in (1024, 256, 64, 16, 1):
            while True:
                try:
                    written += f.write(bytes(size))
                except OSError:
                    break
    return written


def test_a_full_state_disk_stops_cdc_naming_the_path_and_a_restart_loses_nothing(servers, db, database, es,
                                                                                  unique_name, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(state)], check=True)
    try:
        create_two_tables(db)
        setup = CdcSetup(tmp_path, servers, index_rules(database, unique_name, "a", "b"),
                         checkpoint__min_interval=0)
        cdc = setup.run()
        filler = state / "filler"
        with WriteLoad(servers, database, rate=80) as load:
            wait_for("a checkpoint", lambda: setup.position() is not None, timeout=60)
            wait_for("writes", lambda: load.ops > 50, timeout=60)
            _fill(filler)
            code = cdc.wait(120)
            log = cdc.text()
        assert code != 0, log[-3000:]
        checkpoint_path = str(setup.checkpoint_path)
        fatal = [line for line in log.splitlines() if '"level":"error"' in line or "fatal" in line]
        assert any(checkpoint_path in line and "No space left on device" in line for line in fatal), fatal or log[-3000:]
        # The checkpoint is the last one saved, whole: valid JSON with its position.
        saved = json.loads(setup.checkpoint_path.read_text())
        assert saved["file"] and saved["pos"] > 4
        assert not [p.name for p in state.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind

        filler.unlink()
        cdc = setup.run()
        try:
            wait_until_equal(db, es, "a", f"{unique_name}-a", ["id"], timeout=120)
            wait_until_equal(db, es, "b", f"{unique_name}-b", ["k1", "k2"], timeout=120)
        finally:
            assert cdc.stop() == 0, cdc.text()[-3000:]
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_a_full_disk_under_the_dead_letters_stops_cdc_and_the_letter_is_kept_after_a_restart(
        servers, db, database, es, unique_name, tmp_path):
    """A document Elasticsearch rejects goes to the dead-letter file (on_rejected: dead_letter); with that
    filesystem full, one page left and a letter bigger than it (a short write, then ENOSPC), cdc stops naming
    the file, the file holds no torn line, and the checkpoint stays before the letter's row; with space again,
    a restart writes the letter and goes on."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(state)], check=True)
    try:
        db.execute("CREATE TABLE c (id INT PRIMARY KEY, n TEXT)")
        index = f"{unique_name}-c"
        rules = [{"schema": database, "table": "c", "index": index,
                  "create_index": {"mappings": {"properties": {"n": {"type": "integer"}}}}}]
        setup = CdcSetup(tmp_path, servers, rules, checkpoint__min_interval=0,
                         dead_letter__on_rejected="dead_letter", dead_letter__path="state/dead-letters.jsonl")
        letters = state / "dead-letters.jsonl"
        cdc = setup.run()
        # Streaming first: rows written while the (empty) table is being copied can be both copied and
        # streamed, and row 2 would then be dead-lettered twice (at-least-once, but not the count below).
        cdc.wait_for_event("snapshot_done", timeout=60)
        db.execute("INSERT INTO c VALUES (1, '1')", "INSERT INTO c VALUES (2, 'not a number')")
        wait_for("the first dead letter", lambda: letters.exists() and letters.read_text().count("\n") == 1)
        wait_for("the checkpoint past it", lambda: (position := setup.position()) is not None
                 and position >= binlog_position(db), timeout=60)
        filler = state / "filler"
        _fill(filler)
        with open(filler, "r+b") as f:  # one page free again: less than the next letter
            f.truncate(os.path.getsize(filler) - 4096)
        before = letters.read_bytes()
        at_stop = setup.position()
        db.execute(f"INSERT INTO c VALUES (3, '{'x' * 6000}')", "INSERT INTO c VALUES (4, '4')")
        code = cdc.wait(120)
        log = cdc.text()
        assert code != 0, log[-3000:]
        assert f"{letters}: cannot write 1 dead letter(s): No space left on device" in log, log[-3000:]
        assert letters.read_bytes() == before  # no torn line
        assert setup.position() == at_stop  # the checkpoint did not pass the row whose letter is not written

        filler.unlink()
        cdc = setup.run()
        try:
            wait_for("the second dead letter", lambda: letters.read_text().count("\n") == 2, timeout=60)
            wait_for("row 4", lambda: es.options(ignore_status=404).get(index=index, id="4").get("found"),
                     timeout=60)
        finally:
            assert cdc.stop() == 0, cdc.text()[-3000:]
        code, out = setup.command("dlq", "list", "--json")
        entries = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"doc_id"' in line]
        assert code == 0 and sorted(e["doc_id"] for e in entries) == ["2", "3"], out
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
