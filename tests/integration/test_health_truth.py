"""Health tells the truth on the embedded stack: the sink's `/health` and `/ready` turn 503
with the reason when its broker is stopped or frozen (SIGSTOP), or its commits stall with lag,
and 200 again once the broker is back. Bounds are generous: only the order of events is
asserted, never how fast."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from chargewatch.embedded import EmbeddedBroker
from chargewatch.sink_service import SinkService
from infra.settings import Settings, load_settings
from infra.topics import Topics, ensure_topics
from sinks.batches import Intent
from tests.integration.test_sink import produce_sessions

pytestmark = pytest.mark.integration

BOUND_S = 90.0
"""Longest any verdict may take to show: the settings below make it ~4 s."""


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own: it is stopped and frozen here."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


def _settings(broker: EmbeddedBroker, chdb_url: str, database: str, namespace: str) -> Settings:
    return load_settings(kafka={"bootstrap_servers": broker.bootstrap_servers,
                                "namespace": namespace, "partitions": 1},
                         clickhouse={"url": chdb_url, "database": database},
                         sink={"stall_s": 3.0, "batch_ms": 50},
                         health={"unreachable_s": 3.0, "probe_every_s": 0.5,
                                 "probe_timeout_s": 1.0})


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _wait_for(port: int, status: int, reason: str = "") -> dict[str, object]:
    """Both endpoints answer `status`, with a reason containing `reason`."""
    deadline = time.monotonic() + BOUND_S
    last: object = None
    while time.monotonic() < deadline:
        answers = [_get(port, path) for path in ("/health", "/ready")]
        last = answers
        if all(code == status and any(reason in str(r) for r in body["reasons"] or [""])
               for code, body in answers):
            return answers[0][1]
        time.sleep(0.3)
    raise AssertionError(f"no {status} {reason!r} within {BOUND_S:.0f} s; last: {last}")


def _service(settings: Settings, client: Client,
             on_step: Callable[[str, Intent], None] | None = None) -> SinkService:
    ensure_topics({"bootstrap.servers": settings.kafka.bootstrap_servers},
                  Topics(settings.kafka.namespace), 1)
    return SinkService(settings, str(settings.kafka.bootstrap_servers), web_port=0,
                       client=client, on_step=on_step).start()


def test_stopped_broker_turns_health_503_and_a_restart_turns_it_back(
        own_broker: EmbeddedBroker, client: Client, chdb_url: str, database: str,
        namespace: str) -> None:
    service = _service(_settings(own_broker, chdb_url, database, namespace), client)
    try:
        _wait_for(service.web_port, 200)
        own_broker.stop()
        body = _wait_for(service.web_port, 503, "kafka unreachable for")
        assert len(body["reasons"]) == 1  # type: ignore[arg-type]
        own_broker.start()  # same port; memory only, so an empty cluster
        _wait_for(service.web_port, 200)
    finally:
        service.stop()


def test_frozen_broker_with_stalled_commits_and_lag_turns_health_503_until_thawed(
        own_broker: EmbeddedBroker, client: Client, chdb_url: str, database: str,
        namespace: str) -> None:
    """The sink's first insert is held (as a hung ClickHouse would): its commits stand still
    while the partition has lag. Then the broker freezes: connections stay open, nothing
    answers. Both show as reasons; thawed and released, the sink is healthy again."""
    held, release = threading.Event(), threading.Event()

    def hold(stage: str, intent: Intent) -> None:
        if stage == "intent":
            held.set()
            release.wait(BOUND_S * 3)

    settings = _settings(own_broker, chdb_url, database, namespace)
    service = _service(settings, client, on_step=hold)
    try:
        _wait_for(service.web_port, 200)
        produce_sessions(own_broker, Topics(namespace), range(50))
        assert held.wait(BOUND_S)
        body = _wait_for(service.web_port, 503, "commits stalled on")
        assert "with lag 50" in str(body["reasons"]) and body["lag"] == 50
        assert own_broker.pid is not None
        os.kill(own_broker.pid, signal.SIGSTOP)
        body = _wait_for(service.web_port, 503, "kafka unreachable for")
        assert any("commits stalled" in r for r in body["reasons"])  # type: ignore[union-attr]
        os.kill(own_broker.pid, signal.SIGCONT)
        release.set()
        _wait_for(service.web_port, 200)
        deadline = time.monotonic() + BOUND_S
        while service.runner.stats.rows_written < 50:
            assert time.monotonic() < deadline, service.runner.stats
            time.sleep(0.2)
    finally:
        release.set()
        service.stop()
