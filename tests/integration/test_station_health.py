"""Station health in real chDB: status rows in through the sink, reports out, equal to the
pure maths of charging/station_health.py for the same history (random histories, fixed seeds)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date

import pytest
from clickhouse_connect.driver.client import Client

from chargewatch.lookup import run_report
from charging.station_health import HealthFigures, StatusPoint, connector_health
from charging.stations import StationInfo, StationRegistry
from schemas.codec import Codec
from schemas.records import ConnectorStatus
from sinks import health_reports
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.status_sink import StatusSink, load_stations
from sinks.table_sink import Message

pytestmark = pytest.mark.integration

H = 3_600_000
DAY = 24 * H
T0 = 1_795_392_000_000  # 2026-11-23T00:00Z
STATUSES = ("Available", "Available", "Faulted", "Faulted", "Unavailable", "Charging",
            "Preparing")
MODELS = {"CS-1": ("Terra 54", "1.8.3"), "CS-2": ("Terra 54", "1.9.0"),
          "CS-3": ("Terra 54", "1.9.0")}  # CS-4 is not in the registry


@pytest.fixture
def client(chdb_url: str, database: str) -> Iterator[Client]:
    opened = connect(chdb_url)
    migrate(opened, database)
    load_stations(opened, database, StationRegistry({
        sid: StationInfo({1: 22_000.0, 2: 22_000.0}, model, firmware)
        for sid, (model, firmware) in MODELS.items()}))
    try:
        yield opened
    finally:
        opened.command(f"DROP DATABASE IF EXISTS {database}")
        opened.close()


def _history(seed: int) -> list[ConnectorStatus]:
    rng = random.Random(seed)
    rows = []
    for station in ("CS-1", "CS-2", "CS-3", "CS-4"):
        for connector in (1, 2):
            t = T0 - rng.randint(0, 6 * H)
            for n in range(rng.randint(1, 25)):
                t += rng.choice((0, rng.randint(1, 5 * H)))  # some share a millisecond
                rows.append(ConnectorStatus(f"{station}-{connector}-{n}", station, connector,
                                            rng.choice(STATUSES), None, t, t, t + 100))
    return rows


def _write(client: Client, database: str, rows: list[ConnectorStatus]) -> None:
    codec = Codec()
    sink = StatusSink(client, database, codec)
    messages = [Message(i, codec.encode_connector_status(r, "cs"), r.station_id.encode())
                for i, r in enumerate(rows)]
    half = len(messages) // 2
    written = sink.write("cs", 0, messages[:half], "cs-0-a")
    sink.write("cs", 0, messages[:half], "cs-0-a")  # a retried batch: dropped by its token
    sink.write("cs", 0, messages[half:], "cs-0-b")
    sink.write("cs", 0, messages[:3], "cs-0-c")  # a processor replay: same rows, new offsets
    assert written.rows == half and written.dead_letters == []


def _expected(rows: list[ConnectorStatus], start: int, end: int) -> dict[str, HealthFigures]:
    per_connector: dict[tuple[str, int], list[StatusPoint]] = {}
    for r in rows:
        per_connector.setdefault((r.station_id, r.connector_id), []).append(
            StatusPoint(r.time_ms, r.status, r.event_id))
    stations: dict[str, HealthFigures] = {}
    for (station, _), points in per_connector.items():
        stations[station] = stations.get(station, HealthFigures()) + connector_health(
            points, start, end)
    return {s: f for s, f in stations.items() if f.observed_ms}


def _row(f: HealthFigures) -> tuple:
    def r(value: float | None, scale: int) -> float | None:
        return None if value is None else round(value / scale, 3)

    return (r(f.observed_ms, H), r(f.availability_pct, 1), r(f.down_ms, 60_000),
            r(f.occupancy_pct, 1), f.failures, r(f.mtbf_ms, H), r(f.mttr_ms, 60_000))


def _assert_close(actual: tuple, expected: tuple) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        if e is None or isinstance(e, int):
            assert a == e, (actual, expected)
        else:
            assert a == pytest.approx(e, abs=0.0011), (actual, expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_station_and_model_reports_equal_the_maths(client: Client, database: str,
                                                   seed: int) -> None:
    rows = _history(seed)
    _write(client, database, rows)
    start, end = health_reports.period(client, database)
    assert (start, end) == (min(r.time_ms for r in rows), max(r.time_ms for r in rows))
    expected = _expected(rows, start, end)

    report = run_report(client, database, "station-availability")
    assert report.columns == ["station_id", "model", "firmware", "connectors", "observed_h",
                              "availability_pct", "down_min", "occupancy_pct", "failures",
                              "mtbf_h", "mttr_min"]
    got = {row[0]: row for row in report.rows}
    assert set(got) == set(expected)
    for station, figures in expected.items():
        model, firmware = MODELS.get(station, (None, None))
        assert got[station][1:4] == (model, firmware, 2)
        _assert_close(got[station][4:], _row(figures))

    by_model = {(row[0], row[1]): row for row in
                run_report(client, database, "model-availability").rows}
    groups: dict[tuple[str | None, str | None], HealthFigures] = {}
    for station, figures in expected.items():
        key = MODELS.get(station, (None, None))
        groups[key] = groups.get(key, HealthFigures()) + figures
    assert set(by_model) == set(groups)
    for key, figures in groups.items():
        _assert_close(by_model[key][4:], _row(figures))


def test_date_range_and_station_filter(client: Client, database: str) -> None:
    rows = _history(4)
    _write(client, database, rows)
    day = date(2026, 11, 23)
    report = health_reports.station_availability(client, database, date_from=day, date_to=day,
                                                 station="CS-2")
    start, end = max(T0, min(r.time_ms for r in rows)), min(T0 + DAY,
                                                             max(r.time_ms for r in rows))
    expected = _expected([r for r in rows if r.station_id == "CS-2"], start, end)
    assert [row[0] for row in report.rows] == list(expected)
    _assert_close(report.rows[0][4:], _row(expected["CS-2"]))


def test_empty_history_gives_empty_reports(client: Client, database: str) -> None:
    assert health_reports.station_availability(client, database).rows == []
    assert health_reports.model_availability(client, database).rows == []


def test_a_six_hour_run_is_judged_on_its_six_hours(client: Client, database: str) -> None:
    """Not padded to a whole day: 6 h observed per connector, one 1-hour fault (issue 16 §4).
    By hand: up 5 h of 6 -> 83.333 %, MTBF = 5 h up / 1 failure, MTTR 60 min."""
    t = T0 + 9 * H
    _write(client, database, [
        ConnectorStatus("a0", "CS-1", 1, "Available", None, t, t, t),
        ConnectorStatus("a1", "CS-1", 1, "Faulted", None, t + 2 * H, t + 2 * H, t + 2 * H),
        ConnectorStatus("a2", "CS-1", 1, "Available", None, t + 3 * H, t + 3 * H, t + 3 * H),
        ConnectorStatus("a3", "CS-1", 1, "Available", None, t + 6 * H, t + 6 * H, t + 6 * H)])
    row = run_report(client, database, "station-availability").rows[0]
    assert row[0] == "CS-1"
    _assert_close(row[4:], (6.0, 83.333, 60.0, 0.0, 1, 5.0, 60.0))
    same_day = run_report(client, database, "station-availability",
                          date_from=date(2026, 11, 23), date_to=date(2026, 11, 23)).rows[0]
    assert same_day[4:] == row[4:]
