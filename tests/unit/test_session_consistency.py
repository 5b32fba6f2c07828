"""No stored session contradicts its own readings (issue 15 §2): over the chaos simulator's
messages, every session the stitcher closes carries the energy, first and last register
value that the readings its charger sent say, by the reference in
tests/register_reference.py (the documented rules, not the engine's code)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.chaos import CASES, ChaosConfig, ChaosSimulation
from producers.simulator import FleetConfig
from schemas.records import ChargingSession
from tests.register_reference import Counted, Key, contradictions, keyed
from tests.unit.test_chaos import CHAOS, FLEET, stitched

pytestmark = pytest.mark.unit


def _stored(sessions: list[ChargingSession]) -> dict[Key, Counted]:
    assert all(s.transaction_id is not None for s in sessions)
    return keyed((s.station_id, s.connector_id, str(s.transaction_id), s.start_ms,
                  Counted(s.energy_wh, s.meter_start_wh, s.meter_end_wh)) for s in sessions)


def _check(chaos: ChaosSimulation) -> int:
    messages = list(chaos.messages())
    actual, _ = stitched(messages)
    stored = _stored(list(actual.values()))
    assert len(stored) == len(actual)
    wrong = contradictions(stored, (e for _, events in messages for e in events))
    assert not wrong, wrong[:5]
    return len(stored)


def test_every_session_of_the_chaos_workload_agrees_with_its_readings() -> None:
    assert _check(ChaosSimulation(FLEET, CHAOS)) == len(ChaosSimulation(FLEET, CHAOS).truth())


@settings(max_examples=30, deadline=None)
@given(fleet_seed=st.integers(0, 10**6), chaos_seed=st.integers(0, 10**6),
       weights=st.lists(st.integers(0, 4), min_size=len(CASES), max_size=len(CASES)),
       touched=st.floats(0.0, 0.99))
def test_chaos_sessions_agree_with_their_readings(fleet_seed: int, chaos_seed: int,
                                                  weights: list[int], touched: float) -> None:
    total = sum(weights) or 1
    # at most 0.99 touched: shares of 1.0 can sum above 1 in floats (weights 0,2,4,3,1)
    rates = [touched * w / total for w in weights]
    fleet = FleetConfig(seed=fleet_seed, stations=8, duration_s=12 * 3600)
    _check(ChaosSimulation(fleet, ChaosConfig(chaos_seed, *rates)))
