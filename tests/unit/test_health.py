"""A worker is unhealthy only when it stalls with work waiting."""

from __future__ import annotations

import pytest

from processors.health import WorkerHealth

pytestmark = pytest.mark.unit


def test_stalled_with_lag_is_unhealthy_and_idle_without_lag_is_not() -> None:
    now = [100.0]
    health = WorkerHealth(stall_s=60, clock=lambda: now[0])
    assert not health.ready and health.check()[0]
    health.on_batch(lag=500)
    assert health.ready
    now[0] += 61
    healthy, details = health.check()
    assert not healthy and details["stalled"] and details["lag"] == 500
    health.on_batch(lag=0)
    now[0] += 600
    assert health.check()[0]
