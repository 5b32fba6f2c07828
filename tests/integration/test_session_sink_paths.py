"""The sessions sink's two paths into real chDB: first versions read by ClickHouse from an
Avro container (migration 0013) must store exactly what the Python path stores."""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from schemas.codec import Codec
from schemas.records import ChargingSession, DimensionCost, SessionPeriod, SessionState
from sinks.migrate import migrate
from sinks.session_rows import load_cdrs
from sinks.session_sink import SessionSink
from sinks.table_sink import Message

pytestmark = pytest.mark.integration

CODEC = Codec()
TOPIC = "cw-sessions-completed"
T0 = 1_717_000_000_000


class RecordingClient:
    """The real client, noting which tables got Avro inserts (which path a batch took)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.avro_tables: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def raw_insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("fmt") == "Avro":
            self.avro_tables.append(table.rsplit(".", 1)[-1])
        return self._client.raw_insert(table, *args, **kwargs)


def base(session_id: str) -> ChargingSession:
    return ChargingSession(
        session_id=session_id, version=1, state=SessionState.COMPLETED, station_id="ST-1",
        connector_id=2, transaction_id="T1", id_tag="TAG", vehicle_id="EV-1", start_ms=T0,
        end_ms=T0 + 1_800_000, meter_start_wh=1000.5, meter_end_wh=21000.5, energy_wh=20000.0,
        soc_start_pct=21.5, soc_end_pct=80.1, max_power_w=22000.0, avg_power_w=15000.0,
        charging_ms=1_500_000, plugged_ms=1_800_000, cost=Decimal("7.35"), currency="EUR",
        event_count=12, stop_reason="EVDisconnected", flags=("late_event",),
        cost_excl_vat=Decimal("6.18"), tariff_id="DAY",
        periods=(SessionPeriod(T0, 20000.0, 1_500_000, 0, 0, 1, -1),
                 SessionPeriod(T0 + 1_500_000, 0.0, 0, 300_000, -1, -1, 2)),
        dimension_costs=(DimensionCost("ENERGY", Decimal("5.00"), Decimal("5.95")),
                         DimensionCost("PARKING_TIME", Decimal("1.18"), Decimal("1.40"))))


def varied() -> list[ChargingSession]:
    """Sessions covering every column's cases: missing ids, free sessions, every dimension,
    a dimension priced twice (the last counts), floats whose JSON is easy to get wrong."""
    s = base
    return [
        s("A-full"),
        replace(s("A-free"), transaction_id=None, id_tag=None, vehicle_id=None, soc_start_pct=None,
                soc_end_pct=None, stop_reason=None, flags=(), cost=Decimal(0),
                cost_excl_vat=None, tariff_id=None, periods=(), dimension_costs=()),
        replace(s("A-dims"), dimension_costs=(
            DimensionCost("FLAT", Decimal("0.50"), Decimal("0.60")),
            DimensionCost("ENERGY", Decimal("1.00"), Decimal("1.19")),
            DimensionCost("TIME", Decimal("0.25"), Decimal("0.30")),
            DimensionCost("ENERGY", Decimal("4.00"), Decimal("4.76")))),
        replace(s("A-incomplete"), state=SessionState.INCOMPLETE, stop_reason=None,
                flags=("missing_stop", "unit_mismatch"), start_ms=T0 - 86_400_000 * 40),
        replace(s("A-floats"), energy_wh=0.30000000000000004, periods=(
            SessionPeriod(T0, 0.30000000000000004, 1, 2), SessionPeriod(T0 + 1, 1e-7, 0, 0),
            SessionPeriod(T0 + 2, 123456789.123, 3, 4), SessionPeriod(T0 + 3, -0.0, 0, 0),
            SessionPeriod(T0 + 4, 1e15, 0, 0), SessionPeriod(T0 + 5, 2.5e-5, 0, 0))),
        replace(s("A-free-energy"), periods=(), energy_wh=1234.5678, charging_ms=1_000,
                plugged_ms=61_000),
    ]


def messages(sessions: list[ChargingSession], first: int = 0) -> list[Message]:
    return [Message(first + i, CODEC.encode_session(s, TOPIC), s.session_id.encode())
            for i, s in enumerate(sessions)]


TABLES = {
    "charging_sessions": "SELECT * EXCEPT inserted_at FROM {db}.charging_sessions",
    "cdrs": "SELECT * EXCEPT inserted_at FROM {db}.cdrs",
    "station_daily": "SELECT day, station_id, currency, sum(sessions), sum(energy_wh), "
                     "sum(revenue), sum(plugged_ms) FROM {db}.station_daily "
                     "GROUP BY day, station_id, currency",
    "hourly_load": "SELECT hour, station_id, sum(started), sum(plugged_ms), sum(energy_wh) "
                   "FROM {db}.hourly_load GROUP BY hour, station_id",
    "vehicle_monthly": "SELECT month, vehicle_id, sum(sessions), sum(cost) "
                       "FROM {db}.vehicle_monthly GROUP BY month, vehicle_id",
}


def stored(client: Client, database: str) -> dict[str, list[tuple]]:
    return {table: sorted(client.query(sql.format(db=database)).result_rows, key=repr)
            for table, sql in TABLES.items()}


@pytest.fixture
def python_database(client: Client) -> str:
    """A second migrated database, for the same batch written by the Python path."""
    name = f"py_{uuid.uuid4().hex[:10]}"
    migrate(client, name)
    return name


def test_first_versions_stored_by_clickhouse_equal_the_python_path_rows(
        client: Client, database: str, python_database: str) -> None:
    recording = RecordingClient(client)
    batch = messages(varied())
    written = SessionSink(recording, database, CODEC).write(TOPIC, 3, batch, "t-3-0-5")
    assert recording.avro_tables == ["sessions_in"] and written.rows == len(batch)
    SessionSink(client, python_database, CODEC)._write_decoded(TOPIC, [(3, batch)], "t-3-0-5")
    by_clickhouse, by_python = stored(client, database), stored(client, python_database)
    assert len(by_clickhouse["charging_sessions"]) == len(batch)
    assert len(by_clickhouse["cdrs"]) == len(batch)
    for table in TABLES:
        assert by_clickhouse[table] == by_python[table], table


def test_floats_whose_json_differs_go_through_clickhouse_and_read_back_as_written(
        client: Client, database: str, python_database: str) -> None:
    """Periods are stored as numbers (migration 0014), so energies whose JSON ClickHouse
    writes differently from orjson (1e-6, 1e16) no longer keep a batch out of ClickHouse."""
    recording = RecordingClient(client)
    odd = (SessionPeriod(T0, 2e-6, 1, 0), SessionPeriod(T0 + 1, 1e16, 0, 0))
    batch = messages([*varied(), replace(base("B-tiny"), periods=odd)])
    written = SessionSink(recording, database, CODEC).write(TOPIC, 0, batch, "t-0-0-6")
    assert recording.avro_tables == ["sessions_in"] and written.rows == len(batch)
    SessionSink(client, python_database, CODEC)._write_decoded(TOPIC, [(0, batch)], "t-0-0-6")
    assert stored(client, database) == stored(client, python_database)
    assert load_cdrs(client, database, ["B-tiny"])["B-tiny"][0].periods == odd
    periods = client.query(f"SELECT charging_periods FROM {database}.cdrs "
                           "WHERE session_id = 'A-full'").result_rows[0][0]
    assert json.loads(periods) == [asdict(p) for p in base("A-full").periods]
    assert '"energy_wh":20000.0,' in periods


def unknown_state(value: bytes) -> bytes:
    return value.replace(b"completed", b"completes")


def nan_power(value: bytes) -> bytes:
    return value.replace(struct.pack("<d", 15000.0), struct.pack("<d", math.nan))


def latin1_station(value: bytes) -> bytes:
    return value.replace(b"ST-1", b"ST\xff1")


@pytest.mark.parametrize("corrupt", [unknown_state, nan_power, latin1_station])
def test_a_message_python_refuses_is_dead_lettered_and_the_rest_lands(
        client: Client, database: str, corrupt: Callable[[bytes], bytes]) -> None:
    good = messages(varied())
    value = CODEC.encode_session(base("C-bad"), TOPIC)
    assert len(corrupt(value)) == len(value) and corrupt(value) != value
    batch = [*good, Message(len(good), corrupt(value), b"C-bad")]
    written = SessionSink(client, database, CODEC).write(TOPIC, 0, batch, "t-0-0-6")
    assert [letter.source_offset for letter in written.dead_letters] == [len(good)]
    ids = client.query(f"SELECT session_id FROM {database}.charging_sessions").result_rows
    assert sorted(i for (i,) in ids) == sorted(s.session_id for s in varied())


def test_a_retried_or_replayed_batch_adds_no_row(client: Client, database: str) -> None:
    sink = SessionSink(client, database, CODEC)
    batch = messages(varied())
    sink.write(TOPIC, 0, batch, "t-0-0-5")
    before = stored(client, database)
    sink.write(TOPIC, 0, batch, "t-0-0-5")  # the same batch, retried
    sink.write(TOPIC, 0, messages(varied(), first=100), "t-0-100-105")  # a processor replay
    assert stored(client, database) == before


def test_a_replay_of_sessions_with_awkward_ids_adds_no_row(client: Client, database: str) -> None:
    """The stored-id probe sends ids as lines (SessionSink._stored_ids): every other
    character, and the empty id, must come back as sent, or a replay would be stored twice."""
    sink = SessionSink(client, database, CODEC)
    awkward = [base(i) for i in ("a\rb", "end\r", "t\tab", "back\\slash", "q'uo\"te", "\\N",
                                 " spaced ", "ünïcode", "")]
    sink.write(TOPIC, 0, messages(awkward), "t-0-0-8")
    before = stored(client, database)
    assert len(before["charging_sessions"]) == len(awkward)
    sink.write(TOPIC, 0, messages(awkward, first=100), "t-0-100-108")  # a processor replay
    for n, session in enumerate(awkward):  # and replays of one session each
        sink.write(TOPIC, 0, messages([session], first=200 + n), f"t-0-{200 + n}-{200 + n}")
    assert stored(client, database) == before


def test_a_batch_with_two_versions_of_a_session_stores_the_latest(
        client: Client, database: str) -> None:
    recording = RecordingClient(client)
    v1 = base("D-1")
    v2 = replace(v1, version=2, energy_wh=25000.0, cost=Decimal("9.10"))
    SessionSink(recording, database, CODEC).write(
        TOPIC, 0, messages([v1, base("D-2"), v2]), "t-0-0-2")
    final = client.query(f"SELECT session_id, version, energy_wh FROM {database}.charging_sessions "
                         "FINAL ORDER BY session_id").result_rows
    assert final == [("D-1", 2, 25000.0), ("D-2", 1, 20000.0)]
    cdrs = client.query(f"SELECT cdr_id FROM {database}.cdrs FINAL ORDER BY cdr_id").result_rows
    assert [c for (c,) in cdrs] == ["D-1-v1", "D-1-v1-credit", "D-1-v2", "D-2-v1"]
    assert recording.avro_tables == ["sessions_in"]  # D-2 alone went as Avro
