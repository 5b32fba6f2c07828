"""Reports return the right numbers for a small known data set, reading the latest versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client

from infra.errors import UsageError
from schemas.codec import Codec
from schemas.records import ChargingSession, SessionState
from sinks import reports
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.session_sink import SessionSink
from sinks.table_sink import Message

pytestmark = pytest.mark.integration

DAY1 = int(dt.datetime(2024, 5, 31, 22, 30, tzinfo=dt.UTC).timestamp() * 1000)
DAY2 = int(dt.datetime(2024, 6, 1, 10, 0, tzinfo=dt.UTC).timestamp() * 1000)


def s(sid: str, station: str, vehicle: str | None, start_ms: int, energy_wh: float, cost: str,
      currency: str = "EUR", state: SessionState = SessionState.COMPLETED,
      version: int = 1) -> ChargingSession:
    return ChargingSession(
        session_id=sid, version=version, state=state, station_id=station, connector_id=1,
        transaction_id=None, id_tag=None, vehicle_id=vehicle, start_ms=start_ms,
        end_ms=start_ms + 3_600_000, meter_start_wh=0.0, meter_end_wh=energy_wh,
        energy_wh=energy_wh, soc_start_pct=None, soc_end_pct=None, max_power_w=11000.0,
        avg_power_w=energy_wh, charging_ms=3_600_000, plugged_ms=3_600_000,
        cost=Decimal(cost), currency=currency, event_count=3)


DATA = [
    s("A", "ST-1", "EV-1", DAY1, 10_000.0, "4.00"),
    s("B", "ST-1", "EV-2", DAY2, 20_000.0, "8.00"),
    s("C", "ST-2", "EV-1", DAY2, 5_000.0, "2.50", state=SessionState.INCOMPLETE),
    s("D", "ST-3", None, DAY2, 1_000.0, "0.50"),
    s("E", "ST-9", "EV-3", DAY2, 10_000.0, "6.00", currency="NOK"),
    s("B", "ST-1", "EV-2", DAY2, 30_000.0, "12.00", version=2),  # a correction of B
]


@pytest.fixture
def client(chdb_url: str, database: str) -> Iterator[Client]:
    opened = connect(chdb_url)
    migrate(opened, database)
    codec = Codec()
    sink = SessionSink(opened, database, codec)
    for offset, session in enumerate(DATA):  # one batch per version, like the real topic
        sink.write("t", 0, [Message(offset, codec.encode_session(session, "t"))],
                   f"t-0-{offset}-{offset}")
    yield opened
    opened.close()


def test_summary_per_currency(client: Client, database: str) -> None:
    report = reports.summary(client, database)
    assert report.columns == ["currency", "sessions", "completed", "incomplete", "energy_kwh",
                              "revenue", "avg_price_per_kwh", "stations", "vehicles"]
    eur, nok = report.rows
    assert eur == ("EUR", 4, 3, 1, 46.0, Decimal("19"), Decimal("0.413"), 3, 2)
    assert nok == ("NOK", 1, 1, 0, 10.0, Decimal("6"), Decimal("0.6"), 1, 1)


def test_top_stations_by_revenue(client: Client, database: str) -> None:
    report = reports.top_stations(client, database, limit=2)
    assert report.columns == ["station_id", "currency", "sessions", "energy_kwh", "revenue"]
    assert report.rows == [("ST-1", "EUR", 2, 40.0, Decimal("16")),
                           ("ST-9", "NOK", 1, 10.0, Decimal("6"))]
    assert len(reports.top_stations(client, database, limit="10").rows) == 4


def test_session_by_id_is_the_latest_version(client: Client, database: str) -> None:
    found = reports.session_by_id(client, database, "B")
    assert found is not None
    assert (found["version"], found["cost"], found["energy_wh"]) == (2, Decimal("12"), 30000.0)
    assert found["start_time"] == dt.datetime(2024, 6, 1, 10, 0)
    assert reports.session_by_id(client, database, "B' OR 1=1 --") is None


def test_station_daily_filters_and_time_zone(client: Client, database: str) -> None:
    everything = reports.station_daily(client, database)
    assert [(r[0], r[1], r[3]) for r in everything.rows] == [
        (dt.date(2024, 5, 31), "ST-1", 1), (dt.date(2024, 6, 1), "ST-1", 1),
        (dt.date(2024, 6, 1), "ST-2", 1), (dt.date(2024, 6, 1), "ST-3", 1),
        (dt.date(2024, 6, 1), "ST-9", 1)]
    june = reports.station_daily(client, database, date_from="2024-06-01", station="ST-1")
    assert june.columns == ["day", "station_id", "currency", "sessions", "completed",
                            "incomplete", "failed", "zero_energy", "energy_kwh", "revenue",
                            "plugged_min", "charging_min", "utilization_pct"]
    assert [(r[0], r[9]) for r in june.rows] == [(dt.date(2024, 6, 1), Decimal("12"))]
    # 22:30 UTC on 31 May is 1 June in Oslo: both ST-1 sessions fall on that day there.
    oslo = reports.station_daily(client, database, date_to=dt.date(2024, 6, 1), station="ST-1",
                                 tz="Europe/Oslo")
    assert oslo.columns == june.columns
    assert [(r[0], r[3], r[9]) for r in oslo.rows] == [(dt.date(2024, 6, 1), 2, Decimal("16"))]
    assert reports.station_daily(client, database, date_to="2024-05-30").rows == []


def test_cost_per_vehicle(client: Client, database: str) -> None:
    report = reports.cost_per_vehicle(client, database)
    assert report.columns == ["vehicle_id", "currency", "sessions", "energy_kwh",
                              "total_cost", "avg_cost"]
    assert report.rows == [("EV-2", "EUR", 1, 30.0, Decimal("12"), Decimal("12")),
                           ("EV-1", "EUR", 2, 15.0, Decimal("6.5"), Decimal("3.25")),
                           ("EV-3", "NOK", 1, 10.0, Decimal("6"), Decimal("6")),
                           (None, "EUR", 1, 1.0, Decimal("0.5"), Decimal("0.5"))]
    may = reports.cost_per_vehicle(client, database, month="2024-05")
    assert may.rows == [("EV-1", "EUR", 1, 10.0, Decimal("4"), Decimal("4"))]
    with pytest.raises(UsageError, match="--month must be a month like 2024-05"):
        reports.cost_per_vehicle(client, database, month="May")
