"""Engine properties, daylight-saving days, and state that survives a restart."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charging.session_ids import IdTemplate
from charging.state import StationState
from charging.stitcher import SessionStitcher, StitcherConfig, continue_log, stitch_log
from charging.tariffs import Meter, TariffEngine, load_tariff_book
from producers.simulator import FleetConfig, simulate
from schemas.records import EventPosition
from tests.unit.tariff_helpers import ENERGY, PARKING, TIME, at, book_of, el, run

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "tariffs" / "example.yaml"
BOOK = load_tariff_book(EXAMPLE)
ENGINE = TariffEngine(BOOK)
T0 = at("2026-11-23 05:10", "Europe/Berlin")

# A time-of-use tariff without power restrictions, with kWh tiers, step sizes and a cap.
TOU = TariffEngine(book_of(
    el(ENERGY("0.30", 19, 1), max_kwh=5),
    el(ENERGY("0.20", 19, 1), start_time="22:00", end_time="06:00"),
    el(ENERGY("0.45", 19, 100), day_of_week=["SATURDAY", "SUNDAY"]),
    el(ENERGY("0.40", 19, 1)),
    el(TIME("1.20", 19, 300), min_duration=1800),
    el(PARKING("4.00", 7, 600), start_time="07:00", end_time="21:00"),
    zone="Europe/Berlin", max_price={"excl_vat": "45"}))

intervals = st.lists(st.tuples(st.integers(1, 240), st.integers(0, 20_000)), min_size=1,
                     max_size=12)
"""(minutes, Wh) per reading interval; 0 Wh is parking."""
starts = st.integers(0, 14 * 86_400).map(lambda s: T0 + s * 1000)


def cost_of(engine: TariffEngine, start: int, steps: list[tuple[int, int]],
            station: str = "CS-0001") -> Decimal:
    meter = engine.open(station, 1, "TAG", start)
    t = start
    for minutes, wh in steps:
        t += minutes * 60_000
        engine.reading(meter, station, t, Decimal(wh))
    return engine.quote(meter, station, t).incl_vat


ROUND_UP_SHIFT = {
    id(TOU): Decimal("0.03"),
    id(ENGINE): Decimal("0.01"),
}
"""The one way more energy or time can lower a total (docs/tariffs.md).

OCPI bills a step size's round-up at the price of the last element that priced the
dimension. When elements of one dimension have different prices, more energy can end the
chain in a cheaper element, so the round-up is billed cheaper: at most one step times the
price difference, incl. VAT, plus the final cent rounding. TOU: 100 Wh x (0.45 - 0.20) x
1.19 = 0.0298 -> 0.03; the example file: 1 Wh steps, so only the cent rounding -> 0.01."""


@settings(max_examples=120, deadline=None)
@given(starts, intervals, st.data(), st.sampled_from([TOU, ENGINE]),
       st.sampled_from(["CS-0001", "CS-0002", "CS-0003"]))
def test_cost_never_decreases_as_energy_or_time_grows(start: int, steps: list[tuple[int, int]],
                                                      data: st.DataObject,
                                                      engine: TariffEngine,
                                                      station: str) -> None:
    """...beyond the step-size round-up moving to a cheaper element (ROUND_UP_SHIFT)."""
    base = cost_of(engine, start, steps, station) - ROUND_UP_SHIFT[id(engine)]
    charging = [i for i, (_, wh) in enumerate(steps) if wh]
    if charging:
        i = data.draw(st.sampled_from(charging), label="charging interval")
        more = list(steps)
        more[i] = (steps[i][0], steps[i][1] + data.draw(st.integers(1, 5000), label="more Wh"))
        assert cost_of(engine, start, more, station) >= base
    longer = steps + [data.draw(st.tuples(st.integers(1, 240), st.integers(0, 20_000)),
                                label="one more interval")]
    assert cost_of(engine, start, longer, station) >= base


@settings(max_examples=120, deadline=None)
@given(starts, intervals, st.data())
def test_finer_meter_values_change_the_cost_by_at_most_the_rounding(
        start: int, steps: list[tuple[int, int]], data: st.DataObject) -> None:
    """A reading inserted inside an interval, with the linearly interpolated register, adds
    no information: costs may differ only by the documented rounding (energy interpolated
    to the mWh, time at a kWh threshold to the ms), i.e. by at most one cent."""
    i = data.draw(st.integers(0, len(steps) - 1), label="split interval")
    minutes, wh = steps[i]
    at_ms = data.draw(st.integers(1, minutes * 60_000 - 1), label="split at") \
        if minutes * 60_000 > 1 else None
    if at_ms is None:
        return
    whole = cost_of_ms(TOU, start, [(m * 60_000, w) for m, w in steps])
    first = Decimal(wh) * at_ms / (minutes * 60_000)
    finer = [(m * 60_000, Decimal(w)) for m, w in steps[:i]] + [
        (at_ms, first), (minutes * 60_000 - at_ms, Decimal(wh) - first)] + [
        (m * 60_000, Decimal(w)) for m, w in steps[i + 1:]]
    assert abs(cost_of_ms(TOU, start, finer) - whole) <= Decimal("0.01")


def cost_of_ms(engine: TariffEngine, start: int, steps: list[tuple[int, Decimal | int]]
               ) -> Decimal:
    meter = engine.open("CS-0001", 1, "TAG", start)
    t = start
    for ms, wh in steps:
        t += ms
        engine.reading(meter, "CS-0001", t, Decimal(wh))
    return engine.quote(meter, "CS-0001", t).incl_vat


NIGHT = TariffEngine(book_of(el(ENERGY("0.20"), start_time="22:00", end_time="06:00"),
                             el(ENERGY("0.40")), zone="Europe/Berlin"))


@pytest.mark.parametrize(("evening", "hours", "night_hours"), [
    ("2026-10-24 20:00", 13, 9),  # clocks go back at 03:00: the night lasts 9 real hours
    ("2026-03-28 20:00", 11, 7),  # clocks go forward at 02:00: 7 real hours
    ("2026-06-20 20:00", 12, 8),
])
def test_time_of_use_across_daylight_saving_changes(evening: str, hours: int,
                                                    night_hours: int) -> None:
    start = at(evening, "Europe/Berlin")
    # 1 kWh per real hour, read every 25 minutes so readings straddle the boundaries.
    steps = [(25, 25 / 60)] * (hours * 60 // 25) + [((hours * 60) % 25, (hours * 60) % 25 / 60)]
    cost = run(NIGHT, start, steps, station="CS-0001")
    night, day = Decimal(night_hours), Decimal(hours - night_hours)
    expected = (night * Decimal("0.20") + day * Decimal("0.40")).quantize(Decimal("0.01"))
    assert cost.excl_vat == expected


def test_a_boundary_inside_the_spring_gap_starts_when_the_clock_passes_it() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin: the element is active from 03:00 CEST.
    e = TariffEngine(book_of(el(ENERGY("1.00"), start_time="02:30", end_time="05:00"),
                             el(ENERGY("0.00")), zone="Europe/Berlin"))
    start = at("2026-03-29 00:00", "Europe/Berlin")  # 23:00 UTC
    cost = run(e, start, [(60, 1)] * 5, station="CS-0001")  # until 05:00 UTC = 07:00 CEST
    assert cost.excl_vat == Decimal("2.00")  # 03:00-05:00 CEST: two real hours


def test_meter_round_trip_and_restart_give_the_same_costs() -> None:
    sim = simulate(FleetConfig(seed=9, stations=4))
    log = [(e, EventPosition(0, offset, i))
           for offset, (_, events) in enumerate(sim.messages()) for i, e in enumerate(events)]
    config = StitcherConfig(1, IdTemplate.parse("EV-{num:09d}"), BOOK)
    whole = stitch_log(log, config)
    half = len(log) // 2
    before = stitch_log(log[:half], config)
    for state in before.states.values():
        for conn in state.connectors.values():
            if conn.session is not None:
                meter = conn.session.meter
                assert Meter.unpack(meter.pack()) == meter
    restored = {k: StationState.from_bytes(v.to_bytes()) for k, v in before.states.items()}
    after = continue_log(SessionStitcher(config), restored, log[half:])
    assert before.completed + after.completed == whole.completed


def test_running_cost_is_the_quote_so_far_and_quoting_changes_nothing() -> None:
    meter = ENGINE.open("CS-0001", 1, None, T0)
    ENGINE.reading(meter, "CS-0001", T0 + 600_000, Decimal(5000))
    packed = meter.pack()
    first = ENGINE.quote(meter, "CS-0001", T0 + 600_000)
    assert meter.pack() == packed
    assert ENGINE.quote(meter, "CS-0001", T0 + 600_000) == first
    later = ENGINE.quote(meter, "CS-0001", T0 + 3 * 3_600_000)  # idle since: parking
    assert later.incl_vat > first.incl_vat
