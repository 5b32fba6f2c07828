"""What on-call sees of running workers: metrics that match the run, health and readiness."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.publishing import fleet_config, meter_publisher, progress_bar, publish_simulation
from chargewatch.stack import LocalStack
from infra.settings import load_settings
from producers.simulator import simulate

pytestmark = pytest.mark.e2e


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(text: str, name: str) -> float:
    """Sum of every sample of a metric (all label sets)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_metrics_health_and_readiness_of_both_workers(broker: EmbeddedBroker, chdb_url: str,
                                                      tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"obs{uuid.uuid4().hex[:8]}", "partitions": 2},
        clickhouse={"url": chdb_url, "database": f"obs_{uuid.uuid4().hex[:8]}"},
        simulator={"stations": 8, "duration_h": 6.0, "seed": 3})
    simulation = simulate(fleet_config(settings))
    sessions = sum(1 for _ in simulation.truth())
    with LocalStack(settings, tmp_path) as stack:
        publisher = meter_publisher(settings, stack.bootstrap_servers, create_topics=False)[0]
        with progress_bar() as progress:
            publish_simulation(simulation, publisher, None, progress)
        stack.wait_for_sessions(sessions, timeout_s=120)
        events = simulation.meta().events
        worker, sink = stack.worker_web_port, stack.sink.web_port if stack.sink else 0

        status, text = _get(worker, "/metrics")
        assert status == 200
        assert _metric(text, 'chargewatch_processor_events_total{outcome="used"}') == events
        assert _metric(text, "chargewatch_processor_published_total{topic=\"" +
                       stack.topics.sessions_completed + "\"}") == sessions
        status, body = _get(worker, "/health")
        assert status == 200 and json.loads(body)["healthy"] is True
        assert _get(worker, "/ready")[0] == 200

        status, text = _get(sink, "/metrics")
        assert status == 200
        assert _metric(text, "chargewatch_sink_rows_written_total") >= sessions
        assert _get(sink, "/ready")[0] == 200
