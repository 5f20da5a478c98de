"""Pipeline.run with a scripted fake sink and an in-memory checkpoint store.

Every run goes through `run_pipeline`, which runs it on a daemon thread with a
deadline, so that a hang fails the test instead of stalling the suite.
"""

import threading
import time
from typing import Iterable, Sequence

import pytest

from cdc.config import BatchConfig, RetryConfig
from cdc.errors import CdcError, RejectedActionsError, SinkUnavailableError, SourceError
from cdc.model import (
    Action,
    ActionType,
    BinlogPosition,
    BulkResult,
    Column,
    ColumnKind,
    Commit,
    Heartbeat,
    Op,
    Outcome,
    Rollback,
    RowChange,
    StreamRestarted,
)
from cdc.stream.delivery import chunks
from cdc.stream.pipeline import Pipeline
from cdc.rules import ActionBuilder, Rule, RuleSet, actions_for, document_version
from .fakes import START, FakeSink, ListSource, MemoryStore, doc_of

FILE = "binlog.000001"
COLUMNS = (Column("id", ColumnKind.INTEGER), Column("name", ColumnKind.STRING))
RULES = RuleSet([Rule("shop", "items", "items", ("id",), source="test")])
RETRY = RetryConfig(initial_backoff=0.001, max_backoff=0.01)
def P(pos, file=FILE):
    return BinlogPosition(file, pos)


# ---------------------------------------------------------------- event builders
def ins(id, pos, name=None, table="items", row_index=0):
    return RowChange(Op.INSERT, "shop", table, COLUMNS, None, {"id": id, "name": name or f"n{id}"}, P(pos), 0,
                     row_index)


def upd(before, after, pos, row_index=0):
    """before/after: (id, name)."""
    return RowChange(Op.UPDATE, "shop", "items", COLUMNS, {"id": before[0], "name": before[1]},
                     {"id": after[0], "name": after[1]}, P(pos), 0, row_index)


def dele(id, pos, row_index=0):
    return RowChange(Op.DELETE, "shop", "items", COLUMNS, {"id": id, "name": f"n{id}"}, None, P(pos), 0, row_index)


def commit(pos, gtid=None):
    return Commit(P(pos), gtid, 0)


def make(sink, store, max_actions=1000, max_bytes=1 << 20, max_interval=0.05, retry=RETRY, concurrency=1, **kw):
    """One bulk request in flight unless asked: most tests here assert the exact order of writes and saves."""
    kw.setdefault("checkpoint_interval", 0.0)
    return Pipeline(RULES, sink, store, BatchConfig(max_actions=max_actions, max_bytes=max_bytes,
                                                    max_interval=max_interval, concurrency=concurrency), retry, **kw)


def run_pipeline(pipeline, events, close=lambda: None, timeout=20.0):
    """Run with a generator over `events` (a list, or a generator function)."""
    source = ListSource(events, close)
    outcome = {}

    def target():
        try:
            outcome["stats"] = pipeline.run(source, START)
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"Pipeline.run did not return within {timeout}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["stats"]


def ids(actions):
    return [(a.type, a.doc_id) for a in actions]


# ---------------------------------------------------------------- transactions
def test_rows_written_only_after_commit():
    sink, store = FakeSink(), MemoryStore()
    seen_before_commit = []

    def events():
        yield ins(1, 100)
        yield ins(2, 200)
        yield Heartbeat(0.0)
        time.sleep(0.2)  # several flush intervals: nothing may be written yet
        seen_before_commit.append(len(sink.calls))
        seen_before_commit.append(len(store.saves))
        yield commit(300, "0-1-1")

    stats = run_pipeline(make(sink, store), events)
    assert seen_before_commit == [0, 0]
    assert ids(sink.sent) == [(ActionType.INDEX, "1"), (ActionType.INDEX, "2")]
    assert sink.sent[0].doc == {"id": 1, "name": "n1"}
    assert sink.sent[0].version == document_version(P(100))
    assert sink.sent[1].version == document_version(P(200))
    assert store.saves == [(P(300), "0-1-1")]
    assert stats.rows == 2
    assert stats.transactions == 1
    assert stats.last_saved == P(300)


def test_uncommitted_tail_is_not_written_or_checkpointed():
    sink, store = FakeSink(), MemoryStore()
    stats = run_pipeline(make(sink, store), [
        ins(1, 100), commit(200, "0-1-1"),
        ins(2, 300), ins(3, 400),  # input ends inside this transaction
    ])
    assert [a.doc_id for a in sink.sent] == ["1"]
    assert store.saves == [(P(200), "0-1-1")]
    assert stats.last_commit == commit(200, "0-1-1")


def test_only_uncommitted_rows_writes_nothing():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [ins(1, 100), ins(2, 200)])
    assert sink.calls == []
    assert store.saves == []


def test_rollback_drops_open_transaction():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [
        ins(1, 100), ins(2, 200), Rollback(P(250)),
        ins(3, 300), commit(400),
    ])
    assert [a.doc_id for a in sink.sent] == ["3"]
    assert store.saves == [(P(400), None)]


def test_rollback_drops_rows_of_current_event_too():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [
        ins(1, 100, row_index=0), ins(2, 100, row_index=1), Rollback(P(150)),
        ins(3, 200), commit(300),
    ])
    assert [a.doc_id for a in sink.sent] == ["3"]


def test_stream_restarted_drops_open_transaction():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [
        ins(1, 100), commit(200),
        ins(2, 300), StreamRestarted(P(200)),
        ins(2, 300, name="again"), commit(400),
    ])
    assert [(a.doc_id, doc_of(a)["name"]) for a in sink.sent] == [("1", "n1"), ("2", "again")]
    assert store.saves[-1] == (P(400), None)


def test_heartbeats_alone_write_nothing():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [Heartbeat(1.0), Heartbeat(2.0)])
    assert sink.calls == []
    assert store.saves == []


def test_commit_of_unmapped_table_moves_checkpoint():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [ins(1, 100, table="other"), commit(200, "0-1-9")])
    assert sink.calls == []
    assert store.saves == [(P(200), "0-1-9")]


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_saved_after_each_acknowledged_batch():
    log: list[tuple] = []
    sink, store = FakeSink(log), MemoryStore(log)
    run_pipeline(make(sink, store, max_actions=1), [
        ins(1, 100), commit(200, "0-1-1"),
        ins(2, 300), commit(400, "0-1-2"),
        ins(3, 500), commit(600, "0-1-3"),
    ])
    assert log == [
        ("write", ("1",)), ("save", P(200), "0-1-1"),
        ("write", ("2",)), ("save", P(400), "0-1-2"),
        ("write", ("3",)), ("save", P(600), "0-1-3"),
    ]


def test_checkpoint_is_last_commit_of_batch():
    log: list[tuple] = []
    sink, store = FakeSink(log), MemoryStore(log)
    run_pipeline(make(sink, store), [
        ins(1, 100), commit(200, "0-1-1"),
        ins(2, 300), commit(400, "0-1-2"),
        ins(3, 500), commit(600, "0-1-3"),
    ])
    assert store.saves[-1] == (P(600), "0-1-3")
    # Whatever the batching, each save follows the write of everything it covers.
    written = set()
    for entry in log:
        if entry[0] == "write":
            written.update(entry[1])
        else:
            covered = {"1", "2", "3"} if entry[1] == P(600) else {"1", "2"} if entry[1] == P(400) else {"1"}
            assert covered <= written
    assert sorted(written) == ["1", "2", "3"]


def test_checkpoint_interval_defers_saves_but_final_is_forced():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store, max_actions=1, checkpoint_interval=3600.0), [
        ins(1, 100), commit(200), ins(2, 300), commit(400), ins(3, 500), commit(600),
    ])
    assert len(sink.calls) == 3
    assert 1 <= len(store.saves) <= 2
    assert store.saves[-1] == (P(600), None)


def test_a_checkpoint_is_written_outside_the_pipeline_lock():
    """The file write (and its fsyncs) must not hold up the main loop and the other writers."""
    free: list[bool] = []  # per save: could another thread take the pipeline's lock meanwhile?

    def probe():
        taken = pipeline._lock.acquire(timeout=1)
        free.append(taken)
        if taken:
            pipeline._lock.release()

    class Store(MemoryStore):
        def save(self, position, gtid, by_gtid=False):
            thread = threading.Thread(target=probe)
            thread.start()
            thread.join()
            return super().save(position, gtid, by_gtid)

    sink, store = FakeSink(), Store()
    pipeline = make(sink, store, max_actions=1, concurrency=3)
    run_pipeline(pipeline, [ins(1, 100), commit(200), ins(2, 300), commit(400), ins(3, 500), commit(600)])
    assert store.saves[-1] == (P(600), None)
    assert free and all(free)


def test_a_checkpoint_decided_earlier_never_overwrites_a_later_one():
    """Writers decide under the lock in acknowledgement order, but may write in another order."""
    store = MemoryStore()
    pipeline = make(FakeSink(), store)
    with pipeline._lock:
        older = pipeline._checkpoint(commit(200), force=True)
        newer = pipeline._checkpoint(commit(400), force=True)
    pipeline._save(newer)
    pipeline._save(older)  # came late: must not move the position back
    assert store.saves == [(P(400), None)]
    assert pipeline.stats.checkpoints == 1 and pipeline.stats.last_saved == P(400)


def test_no_checkpoint_store():
    sink = FakeSink()
    stats = run_pipeline(make(sink, None), [ins(1, 100), commit(200)])
    assert [a.doc_id for a in sink.sent] == ["1"]
    assert stats.checkpoints == 0


# ---------------------------------------------------------------- batching
def test_last_action_per_document_wins():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [ins(1, 100), dele(1, 200), commit(300)])
    assert len(sink.sent) == 1
    (action,) = sink.sent
    assert (action.type, action.doc_id, action.doc) == (ActionType.DELETE, "1", None)
    assert action.version == document_version(P(200))


def test_last_index_wins_across_transactions_in_a_batch():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store, max_interval=10.0), [
        ins(1, 100, name="first"), commit(200),
        upd((1, "first"), (1, "second"), 300), commit(400),
    ])
    assert [(a.doc_id, doc_of(a)["name"]) for a in sink.sent] == [("1", "second")]
    assert store.saves == [(P(400), None)]


def test_pk_swap_in_one_rows_event():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [
        upd((1, "a"), (2, "a"), 100, row_index=0),
        upd((2, "b"), (1, "b"), 100, row_index=1),
        commit(200),
    ])
    sent = {a.doc_id: a for a in sink.sent}
    assert len(sink.sent) == 2
    assert all(a.type is ActionType.INDEX for a in sink.sent)
    assert sent["2"].doc == {"id": 2, "name": "a"}
    assert sent["1"].doc == {"id": 1, "name": "b"}


def test_pk_swap_through_temporary_key_in_separate_events():
    sink, store = FakeSink(), MemoryStore()
    run_pipeline(make(sink, store), [
        upd((1, "a"), (3, "a"), 100),
        upd((2, "b"), (1, "b"), 200),
        upd((3, "a"), (2, "a"), 300),
        commit(400),
    ])
    sent = {a.doc_id: a for a in sink.sent}
    assert len(sink.sent) == 3
    assert sent["1"].type is ActionType.INDEX and doc_of(sent["1"])["name"] == "b"
    assert sent["2"].type is ActionType.INDEX and doc_of(sent["2"])["name"] == "a"
    assert sent["3"].type is ActionType.DELETE


def test_big_transaction_is_sent_in_chunks_then_checkpointed():
    log: list[tuple] = []
    sink, store = FakeSink(log), MemoryStore(log)
    run_pipeline(make(sink, store, max_actions=2), [ins(i, 100 * i) for i in range(1, 6)] + [commit(700)])
    assert [len(c) for c in sink.calls] == [2, 2, 1]
    assert log[-1] == ("save", P(700), None)
    assert [e[0] for e in log] == ["write", "write", "write", "save"]


def test_chunks_by_bytes():
    actions = [index_action(i, "x" * 500) for i in range(4)]
    assert [len(c) for c in chunks(actions, 100, 1300)] == [2, 2]
    assert [len(c) for c in chunks(actions, 3, 10_000)] == [3, 1]
    assert list(chunks([], 3, 10_000)) == []


def index_action(i, name):
    rule = RULES.match("shop", "items")
    assert rule is not None
    (action,) = actions_for(ins(i, 100 + i, name=name), rule, 1)
    return action


# ---------------------------------------------------------------- retries
def test_item_retry_resends_only_failed_items_then_checkpoints():
    log: list[tuple] = []
    sink, store = FakeSink(log, script=[{"2": Outcome.RETRY}]), MemoryStore(log)
    stats = run_pipeline(make(sink, store), [ins(1, 100), ins(2, 200), ins(3, 300), commit(400, "0-1-4")])
    assert log == [("write", ("1", "2", "3")), ("write", ("2",)), ("save", P(400), "0-1-4")]
    assert stats.item_retries == 1
    assert stats.actions_sent == 3


def test_stale_items_count_as_done():
    sink, store = FakeSink(script=[{"1": Outcome.STALE}]), MemoryStore()
    stats = run_pipeline(make(sink, store), [ins(1, 100), ins(2, 200), commit(300)])
    assert len(sink.calls) == 1
    assert store.saves == [(P(300), None)]
    assert stats.actions_stale == 1


def test_sink_unavailable_once_then_success():
    log: list[tuple] = []
    sink, store = FakeSink(log, script=[SinkUnavailableError("down")]), MemoryStore(log)
    stats = run_pipeline(make(sink, store), [ins(1, 100), ins(2, 200), commit(300)])
    assert log == [("write", ("1", "2")), ("write", ("1", "2")), ("save", P(300), None)]
    assert stats.request_retries == 1


def test_gives_up_after_max_attempts():
    sink = FakeSink(always=SinkUnavailableError("down"))
    store = MemoryStore()
    # One batch only (see test_writer_failure_with_a_queued_batch_does_not_hang).
    pipeline = make(sink, store, max_interval=10.0, retry=RetryConfig(initial_backoff=0.001, max_backoff=0.01,
                                                                       max_attempts=2))
    with pytest.raises(SinkUnavailableError, match="gave up after 2 attempts"):
        run_pipeline(pipeline, [ins(1, 100), commit(200)])
    assert len(sink.calls) == 2
    assert store.saves == []


def test_rejected_item_stops_without_moving_checkpoint():
    sink = FakeSink(script=[None, {"3": Outcome.REJECTED}])
    store = MemoryStore()
    # T1 fills a batch (max_actions=2) and is written; T2 is the last batch.
    pipeline = make(sink, store, max_actions=2, max_interval=10.0)
    with pytest.raises(RejectedActionsError) as info:
        run_pipeline(pipeline, [
            ins(1, 100), ins(2, 150), commit(200, "0-1-1"),
            ins(3, 300), commit(400, "0-1-2"),
        ])
    message = str(info.value)
    assert "items/3" in message
    assert "shop.items" in message
    assert "binlog.000001:300" in message
    assert "mapper_parsing_exception" in message
    assert [i.action.doc_id for i in info.value.items] == ["3"]
    assert store.saves == [(P(200), "0-1-1")]
    assert all(pos < P(400) for pos, _ in store.saves)


def test_rejected_in_first_batch_saves_nothing():
    sink = FakeSink(always={"2": Outcome.REJECTED})
    store = MemoryStore()
    with pytest.raises(RejectedActionsError, match="items/2"):
        run_pipeline(make(sink, store, max_interval=10.0), [ins(1, 100), ins(2, 200), commit(300)])
    assert store.saves == []


def test_writer_failure_with_a_queued_batch_does_not_hang():
    sink = FakeSink(always={"1": Outcome.REJECTED}, delay=0.2)
    store = MemoryStore()
    # max_actions=1: the commit hands its batch over at once; the end of input
    # queues the final batch while the first one is still being written.
    with pytest.raises(RejectedActionsError):
        run_pipeline(make(sink, store, max_actions=1), [ins(1, 100), commit(200)], timeout=10.0)


# ---------------------------------------------------------------- failures elsewhere
def test_row_conversion_error_stops_and_names_row():
    sink, store = FakeSink(), MemoryStore()
    bad = RowChange(Op.INSERT, "shop", "items", COLUMNS, None, {"name": "no id"}, P(300), 0, 4)
    with pytest.raises(CdcError) as info:
        run_pipeline(make(sink, store), [ins(1, 100), commit(200), bad, commit(400)])
    message = str(info.value)
    assert "shop.items" in message
    assert "binlog.000001:300" in message
    assert "row 4" in message
    assert all(pos < P(400) for pos, _ in store.saves)


def test_source_failure_flushes_committed_rows_then_raises():
    sink, store = FakeSink(), MemoryStore()

    def events():
        yield ins(1, 100)
        yield commit(200, "0-1-1")
        yield ins(2, 300)
        raise SourceError("binlog read failed")

    with pytest.raises(SourceError, match="binlog read failed"):
        run_pipeline(make(sink, store), events)
    assert [a.doc_id for a in sink.sent] == ["1"]
    assert store.saves == [(P(200), "0-1-1")]


# ---------------------------------------------------------------- stopping
def test_request_stop_while_source_blocks():
    sink, store = FakeSink(), MemoryStore()
    closed = threading.Event()
    pipeline = make(sink, store, checkpoint_interval=3600.0)

    def events():
        yield ins(1, 100)
        yield ins(2, 200)
        yield commit(300, "0-1-3")
        yield ins(3, 400)  # open transaction at the stop: dropped
        closed.wait(5)  # a blocking binlog read, until close()

    timer = threading.Timer(0.2, pipeline.request_stop)
    timer.start()
    started = time.monotonic()
    try:
        stats = run_pipeline(pipeline, events, close=closed.set)
    finally:
        timer.cancel()
        timer.join()
    assert time.monotonic() - started < 1.0
    assert closed.is_set()
    assert sorted(a.doc_id for a in sink.sent) == ["1", "2"]
    assert store.saves[-1] == (P(300), "0-1-3")
    assert stats.last_saved == P(300)


def test_stop_requested_before_run():
    sink, store = FakeSink(), MemoryStore()
    pipeline = make(sink, store)
    pipeline.request_stop()
    run_pipeline(pipeline, [ins(1, 100), commit(200)])
    assert store.saves == []


def test_dry_run_does_not_write():
    batches: list[list[Action]] = []
    sink = FakeSink()
    stats = run_pipeline(make(sink, None, dry_run=True, on_batch=batches.append),
                         [ins(1, 100), dele(2, 200), commit(300)])
    assert sink.calls == []
    assert [ids(b) for b in batches] == [[(ActionType.INDEX, "1"), (ActionType.DELETE, "2")]]
    assert stats.actions_sent == 2


def test_a_dry_run_has_one_writer_thread_and_still_holds_concurrency_batches():
    """Its writers send nothing (issue 28): one thread, and as many batches in flight as a run has;
    every action of every batch reaches on_batch, in order."""
    batches: list[list[Action]] = []
    pipeline = make(FakeSink(), None, dry_run=True, on_batch=batches.append, concurrency=4, max_actions=2)
    assert len(pipeline.writers) == 1 and pipeline.concurrency == 4
    events = [e for n in range(1, 41) for e in (ins(n, 100 * n), commit(100 * n + 50))]
    stats = run_pipeline(pipeline, events)
    assert [i for b in batches for _, i in ids(b)] == [str(n) for n in range(1, 41)]
    assert stats.actions_sent == 40 and stats.transactions == 40
    assert len(make(FakeSink(), None, concurrency=4).writers) == 4  # a run: one per request in flight


# ---------------------------------------------------------------- several bulk requests in flight
from cdc.stream.pipeline import Batch, InFlight  # noqa: E402


def taken(flight: InFlight) -> InFlight.Part:
    """The next part to send: the test knows there is one."""
    part = flight.take()
    assert part is not None, "nothing to take"
    return part


def positions(batches: Iterable[Batch]) -> list[BinlogPosition]:
    """Where the batches' commits are (a batch handed to InFlight has its commit)."""
    out = []
    for batch in batches:
        assert batch.commit is not None
        out.append(batch.commit.position)
    return out


def batch_of(*doc_ids, pos=100):
    batch = Batch()
    for doc_id in doc_ids:
        batch.add(actions_for(ins(int(doc_id), pos), RULES.rules[0], 1)[0])
    batch.committed(commit(pos))
    return batch


def docs(part):
    return [a.doc_id for a in part.actions]


def test_in_flight_holds_only_the_shared_documents_and_acknowledges_in_order():
    flight = InFlight()
    first = flight.add(batch_of("1", "2", pos=100))
    second = flight.add(batch_of("3", pos=200))
    third = flight.add(batch_of("2", "4", pos=300))  # shares document 2 with the first
    fourth = flight.add(batch_of("5", pos=400))
    part = taken(flight)
    assert (part.seq, docs(part)) == (first, ["1", "2"])
    part2 = taken(flight)
    assert (part2.seq, docs(part2)) == (second, ["3"])
    part3 = taken(flight)
    assert (part3.seq, docs(part3)) == (third, ["4"])  # 2 waits for the first batch; 4 need not
    part4 = taken(flight)
    assert (part4.seq, docs(part4)) == (fourth, ["5"])
    assert flight.take() is None
    # Later parts finishing first acknowledge nothing: the first batch is still out,
    # and the third still has a write to send.
    assert flight.finish(part4) == []
    assert flight.finish(part3) == []
    assert flight.finish(part2) == []
    assert flight.take() is None
    done = flight.finish(part)
    assert positions(done) == [P(100), P(200)]
    rest = taken(flight)
    assert (rest.seq, docs(rest)) == (third, ["2"])  # document 2's earlier write is acknowledged now
    assert flight.take() is None
    assert positions(flight.finish(rest)) == [P(300), P(400)]
    assert len(flight) == 0 and flight.running == 0


def test_in_flight_unsent_write_holds_back_later_writes_of_its_document():
    flight = InFlight()
    flight.add(batch_of("1", pos=100))
    flight.add(batch_of("1", "2", pos=200))
    flight.add(batch_of("2", "3", pos=300))  # the second's 2 is not sent yet: the third's 2 waits for it
    a = taken(flight)
    b = taken(flight)
    c = taken(flight)
    assert (docs(a), docs(b), docs(c)) == (["1"], ["2"], ["3"])
    assert flight.take() is None
    flight.finish(b)  # the second's 2 is acknowledged, but its 1 is not sent yet
    c2 = taken(flight)
    assert docs(c2) == ["2"] and c2.seq == c.seq
    assert flight.take() is None
    assert flight.finish(a) != []
    b2 = taken(flight)
    assert docs(b2) == ["1"] and b2.seq == b.seq
    flight.finish(c)
    flight.finish(c2)
    assert positions(flight.finish(b2)) == [P(200), P(300)]


def test_in_flight_batch_of_commits_only_is_acknowledged_in_its_turn():
    flight = InFlight()
    flight.add(batch_of("1", pos=100))
    flight.add(batch_of(pos=200))  # only unmapped tables' commits: nothing to write, a position to save
    a, empty = taken(flight), taken(flight)
    assert docs(empty) == [] and flight.take() is None
    assert flight.finish(empty) == []
    assert positions(flight.finish(a)) == [P(100), P(200)]


def test_in_flight_keeps_a_routing_move_together_in_batch_order():
    from dataclasses import replace

    base = actions_for(ins(1, 100), RULES.rules[0], 1)[0]
    first = Batch()
    first.add(replace(base, routing="a"))
    first.committed(commit(100))
    move = Batch()
    move.add(replace(base, type=ActionType.DELETE, doc=None, routing="a"))
    move.add(replace(base, routing="b"))
    move.add(actions_for(ins(2, 300), RULES.rules[0], 1)[0])
    move.committed(commit(300))
    flight = InFlight()
    flight.add(first)
    flight.add(move)
    a, b = taken(flight), taken(flight)
    assert docs(b) == ["2"]
    flight.finish(a)
    held = taken(flight)
    assert [(x.type, x.routing) for x in held.actions] == [(ActionType.DELETE, "a"), (ActionType.INDEX, "b")]


def test_in_flight_never_sends_a_write_before_an_earlier_write_of_its_document_is_acknowledged():
    """Random batches, random finishing order: every document's writes are sent in binlog
    order, each after the one before it was acknowledged, and batches are acknowledged in order."""
    import random

    rng = random.Random(19)
    for _ in range(50):
        flight = InFlight()
        batches = [batch_of(*{str(rng.randint(1, 8)) for _ in range(rng.randint(0, 4))}, pos=100 * (i + 1))
                   for i in range(rng.randint(1, 8))]
        for batch in batches:
            flight.add(batch)
        running: list[InFlight.Part] = []
        acked: list[Batch] = []
        last_acked_seq: dict[str, int] = {}
        sent_seq: dict[str, list[int]] = {}
        while len(flight):
            part = flight.take() if rng.random() < 0.6 or not running else None
            if part is not None:
                for doc in docs(part):
                    # the document's previous write (an earlier batch) is acknowledged
                    assert last_acked_seq.get(doc, -1) == (sent_seq.get(doc) or [-1])[-1]
                    sent_seq.setdefault(doc, []).append(part.seq)
                running.append(part)
                continue
            assert running, "nothing running and nothing to take, but batches left"
            done = running.pop(rng.randrange(len(running)))
            for doc in docs(done):
                last_acked_seq[doc] = done.seq
            acked += flight.finish(done)
        assert positions(acked) == positions(batches)
        for doc, seqs in sent_seq.items():
            assert seqs == sorted(seqs)
            assert seqs == [i for i, b in enumerate(batches) if any(a.doc_id == doc for a in b.actions.values())]


class GatedSink(FakeSink):
    """A FakeSink whose requests for chosen documents wait for a gate (to hold a bulk in flight)."""

    def __init__(self, held: dict[str, threading.Event], **kw):
        super().__init__(**kw)
        self.held = held
        self.lock = threading.Lock()
        self.running = 0

    def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
        with self.lock:
            self.running += 1
        try:
            for action in actions:
                gate = self.held.get(action.doc_id)
                if gate is not None:
                    assert gate.wait(5), f"gate for {action.doc_id} never opened"
            return super().write(actions, refresh)
        finally:
            with self.lock:
                self.running -= 1


def test_later_batches_are_written_while_one_is_in_flight_but_not_saved_past_it():
    gate = threading.Event()
    log: list[tuple] = []
    sink = GatedSink({"1": gate}, log=log)
    store = MemoryStore(log)
    seen: dict[str, object] = {}

    def events():
        yield ins(1, 100)
        yield commit(200, "0-1-1")
        for i in range(2, 5):
            yield ins(i, i * 1000)
            yield commit(i * 1000 + 1, f"0-1-{i}")
        # Batches 2..4 are written while batch 1 is held (the sink records a call
        # once its gate opens); none of them may be saved.
        deadline = time.monotonic() + 30  # generous: the loop ends as soon as the condition holds
        # ... and batch 1 is inside the sink, held (a writer thread may reach the sink
        # after the others: wait for that rather than assume an order of threads).
        while (len(sink.calls) < 3 or sink.running < 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        seen["written"] = sorted(sink.sent_ids)
        seen["saves"] = list(store.saves)
        seen["held"] = sink.running
        gate.set()

    run_pipeline(make(sink, store, max_actions=1, concurrency=4), events, timeout=30)
    assert seen["written"] == [["2"], ["3"], ["4"]]
    assert seen["saves"] == []
    assert seen["held"] == 1  # batch 1 was in flight while 2..4 were written
    # Once the first is acknowledged the saves move in order, to the newest commit.
    assert store.saves[-1] == (P(4001), "0-1-4")
    assert [p for p, _ in store.saves] == sorted(p for p, _ in store.saves)


def test_writes_of_one_document_never_overtake_each_other():
    gate = threading.Event()

    class HoldFirstWriteOf1(GatedSink):
        """The gates are looked up by doc_id, and both writes are of document "1": this holds its first only."""
        first_done = False

        def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
            if not self.first_done and any(a.doc_id == "1" for a in actions):
                self.first_done = True
                assert gate.wait(5)
            return super().write(actions, refresh)

    sink = HoldFirstWriteOf1({})
    store = MemoryStore()
    named = RowChange(Op.INSERT, "shop", "items", COLUMNS, None, {"id": 1, "name": "first"}, P(100), 0)

    def events():
        yield named  # doc 1, held in flight by the gate on its name... (see below)
        yield commit(200)
        yield upd((1, "n1"), (1, "second"), 300)
        yield commit(400)
        yield ins(2, 500)
        yield commit(600)
        deadline = time.monotonic() + 30  # generous: the loop ends as soon as the condition holds
        while len(sink.calls) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # give a (wrong) overtaking write of document 1 the chance to happen
        gate.set()

    run_pipeline(make(sink, store, max_actions=1, concurrency=4), events, timeout=30)
    writes_of_1 = [doc_of(a)["name"] for call in sink.calls for a in call if a.doc_id == "1"]
    assert writes_of_1 == ["first", "second"]
    # Document 2 did not wait for document 1: it went out while the first write was held.
    assert [a.doc_id for a in sink.calls[0]] == ["2"]
    assert store.saves[-1][0] == P(600)


def test_rejection_in_an_earlier_batch_keeps_the_checkpoint_before_it_with_later_batches_done():
    gate = threading.Event()
    sink = GatedSink({"1": gate}, always={"1": Outcome.REJECTED})
    store = MemoryStore()

    def events():
        yield ins(9, 50)
        yield commit(60, "0-1-0")
        deadline = time.monotonic() + 30  # generous: the loop ends as soon as the condition holds
        while not store.saves and time.monotonic() < deadline:
            time.sleep(0.01)
        yield ins(1, 100)
        yield commit(200, "0-1-1")
        yield ins(2, 300)
        yield commit(400, "0-1-2")
        while len(sink.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        time.sleep(0.2)
        yield ins(3, 500)
        yield commit(600, "0-1-3")

    with pytest.raises(RejectedActionsError, match="items/1"):
        run_pipeline(make(sink, store, max_actions=1, concurrency=4), events, timeout=30)
    assert ["2"] in sink.sent_ids  # written, acknowledged, and still not saved
    assert store.saves == [(P(60), "0-1-0")]


def test_quiet_source_is_flushed_at_once_not_after_max_interval():
    sink, store = FakeSink(), MemoryStore()
    release = threading.Event()
    written_at = {}

    def events():
        yield ins(1, 100)
        committed = time.monotonic()
        yield commit(200, "0-1-1")
        deadline = committed + 5
        while not store.saves and time.monotonic() < deadline:
            time.sleep(0.001)
        written_at["delay"] = time.monotonic() - committed
        release.set()

    run_pipeline(make(sink, store, max_interval=10.0, concurrency=2), events, timeout=30)
    assert store.saves == [(P(200), "0-1-1")]
    assert written_at["delay"] < 1.0  # max_interval is 10 s: nothing waited for it


def test_batch_grows_while_the_only_slot_is_busy():
    gate = threading.Event()
    sink = GatedSink({"1": gate})
    store = MemoryStore()

    def events():
        yield ins(1, 100)
        yield commit(150)
        deadline = time.monotonic() + 30  # generous: the loop ends as soon as the condition holds
        while not sink.running and time.monotonic() < deadline:
            time.sleep(0.005)
        for i in range(2, 12):  # ten transactions while the first bulk is in flight
            yield ins(i, i * 100)
            yield commit(i * 100 + 50)
        # The main loop counts a transaction once it is in the waiting batch: all eleven are.
        while pipeline.stats.transactions < 11 and time.monotonic() < deadline:
            time.sleep(0.005)
        gate.set()

    pipeline = make(sink, store, max_interval=10.0, concurrency=1)
    run_pipeline(pipeline, events)
    assert sink.sent_ids == [["1"], [str(i) for i in range(2, 12)]]
    assert store.saves[-1][0] == P(1150)


def test_retries_and_too_large_split_with_concurrency():
    class RetryTwoOnce(FakeSink):
        lock = threading.Lock()
        retried = False

        def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
            with self.lock:  # the scripted step must reach this very request
                return self._write(actions, refresh)

        def _write(self, actions: Sequence[Action], refresh: bool) -> BulkResult:
            if len(actions) <= 2 and any(a.doc_id == "2" for a in actions) and not self.retried:
                self.script.append({"2": Outcome.RETRY})
                self.retried = True
            return super().write(actions, refresh)

    sink = RetryTwoOnce(limit=2)
    store = MemoryStore()
    events = []
    for t in range(6):
        events += [ins(t * 3 + 1, t * 100 + 10), ins(t * 3 + 2, t * 100 + 20), ins(t * 3 + 3, t * 100 + 30),
                   commit(t * 100 + 50, f"0-1-{t}")]
    stats = run_pipeline(make(sink, store, max_actions=3, concurrency=3), events)
    # Requests of 3 were refused (413) and sent again as halves; one item was retried (429).
    accepted = [call for call in sink.calls if len(call) <= 2]
    assert any(len(call) == 3 for call in sink.calls)
    assert {int(a.doc_id) for call in accepted for a in call} == set(range(1, 19))
    assert sum(1 for call in accepted for a in call if a.doc_id == "2") == 2
    assert stats.actions_sent == 18
    assert store.saves[-1] == (P(550), "0-1-5")
    assert [p for p, _ in store.saves] == sorted(p for p, _ in store.saves)


def test_concurrency_keeps_index_equal_to_source_under_random_delays():
    """Many batches through 4 writers with random delays: the last write per document wins,
    saves only move forward, and the final save is the last commit."""
    import random

    rng = random.Random(3)

    class Slow(FakeSink):
        def write(self, actions: Sequence[Action], refresh: bool = False) -> BulkResult:
            time.sleep(rng.uniform(0, 0.004))
            return super().write(actions, refresh)

    sink, store = Slow(), MemoryStore()
    events, expected = [], {}
    pos = 100
    for t in range(300):
        for _ in range(rng.randint(1, 3)):
            doc = rng.randint(1, 15)
            pos += 10
            name = f"v{pos}"
            events.append(ins(doc, pos, name=name))
            expected[str(doc)] = name
        pos += 10
        events.append(commit(pos, f"0-1-{t}"))
    run_pipeline(make(sink, store, max_actions=5, concurrency=4), events, timeout=20)
    final = {}
    for call in sink.calls:
        for a in call:
            final[a.doc_id] = doc_of(a)["name"]
    assert final == expected
    saves = [p for p, _ in store.saves]
    assert saves == sorted(saves) and saves[-1] == P(pos)


# ---------------------------------------------------------------- refresh: wait_for
def test_requests_with_writes_of_a_wait_for_rule_ask_for_refresh_and_others_do_not():
    rules = RuleSet([Rule("shop", "items", "items", ("id",), source="test", refresh_wait_for=True),
                     Rule("shop", "orders", "orders", ("id",), source="test")])
    sink, store = FakeSink(), MemoryStore()
    pipeline = Pipeline(rules, sink, store, BatchConfig(max_actions=1, max_interval=0.05, concurrency=1), RETRY,
                        checkpoint_interval=0.0)
    run_pipeline(pipeline, [ins(1, 100, table="orders"), commit(200), ins(2, 300), commit(400),
                            ins(3, 500, table="orders"), commit(600)])
    asked = {tuple(a.index for a in call): refresh for call, refresh in zip(sink.calls, sink.refreshes)}
    assert asked == {("orders",): False, ("items",): True}
    assert store.saves[-1][0] == P(600)


def test_no_wait_for_rule_means_no_refresh_check_at_all():
    pipeline = make(FakeSink(), MemoryStore())
    assert all(w.wait_for_refresh is None for w in pipeline.writers)


# ---------------------------------------------------------------- hand-over from the reader thread
def test_transactions_longer_than_one_hand_over_and_their_rollbacks():
    """Rows reach the main loop in lists of at most ROWS_PER_ITEM (pipeline._read): a transaction
    spanning several lists is written whole at its commit, one spanning several and rolled back
    leaves nothing, and every row is counted once."""
    from cdc.stream.pipeline import ROWS_PER_ITEM

    n = ROWS_PER_ITEM * 2 + 7
    events = [ins(i, 1000 + i) for i in range(1, n + 1)] + [Rollback(P(5000))]
    events += [ins(i, 6000 + i) for i in range(n + 1, 2 * n + 1)] + [commit(9000, "0-1-1")]
    sink, store = FakeSink(), MemoryStore()
    stats = run_pipeline(make(sink, store, max_actions=100_000), events)
    assert sorted(int(a.doc_id) for a in sink.sent) == list(range(n + 1, 2 * n + 1))
    assert store.saves == [(P(9000), "0-1-1")]
    assert stats.rows == 2 * n and stats.transactions == 1


def test_a_native_rows_event_is_one_item_counted_as_its_rows():
    from cdc.rules.rowpath import PreparedChange, RowPath
    from cdc.stream.observe import Observer, Observers

    class Counting(Observer):
        def __init__(self):
            self.rows = []

        def on_row(self, change):
            self.rows.append(("row", change.row_index))

        def on_rows(self, change, count):
            self.rows.append(("rows", count))

    prepared = actions_for(ins(1, 100), RULES.rules[0], 1) + actions_for(ins(2, 100), RULES.rules[0], 1)
    event = PreparedChange.__new__(PreparedChange)
    event.__dict__.update(op=Op.INSERT, schema="shop", table="items", columns=COLUMNS, before=None, after=None,
                          position=P(100), timestamp=0, row_index=0, prepared=prepared, count=2)
    base_rows: list[int] = []

    class OnRowOnly(Observer):
        def on_row(self, change: RowChange) -> None:  # the default on_rows falls back to on_row
            base_rows.append(change.row_index)

    counting, base = Counting(), OnRowOnly()
    sink, store = FakeSink(), MemoryStore()
    pipeline = make(sink, store, observer=Observers([counting, base]), converter=RowPath(ActionBuilder(RULES)))
    stats = run_pipeline(pipeline, [event, ins(3, 200), commit(300)])
    assert stats.rows == 3
    assert counting.rows == [("rows", 2), ("row", 0)]
    assert base_rows == [0, 0, 0]
    assert [a.doc_id for a in sink.sent] == ["1", "2", "3"]


# --------------------------------------------------------------------------- the stop message's hint
def _rejected(error_type: str, reason: str):
    from cdc.model import Action, ItemResult

    action = Action(ActionType.INDEX, "shop", "7", 1, {"attrs": 1}, None, "db", "t", BinlogPosition("binlog.000001", 4))
    return ItemResult(action, Outcome.REJECTED, 400, error_type, reason)


@pytest.mark.parametrize("error_type, reason", [
    ("document_parsing_exception",
     "[1:17] object mapping for [attrs] tried to parse field [attrs] as object, but found a concrete value"),
    ("illegal_argument_exception", "mapper [attrs.size] cannot be changed from type [long] to [float]"),
    ("document_parsing_exception", "[1:24] failed to parse field [attrs.big] of type [long] in document with id '5'"),
])
def test_a_mapping_conflict_is_explained_with_what_to_change(error_type, reason):
    from cdc.stream.delivery import describe_rejections

    text = describe_rejections([_rejected(error_type, reason)])
    assert reason in text
    assert "`json_mapping: flattened`" in text and "`cdc rebuild`" in text and "dead_letter.on_rejected" in text


def test_other_rejections_get_no_mapping_hint():
    from cdc.stream.delivery import describe_rejections

    text = describe_rejections([_rejected("version_conflict_engine_exception", "version conflict"),
                                _rejected("illegal_argument_exception", "pipeline with id [x] does not exist")])
    assert "json_mapping" not in text and text.count("\n") == 2
