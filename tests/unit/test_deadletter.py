"""Dead-letter store and the bulk writer's handling of rejected and oversized requests (fake sink)."""

import pytest

from cdc.config import BatchConfig, RetryConfig
from cdc.stream.deadletter import DeadLetterStore, retry
from cdc.stream.delivery import BulkWriter
from cdc.errors import RejectedActionsError, SinkAccessError
from cdc.model import Action, ActionType, BinlogPosition, ItemResult, Outcome

from .fakes import FakeSink

POS = BinlogPosition("binlog.000003", 1234)


def action(i: int, doc=None) -> Action:
    return Action(ActionType.INDEX, "idx", str(i), 100 + i, doc or {"n": i}, None, "db", "t", POS)


def writer(sink, store=None) -> BulkWriter:
    return BulkWriter(sink, BatchConfig(max_actions=100), RetryConfig(initial_backoff=0.001, max_backoff=0.01),
                      dead_letters=store)


def test_store_round_trip_keeps_everything_needed_to_resend(tmp_path):
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    [letter] = store.add([ItemResult(action(7, {"x": [1, "é"]}), Outcome.REJECTED, 400, "mapper", "why")])
    [back] = store.list()
    assert back == letter
    assert back.action.doc == {"x": [1, "é"]} and back.action.version == 107 and back.action.position == POS
    assert back.action.schema == "db" and back.action.table == "t" and back.reason == "why"


def test_rejected_items_stop_without_a_store():
    with pytest.raises(RejectedActionsError, match="idx/2 from db.t at binlog.000003:1234"):
        writer(FakeSink(bad={"2"})).write([action(1), action(2), action(3)])


def test_rejected_items_go_to_the_store_and_the_rest_is_written(tmp_path):
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    w = writer(FakeSink(bad={"2"}), store)
    w.write([action(1), action(2), action(3)])
    assert [letter.action.doc_id for letter in store.list()] == ["2"]
    assert w.stats.dead_lettered == 1 and w.stats.actions_sent == 2


@pytest.mark.parametrize("status", [401, 403])
def test_access_refusals_stop_even_with_a_store_and_dead_letter_nothing(tmp_path, status):
    # A role without the index privilege would otherwise dead-letter every document.
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    w = writer(FakeSink(bad={"2", "3"}, status=status, error="security_exception"), store)
    with pytest.raises(SinkAccessError, match=r"refused 2 of 3 actions for lack of access") as info:
        w.write([action(1), action(2), action(3)])
    assert "idx/2 from db.t at binlog.000003:1234" in str(info.value)
    assert not info.value.retriable
    assert store.list() == [] and w.stats.dead_lettered == 0


def test_413_splits_the_request_until_it_fits():
    sink = FakeSink(limit=2)
    writer(sink).write([action(i) for i in range(5)])
    written = [c for c in sink.sent_ids if len(c) <= 2]
    assert sorted(i for c in written for i in c) == [str(i) for i in range(5)]


def test_a_single_document_over_the_limit_is_dead_lettered(tmp_path):
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    sink = FakeSink(limit=0)  # even one action is too large
    writer(sink, store).write([action(1)])
    [letter] = store.list()
    assert letter.status == 413 and letter.error_type == "request_too_large"


def test_retry_removes_what_now_succeeds(tmp_path):
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    store.add([ItemResult(action(i), Outcome.REJECTED, 400, "mapper", "x") for i in (1, 2, 3)])
    done, failing = retry(store, FakeSink(bad={"3"}))
    assert len(done) == 2 and [f.action.doc_id for f in failing] == ["3"]
    assert [letter.action.doc_id for letter in store.list()] == ["3"]


def test_remove_is_atomic_and_selective(tmp_path):
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    letters = store.add([ItemResult(action(i), Outcome.REJECTED, 400, "mapper", "x") for i in range(4)])
    assert store.remove({letters[0].id, letters[2].id, "nope"}) == 2
    assert [letter.id for letter in store.list()] == [letters[1].id, letters[3].id]
    assert not list(tmp_path.glob(".*.tmp"))


def test_update_actions_keep_their_pipeline_and_unversioned_flag(tmp_path):
    store = DeadLetterStore(tmp_path / "dl.jsonl")
    a = Action(ActionType.INDEX, "idx", "9", 5, {"n": 9}, "r1", "db", "t", POS, pipeline="p", versioned=False)
    store.add([ItemResult(a, Outcome.REJECTED, 400, "x", "y")])
    assert store.list()[0].action == a


def test_a_write_the_disk_cuts_short_leaves_no_torn_letter_and_raises(tmp_path, monkeypatch):
    """A filesystem nearly full writes what fits (os.write returns less), then refuses (ENOSPC): the file
    keeps the letters before, whole, and the caller learns that these were not written (it stops)."""
    import cdc.stream.deadletter as dl
    from cdc.errors import DeadLetterError

    store = DeadLetterStore(tmp_path / "dl.jsonl")
    [first] = store.add([ItemResult(action(1), Outcome.REJECTED, 400, "mapper", "why")])
    before = (tmp_path / "dl.jsonl").read_bytes()
    real_write, calls = dl.os.write, []

    def short_write(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))  # what fit
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dl.os, "write", short_write)
    with pytest.raises(DeadLetterError, match=r"dl\.jsonl: cannot write 1 dead letter\(s\): No space left on device"):
        store.add([ItemResult(action(2, {"big": "x" * 5000}), Outcome.REJECTED, 400, "mapper", "why")])
    monkeypatch.undo()
    assert len(calls) == 2  # it went on writing after the short write
    assert (tmp_path / "dl.jsonl").read_bytes() == before
    assert store.list() == [first]
