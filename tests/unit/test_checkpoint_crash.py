"""SIGKILL while the checkpoint is being written leaves the old or the new checkpoint, never a torn one."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from cdc.stream.checkpoint import FileCheckpointStore

WRITER = textwrap.dedent("""
    import sys
    from cdc.stream.checkpoint import FileCheckpointStore
    from cdc.model import BinlogPosition
    store = FileCheckpointStore(sys.argv[1])
    store.snapshotted = tuple(f"db.table_{i}" for i in range(200))  # a bigger file: a longer write
    n = 0
    print("ready", flush=True)
    while True:
        n += 1
        store.save(BinlogPosition("binlog.000001", 4 + n), f"0-1-{n}")
""")


def test_sigkill_during_checkpoint_writes_never_tears_the_file(tmp_path):
    path = tmp_path / "cp.json"
    rng = random.Random(1)
    last_seen = 0
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.01, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        checkpoint = FileCheckpointStore(path).load()  # raises on a torn or empty file
        assert checkpoint is not None and checkpoint.gtid == f"0-1-{checkpoint.position.pos - 4}"
        assert checkpoint.snapshotted is not None and len(checkpoint.snapshotted) == 200
        last_seen = checkpoint.position.pos
        json.loads(path.read_text())
    assert last_seen > 4
    # Kills leave temp files behind; the next daemon to take the lock removes them.
    store = FileCheckpointStore(path)
    store.lock()
    try:
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        final = store.load()
        assert final is not None and final.position.pos == last_seen
    finally:
        store.unlock()
