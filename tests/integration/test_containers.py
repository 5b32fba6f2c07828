"""The pipeline on Apache Kafka and a ClickHouse server in containers (testcontainers).

What the embedded stack cannot show: the same code against the real servers a network runs
(Kafka's consumer groups and long-polling fetches, ClickHouse over HTTP with a user and a
password, ReplicatedMergeTree-free single server). Skipped, with the reason, where no Docker
engine answers, as in CI on this machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargewatch.publishing import fleet_config, meter_publisher, progress_bar, publish_simulation
from chargewatch.stack import LocalStack
from infra.settings import load_settings
from producers.simulator import simulate
from tests.e2e.verify import assert_matches_truth, session_rows

EXAMPLE_TARIFFS = Path(__file__).resolve().parents[2] / "tariffs" / "example.yaml"


def _docker_unavailable() -> str | None:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine to start containers
        return f"no Docker engine answers ({type(exc).__name__}); testcontainers needs one"
    return None


_NO_DOCKER = _docker_unavailable()
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(_NO_DOCKER is not None, reason=_NO_DOCKER or "")]


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="module")
def clickhouse_url() -> Iterator[str]:
    from testcontainers.community.clickhouse import ClickHouseContainer

    with ClickHouseContainer("clickhouse/clickhouse-server:24.8") as server:
        host = server.get_container_host_ip()
        port = server.get_exposed_port(8123)
        yield f"http://{server.username}:{server.password}@{host}:{port}"


def test_pipeline_on_kafka_and_clickhouse_servers(kafka_bootstrap: str, clickhouse_url: str,
                                                  tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"tc{uuid.uuid4().hex[:8]}",
               "partitions": 3},
        clickhouse={"url": clickhouse_url, "database": f"tc_{uuid.uuid4().hex[:8]}"},
        simulator={"stations": 15, "duration_h": 8.0, "seed": 3},
        processor={"tariff_file": str(EXAMPLE_TARIFFS)},
    )
    simulation = simulate(fleet_config(settings))
    truth = list(simulation.truth())
    with LocalStack(settings, tmp_path) as stack:
        publisher = meter_publisher(settings, stack.bootstrap_servers)[0]
        with progress_bar() as progress:
            publish_simulation(simulation, publisher, None, progress)
        stack.wait_for_sessions(len(truth), timeout_s=300)
        rows = session_rows(stack.client, settings.clickhouse.database)
    assert_matches_truth(truth, rows)
