"""`chargewatch session` shows open and completed sessions in one shape (issue 16 §4)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from chargewatch.render import to_json
from chargewatch.session_view import session_record
from processors.web import session_json
from schemas.records import ChargingSession, SessionState

pytestmark = pytest.mark.unit

START_MS = 1_795_400_000_000
OPEN = ChargingSession(
    session_id="EV-000000042", version=0, state=SessionState.OPEN, station_id="CS-1",
    connector_id=1, transaction_id="T-1", id_tag=None, vehicle_id=None, start_ms=START_MS,
    end_ms=START_MS + 60_000, meter_start_wh=0.0, meter_end_wh=500.0, energy_wh=500.0,
    soc_start_pct=40.4, soc_end_pct=41.0, max_power_w=7000.0, avg_power_w=6000.0,
    charging_ms=60_000, plugged_ms=60_000, cost=Decimal("2.63"), currency="EUR",
    event_count=3)
COMPLETED_ROW = {  # what `SELECT *` gives back for a stored session
    "session_id": "EV-000000043", "version": 1, "state": "completed", "station_id": "CS-1",
    "connector_id": 1, "transaction_id": "T-2", "id_tag": None, "vehicle_id": None,
    "start_time": dt.datetime(2026, 11, 23, 2, 13, 20), "end_time": dt.datetime(2026, 11, 23, 3),
    "meter_start_wh": 0.0, "meter_end_wh": 500.0, "energy_wh": 500.0,
    "soc_start_pct": 40.400001525878906, "soc_end_pct": None, "max_power_w": 7000.0,
    "avg_power_w": 6000.0, "charging_ms": 60_000, "plugged_ms": 60_000,
    "cost": Decimal("2.6300"), "currency": "EUR", "event_count": 3, "stop_reason": "Local",
    "flags": [], "_topic": "t", "_partition": 0, "_offset": 7}


def test_open_and_completed_sessions_have_the_same_fields_and_forms() -> None:
    open_ = json.loads(to_json(session_record(session_json(OPEN))))
    done = json.loads(to_json(session_record(COMPLETED_ROW)))
    assert list(open_) == list(done)
    assert "start_ms" not in open_ and "_offset" not in done
    assert (open_["start_time"], done["start_time"]) == ("2026-11-23T02:13:20Z",) * 2
    assert (open_["cost"], done["cost"]) == ("2.6300", "2.6300")
    assert (open_["soc_start_pct"], done["soc_start_pct"]) == (40.4, 40.4)
