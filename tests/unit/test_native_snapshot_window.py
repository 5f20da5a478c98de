"""The snapshot's window of chunks in flight (issue 13), with fakes for reading and writing.

Writes in flight are bounded by `snapshot.concurrency`; a chunk written before an
older one waits for it in the window without holding up the next write; the
progress moves only over chunks acknowledged in order, and is saved when the
copy ends.
"""

from __future__ import annotations

import threading

from cdc.config import SnapshotConfig
from cdc.copy.snapshot import Progress, Snapshot, SnapshotState, TablePlan, TableProgress
from cdc.model import BinlogPosition, Column, ColumnKind
from cdc.rules import Rule

ROWS, CHUNK = 60, 10


def _snapshot(concurrency: int, write) -> tuple[Snapshot, TablePlan, list]:
    snapshot = Snapshot.__new__(Snapshot)
    saves: list = []
    snapshot.config = SnapshotConfig(chunk_size=CHUNK, concurrency=concurrency)
    snapshot.stop = threading.Event()
    snapshot.online = False
    snapshot.rows_written = 0
    snapshot.save_progress = lambda state: saves.append(state.to_json()["s.t"])
    plan = TablePlan(Rule("s", "t", "ix", ("id",)), (Column("id", ColumnKind.INTEGER),), ("id",), ("id",), True, ROWS)

    def read_chunk(plan, after):
        start = 0 if after is None else after[0]
        return BinlogPosition("binlog.000001", 4), [(i,) for i in range(start + 1, min(start + CHUNK, ROWS) + 1)]

    # A Snapshot made without its __init__: its reads and writes are these stand-ins (mypy refuses
    # assigning to methods, which is the point here).
    snapshot._read_chunk = read_chunk  # type: ignore[method-assign]
    snapshot._actions = lambda plan, position, rows, db=None, after=None: []  # type: ignore[method-assign]
    snapshot._write_range = write  # type: ignore[method-assign]
    return snapshot, plan, saves


def test_a_chunk_written_out_of_order_does_not_hold_up_the_next_write():
    lock = threading.Lock()
    started: dict[int, threading.Event] = {n: threading.Event() for n in range(0, ROWS + 1, CHUNK)}
    running, most = [0], [0]
    saw_third_start: list[bool] = []

    def write(plan, after, end, actions, read_at, max_age, stop):
        first = 0 if after is None else after[0]
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        started[first].set()
        if first == 0:
            # The oldest chunk is slow: the next one finishes first, and a third write must
            # start meanwhile (two in flight: chunk 0 and chunk 2).
            saw_third_start.append(started[2 * CHUNK].wait(10))
        with lock:
            running[0] -= 1

    snapshot, plan, saves = _snapshot(2, write)
    progress = TableProgress()
    state = SnapshotState({"s.t": progress})
    assert snapshot._copy_concurrently(plan, progress, state, Progress(plan, 0, interactive=False))
    assert saw_third_start == [True]
    assert most[0] == 2  # never more writes in flight than `concurrency`
    assert progress.rows == snapshot.rows_written == ROWS and progress.last_key == [ROWS]
    # Saved in order only, and the end saved when the copy ends.
    keys = [s["last_key"][0] for s in saves]
    assert keys == sorted(keys) and keys[-1] == ROWS and all(k % CHUNK == 0 for k in keys)


def test_progress_never_passes_a_chunk_still_being_written():
    release = threading.Event()
    lock = threading.Lock()
    writes = [0]
    sixth, seventh = threading.Event(), threading.Event()

    def write(plan, after, end, actions, read_at, max_age, stop):
        with lock:
            writes[0] += 1
            (sixth if writes[0] == 6 else seventh if writes[0] == 7 else threading.Event()).set()
        if after is None:
            release.wait(10)  # the first chunk is acknowledged last

    snapshot, plan, saves = _snapshot(3, write)
    progress = TableProgress()
    state = SnapshotState({"s.t": progress})
    done = threading.Thread(target=snapshot._copy_concurrently,
                            args=(plan, progress, state, Progress(plan, 0, interactive=False)))
    done.start()
    try:
        # Five later chunks are written while the first is not: the window holds six chunks
        # (the memory bound, 2 x concurrency), and the progress has not moved.
        assert sixth.wait(10)
        assert not seventh.wait(0.3)
        assert saves == [] and progress.last_key is None and snapshot.rows_written == 0
    finally:
        release.set()
        done.join(10)
    assert progress.last_key == [ROWS] and saves[-1]["last_key"] == [ROWS]
