"""Messy input, case by case: what the stitcher makes of it, flags and observations included."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from charging.pricing import SimpleTariff, price_session
from charging.rules import StitchRules
from charging.session_ids import IdTemplate
from charging.state import StationState, _pack_connector
from charging.stations import StationRegistry, StationRegistryError
from charging.stitcher import SessionStitcher, StitcherConfig, StitchResult
from schemas.records import ChargingSession, EventKind, EventPosition, MeterEvent, SessionState

pytestmark = pytest.mark.unit

T0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z
MIN = 60_000
HOUR = 60 * MIN
TARIFF = SimpleTariff("EUR", Decimal("0.50"), Decimal("0.05"))
STARTED, METER, ENDED, STATUS = EventKind.STARTED, EventKind.METER, EventKind.ENDED, \
    EventKind.STATUS


def ev(kind: EventKind, t: int, *, received: int | None = None, connector: int = 1,
       **fields: object) -> MeterEvent:
    return MeterEvent(f"{kind}/{t}/{fields.get('seq')}", "CS-1", connector, kind, t,
                      t + 200 if received is None else received,
                      **fields)  # type: ignore[arg-type]


class Run:
    """One station's events on one partition, offsets increasing; collects everything."""

    def __init__(self, rules: StitchRules | None = None,
                 registry: StationRegistry | None = None) -> None:
        self.stitcher = SessionStitcher(StitcherConfig(
            1, IdTemplate.parse("EV-{num:09d}"), TARIFF, rules or StitchRules(), registry))
        self.state: StationState | None = None
        self.offset = 0
        self.completed: list[ChargingSession] = []
        self.observations: list[str] = []

    def __call__(self, event: MeterEvent) -> StitchResult:
        result = self.stitcher.apply(self.state, event, EventPosition(0, self.offset))
        self.state = result.state
        self.offset += 1
        self.completed += result.completed
        self.observations += [o.kind for o in result.observations]
        return result

    def expire(self, now_event_ms: int, now_wall_ms: int = 0) -> list[ChargingSession]:
        assert self.state is not None
        closed = self.stitcher.expire(self.state, now_event_ms, now_wall_ms)
        self.completed += closed
        return closed

    def running(self, connector: int = 1) -> ChargingSession:
        assert self.state is not None
        session = self.stitcher.snapshot(self.state, connector)
        assert session is not None
        return session


def charge(run: Run, tx: str = "T1", start_wh: float = 10_000.0, readings: int = 3,
           step_wh: float = 100.0, t: int = T0) -> int:
    """A start and `readings` readings a minute apart, with sequence numbers; returns the
    last reading's time."""
    run(ev(STARTED, t, transaction_id=tx, seq=0, energy_wh=start_wh, id_tag="TAG"))
    for i in range(1, readings + 1):
        run(ev(METER, t + i * MIN, transaction_id=tx, seq=i, energy_wh=start_wh + i * step_wh,
               power_w=6_000.0))
    return t + readings * MIN


def test_resent_event_with_a_new_id_is_a_duplicate_by_transaction_and_seq() -> None:
    run = Run()
    charge(run, readings=2)
    again = run(replace(ev(METER, T0 + MIN, transaction_id="T1", seq=1, energy_wh=10_100.0),
                        event_id="retry-77"))
    assert again.duplicate and again.updates == ()
    (done,) = run(ev(ENDED, T0 + 3 * MIN, transaction_id="T1", seq=3, energy_wh=10_200.0)
                  ).completed
    assert (done.event_count, done.energy_wh, done.flags) == (4, 200.0, ())
    assert run(ev(ENDED, T0 + 3 * MIN, transaction_id="T1", seq=3, energy_wh=10_200.0)
               ).duplicate  # the stop re-sent after the session completed


def test_without_seq_duplicates_are_recognised_by_time_and_register() -> None:
    run = Run()
    run(ev(STARTED, T0, energy_wh=0.0))
    run(ev(METER, T0 + MIN, energy_wh=50.0))
    assert run(replace(ev(METER, T0 + MIN, energy_wh=50.0), event_id="other")).duplicate
    assert not run(ev(METER, T0 + 2 * MIN, energy_wh=50.0)).duplicate  # same register, later


def test_out_of_order_seq_is_applied_in_order() -> None:
    run = Run()
    run(ev(STARTED, T0, transaction_id="T1", seq=0, energy_wh=0.0))
    held = run(ev(METER, T0 + 2 * MIN, transaction_id="T1", seq=2, energy_wh=300.0))
    assert held.updates == () and run.running().event_count == 1  # waits for seq 1
    filled = run(ev(METER, T0 + MIN, transaction_id="T1", seq=1, energy_wh=100.0))
    assert filled.updates == (1,)
    session = run.running()
    assert (session.event_count, session.energy_wh, session.charging_ms) == (3, 300.0, 2 * MIN)


def test_a_seq_gap_is_given_up_after_the_gap_window_and_the_late_event_is_order_free() -> None:
    run = Run()
    run(ev(STARTED, T0, transaction_id="T1", seq=0, energy_wh=0.0))
    run(ev(METER, T0 + 2 * MIN, transaction_id="T1", seq=2, energy_wh=300.0))
    run(ev(METER, T0 + 5 * MIN, transaction_id="T1", seq=3, energy_wh=400.0))
    assert run.running().energy_wh == 400.0  # the window passed seq 2: seq 1 is a gap
    late = run(ev(METER, T0 + MIN, transaction_id="T1", seq=1, energy_wh=100.0, power_w=9e3))
    assert not late.duplicate and "late_event" in run.observations
    session = run.running()
    assert (session.event_count, session.max_power_w, session.energy_wh) == (4, 9e3, 400.0)
    assert "late_event" in session.flags
    assert run(ev(METER, T0 + MIN, transaction_id="T1", seq=1, energy_wh=100.0)).duplicate


def test_time_window_reorders_events_without_seq() -> None:
    run = Run(StitchRules(reorder_window_ms=5 * MIN))
    run(ev(STARTED, T0, energy_wh=0.0))
    run(ev(METER, T0 + 2 * MIN, energy_wh=300.0))
    run(ev(METER, T0 + MIN, energy_wh=100.0))
    run(ev(ENDED, T0 + 3 * MIN, energy_wh=300.0))
    assert run.completed == []  # held: nothing newer than the window yet
    assert run.expire(T0 + 8 * MIN)[0].charging_ms == 2 * MIN
    (done,) = run.completed
    assert (done.state, done.energy_wh, done.event_count, done.flags) == \
        (SessionState.COMPLETED, 300.0, 4, ())


def test_inactivity_closes_incomplete_and_a_late_stop_corrects_it() -> None:
    run = Run()
    last = charge(run, readings=2)
    assert run.expire(last + 5 * HOUR) == []
    (closed,) = run.expire(last + 6 * HOUR + 1)
    assert closed.state is SessionState.INCOMPLETE and closed.version == 1
    assert closed.flags == ("missing_stop",) and closed.end_ms == last
    assert closed.energy_wh == 200.0 and closed.cost == price_session(200.0, 2 * MIN, TARIFF)
    result = run(ev(ENDED, last + 7 * HOUR, transaction_id="T1", seq=3, energy_wh=10_250.0,
                    stop_reason="Local"))
    (fixed,) = result.completed
    assert (fixed.session_id, fixed.version, fixed.state) == \
        (closed.session_id, 2, SessionState.COMPLETED)
    assert fixed.flags == ("late_stop",) and fixed.stop_reason == "Local"
    assert fixed.energy_wh == 250.0 and fixed.end_ms == last + 7 * HOUR


def test_wall_clock_closes_a_silent_station_measured_from_when_it_was_heard() -> None:
    run = Run()
    last = charge(run, readings=1)
    heard = 5 * 24 * HOUR  # the worker's clock, unrelated to the charger's times
    assert run.stitcher.expire(run.state, last, heard + 6 * HOUR - 1, heard) == []
    assert run.stitcher.expire(run.state, last, heard + 30 * 24 * HOUR) == []  # not heard
    (closed,) = run.stitcher.expire(run.state, last, heard + 6 * HOUR + 1, heard)
    assert closed.flags == ("missing_stop",) and closed.state is SessionState.INCOMPLETE


def test_late_reading_of_a_completed_session_publishes_a_corrected_version() -> None:
    run = Run()
    run(ev(STARTED, T0, transaction_id="T1", seq=0, energy_wh=0.0))
    run(ev(METER, T0 + 2 * MIN, transaction_id="T1", seq=2, energy_wh=200.0))
    run(ev(METER, T0 + 5 * MIN, transaction_id="T1", seq=3, energy_wh=200.0))
    (done,) = run(ev(ENDED, T0 + 6 * MIN, transaction_id="T1", seq=4, energy_wh=200.0)).completed
    (fixed,) = run(ev(METER, T0 + MIN, transaction_id="T1", seq=1, energy_wh=90.0,
                      power_w=12e3)).completed
    assert (fixed.session_id, fixed.version, fixed.state) == \
        (done.session_id, 2, SessionState.COMPLETED)
    assert (fixed.event_count, fixed.max_power_w, fixed.energy_wh) == (5, 12e3, 200.0)
    assert fixed.flags == ("late_event",)


def test_missing_start_opens_from_the_first_transaction_event_and_is_flagged() -> None:
    run = Run()
    run(ev(METER, T0, transaction_id="T1", energy_wh=5_000.0))
    (done,) = run(ev(ENDED, T0 + MIN, transaction_id="T1", energy_wh=5_040.0)).completed
    assert done.flags == ("missing_start",) and done.energy_wh == 40.0


def test_register_reset_mid_session_counts_energy_across_it() -> None:
    run = Run()
    run(ev(STARTED, T0, energy_wh=1_000.0))
    run(ev(METER, T0 + MIN, energy_wh=1_100.0))
    run(ev(METER, T0 + 2 * MIN, energy_wh=30.0))  # reset to 0, then 30 Wh in a minute
    (done,) = run(ev(ENDED, T0 + 3 * MIN, energy_wh=80.0)).completed
    assert done.energy_wh == 180.0 and done.flags == ("register_reset",)
    assert done.cost == price_session(180.0, 3 * MIN, TARIFF)
    assert "energy_backwards" in run.observations


def test_rollover_to_an_arbitrary_value_counts_from_the_next_reading() -> None:
    run = Run()
    run(ev(STARTED, T0, energy_wh=999_900.0))
    run(ev(METER, T0 + MIN, energy_wh=999_990.0))
    run(ev(METER, T0 + 2 * MIN, energy_wh=500_000.0))  # not plausible as "since zero"
    (done,) = run(ev(ENDED, T0 + 3 * MIN, energy_wh=500_060.0)).completed
    assert done.energy_wh == 150.0 and done.flags == ("register_reset",)


def test_lifetime_register_never_becomes_the_session_energy() -> None:
    run = Run()
    run(ev(STARTED, T0, energy_wh=910_000.0))
    (done,) = run(ev(ENDED, T0 + 10 * MIN, energy_wh=910_083.0)).completed
    assert done.energy_wh == 83.0 and done.meter_start_wh == 910_000.0


def test_stop_below_start_is_ignored_and_flagged() -> None:
    run = Run()
    run(ev(STARTED, T0, energy_wh=5_000.0))
    run(ev(METER, T0 + MIN, energy_wh=5_100.0))
    (done,) = run(ev(ENDED, T0 + 2 * MIN, energy_wh=10.0)).completed
    assert done.energy_wh == 100.0 and done.flags == ("stop_below_start",)
    assert done.end_ms == T0 + 2 * MIN


def test_kwh_in_the_wh_field_is_detected_against_reported_power() -> None:
    run = Run()
    run(ev(STARTED, T0, energy_wh=12_005.4, power_w=0.0))
    run(ev(METER, T0 + MIN, energy_wh=12_005.483, power_w=5_000.0))  # 83 Wh at ~5 kW
    (done,) = run(ev(ENDED, T0 + 2 * MIN, energy_wh=12_005.566)).completed
    assert done.flags == ("unit_corrected_kwh",)
    assert (done.meter_start_wh, done.energy_wh) == (12_005_400.0, 166.0)


def test_values_1000_times_too_large_for_the_rating_are_scaled_down() -> None:
    registry = StationRegistry.parse({"stations": {"CS-1": {"connectors": {1: 11_000}}}})
    run = Run(registry=registry)
    run(ev(STARTED, T0, energy_wh=7_000_000.0))
    run(ev(METER, T0 + MIN, energy_wh=7_183_000.0))  # 183 kWh in a minute on 11 kW: mWh
    (done,) = run(ev(ENDED, T0 + 2 * MIN, energy_wh=7_366_000.0)).completed
    assert done.flags == ("unit_corrected_mwh",) and done.energy_wh == 366.0


def test_power_above_rating_backed_by_the_chargers_power_is_counted_and_observed() -> None:
    registry = StationRegistry.parse({"stations": {"CS-1": {"connectors": {1: 11_000}}}})
    run = Run(registry=registry)
    run(ev(STARTED, T0, energy_wh=0.0))
    run(ev(METER, T0 + MIN, energy_wh=100.0))
    run(ev(METER, T0 + 2 * MIN, energy_wh=500.0, power_w=23_000.0))  # 24 kW on "11 kW"
    assert run.observations == ["power_above_rating"]
    assert run.running().energy_wh == 500.0 and run.running().flags == ()


def test_clock_reset_to_1970_uses_receive_time_and_is_flagged() -> None:
    run = Run()
    run(ev(STARTED, T0, received=T0 + 100, transaction_id="T1", seq=0, energy_wh=0.0))
    run(ev(METER, 60_000, received=T0 + MIN, transaction_id="T1", seq=1, energy_wh=50.0))
    (done,) = run(ev(ENDED, 120_000, received=T0 + 2 * MIN, transaction_id="T1", seq=2,
                     energy_wh=90.0)).completed
    assert (done.start_ms, done.end_ms, done.energy_wh) == (T0, T0 + 2 * MIN, 90.0)
    assert done.flags == ("clock_skew",)
    assert run.observations.count("clock_skew") == 2


def test_overlapping_transaction_closes_the_open_one_and_its_stop_corrects_it() -> None:
    run = Run()
    charge(run, tx="A", readings=1)
    run(ev(STARTED, T0 + 10 * MIN, transaction_id="B", energy_wh=20_000.0))
    run(ev(STARTED, T0 + 10 * MIN + 1, transaction_id="C", energy_wh=20_000.0))
    (a, b) = run.completed
    assert (a.transaction_id, a.state, a.flags) == ("A", SessionState.INCOMPLETE,
                                                    ("overlapped",))
    assert (b.transaction_id, b.flags) == ("B", ("overlapped",))
    (fixed,) = run(ev(ENDED, T0 + 2 * MIN, transaction_id="A", energy_wh=10_150.0)).completed
    assert (fixed.session_id, fixed.version, fixed.state) == (a.session_id, 2,
                                                             SessionState.COMPLETED)
    assert fixed.flags == ("overlapped", "late_stop") and fixed.energy_wh == 150.0
    assert run.running().transaction_id == "C"  # the late stop left C alone


def test_faulted_status_and_falling_soc_are_observed() -> None:
    run = Run()
    run(ev(STARTED, T0, energy_wh=0.0, soc_pct=50.0))
    run(ev(METER, T0 + MIN, energy_wh=100.0, soc_pct=40.0))
    run(ev(STATUS, T0 + MIN, status="Faulted", error_code="GroundFailure"))
    assert run.observations == ["soc_falling", "faulted"]


def test_state_with_a_full_buffer_and_remembered_sessions_stays_under_2_kb() -> None:
    run = Run()
    for k in range(3):  # two closed sessions remembered, long identifiers
        tx = f"TX-{k:04d}-9f3e2c1a-7b6d-4e5f-8a9b"
        base = T0 + k * HOUR
        run(ev(STARTED, base, transaction_id=tx, seq=0, energy_wh=1_234_567.5, soc_pct=12.5,
               id_tag="04A2B3C4D5E6F7", vehicle_id="WVWZZZ1JZXW000001"))
        run(ev(METER, base + MIN, transaction_id=tx, seq=1, energy_wh=1_235_000.25))
        if k < 2:
            run(ev(ENDED, base + 2 * MIN, transaction_id=tx, seq=2, energy_wh=1_236_000.0))
    for i in range(2, 20):  # every other seq missing: each waits, up to the cap
        run(ev(METER, T0 + 2 * HOUR + i * 1000, transaction_id=tx, seq=2 * i,
               energy_wh=1_240_000.0 + i, power_w=11_000.0, soc_pct=40.0, current_a=16.0,
               voltage_v=230.0))
    assert run.state is not None
    conn = run.state.connectors[1]
    assert len(conn.held) == 4 and len(conn.recent) == 2
    size = len(orjson.dumps(_pack_connector(1, conn)))
    assert size < 2048, size
    assert StationState.from_bytes(run.state.to_bytes()) == run.state


def test_version_2_state_still_reads() -> None:
    v2 = (b'{"v":2,"s":"CS-1","p":[0,5,0],"q":1,"c":[[1,null,null,["EV-000000020",null,null,'
          b'null,1,1,0.0,0.0,1,null,null,0.0,0,1,["SIMPLE",1,1,"0",0,[],[["0",-1,-1],'
          b'["0",-1,-1],["0",-1,-1]]],[]]]]}')
    state = StationState.from_bytes(v2)
    assert state.connectors[1].session is not None
    assert state.connectors[1].session.seq_max is None


def test_station_registry_from_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "stations.yaml"
    yaml_file.write_text("stations:\n  CS-1:\n    model: Terra 54\n"
                         "    connectors: {1: 50000, 2: 22000}\n")
    registry = StationRegistry.load(yaml_file)
    assert registry.rated_power_w("CS-1", 2) == 22_000.0
    assert registry.rated_power_w("CS-1", 3) is None and registry.rated_power_w("X", 1) is None
    assert registry.stations["CS-1"].model == "Terra 54"
    json_file = tmp_path / "stations.json"
    json_file.write_text(json.dumps({"stations": {"CS-2": {"connectors": {"1": 7400}}}}))
    assert StationRegistry.load(json_file).rated_power_w("CS-2", 1) == 7_400.0
    with pytest.raises(StationRegistryError, match="'CS-3'.*positive power"):
        StationRegistry.parse({"stations": {"CS-3": {"connectors": {1: -5}}}})
    with pytest.raises(StationRegistryError, match="unknown keys"):
        StationRegistry.parse({"stations": {"CS-3": {"connectors": {}, "rating": 1}}})
