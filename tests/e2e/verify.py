"""The end-to-end verifier: ClickHouse's sessions against the simulator's truth, exactly.

It reads only ClickHouse, the truth, and (for session IDs) the meter-events topic as
published; never the processor's internals. The expected IDs come from the documented
formula over the position of each session's STARTED event in that topic (`expected_ids`,
tests/id_formula.py), not from the product's stitcher or template code.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from infra.settings import Settings
from producers.truth import TrueSession
from schemas.codec import Codec
from schemas.records import EventKind, EventPosition, MeterEvent
from tests.id_formula import session_id

NaturalKey = tuple[str, int, int]


def ms(value: Any) -> int:
    return int(round(value.timestamp() * 1000))


def session_rows(client: Any, database: str) -> dict[NaturalKey, dict[str, Any]]:
    """Every session as ClickHouse shows it (FINAL), by station, connector and start."""
    result = client.query(f"SELECT * FROM {database}.charging_sessions FINAL")
    rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    by_key = {(r["station_id"], r["connector_id"], ms(r["start_time"])): r for r in rows}
    assert len(by_key) == len(rows), "two sessions share station, connector and start"
    return by_key


def assert_matches_truth(truth: list[TrueSession], rows: dict[NaturalKey, dict[str, Any]]) -> None:
    assert len(rows) == len(truth)
    for true in truth:
        row = rows[(true.station_id, true.connector_id, true.start_ms)]
        assert row["state"] == "completed", (true, row)
        assert row["vehicle_id"] == true.vehicle_id
        assert row["id_tag"] == true.id_tag
        assert row["transaction_id"] == true.transaction_id
        assert ms(row["end_time"]) == true.end_ms
        assert round(row["energy_wh"]) == true.energy_wh
        assert row["soc_start_pct"] == pytest.approx(true.soc_start_pct, abs=1e-3)
        assert row["soc_end_pct"] == pytest.approx(true.soc_end_pct, abs=1e-3)
        assert Decimal(row["cost"]) == true.cost, (true, row["cost"])
        assert row["currency"] == true.currency


def expected_ids(settings: Settings, bootstrap: str) -> dict[NaturalKey, str]:
    """Session IDs by the documented formula: the template over `{num}` of the session's
    STARTED event as the meter-events topic holds it (its first copy, should a producer
    retry have written it twice)."""
    template = settings.processor.id_template
    assert "{num" in template, "the e2e oracle knows the {num} templates"
    ids: dict[NaturalKey, str] = {}
    for event, at in _read_log(settings, bootstrap):
        if event.kind is EventKind.STARTED:
            ids.setdefault((event.station_id, event.connector_id, event.event_time_ms),
                           session_id(template, partition=at.partition, offset=at.offset,
                                      index=at.index, partitions=settings.kafka.partitions))
    return ids


def _read_log(settings: Settings, bootstrap: str) -> list[tuple[MeterEvent, EventPosition]]:
    topic = f"{settings.kafka.namespace}.meter-events"
    partitions = list(range(settings.kafka.partitions))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.queue.backoff.ms": 10})
    codec = Codec(settings.kafka.schema_registry_url)
    by_partition: dict[int, list[tuple[MeterEvent, EventPosition]]] = {p: [] for p in partitions}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        while pending:
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    pending.discard(message.partition())
                    continue
                events = codec.decode_meter_events(message.value())
                by_partition[message.partition()].extend(
                    (e, EventPosition(message.partition(), message.offset(), i))
                    for i, e in enumerate(events))
    finally:
        consumer.close()
    # One worker reads partitions interleaved; a station lives on one partition, so any
    # interleaving stitches the same: partition by partition is enough.
    return [item for p in partitions for item in by_partition[p]]
