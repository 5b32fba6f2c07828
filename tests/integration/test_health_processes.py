"""Health tells the truth for the processes an operator runs: `chargewatch worker` and
`chargewatch gateway` against a broker of this test's own, stopped and started again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargewatch.embedded import EmbeddedBroker, free_port
from chargewatch.worker import WorkerProcess
from tests.integration.test_health_truth import BOUND_S, _get, own_broker  # noqa: F401

pytestmark = pytest.mark.integration

BOTH = ("/health", "/ready")


def _env(broker: EmbeddedBroker, tmp_path: Path, namespace: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "CHARGEWATCH_KAFKA__NAMESPACE": namespace, "CHARGEWATCH_KAFKA__PARTITIONS": "1",
            "CHARGEWATCH_PROCESSOR__WEB_PORT": str(free_port()),
            "CHARGEWATCH_PROCESSOR__DATA_DIR": str(tmp_path / "faust"),
            "CHARGEWATCH_PROCESSOR__STITCHING_PROCESSES": "1",
            "CHARGEWATCH_GATEWAY__WEB_PORT": str(free_port()),
            "CHARGEWATCH_HEALTH__UNREACHABLE_S": "3", "CHARGEWATCH_HEALTH__PROBE_EVERY_S": "0.5",
            "CHARGEWATCH_HEALTH__PROBE_TIMEOUT_S": "1", "CHARGEWATCH_LOG_LEVEL": "WARNING"}


def _wait_health(port: int, status: int, reason: str = "",
                 paths: tuple[str, ...] = ("/health",)) -> None:
    """Every path answers `status` with a reason containing `reason` (the port may not
    listen yet)."""
    deadline = time.monotonic() + BOUND_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = answers = [_get(port, path) for path in paths]
        except OSError as exc:
            last = exc
        else:
            if all(code == status and any(reason in r for r in body["reasons"] or [""])
                   for code, body in answers):
                return
        time.sleep(0.3)
    raise AssertionError(f"no {status} {reason!r} within {BOUND_S:.0f} s; last: {last}")


@pytest.fixture
def gateway(own_broker: EmbeddedBroker, tmp_path: Path,  # noqa: F811
            namespace: str) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    env = _env(own_broker, tmp_path, namespace)
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen([sys.executable, "-m", "chargewatch", "gateway", "--host",
                                "127.0.0.1", "--port", "0"], env={**os.environ, **env},
                               stdout=log, stderr=log)
    try:
        yield process, env
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_the_worker_and_the_gateway_turn_503_without_their_broker_and_back_after(
        own_broker: EmbeddedBroker, gateway: tuple[subprocess.Popen[bytes], dict[str, str]],  # noqa: F811
        tmp_path: Path, namespace: str) -> None:
    process, env = gateway
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker_port = int(env["CHARGEWATCH_PROCESSOR__WEB_PORT"])
        gateway_port = int(env["CHARGEWATCH_GATEWAY__WEB_PORT"])
        _wait_health(worker_port, 200)
        _wait_health(gateway_port, 200, paths=BOTH)  # /ready too: it listens for chargers
        status, body = _get(worker_port, "/ready")  # no batch yet: not ready, and says why
        assert status == 503 and "no batch processed yet" in str(body["reasons"])
        own_broker.stop()
        _wait_health(worker_port, 503, "kafka unreachable for")
        _wait_health(gateway_port, 503, "kafka unreachable for", paths=BOTH)
        own_broker.start()
        _wait_health(gateway_port, 200, paths=BOTH)
        worker.check_alive()  # Faust rejoins the (empty) cluster: healthy again
        _wait_health(worker_port, 200)
        assert process.poll() is None
    finally:
        worker.stop()
