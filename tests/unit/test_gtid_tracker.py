"""cdc/mysql/source.py `GtidTracker`'s MySQL set: its in-place fast path gives the library's merge.

Differential: after every commit, the tracker's state is the string the library's own
GtidSet.merge_gtid gives for the same initial set and transactions (replays skipped, as
the tracker does).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pymysqlreplication.gtid import Gtid, GtidSet

from cdc.mysql.source import GtidTracker

A = "691d5dd5-f22f-11f1-ae6e-02fc00000001"
B = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def library_state(initial: str, gtids: list[str]) -> str | None:
    gtid_set = GtidSet(initial)
    for text in gtids:
        gtid = Gtid(text)
        if gtid not in gtid_set:
            gtid_set.merge_gtid(gtid)
    return str(gtid_set) or None


def test_the_next_transaction_extends_its_server_interval():
    tracker = GtidTracker(f"{A}:1-5:7-9,{B}:1-3", mariadb=False)
    for gtid in (f"{A}:10", f"{A}:11", f"{B}:4"):
        tracker.begin(gtid)
        tracker.commit()
    assert tracker.state == f"{A}:1-5:7-11,{B}:1-4"


def test_gaps_replays_and_new_servers_take_the_library_path():
    tracker = GtidTracker(f"{A}:1-5:7-9", mariadb=False)
    for gtid in (f"{A}:6", f"{A}:3", f"{A}:12", f"{B}:1", f"{B}:2", f"{A}:10"):
        tracker.begin(gtid)
        tracker.commit()
    assert tracker.state == f"{A}:1-10:12,{B}:1-2"


def intervals_text(draw_list: list[tuple[int, int]]) -> str:
    return ":".join(str(a) if a == b else f"{a}-{b}" for a, b in draw_list)


@st.composite
def initial_sets(draw) -> str:
    parts = []
    for sid in draw(st.lists(st.sampled_from([A, B]), unique=True)):
        bounds = sorted(draw(st.sets(st.integers(1, 40), min_size=2, max_size=8)))
        pairs = [(bounds[i], bounds[i + 1] - 1) for i in range(0, len(bounds) - 1, 2) if bounds[i] < bounds[i + 1] - 1]
        if pairs:
            parts.append(f"{sid}:{intervals_text(pairs)}")
    return ",".join(parts)


@settings(max_examples=300, deadline=None)
@given(initial=initial_sets(),
       steps=st.lists(st.tuples(st.sampled_from([A, B]), st.one_of(st.just(None), st.integers(1, 50))), max_size=30))
def test_every_state_is_the_library_merge(initial, steps):
    tracker = GtidTracker(initial, mariadb=False)
    done: list[str] = []
    for sid, gno in steps:
        if gno is None:  # the server's next transaction: the fast path's case
            ends = [g.intervals[-1][1] for g in GtidSet(library_state(initial, done) or "").gtids
                    if g.sid == sid and g.intervals]
            gno = ends[0] if ends else 1
        gtid = f"{sid}:{gno}"
        tracker.begin(gtid)
        tracker.commit()
        done.append(gtid)
        assert tracker.state == library_state(initial, done)
