"""Prometheus metrics: the only module that imports prometheus_client.

`PrometheusObserver` counts what the pipeline's hooks report into its own
`CollectorRegistry` (not the process-global one, so tests and a future second
pipeline can each have theirs), and computes lag, checkpoint age and positions
from `Progress` at scrape time, so a scrape never shows a stale gauge.
`read_metrics(url)` parses another daemon's /metrics (for `cdc status`).

Names are listed in docs/operations.md "Operations"; a metric that is not measured yet
(snapshot progress) is left out rather than exported as a 0 that never moves.
"""

from __future__ import annotations

import math
import time
import urllib.request
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from cdc.model import BinlogPosition, Commit, RowChange
from cdc.stream.observe import Observer
from cdc.ops.progress import Progress

# A bulk takes milliseconds when healthy and up to request_timeout when not.
BULK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Commit-to-acknowledged is a bulk round trip when the stream keeps up (milliseconds:
# batches go out as soon as the source is quiet), and spans any backlog or outage
# when it does not.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


class _ProgressCollector(Collector):
    """Gauges computed from `Progress` when scraped."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def collect(self) -> Iterator[GaugeMetricFamily]:
        p = self.progress
        behind = GaugeMetricFamily(
            "cdc_seconds_behind_source",
            "Seconds the stream is behind the source: event time vs. now when read, 0 after a heartbeat, "
            "growing while nothing arrives for longer than mysql.heartbeat.")
        lag = p.seconds_behind()
        if lag is not None:
            behind.add_metric([], lag)
        yield behind
        age = GaugeMetricFamily("cdc_checkpoint_age_seconds",
                                "Seconds since the checkpoint was last saved (grows while the source is idle).")
        checkpoint_age = p.checkpoint_age()
        if checkpoint_age is not None:
            age.add_metric([], checkpoint_age)
        yield age
        file_index = GaugeMetricFamily("cdc_binlog_file_index",
                                       "Numeric suffix of the binlog file: of the last commit read, or checkpointed.",
                                       labels=["stage"])
        offset = GaugeMetricFamily("cdc_binlog_offset_bytes",
                                   "Byte offset in that binlog file: of the last commit read, or checkpointed.",
                                   labels=["stage"])
        for stage, position in (("read", p.read_position), ("checkpoint", p.checkpoint_position)):
            seq = _file_seq(position)
            if position is not None and seq is not None:
                file_index.add_metric([stage], seq)
                offset.add_metric([stage], position.pos)
        yield file_index
        yield offset
        # Why cdc is not moving on, while it waits to send again (an outage, a 429 of a blocked
        # index): the retry counters say that it retried, not that it still waits, nor for what.
        # Made at scrape time from one value, so there is never more than one reason exported.
        waiting = GaugeMetricFamily("cdc_sink_waiting",
                                    "1 while cdc waits to send bulk items again; `reason` says what failed.",
                                    labels=["reason"])
        if p.started:
            ok, problem = p.sink_ok, p.sink_problem
            waiting.add_metric([problem or ""], 0 if ok else 1)
        yield waiting


class _RowPathCollector(Collector):
    """`cdc_row_path`: for each table seen, the path its rows events take, from the row path itself."""

    def __init__(self, tables: Callable[[], dict[str, str]]):
        self.tables = tables

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("cdc_row_path", "1 for each table seen: the path its rows events take "
                                   "(native or python) and why a table falls back to python.",
                                   labels=["table", "path", "reason"])
        for table, state in sorted(self.tables().items()):
            path, _, reason = state.partition(": ")
            family.add_metric([table, path, reason], 1)
        yield family


def _file_seq(position: BinlogPosition | None) -> int | None:
    if position is None:
        return None
    try:
        return position.file_seq
    except ValueError:  # a file name without a number: no index to report
        return None


class PrometheusObserver(Observer):
    def __init__(self, progress: Progress, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.progress = progress
        self._clock = clock
        self._monotonic = monotonic
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("cdc_binlog_events", "Binlog rows events read, per table (schema.table) and operation.",
                              ["table", "op"], registry=r)
        self.rows = Counter("cdc_rows", "Rows read from the binlog, per table (schema.table) and operation.",
                            ["table", "op"], registry=r)
        self.transactions = Counter("cdc_transactions", "Transaction commits read from the binlog.", registry=r)
        self.written = Counter("cdc_actions_written",
                               "Bulk items Elasticsearch accepted: ok, or stale (a newer version is already there).",
                               ["outcome"], registry=r)
        self.failed = Counter("cdc_actions_failed",
                              "Bulk items that failed: retry (429/5xx, sent again) or rejected (stops the daemon).",
                              ["outcome"], registry=r)
        self.bulk_seconds = Histogram("cdc_bulk_duration_seconds", "Duration of bulk requests that got an answer.",
                                      buckets=BULK_BUCKETS, registry=r)
        self.retries = Counter("cdc_retries",
                               "Retry waits: request (the whole bulk failed) or items (some items failed).",
                               ["kind"], registry=r)
        self.commit_latency = Histogram(
            "cdc_commit_to_acknowledged_seconds",
            "End-to-end latency: a batch's oldest commit (binlog timestamp, whole seconds) to Elasticsearch "
            "acknowledging it and every earlier batch.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.read_latency = Histogram(
            "cdc_read_to_acknowledged_seconds",
            "cdc's own part of the latency, to the millisecond: a batch's oldest commit read from the binlog "
            "to Elasticsearch acknowledging it and every earlier batch.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.checkpoints = Counter("cdc_checkpoints", "Checkpoint saves.", registry=r)
        self.dead_letters = Counter("cdc_dead_letters",
                                    "Rejected actions put in the dead-letter store (dead_letter.on_rejected).",
                                    registry=r)
        # `cdc sink` only: set from the writer's periodic look at its partitions (cdc/kafka/stall.py).
        self.partition_lag = Gauge("cdc_kafka_partition_lag",
                                   "cdc sink: messages after the writer's read position, per assigned partition.",
                                   ["topic", "partition"], registry=r)
        self.partition_stalled = Gauge(
            "cdc_kafka_partition_stalled",
            "cdc sink: 1 for an assigned partition with messages waiting that the writer has not read for "
            "kafka.stall_after seconds while not paused on purpose (docs/kafka.md).",
            ["topic", "partition"], registry=r)
        r.register(_ProgressCollector(progress))
        # Known label values start at 0, so rate() works from the first scrape.
        for outcome in ("ok", "stale"):
            self.written.labels(outcome)
        for outcome in ("retry", "rejected"):
            self.failed.labels(outcome)
        for kind in ("request", "items"):
            self.retries.labels(kind)
        # labels() takes a lock and builds a key per call; rows are hot, so keep the children.
        self._row_counters: dict[tuple[str, str, str], tuple] = {}

    def watch_row_paths(self, tables: Callable[[], dict[str, str]]) -> None:
        """Export `cdc_row_path` from `tables()` ("schema.table" -> "native" or "python: why") at scrape time."""
        self.registry.register(_RowPathCollector(tables))

    # ------------------------------------------------------------------ hooks
    def on_row(self, change: RowChange) -> None:
        self.on_rows(change, 1)

    def on_rows(self, change: RowChange, count: int) -> None:
        key = (change.schema, change.table, change.op.value)
        counters = self._row_counters.get(key)
        if counters is None:
            table = f"{change.schema}.{change.table}"
            counters = self._row_counters[key] = (self.events.labels(table, key[2]), self.rows.labels(table, key[2]))
        if change.row_index == 0:  # each rows event yields its rows numbered from 0
            counters[0].inc()
        counters[1].inc(count)

    def on_commit(self, commit: Commit) -> None:
        self.transactions.inc()

    def on_bulk(self, actions: int, seconds: float, ok: int, stale: int, retry: int, rejected: int) -> None:
        self.bulk_seconds.observe(seconds)
        self.written.labels("ok").inc(ok)
        self.written.labels("stale").inc(stale)
        self.failed.labels("retry").inc(retry)
        self.failed.labels("rejected").inc(rejected)

    def on_retry(self, kind: str, count: int, delay: float, why: str = "") -> None:
        self.retries.labels(kind).inc()

    def on_latency(self, oldest: Commit, read_at: float) -> None:
        # Called only for batches that wrote something: a batch of other tables'
        # commits says nothing about how fast documents reach Elasticsearch. The
        # oldest transaction is the one that waited longest, so every write in the
        # batch took at most this long. The binlog timestamp is whole seconds
        # (the event header's `timestamp`, MySQL and MariaDB alike), so the first
        # histogram reads up to 1 s high (plus clock skew between the servers);
        # the second starts on cdc's own clock and is exact, but leaves out any
        # time before cdc read the commit (cdc_seconds_behind_source shows that).
        if oldest.timestamp > 0:
            self.commit_latency.observe(max(0.0, self._clock() - oldest.timestamp))
        self.read_latency.observe(max(0.0, self._monotonic() - read_at))

    def on_checkpoint(self, commit: Commit) -> None:
        self.checkpoints.inc()

    def on_dead_letter(self, count: int) -> None:
        self.dead_letters.inc(count)

    def on_partitions(self, lag: dict[tuple[str, int], int], stalled: set[tuple[str, int]]) -> None:
        # Only the partitions assigned now: a partition that moved to another writer is not ours to report.
        self.partition_lag.clear()
        self.partition_stalled.clear()
        for (topic, partition), behind in lag.items():
            self.partition_lag.labels(topic, str(partition)).set(behind)
            self.partition_stalled.labels(topic, str(partition)).set(1 if (topic, partition) in stalled else 0)

    # ------------------------------------------------------------------ exposition
    def exposition(self) -> tuple[bytes, str]:
        """The text format body for GET /metrics, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format -> {sample name: [(labels, value), ...]}; NaN samples dropped."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not math.isnan(sample.value):
                out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def read_metrics(url: str, timeout: float = 3.0) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Scrape a running daemon's /metrics; raises OSError (URLError) when it does not answer."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return parse_metrics(resp.read().decode())
