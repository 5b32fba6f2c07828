"""Simulator → Kafka → Faust → ClickHouse, compared with the simulator's ground truth, exactly.

The verifier reads only ClickHouse and the truth; it knows nothing of the processor.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from chargewatch.embedded import EmbeddedBroker
from chargewatch.publishing import (
    fleet_config,
    meter_publisher,
    progress_bar,
    publish_simulation,
)
from chargewatch.stack import LocalStack
from infra.settings import Settings, load_settings
from producers.simulator import simulate
from producers.truth import TrueSession
from schemas.codec import Codec
from tests.e2e.verify import assert_matches_truth, expected_ids, session_rows

pytestmark = pytest.mark.e2e

EXAMPLE_TARIFFS = Path(__file__).resolve().parents[2] / "tariffs" / "example.yaml"
"""Time-of-use energy prices, a start fee, an idle fee and VAT: truth and pipeline must agree."""
FLEET = {"stations": 25, "duration_h": 12.0, "seed": 11}


def _settings(bootstrap: str, chdb_url: str) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap, "namespace": f"e2e{uuid.uuid4().hex[:8]}",
               "partitions": 3},
        clickhouse={"url": chdb_url, "database": f"e2e_{uuid.uuid4().hex[:8]}"},
        simulator=FLEET,
        processor={"tariff_file": str(EXAMPLE_TARIFFS)},
    )


def _run(settings: Settings, run_dir: Path, poison: bytes | None = None
         ) -> tuple[list[TrueSession], dict[tuple[str, int, int], dict[str, Any]], int]:
    """Run the pipeline once; returns the truth, ClickHouse's rows by natural key, dead letters."""
    simulation = simulate(fleet_config(settings))
    truth = list(simulation.truth())
    with LocalStack(settings, run_dir) as stack:
        publisher, _, topics = meter_publisher(settings, stack.bootstrap_servers)
        topic = topics.meter_events
        if poison is not None:
            publisher.publish_raw(topic, b"CS-POISON", poison)
        with progress_bar() as progress:
            publish_simulation(simulation, publisher, None, progress)
        stack.wait_for_sessions(len(truth), timeout_s=240)
        database = settings.clickhouse.database
        by_key = session_rows(stack.client, database)
        dead = 0
        if poison is not None:
            deadline = time.monotonic() + 60
            while dead == 0 and time.monotonic() < deadline:
                dead = int(stack.client.command(
                    f"SELECT count() FROM {database}.dead_letters WHERE stage = 'processor'"))
                time.sleep(0.25)
    return truth, by_key, dead


def test_pipeline_matches_ground_truth_and_ids_repeat(broker: EmbeddedBroker, chdb_url: str,
                                                        tmp_path: Path) -> None:
    first = _settings(broker.bootstrap_servers, chdb_url)
    truth, rows, dead = _run(first, tmp_path / "one", poison=b"\x00garbage that is not avro")
    assert_matches_truth(truth, rows)
    assert dead == 1, "the undecodable message should be one dead letter in ClickHouse"

    second = _settings(broker.bootstrap_servers, chdb_url)
    _, rows_again, _ = _run(second, tmp_path / "two", poison=b"\x00garbage that is not avro")
    assert {k: r["session_id"] for k, r in rows_again.items()} == \
        {k: r["session_id"] for k, r in rows.items()}


def test_worker_restart_continues_from_its_table(broker: EmbeddedBroker, chdb_url: str,
                                                 tmp_path: Path) -> None:
    """A worker stopped half-way and started again loses and duplicates nothing."""
    settings = _settings(broker.bootstrap_servers, chdb_url)
    simulation = simulate(fleet_config(settings))
    truth = list(simulation.truth())
    messages = list(simulation.messages())
    half = len(messages) // 2
    with LocalStack(settings, tmp_path) as stack:
        producer = Producer({"bootstrap.servers": stack.bootstrap_servers,
                             "enable.idempotence": True, "partitioner": "murmur2_random"})
        codec = Codec()
        topic = stack.topics.meter_events

        def send(batch: list[tuple[str, list[Any]]]) -> None:
            for station, events in batch:
                producer.produce(topic, key=station.encode(),
                                 value=codec.encode_meter_events(events, topic))
                producer.poll(0)
            producer.flush(30)

        send(messages[:half])
        database = settings.clickhouse.database
        deadline = time.monotonic() + 120
        while int(stack.client.command(
                f"SELECT count() FROM {database}.charging_sessions")) == 0:
            assert time.monotonic() < deadline, "no session landed before the restart"
            time.sleep(0.25)
        assert stack.worker is not None
        stack.worker.stop()
        stack.start_worker()
        send(messages[half:])
        stack.wait_for_sessions(len(truth), timeout_s=240)
        by_key = session_rows(stack.client, database)
        ids = expected_ids(settings, stack.bootstrap_servers)
    assert_matches_truth(truth, by_key)
    assert {k: r["session_id"] for k, r in by_key.items()} == ids
