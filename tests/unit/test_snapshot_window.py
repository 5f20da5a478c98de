"""The write window of snapshot chunks and verify repairs (cdc/copy/snapshot.py write_while_fresh), over fakes."""

import threading
from typing import Callable, Sequence

import pytest

from cdc.errors import SinkUnavailableError
from cdc.copy.snapshot import fresh_window, write_while_fresh
from cdc.model import Action, ActionType
from cdc.stream.delivery import BulkWriter


class Writer(BulkWriter):
    """Fails the first `outages` writes the way BulkWriter does: waits on `abort`, or gives up after `patience`.

    Records the ids of what it wrote. A BulkWriter without its __init__: mypy checks `write` against it."""

    def __init__(self, outages: int, patience: float = 5.0):
        self.outages, self.patience = outages, patience
        self.abort = None
        self.written: list[list[str]] = []

    def write(self, actions: Sequence[Action]) -> None:
        if self.outages:
            self.outages -= 1
            assert self.abort is not None  # write_while_fresh sets it around each write
            if self.abort.wait(self.patience):
                raise SinkUnavailableError("bulk request failed; stopped while waiting to retry")
            raise SinkUnavailableError("bulk request failed; gave up after 3 attempts")
        self.written.append([a.doc_id for a in actions])


def chunk(*doc_ids: str) -> list[Action]:
    """A chunk's actions, named by their ids."""
    return [Action(ActionType.DELETE, "i", doc_id, 1) for doc_id in doc_ids]


def ids(actions: Sequence[Action] | None) -> list[str] | None:
    return None if actions is None else [a.doc_id for a in actions]


def reads(*batches: list[str] | None) -> tuple[Callable[[], list[Action] | None], list[int]]:
    """A read giving a chunk of these ids each time (None: nothing left), and the calls made."""
    made = iter(batches)
    calls: list[int] = []

    def read() -> list[Action] | None:
        calls.append(1)
        names = next(made)
        return None if names is None else chunk(*names)
    return read, calls


def test_window_is_half_of_gc_deletes_at_most():
    assert fresh_window(25.0, 60.0) == 25.0
    assert fresh_window(25.0, 10.0) == 5.0
    assert fresh_window(25.0, 0.0) == 0.0
    assert fresh_window(25.0, None) == 25.0


def test_a_write_that_outlasts_the_window_reads_again():
    writer = Writer(outages=1)
    read, calls = reads(["old"], ["new"])
    assert ids(write_while_fresh(writer, threading.Event(), 0.05, read, "chunk", "shop.t")) == ["new"]
    assert len(calls) == 2 and writer.written == [["new"]]  # the stale read was never written
    assert writer.abort is None


def test_giving_up_within_the_window_is_not_hidden_by_reading_again():
    # retry.max_attempts ran out before the window closed: an outage, not a stale read.
    writer = Writer(outages=1, patience=0.0)
    read, calls = reads(["a"], ["b"])
    with pytest.raises(SinkUnavailableError, match="gave up"):
        write_while_fresh(writer, threading.Event(), 30.0, read, "chunk", "shop.t")
    assert len(calls) == 1 and writer.written == []


def test_a_stop_ends_the_wait_without_reading_again():
    stop = threading.Event()
    stop.set()
    read, calls = reads(["a"], ["b"])
    with pytest.raises(SinkUnavailableError, match="stopped"):
        write_while_fresh(Writer(outages=1), stop, float("inf"), read, "chunk", "shop.t")
    assert len(calls) == 1


def test_nothing_to_read_writes_nothing():
    writer = Writer(outages=0)
    read, _ = reads(None)
    assert write_while_fresh(writer, threading.Event(), 1.0, read, "chunk", "shop.t") is None
    assert writer.written == []


def test_a_chunk_read_earlier_counts_from_its_read_not_from_the_write():
    # A chunk read while earlier ones were being written (snapshot concurrency)
    # has already used part of its window: read 0.2 s ago with a 0.1 s window, it is read again.
    import time

    writer = Writer(outages=1)
    read, calls = reads(["fresh"])
    first = (time.monotonic() - 0.2, chunk("queued"))
    assert ids(write_while_fresh(writer, threading.Event(), 0.1, read, "chunk", "shop.t", first=first)) == ["fresh"]
    assert len(calls) == 1 and writer.written == [["fresh"]]


def test_a_chunk_read_earlier_is_written_as_read_when_still_fresh():
    writer = Writer(outages=0)
    read, calls = reads(["never"])
    import time

    first = (time.monotonic(), chunk("queued"))
    assert ids(write_while_fresh(writer, threading.Event(), 30.0, read, "chunk", "shop.t", first=first)) == ["queued"]
    assert calls == [] and writer.written == [["queued"]]


def test_the_copy_is_paced_to_its_rate_without_credit_from_slow_chunks():
    """snapshot.max_rows_per_second: chunks handed over faster than the rate wait for the rest of
    their share; a chunk slower than its share waits nothing, and banks no credit for later ones."""
    import threading

    from cdc.copy.snapshot import Pace

    now = [100.0]
    waited = []

    class Stop(threading.Event):
        def wait(self, seconds: float | None = None) -> bool:
            assert seconds is not None
            waited.append(round(seconds, 6))
            now[0] += seconds
            return False

    pace = Pace(1000, clock=lambda: now[0])
    assert pace.take(500, Stop()) == 0  # the first chunk counts as having taken its 0.5 s
    now[0] += 0.1  # the next 500 rows came in 0.1 s: 0.4 s more to wait
    assert round(pace.take(500, Stop()), 6) == 0.4
    now[0] += 2.0  # a slow chunk: 2 s for 500 rows
    assert pace.take(500, Stop()) == 0
    now[0] += 0.1  # and no credit from it: the next fast one waits its share again
    assert round(pace.take(500, Stop()), 6) == 0.4
    assert waited == [0.4, 0.4]
    assert Pace(None).take(10**6, threading.Event()) == 0  # no limit
