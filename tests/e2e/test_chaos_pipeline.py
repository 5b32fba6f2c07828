"""Chaos simulator -> Kafka -> Faust -> ClickHouse, compared with the chaos truth exactly."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.publishing import fleet_config, meter_publisher
from chargewatch.settings import load_settings
from chargewatch.stack import LocalStack
from producers.chaos import CASES, ChaosConfig, ChaosSimulation

pytestmark = pytest.mark.e2e

CHAOS = ChaosConfig(seed=3, duplicate_rate=0.08, reorder_rate=0.1, late_rate=0.08,
                    missing_stop_rate=0.1, missing_start_rate=0.08, reset_rate=0.08,
                    unit_error_rate=0.08, skew_rate=0.08, overlap_rate=0.1,
                    stop_below_start_rate=0.08, across_messages_share=1.0)


def _ms(value: Any) -> int:
    return int(round(value.timestamp() * 1000))


def test_chaos_pipeline_matches_chaos_truth(broker: EmbeddedBroker, chdb_url: str,
                                           database: str, tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"chaos{uuid.uuid4().hex[:8]}", "partitions": 3},
        clickhouse={"url": chdb_url, "database": database},
        simulator={"stations": 20, "duration_h": 12.0, "seed": 5},
        processor={"expire_every_s": 1.0},
    )
    chaos = ChaosSimulation(fleet_config(settings), CHAOS)
    expected = chaos.truth()
    assert set(Counter(c for e in expected for c in e.injected)) == set(CASES)
    want = {(e.station_id, e.connector_id, e.start_ms): e for e in expected}
    with LocalStack(settings, tmp_path) as stack:
        publisher, _, _ = meter_publisher(settings, stack.bootstrap_servers)
        for station, events in chaos.messages():
            publisher.publish(station, events)
        publisher.flush(timeout=60)
        deadline = time.monotonic() + 45
        while True:
            stack.check_alive()
            result = stack.client.query(
                f"SELECT * FROM {database}.charging_sessions FINAL")
            rows = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
            have = {(r["station_id"], r["connector_id"], _ms(r["start_time"])): r for r in rows}
            wrong = []
            for key, e in want.items():
                r = have.get(key)
                got = None if r is None else (
                    r["state"], r["version"], _ms(r["end_time"]), round(r["energy_wh"]),
                    Decimal(r["cost"]), tuple(r["flags"]), r["transaction_id"],
                    r["vehicle_id"])
                if got != (e.state.value, e.version, e.end_ms, e.energy_wh, e.cost, e.flags,
                           e.transaction_id, e.vehicle_id):
                    wrong.append((e.injected, e.transaction_id, got))
            if (not wrong and len(have) == len(want) == len(rows)) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert not wrong, wrong[:5]
    assert len(rows) == len(have) == len(want)
