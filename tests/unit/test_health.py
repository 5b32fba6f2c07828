"""Health tells the truth: unreachable dependencies and stalled commits with lag, judged on an
injected clock (infra/health.py), and what each worker's endpoints answer for them."""

from __future__ import annotations

import json
import logging

import pytest

from infra.health import CLICKHOUSE, KAFKA, HealthTracker
from infra.health_web import HealthServer
from infra.kafka_config import RepeatFilter
from infra.metrics import health_registry
from processors.health import WorkerHealth

pytestmark = pytest.mark.unit

P0 = ("cw.sessions-completed", 0)


def tracker(now: list[float]) -> HealthTracker:
    return HealthTracker(unreachable_s=30, stall_s=60, clock=lambda: now[0])


def test_a_dependency_is_unreachable_only_after_failing_longer_than_the_bound() -> None:
    now = [1000.0]
    health = tracker(now)
    health.failed(KAFKA, "Connection refused\nsecond line")
    now[0] += 29
    health.failed(KAFKA, "Connection refused")
    assert health.check().healthy  # a run of failures shorter than the bound: a blip
    now[0] += 2
    report = health.check()
    assert not report.healthy
    assert report.reasons == ("kafka unreachable for 31 s (more than 30 s): Connection refused",)
    health.reached(KAFKA)
    assert health.check().healthy
    health.failed(KAFKA, "again")  # a new outage counts from its own first failure
    now[0] += 10
    assert health.check().healthy and health.failing_s() == {KAFKA: 10.0}


def test_each_dependency_has_its_own_outage() -> None:
    now = [0.0]
    health = tracker(now)
    health.failed(CLICKHOUSE, "insert failed: Code: 210")
    health.reached(KAFKA)
    now[0] += 45
    report = health.check()
    assert not report.healthy and len(report.reasons) == 1
    assert report.reasons[0].startswith("clickhouse unreachable for 45 s")


def test_commits_that_stand_still_with_lag_are_a_stall_and_without_lag_are_not() -> None:
    now = [0.0]
    health = tracker(now)
    health.begin(P0, 100)
    health.end(P0, 100)
    now[0] += 3600  # idle and caught up for an hour: healthy
    assert health.check().healthy
    health.end(P0, 150)  # new messages: the stall clock starts now, not an hour ago
    now[0] += 59
    assert health.check().healthy
    now[0] += 2
    report = health.check()
    assert not report.healthy and report.details == {"lag": 50, "stalled": True}
    assert report.reasons == ("commits stalled on cw.sessions-completed[0] for 61 s "
                              "(more than 60 s) with lag 50",)
    health.committed(P0, 120)  # moving again, still behind: healthy
    assert health.check().healthy
    now[0] += 61
    assert not health.check().healthy
    health.forget([P0])  # revoked: no longer this worker's to move
    assert health.check().healthy and health.partitions() == {}


def test_begin_sets_the_baseline_once_and_a_short_end_is_no_lag() -> None:
    now = [0.0]
    health = tracker(now)
    health.committed(P0, 500)
    health.begin(P0, 10)  # already known: kept
    health.end(P0, 480)  # Tansu reports ends short: never negative lag
    assert health.partitions() == {P0: (500, 0)}


def test_processor_health_ready_needs_a_batch_and_health() -> None:
    now = [0.0]
    worker = WorkerHealth(tracker(now))
    ready, body = worker.readiness()
    assert not ready and body["reasons"] == ["no batch processed yet (state not loaded)"]
    worker.on_partition("cw.meter-events", 1, 4000, 9000)
    worker.on_batch()
    assert worker.readiness()[0]
    now[0] += 61
    ready, body = worker.readiness()
    assert not ready and body["lag"] == 5000 and "commits stalled" in body["reasons"][0]
    worker.on_revoked([("cw.meter-events", 1)])
    assert worker.readiness()[0]


def test_the_health_port_answers_503_with_the_reason_and_metrics_say_the_same() -> None:
    now = [0.0]
    health = tracker(now)
    listening = [False]
    server = HealthServer("127.0.0.1", 0, health, health_registry(health),
                          lambda: None if listening[0] else "not listening yet")
    try:
        assert server.answer("/health")[0] == 200
        assert server.answer("/ready")[0] == 503
        listening[0] = True
        assert server.answer("/ready")[0] == 200
        health.failed(KAFKA, "no metadata from the brokers: timed out")
        now[0] += 31
        for path in ("/health", "/ready"):
            status, _, body = server.answer(path)
            assert status == 503
            assert json.loads(body)["reasons"][0].startswith("kafka unreachable for 31 s")
        metrics = server.answer("/metrics")[2].decode()
        assert "chargewatch_healthy 0.0" in metrics
        assert 'chargewatch_dependency_failing_seconds{dependency="kafka"} 31.0' in metrics
        assert server.answer("/nope")[0] == 404
    finally:
        server.stop()


def test_a_repeated_error_is_one_line_per_interval_with_a_count() -> None:
    now = [0.0]
    repeats = RepeatFilter(quiet_s=60, clock=lambda: now[0])

    def passed(message: str) -> str | None:
        record = logging.LogRecord("chargewatch.kafka", logging.ERROR, "", 0, message, None,
                                   None)
        return record.getMessage() if repeats.filter(record) else None

    refused = "Connect to 127.0.0.1:{} failed: Connection refused"
    assert passed(refused.format(9092)) == refused.format(9092)
    for second in range(1, 60):  # ~20 a second for a minute, as a dead broker gives
        now[0] = float(second)
        assert passed(refused.format(second)) is None
    now[0] = 61.0
    assert passed(refused.format(1)) == (refused.format(1) + " (and 59 more like it in the "
                                         "last 61 s)")
    now[0] = 200.0
    assert passed(refused.format(1)) == refused.format(1)  # nothing held back: no count


def test_the_log_handler_limits_aiokafka_repeats_and_leaves_our_lines_alone() -> None:
    from chargewatch.logs import logging_config

    config = logging_config("INFO", "text")
    limiter = config["filters"]["repeats"]
    repeats = limiter["()"](prefixes=limiter["prefixes"], clock=lambda: 0.0)
    assert "repeats" in config["handlers"]["stderr"]["filters"]

    def passes(name: str) -> bool:
        return repeats.filter(logging.LogRecord(name, logging.ERROR, "", 0,
                                                "Unable connect to node with id 1", None, None))

    assert passes("aiokafka") and not passes("aiokafka.consumer.fetcher")
    assert passes("chargewatch.sink") and passes("chargewatch.sink")
