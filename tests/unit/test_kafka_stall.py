"""A `cdc sink` writer's partitions assigned but not read (issue 27): found, logged, resumed, reported."""

import logging
from typing import Callable

import pytest
import yaml

from cdc.app.kafka_mode import SinkWorker
from cdc.app.session import Session
from cdc.config import Config, KafkaConfig, load_config
from cdc.kafka.client import ActionConsumer
from cdc.kafka.stall import PartitionState, StallWatch
from cdc.ops.metrics import PrometheusObserver, parse_metrics
from cdc.ops.progress import Progress
from cdc.stream.observe import Observers, Stats

T = "cdc.actions"


def state(partition: int, read_to: int, end: int) -> PartitionState:
    return PartitionState(T, partition, read_to, end)


def test_a_partition_whose_position_does_not_move_while_messages_wait_is_stalled_after_the_limit():
    watch = StallWatch(after=60)
    assert watch.update([state(0, 10, 50), state(1, 5, 5)], now=100) == []
    assert watch.update([state(0, 10, 60), state(1, 5, 9)], now=159) == []  # 59 s: not yet
    assert watch.update([state(0, 10, 70), state(1, 5, 9)], now=160) == [state(0, 10, 70)]
    # partition 1 had messages waiting from 159 on: its own clock started then
    assert watch.update([state(0, 10, 70), state(1, 5, 9)], now=219) == [state(0, 10, 70), state(1, 5, 9)]


def test_reading_however_slowly_or_being_caught_up_is_not_a_stall():
    watch = StallWatch(after=10)
    for now, read_to in ((0, 1), (11, 2), (22, 3), (33, 4)):
        assert watch.update([state(0, read_to, 100)], now=now) == []
    assert watch.update([state(0, 100, 100)], now=100) == []  # nothing to read for 67 s: caught up
    assert watch.update([state(0, 100, 101)], now=105) == []  # a new message: its clock starts now
    assert watch.update([state(0, 100, 101)], now=115) == [state(0, 100, 101)]


def test_a_new_assignment_starts_the_clocks_again():
    watch = StallWatch(after=10)
    watch.update([state(0, 1, 9)], now=0)
    assert watch.update([state(0, 1, 9)], now=10) == [state(0, 1, 9)]
    watch.reset()
    assert watch.update([state(0, 1, 9)], now=11) == []
    assert watch.update([state(0, 1, 9)], now=21) == [state(0, 1, 9)]


# The fakes subclass what SinkWorker takes, without their __init__ (which connects), and
# override what it calls: mypy checks the overrides' signatures against the real ones.
class FakeConsumer(ActionConsumer):
    """Reports the partition states a test sets; counts resumes."""

    def __init__(self, config: KafkaConfig, on_assign: Callable[[list[tuple[str, int]]], None],
                 on_revoke: Callable[[list[tuple[str, int]]], None], client_id: str | None = None):
        self.states: list[PartitionState] | None = []
        self.released = 0

    def partition_states(self, timeout: float = 2.0) -> list[PartitionState] | None:
        return self.states

    def release(self) -> None:
        self.released += 1


class FakeSession(Session):
    def __init__(self, config: Config, observers: Observers):
        self.config, self.observers = config, observers

    def observer(self) -> Observers | None:
        return self.observers


class WatchedWorker(SinkWorker):
    metrics: PrometheusObserver  # what the test reads the worker's exported partitions from


@pytest.fixture
def worker(tmp_path):
    path = tmp_path / "cdc.yml"
    path.write_text(yaml.safe_dump({"mysql": {"user": "cdc", "server_id": 5}, "kafka": {"stall_after": 30}}))
    metrics = PrometheusObserver(Progress(heartbeat=1))
    w = WatchedWorker(FakeSession(load_config(str(path)), Observers([metrics])), None, Stats(),
                   consumer_factory=FakeConsumer)
    w.metrics = metrics
    return w


def samples(metrics: PrometheusObserver, name: str) -> dict[str, float]:
    return {lbl["partition"]: v for lbl, v in parse_metrics(metrics.exposition()[0].decode()).get(name, [])}


def test_the_writer_logs_resumes_and_exports_a_stalled_partition_until_it_is_read_again(worker, caplog):
    consumer = worker.consumer
    consumer.states = [state(0, 10, 500), state(1, 7, 7)]
    caplog.set_level(logging.INFO, logger="cdc.sink")
    worker.look_at_partitions(now=1000)
    assert samples(worker.metrics, "cdc_kafka_partition_lag") == {"0": 490, "1": 0}
    assert samples(worker.metrics, "cdc_kafka_partition_stalled") == {"0": 0, "1": 0}
    worker.look_at_partitions(now=1031)
    assert samples(worker.metrics, "cdc_kafka_partition_stalled") == {"0": 1, "1": 0}
    assert consumer.released == 1
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "partitions 0 of cdc.actions: 490 message(s) waiting" in warning[0].getMessage()
    worker.look_at_partitions(now=1041)  # still stalled: no second warning, no second resume
    assert consumer.released == 1 and len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    consumer.states = [state(0, 300, 500), state(1, 7, 7)]
    worker.look_at_partitions(now=1051)
    assert samples(worker.metrics, "cdc_kafka_partition_stalled") == {"0": 0, "1": 0}
    assert any(r.getMessage() == "partitions 0 of cdc.actions are read again" for r in caplog.records)
    # A partition that moved to another writer is no longer reported by this one.
    consumer.states = [state(1, 7, 7)]
    worker.look_at_partitions(now=1061)
    assert samples(worker.metrics, "cdc_kafka_partition_lag") == {"1": 0}


def test_a_broker_that_does_not_answer_changes_nothing(worker):
    worker.consumer.states = [state(0, 10, 500)]
    worker.look_at_partitions(now=0)
    worker.consumer.states = None
    worker.look_at_partitions(now=100)
    assert worker.stalled == set() and worker.consumer.released == 0
    assert samples(worker.metrics, "cdc_kafka_partition_lag") == {"0": 490}
