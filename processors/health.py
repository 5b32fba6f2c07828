"""Health and readiness of a processor worker, and its Prometheus metrics, over its web port.

Healthy means able to make progress (infra/health.py): Kafka answers, and no partition with
lag has stood still for `processor.stall_s`, so an orchestrator restarts a stuck worker.
Ready means healthy and having processed a batch since it started (its state is loaded).

No Faust import: pages are registered through the app object given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.health import HealthReport, HealthTracker
from infra.metrics import CONTENT_TYPE, HealthCollector, ProcessorMetrics


class WorkerHealth:
    """The tracker of one worker, fed per batch with each partition's position and end."""

    def __init__(self, tracker: HealthTracker) -> None:
        self.tracker = tracker
        self._batches = 0

    def on_partition(self, topic: str, partition: int, next_offset: int,
                     end_offset: int | None) -> None:
        """After a batch: the partition was processed up to `next_offset`, its end is
        `end_offset` (None: unknown yet)."""
        self.tracker.committed((topic, partition), next_offset)
        if end_offset is not None:
            self.tracker.end((topic, partition), end_offset)

    def on_batch(self) -> None:
        self._batches += 1

    def on_revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        self.tracker.forget(partitions)

    @property
    def loaded(self) -> bool:
        return self._batches > 0

    def check(self) -> HealthReport:
        return self.tracker.check()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        report = self.check()
        reasons = list(report.reasons)
        if not self.loaded:
            reasons.append("no batch processed yet (state not loaded)")
        ready = report.healthy and self.loaded
        return ready, report.body(ready=ready, reasons=reasons)


def register_health(app: Any, metrics: ProcessorMetrics, health: WorkerHealth) -> None:
    metrics.registry.register(HealthCollector(health.tracker))

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type=CONTENT_TYPE.split(";")[0])

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        report = health.check()
        return web.json(report.body(), status=200 if report.healthy else 503)

    @app.page("/ready")
    async def ready_view(web: Any, request: Any) -> Any:
        ready, body = health.readiness()
        return web.json(body, status=200 if ready else 503)
