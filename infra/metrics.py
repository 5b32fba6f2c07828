"""Prometheus metrics of the workers, served at `/metrics` on each worker's web port.

The processor counts as it goes; the sink's figures are read from its runner's own stats
when scraped, so there is one source of truth for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from infra.health import HealthTracker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus text format (aiohttp wants the charset left off: it adds its own)."""


class ProcessorMetrics:
    """Counters of the stitching agent, on a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("chargewatch_processor_events", "Meter events by outcome",
                              ["outcome"], registry=self.registry)
        self.messages = Counter("chargewatch_processor_messages",
                                "Meter-events messages read", registry=self.registry)
        self.published = Counter("chargewatch_processor_published",
                                 "Records published by topic", ["topic"],
                                 registry=self.registry)
        self.batch_seconds = Histogram("chargewatch_processor_batch_seconds",
                                       "Time to process, publish and save one batch",
                                       registry=self.registry)
        self.expired = Counter("chargewatch_processor_expired_sessions",
                               "Sessions closed for inactivity", registry=self.registry)
        self.stations = Gauge("chargewatch_processor_stations",
                              "Station states held by this worker", registry=self.registry)
        self.lag = Gauge("chargewatch_processor_consumer_lag",
                         "Messages behind the partition end", ["partition"],
                         registry=self.registry)
        self.anomalies = Counter("chargewatch_processor_anomalies",
                                 "Anomalies published by severity", ["severity"],
                                 registry=self.registry)
        self.critical = Counter("chargewatch_processor_critical_anomalies",
                                "Critical anomalies published by station (only critical "
                                "ones: a label per station is affordable for those)",
                                ["station"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class SinkCollector(Collector):
    """Reads a SinkRunner's stats at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self._stats()
        for name, help_text in (("rows_written", "Rows sent to ClickHouse"),
                                ("batches", "Batches inserted"),
                                ("dead_lettered", "Messages dead-lettered by the sink"),
                                ("retries", "Insert retries after a failure"),
                                ("commit_failures", "Offset commits that failed")):
            yield CounterMetricFamily(f"chargewatch_sink_{name}", help_text,
                                      value=float(stats.get(name, 0)))
        yield GaugeMetricFamily("chargewatch_sink_last_insert_ms",
                                "Duration of the last insert", value=float(
                                    stats.get("last_insert_ms", 0) or 0))
        yield GaugeMetricFamily("chargewatch_sink_buffered",
                                "Messages read and waiting for their insert",
                                value=float(stats.get("buffered", 0)))
        yield GaugeMetricFamily("chargewatch_sink_caught_up",
                                "1 when every assigned partition is written to its end",
                                value=1.0 if stats.get("caught_up") else 0.0)


class HealthCollector(Collector):
    """A worker's health verdict and its inputs, the same ones `/health` judges: alert rules
    and `/health` can then not disagree about what "unreachable" or "stalled" means."""

    def __init__(self, tracker: HealthTracker) -> None:
        self._tracker = tracker

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily("chargewatch_healthy", "1 when /health answers 200",
                                value=1.0 if self._tracker.check().healthy else 0.0)
        failing = GaugeMetricFamily(
            "chargewatch_dependency_failing_seconds",
            "Seconds a dependency has failed with no success in between (0: it works)",
            labels=["dependency"])
        for name, seconds in sorted(self._tracker.failing_s().items()):
            failing.add_metric([name], seconds)
        yield failing
        committed = GaugeMetricFamily("chargewatch_committed_offset",
                                      "Offset committed (sink) or processed (processor)",
                                      labels=["topic", "partition"])
        lag = GaugeMetricFamily("chargewatch_consumer_lag",
                                "Messages behind the last known partition end",
                                labels=["topic", "partition"])
        for key, (offset, behind) in sorted(self._tracker.partitions().items(), key=str):
            topic, partition = key if isinstance(key, tuple) else (str(key), 0)
            if offset is not None:
                committed.add_metric([str(topic), str(partition)], float(offset))
            lag.add_metric([str(topic), str(partition)], float(behind))
        yield committed
        yield lag


def sink_registry(stats: Callable[[], dict[str, Any]],
                  health: HealthTracker | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SinkCollector(stats))
    if health is not None:
        registry.register(HealthCollector(health))
    return registry


def health_registry(health: HealthTracker) -> CollectorRegistry:
    """For a worker whose only figures are its health (the gateway)."""
    registry = CollectorRegistry()
    registry.register(HealthCollector(health))
    return registry
