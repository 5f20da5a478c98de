"""Partitions a `cdc sink` writer owns but does not read: the stall an operator must be able to see.

A writer that keeps heartbeating keeps its partitions, so the group never
moves a partition the writer stopped reading for any reason (a pause flag
librdkafka carried over a rebalance, librdkafka #1849, was one). Nothing
fails and nothing is logged: the lag just grows. `StallWatch` turns that into
a fact: a partition with messages after its read position, whose read
position has not moved for `after` seconds while the writer was not holding
its partitions paused on purpose (the next batch read, waiting for the one
being written), is stalled. It is pure (states and a clock in, stalled
partitions out); the writer feeds it and reports what it says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionState:
    """Where a writer stands in one assigned partition."""

    topic: str
    partition: int
    read_to: int  # the next offset the writer reads (its position, else the group's committed offset)
    end: int  # the partition's high watermark: one past its last message

    @property
    def lag(self) -> int:
        return max(0, self.end - self.read_to)


class StallWatch:
    def __init__(self, after: float):
        self.after = after
        # (topic, partition) -> (read_to, when it was first seen at that read position with messages waiting)
        self._since: dict[tuple[str, int], tuple[int, float]] = {}

    def reset(self) -> None:
        """Start every clock again (the assignment changed)."""
        self._since.clear()

    def update(self, states: list[PartitionState], now: float) -> list[PartitionState]:
        """The partitions of `states` that are stalled at `now`, in the order given.

        `now` is the writer's clock of time not spent holding its partitions paused on purpose
        (a batch waiting for Elasticsearch with the next one already read): that time is no stall.
        """
        stalled = []
        since: dict[tuple[str, int], tuple[int, float]] = {}
        for state in states:
            if state.lag == 0:
                continue  # caught up: nothing to read is not a stall
            key = (state.topic, state.partition)
            read_to, start = self._since.get(key, (state.read_to, now))
            if read_to != state.read_to:  # it moved: reading, however slowly
                start = now
            since[key] = (state.read_to, start)
            if now - start >= self.after:
                stalled.append(state)
        self._since = since
        return stalled
