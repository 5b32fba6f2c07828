"""Chaos log through the pure stitcher, compared with the chaos truth exactly."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator

import pytest

from processors.pricing import SimpleTariff
from processors.session_ids import IdTemplate
from processors.stitcher import SessionStitcher, StitcherConfig, StitchOutcome, stitch_log
from producers.chaos import CASES, ChaosConfig, ChaosSimulation, ExpectedSession
from producers.simulator import FleetConfig, simulate
from schemas.records import ChargingSession, EventPosition, MeterEvent

pytestmark = pytest.mark.unit

PARTITIONS = 3
FLEET = FleetConfig(seed=5, stations=20, duration_s=12 * 3600)
CHAOS = ChaosConfig(seed=3, duplicate_rate=0.08, reorder_rate=0.1, late_rate=0.08,
                    missing_stop_rate=0.1, missing_start_rate=0.08, reset_rate=0.08,
                    unit_error_rate=0.08, skew_rate=0.08, overlap_rate=0.1,
                    stop_below_start_rate=0.08, across_messages_share=1.0)

Key = tuple[str, int, int]


def positioned(messages: list[tuple[str, list[MeterEvent]]]
               ) -> Iterator[tuple[MeterEvent, EventPosition]]:
    """Positions as Kafka gives them: station -> partition by a stable hash."""
    offsets = [0] * PARTITIONS
    for station, events in messages:
        partition = zlib.crc32(station.encode()) % PARTITIONS
        for index, event in enumerate(events):
            yield event, EventPosition(partition, offsets[partition], index)
        offsets[partition] += 1


def stitched(messages: list[tuple[str, list[MeterEvent]]]) -> tuple[dict[Key, ChargingSession],
                                                                   StitchOutcome]:
    """Every session's latest version after the log and a final expiry, by natural key."""
    config = StitcherConfig(PARTITIONS, IdTemplate.parse("EV-{num:09d}"), SimpleTariff())
    outcome = stitch_log(positioned(messages), config)
    stitcher = SessionStitcher(config)
    clocks: dict[int, int] = {}
    for state in outcome.states.values():
        clocks[state.last_partition] = max(clocks.get(state.last_partition, -1), state.newest_ms)
    closed = list(outcome.completed)
    for state in outcome.states.values():
        closed += stitcher.expire(state, clocks[state.last_partition], 0)
    latest: dict[str, ChargingSession] = {}
    for session in closed:
        if session.session_id not in latest or latest[session.session_id].version < \
                session.version:
            latest[session.session_id] = session
    return {(s.station_id, s.connector_id, s.start_ms): s for s in latest.values()}, outcome


def assert_matches(expected: list[ExpectedSession], actual: dict[Key, ChargingSession]) -> None:
    wrong = []
    for e in expected:
        got = actual.get((e.station_id, e.connector_id, e.start_ms))
        want = (e.state, e.version, e.end_ms, e.energy_wh, e.cost, e.flags, e.transaction_id,
                e.id_tag, e.vehicle_id, e.soc_start_pct, e.soc_end_pct)
        have = None if got is None else (
            got.state, got.version, got.end_ms, round(got.energy_wh), got.cost, got.flags,
            got.transaction_id, got.id_tag, got.vehicle_id, got.soc_start_pct, got.soc_end_pct)
        if want != have:
            wrong.append((e.injected, e.transaction_id, want, have))
    assert not wrong, wrong[:5]
    assert len(actual) == len(expected)


@pytest.fixture(scope="module")
def chaos() -> ChaosSimulation:
    return ChaosSimulation(FLEET, CHAOS)


def test_clean_config_is_the_simulation_unchanged() -> None:
    small = FleetConfig(seed=2, stations=4, duration_s=6 * 3600)
    clean = ChaosSimulation(small, ChaosConfig(seed=9))
    assert list(clean.messages()) == list(simulate(small).messages())
    assert all(e.injected == () and e.flags == () for e in clean.truth())
    assert [(e.transaction_id, e.energy_wh, e.cost) for e in clean.truth()] == \
        [(t.transaction_id, t.energy_wh, t.cost) for t in simulate(small).truth()]


def test_every_case_is_injected_and_deterministic(chaos: ChaosSimulation) -> None:
    counts = Counter(c for e in chaos.truth() for c in e.injected)
    assert set(counts) == set(CASES), counts
    again = ChaosSimulation(FLEET, CHAOS)
    assert list(again.messages()) == list(chaos.messages()) and again.truth() == chaos.truth()


def test_reorders_happen_within_and_across_messages(chaos: ChaosSimulation) -> None:
    where: dict[str, int] = {}
    inversions = []
    last_seq: dict[tuple[str, str], tuple[int, str]] = {}
    for number, (_, events) in enumerate(chaos.messages()):
        for event in events:
            where.setdefault(event.event_id, number)
            if event.seq is None or event.transaction_id is None:
                continue
            key = (event.station_id, event.transaction_id)
            before = last_seq.get(key)
            if before is not None and event.seq == before[0] - 1:
                inversions.append(where[before[1]] == where[event.event_id])
            last_seq[key] = (event.seq, event.event_id)
    assert True in inversions and False in inversions


def test_stitcher_matches_chaos_truth_exactly(chaos: ChaosSimulation) -> None:
    actual, outcome = stitched(list(chaos.messages()))
    assert_matches(chaos.truth(), actual)
    assert not outcome.rejected
    assert outcome.duplicates == sum("duplicate" in e.injected for e in chaos.truth())
