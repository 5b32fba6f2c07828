"""The row builders and view SQL derived from one declaration (sinks/row_mappings.py).

The rows ClickHouse's views write are compared with these in
tests/integration/test_session_sink_paths.py; here: the builders put each value under its
column, and a column added to a declaration reaches both forms."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from charging.cdr import build_cdr
from schemas.records import ChargingSession, DimensionCost, SessionPeriod, SessionState
from sinks.derived_views import SESSIONS_IN, UPDATES_IN
from sinks.mapping import Column
from sinks.row_mappings import CDR_ROW, SESSION_ROW, UPDATE_ROW, cdr_row, session_row, update_row

pytestmark = pytest.mark.unit

T0 = 1_717_000_000_000
SESSION = ChargingSession(
    session_id="S-1", version=2, state=SessionState.COMPLETED, station_id="ST-1",
    connector_id=3, transaction_id="T1", id_tag="TAG", vehicle_id="EV-1", start_ms=T0,
    end_ms=T0 + 60_000, meter_start_wh=10.0, meter_end_wh=510.0, energy_wh=500.0,
    soc_start_pct=20.0, soc_end_pct=30.5, max_power_w=40_000.0, avg_power_w=30_000.0,
    charging_ms=50_000, plugged_ms=60_000, cost=Decimal("1.19"), currency="EUR",
    event_count=4, stop_reason="Local", flags=("late_event",), cost_excl_vat=Decimal("1.00"),
    tariff_id="DAY", periods=(SessionPeriod(T0, 500.0, 50_000, 10_000, 0, -1, 1),),
    dimension_costs=(DimensionCost("ENERGY", Decimal("0.80"), Decimal("0.95")),
                     DimensionCost("PARKING_TIME", Decimal("0.20"), Decimal("0.24"))))


def test_the_session_row_puts_each_value_under_its_column() -> None:
    row = dict(zip(SESSION_ROW.column_names, session_row(SESSION, "t", 4, 99, sign=-1),
                   strict=True))
    assert row["sign"] == -1 and row["state"] == "completed" and row["flags"] == ["late_event"]
    assert (row["start_time"], row["end_time"]) == (T0, T0 + 60_000)
    assert (row["_topic"], row["_partition"], row["_offset"]) == ("t", 4, 99)
    assert row["soc_end_pct"] == 30.5 and row["cost"] == Decimal("1.19")


def test_the_cdr_row_puts_each_value_under_its_column() -> None:
    row = dict(zip(CDR_ROW.column_names, cdr_row(build_cdr(SESSION)), strict=True))
    assert row["cdr_id"] == "S-1-v2" and row["credit"] is False
    assert (row["total_cost_excl_vat"], row["total_cost_incl_vat"]) == (Decimal("1.00"),
                                                                       Decimal("1.19"))
    assert (row["energy_cost_excl_vat"], row["energy_cost_incl_vat"]) == (Decimal("0.80"),
                                                                         Decimal("0.95"))
    assert row["fixed_cost_excl_vat"] is None and row["time_cost_incl_vat"] is None
    assert row["total_parking_ms"] == 10_000 and row["last_updated"] == T0 + 60_000
    assert row["periods"] == [{"start_ms": T0, "energy_wh": 500.0, "charging_ms": 50_000,
                               "parking_ms": 10_000, "energy_element": 0,
                               "time_element": -1, "parking_element": 1}]


def test_the_update_row_puts_each_value_under_its_column() -> None:
    row = dict(zip(UPDATE_ROW.column_names, update_row(SESSION), strict=True))
    assert (row["start_time"], row["updated_time"]) == (T0, T0 + 60_000)
    assert (row["soc_pct"], row["power_w"]) == (30.5, 30_000.0)


def test_a_column_added_to_a_mapping_reaches_the_builder_the_view_and_the_input() -> None:
    tagged = Column("tag_upper", "s.id_tag.upper()", "upper(id_tag)")
    mapping = replace(UPDATE_ROW, columns=(*UPDATE_ROW.columns, tagged))
    assert mapping.builder()(SESSION)[-1] == "TAG"
    assert mapping.column_names[-1] == "tag_upper"
    assert "upper(id_tag) AS tag_upper" in mapping.view_sql("db", "session_updates_in")
    widened = replace(UPDATES_IN, mappings=(mapping,))
    assert "id_tag" in widened.columns and "id_tag" not in UPDATES_IN.columns
    assert widened.checksum() != UPDATES_IN.checksum()


def test_the_input_tables_take_what_the_views_read_and_refuse_what_python_refuses() -> None:
    assert SESSIONS_IN.columns[-3:] == ["_topic", "_partition", "_offset"]
    assert "cost_excl_vat" in SESSIONS_IN.columns and "periods" in SESSIONS_IN.columns
    assert "meter_start_wh" not in UPDATES_IN.columns
    create = SESSIONS_IN.statements("db")[-3]
    assert create.startswith("CREATE TABLE db.sessions_in")
    assert "CONSTRAINT known_state CHECK state IN ('open', 'completed', 'incomplete')" in create
    assert "isFinite(ifNull(soc_end_pct, 0))" in create
    assert "arrayAll(x -> isFinite(x.2), periods)" in create
    assert "arrayAll(x -> isValidUTF8(x.1), dimension_costs)" in create
    assert "CONSTRAINT" not in UPDATES_IN.statements("db")[-2]
