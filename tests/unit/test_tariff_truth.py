"""The stitcher's costs equal the simulator's truth, every session to the cent.

Runs a simulated fleet under tariffs/example.yaml (time-of-use energy, a start fee, a
daytime blocking fee, VAT, a station-specific tariff and time zone, a max and a min price)
through the pure stitcher, as the pipeline does, and compares each closed session with the
truth, which the reference pricer computes from the same file (producers/reference_pricing.py,
no code shared with the engine).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from charging.session_ids import IdTemplate
from charging.state import StationState
from charging.stitcher import SessionStitcher, StitcherConfig, continue_log, stitch_log
from charging.tariffs import load_tariff_book
from producers.reference_tariffs import TariffFile
from producers.simulator import FleetConfig, simulate
from schemas.records import EventPosition

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "tariffs" / "example.yaml"


def test_stitched_costs_match_the_truth_under_the_example_tariffs() -> None:
    book = load_tariff_book(EXAMPLE)
    config = FleetConfig(seed=5, stations=10, tariff=TariffFile.load(EXAMPLE))
    sim = simulate(config)
    log = [(e, EventPosition(0, offset, i))
           for offset, (_, events) in enumerate(sim.messages()) for i, e in enumerate(events)]
    outcome = stitch_log(log, StitcherConfig(1, IdTemplate.parse("EV-{num:09d}"), book))
    truth = {(s.station_id, s.connector_id, s.start_ms): s for s in sim.truth()}
    assert len(outcome.completed) == len(truth) > 40
    for session in outcome.completed:
        true = truth[(session.station_id, session.connector_id, session.start_ms)]
        assert (session.cost, session.currency) == (true.cost, true.currency), session
    plain = {(s.station_id, s.connector_id, s.start_ms): s.cost
             for s in simulate(replace(config, tariff=FleetConfig().tariff)).truth()}
    assert sum(truth[k].cost != plain[k] for k in plain) > len(plain) // 2, \
        "the example tariffs should price most sessions differently from the simple tariff"


def test_open_session_state_stays_small_under_time_of_use() -> None:
    book = load_tariff_book(EXAMPLE)
    sim = simulate(FleetConfig(seed=5, stations=6))
    stitcher = SessionStitcher(StitcherConfig(1, IdTemplate.parse("EV-{num:09d}"), book))
    states: dict[str, StationState] = {}
    largest = 0
    for offset, (station, events) in enumerate(sim.messages()):
        continue_log(stitcher, states, [(e, EventPosition(0, offset, i))
                                        for i, e in enumerate(events)])
        state = states[station]
        blob = state.to_bytes()
        for cid, conn in state.connectors.items():
            if conn.session is not None:
                without = StationState.from_bytes(blob)
                without.connectors[cid].session = None
                largest = max(largest, len(blob) - len(without.to_bytes()))
    assert 0 < largest < 2048, largest
