"""The fleet simulator: determinism, physics, batching and ground truth agree with the events."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.errors import ProducerError, SimulationConfigError
from producers.fleet import TAPER_FLOOR, ChargingCurve
from producers.simulator import FleetConfig, simulate
from producers.truth import TrueSession, read_truth, write_truth
from schemas.records import MAX_EVENTS_PER_MESSAGE, EventKind, MeterEvent

pytestmark = pytest.mark.unit

SMALL = FleetConfig(seed=11, stations=12)


@pytest.fixture(scope="module")
def run() -> tuple[list[tuple[str, list[MeterEvent]]], list[TrueSession]]:
    sim = simulate(SMALL)
    return list(sim.messages()), list(sim.truth())


def by_connector(messages: list[tuple[str, list[MeterEvent]]]) -> dict[tuple[str, int],
                                                                        list[MeterEvent]]:
    out: dict[tuple[str, int], list[MeterEvent]] = defaultdict(list)
    for _, events in messages:
        for e in events:
            out[(e.station_id, e.connector_id)].append(e)
    return out


def test_same_seed_same_output_other_seed_differs(run) -> None:
    messages, truth = run
    again = simulate(SMALL)
    assert list(again.messages()) == messages
    assert list(again.truth()) == truth
    other = simulate(replace(SMALL, seed=12))
    assert list(other.truth()) != truth
    assert [m for m, _ in zip(other.messages(), range(50), strict=False)] != messages[:50]


def test_truth_does_not_depend_on_messages_being_consumed(run) -> None:
    _, truth = run
    assert list(simulate(SMALL).truth()) == truth


def test_registers_power_and_soc_are_physical(run) -> None:
    messages, _ = run
    rated = {(s.station_id, c.connector_id): c.rated_w
             for s in simulate(SMALL).stations for c in s.connectors}
    for key, events in by_connector(messages).items():
        registers = [e.energy_wh for e in events if e.energy_wh is not None]
        assert registers == sorted(registers), key
        assert all(r == int(r) for r in registers)
        times = [e.receive_time_ms for e in events]
        assert all(a < b for a, b in zip(times, times[1:], strict=False)), key
        for e in events:
            assert e.power_w is None or 0 <= e.power_w <= rated[key]
            assert e.soc_pct is None or 0 <= e.soc_pct <= 100
            assert 50 <= e.receive_time_ms - e.event_time_ms < 1000
        socs = defaultdict(list)
        for e in events:
            if e.transaction_id is not None:
                socs[e.transaction_id].append(e.soc_pct)
        for tx, values in socs.items():
            assert values == sorted(values), tx


def test_each_session_has_the_ocpp_lifecycle(run) -> None:
    messages, _ = run
    for events in by_connector(messages).values():
        kinds = [e.kind for e in events]
        while kinds:
            readings = kinds.index(EventKind.ENDED) - 2
            assert kinds[:2] == [EventKind.STATUS, EventKind.STARTED]
            assert kinds[2:2 + readings] == [EventKind.METER] * readings
            assert kinds[2 + readings:4 + readings] == [EventKind.ENDED, EventKind.STATUS]
            size = 4 + readings
            session, events, kinds = events[:size], events[size:], kinds[size:]
            assert [session[0].status, session[-1].status] == ["Preparing", "Available"]
            tx = session[1].transaction_id
            assert [e.transaction_id for e in session[1:-1]] == [tx] * (readings + 2)
            assert [e.seq for e in session[1:-1]] == list(range(readings + 2))
            gaps = {b.event_time_ms - a.event_time_ms for a, b in zip(session[1:-2], session[2:-2],
                                                                     strict=False)}
            assert gaps <= {SMALL.meter_interval_s * 1000}
            assert session[-2].event_time_ms - session[-3].event_time_ms <= 60_000
            assert session[-2].stop_reason in {"EVDisconnected", "Local"}


def test_event_ids_are_unique(run) -> None:
    messages, _ = run
    ids = [e.event_id for _, events in messages for e in events]
    assert len(ids) == len(set(ids))


def test_truth_is_exactly_what_the_events_carry(run) -> None:
    messages, truth = run
    started = {}
    ended = {}
    for _, events in messages:
        for e in events:
            if e.kind is EventKind.STARTED:
                started[e.transaction_id] = e
            elif e.kind is EventKind.ENDED:
                ended[e.transaction_id] = e
    assert len(truth) == len(started) == len(ended) > 50
    for s in truth:
        first, last = started[s.transaction_id], ended[s.transaction_id]
        assert (s.start_ms, s.end_ms) == (first.event_time_ms, last.event_time_ms)
        assert SMALL.start_ms <= s.start_ms < s.end_ms < SMALL.end_ms
        assert s.energy_wh == last.energy_wh - first.energy_wh > 0
        assert (s.soc_start_pct, s.soc_end_pct) == (first.soc_pct, last.soc_pct)
        assert (s.id_tag, s.vehicle_id) == (first.id_tag, first.vehicle_id)
        assert s.cost == simple_tariff_cost(s.energy_wh, s.end_ms - s.start_ms)
        assert s.currency == "EUR"


def simple_tariff_cost(energy_wh: int, plugged_ms: int) -> Decimal:
    """The default simple tariff as docs/tariffs.md states it: 0.39 per kWh plus 0.02 per
    plugged-in minute, rounded half-up to the cent."""
    raw = Decimal(energy_wh) / 1000 * Decimal("0.39") + Decimal(plugged_ms) / 60_000 * Decimal(
        "0.02")
    return raw.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_sessions_on_a_connector_never_overlap(run) -> None:
    _, truth = run
    last_end: dict[tuple[str, int], int] = {}
    for s in truth:
        key = (s.station_id, s.connector_id)
        assert s.start_ms > last_end.get(key, 0)
        last_end[key] = s.end_ms


def test_sessions_running_past_the_period_are_cut_with_a_stop(run) -> None:
    _, truth = run
    cut = [s for s in truth if s.end_ms == SMALL.end_ms - 2000]
    assert cut, "a day of 12 stations should leave someone plugged in at midnight"
    assert all(s.energy_wh >= 0 for s in cut)


def test_batches_respect_size_age_and_station(run) -> None:
    messages, _ = run
    for key, events in messages:
        assert 1 <= len(events) <= SMALL.events_per_message
        assert {e.station_id for e in events} == {key}
        age = events[-1].receive_time_ms - events[0].receive_time_ms
        assert age < SMALL.flush_interval_s * 1000
    sizes = {len(events) for _, events in messages}
    assert SMALL.events_per_message in sizes and min(sizes) < SMALL.events_per_message


def test_per_station_order_is_receive_order_and_messages_are_time_ordered(run) -> None:
    messages, _ = run
    per_station: dict[str, list[int]] = defaultdict(list)
    for key, events in messages:
        per_station[key].extend(e.receive_time_ms for e in events)
    for times in per_station.values():
        assert times == sorted(times)
    firsts = [events[0].receive_time_ms for _, events in messages]
    assert firsts[0] == min(firsts)


def test_one_event_per_message_and_the_hard_limit() -> None:
    config = replace(SMALL, stations=3, events_per_message=1)
    assert all(len(events) == 1 for _, events in simulate(config).messages())
    with pytest.raises(SimulationConfigError, match="events_per_message"):
        replace(SMALL, events_per_message=MAX_EVENTS_PER_MESSAGE + 1)
    big = replace(SMALL, stations=8, events_per_message=MAX_EVENTS_PER_MESSAGE,
                  flush_interval_s=86_400)
    sizes = [len(events) for _, events in simulate(big).messages()]
    assert max(sizes) == MAX_EVENTS_PER_MESSAGE and len(sizes) > 8


def test_counts_and_truth_file_round_trip(tmp_path: Path) -> None:
    sim = simulate(replace(SMALL, stations=3))
    with pytest.raises(ProducerError, match="messages"):
        sim.meta()
    messages = list(sim.messages())
    meta = sim.meta()
    assert meta.messages == len(messages)
    assert meta.events == sum(len(events) for _, events in messages)
    truth = list(sim.truth())
    assert meta.sessions == len(truth)
    path = tmp_path / "truth.jsonl"
    assert write_truth(path, truth, meta) == len(truth)
    back = read_truth(path)
    assert back.meta == meta and back.sessions == truth
    path.write_text(path.read_text() + '{"station_id": 1}\n')
    with pytest.raises(ProducerError, match=f":{len(truth) + 2}:"):
        read_truth(path)


def test_a_simulated_day_has_a_realistic_volume() -> None:
    sim = simulate(replace(SMALL, stations=20))
    events = sum(len(batch) for _, batch in sim.messages())
    assert 500 * 20 <= events <= 1500 * 20


@given(capacity=st.integers(40, 100), power=st.sampled_from([7_400, 11_000, 50_000, 150_000]),
       start=st.integers(100, 600), target=st.integers(800, 1000))
def test_charging_curve_reaches_its_target_and_tapers(capacity: int, power: int, start: int,
                                                      target: int) -> None:
    curve = ChargingCurve(capacity * 1000, power, start / 1000)
    seconds = curve.seconds_to(target / 1000)
    assert curve.soc_at(seconds) == pytest.approx(target / 1000, abs=1e-9)
    points = [curve.soc_at(seconds * i / 20) for i in range(21)]
    assert points == sorted(points)
    assert curve.power_at_soc(0.5) == power
    assert curve.power_at_soc(1.0) == pytest.approx(TAPER_FLOOR * power)
    assert curve.power_at_soc(0.9) < power
