"""Health and readiness of a processor worker, and its Prometheus metrics, over its web port.

Healthy means making progress: a worker whose batches stop while it is behind the end of
its partitions reports itself unhealthy (DESIGN.md), so an orchestrator restarts it.
Ready means it has processed a batch since it started (its state is loaded).

No Faust import: pages are registered through the app object given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from infra.metrics import CONTENT_TYPE, ProcessorMetrics


class WorkerHealth:
    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_s = stall_s
        self._clock = clock
        self._last_batch: float | None = None
        self._lag = 0

    def on_batch(self, lag: int) -> None:
        self._last_batch = self._clock()
        self._lag = lag

    @property
    def ready(self) -> bool:
        return self._last_batch is not None

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): unhealthy only when stalled while there is work to do."""
        since = None if self._last_batch is None else self._clock() - self._last_batch
        stalled = since is not None and since > self._stall_s and self._lag > 0
        return not stalled, {"lag": self._lag, "seconds_since_batch": since,
                             "stalled": stalled}


def register_health(app: Any, metrics: ProcessorMetrics, health: WorkerHealth) -> None:
    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type=CONTENT_TYPE.split(";")[0])

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        healthy, details = health.check()
        return web.json({"healthy": healthy, **details}, status=200 if healthy else 503)

    @app.page("/ready")
    async def ready_view(web: Any, request: Any) -> Any:
        return web.json({"ready": health.ready}, status=200 if health.ready else 503)
