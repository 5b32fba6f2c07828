"""Simulated faults → Kafka → processor → connector-status → sink → station-health reports,
equal to the simulator's fault truth. The verifier reads only ClickHouse and the truth."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.lookup import run_report
from chargewatch.publishing import fleet_config, meter_publisher, progress_bar, publish_simulation
from chargewatch.stack import LocalStack
from charging.station_health import HealthFigures
from infra.settings import load_settings
from producers.faults import FaultConfig, FaultProfile
from producers.simulator import simulate

pytestmark = pytest.mark.e2e

FAULTS = FaultConfig(profiles=(FaultProfile("Terra 54", "1.8.3", 1.0),
                               FaultProfile("Terra 54", "1.9.0", 6.0)))


def test_availability_mtbf_mttr_equal_the_fault_truth(broker: EmbeddedBroker, chdb_url: str,
                                                     tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"health{uuid.uuid4().hex[:8]}", "partitions": 2},
        clickhouse={"url": chdb_url, "database": f"health_{uuid.uuid4().hex[:8]}"},
        simulator={"stations": 8, "duration_h": 12.0, "seed": 21, "meter_interval_s": 300})
    simulation = simulate(replace(fleet_config(settings), faults=FAULTS))
    registry_file = tmp_path / "stations.json"
    registry_file.write_text(json.dumps(simulation.registry()))
    settings = settings.model_copy(update={"processor": settings.processor.model_copy(
        update={"stations_file": registry_file})})
    faults = list(simulation.faults())
    assert faults, "the fleet should have faults to report"
    database = settings.clickhouse.database
    with LocalStack(settings, tmp_path / "run") as stack:
        publisher = meter_publisher(settings, stack.bootstrap_servers)[0]
        with progress_bar() as progress:
            publish_simulation(simulation, publisher, None, progress)
        statuses = sum(1 for _, events in simulation.messages() for e in events if e.status)
        deadline = time.monotonic() + 50
        while int(stack.client.command(
                f"SELECT count() FROM {database}.connector_status FINAL")) < statuses:
            stack.check_alive()
            assert time.monotonic() < deadline, "status history did not reach ClickHouse"
            time.sleep(0.25)
        stations = run_report(stack.client, database, "station-availability")
        models = run_report(stack.client, database, "model-availability")

    config = simulation.config
    # the observed period: from the boot statuses at start to the last thing heard (a status
    # or a session's end), not padded to a whole day
    end = max(max(e.event_time_ms for _, events in simulation.messages() for e in events
                  if e.status),
              max(t.end_ms for t in simulation.truth()))
    registry = simulation.registry()["stations"]
    expected: dict[str, HealthFigures] = {}
    for station in simulation.stations:
        observed = (end - config.start_ms) * len(station.connectors)  # boot status at start
        expected[station.station_id] = HealthFigures(observed_ms=observed)
    for fault in faults:
        repair = fault.end_ms - fault.start_ms
        expected[fault.station_id] += HealthFigures(0, repair, 0, 1, 1, repair)
    got = {row[0]: row for row in stations.rows}
    assert set(got) == set(expected)
    for station_id, figures in expected.items():
        _check(got[station_id], figures, registry[station_id])  # type: ignore[index]

    groups: dict[tuple[str, str], HealthFigures] = {}
    for station_id, figures in expected.items():
        entry = registry[station_id]  # type: ignore[index]
        key = (entry["model"], entry["firmware"])
        groups[key] = groups.get(key, HealthFigures()) + figures
    assert {(row[0], row[1]): row[3] for row in models.rows} == {
        key: sum(len(registry[s]["connectors"]) for s in expected  # type: ignore[index]
                 if (registry[s]["model"], registry[s]["firmware"]) == key)  # type: ignore[index]
        for key in groups}
    for row in models.rows:
        figures = groups[(row[0], row[1])]
        assert row[8] == figures.failures
        assert row[5] == pytest.approx(figures.availability_pct, abs=0.0011)
        _approx(row[9], figures.mtbf_ms, 3_600_000)
        _approx(row[10], figures.mttr_ms, 60_000)


def _check(row: tuple, figures: HealthFigures, entry: dict) -> None:
    assert row[1:4] == (entry["model"], entry["firmware"], len(entry["connectors"]))
    assert row[4] == pytest.approx(figures.observed_ms / 3_600_000, abs=0.0011)
    assert row[5] == pytest.approx(figures.availability_pct, abs=0.0011)
    assert row[6] == pytest.approx(figures.down_ms / 60_000, abs=0.0011)
    assert row[8] == figures.failures
    _approx(row[9], figures.mtbf_ms, 3_600_000)
    _approx(row[10], figures.mttr_ms, 60_000)


def _approx(actual: float | None, expected_ms: float | None, unit: int) -> None:
    if expected_ms is None:
        assert actual is None
    else:
        assert actual == pytest.approx(expected_ms / unit, abs=0.0011)
