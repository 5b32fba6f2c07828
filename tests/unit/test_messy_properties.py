"""Properties of stitching on messy logs: duplicates and bounded reorderings change nothing,
and session IDs survive a restart at any point and a replay with fresh state."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charging.pricing import SimpleTariff
from charging.rules import StitchRules
from charging.session_ids import IdTemplate
from charging.state import StationState, _pack_connector
from charging.stitcher import SessionStitcher, StitcherConfig, StitchOutcome, continue_log
from schemas.records import ChargingSession, EventKind, EventPosition, MeterEvent

pytestmark = pytest.mark.unit

T0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z
S = 1000
TARIFF = SimpleTariff("EUR", Decimal("0.39"), Decimal("0.02"))
SEQ_RULES = StitchRules()  # defaults: arrival order, sequence gaps held for 120 s
TIME_RULES = StitchRules(reorder_window_ms=300 * S)  # chargers without sequence numbers
TEMPLATES = ["EV-{num:09d}", "{station}-{station_seq:04d}"]


@dataclass(frozen=True)
class MessyLog:
    rules: StitchRules
    clean: list[MeterEvent]
    messy: list[MeterEvent]
    duplicates: int


def bound_ms(rules: StitchRules) -> int:
    """How far (event time) an event may be overtaken and still be put back in order."""
    return rules.reorder_window_ms if rules.reorder_window_ms else rules.seq_gap_ms


def connector_events(draw: st.DrawFn, station: str, connector: int, with_seq: bool
                     ) -> list[MeterEvent]:
    """Sessions on one connector, strictly increasing event times, OCPP 2.0.1-like (seq)
    or 1.6-like (no seq). Receive time lags a little, as a gateway's would."""
    t = T0 + draw(st.integers(0, 3_600)) * S
    register = float(draw(st.integers(0, 10**7)))
    out: list[MeterEvent] = []

    def add(kind: EventKind, tx: str | None, seq: int | None, **values: object) -> None:
        lag = draw(st.integers(50, 2_000))
        out.append(MeterEvent(f"{station}/{connector}/{len(out)}", station, connector, kind,
                              t, t + lag, tx, seq if with_seq else None,
                              **values))  # type: ignore[arg-type]

    for k in range(draw(st.integers(1, 3))):
        tx = f"{station}-{connector}-{k}"
        add(EventKind.STARTED, tx, 0, id_tag="TAG", energy_wh=register, soc_pct=20.0)
        n = draw(st.integers(0, 5))
        for j in range(1, n + 1):
            dt = draw(st.integers(30, 90 if with_seq else 200)) * S
            de = draw(st.integers(0, 400))
            t += dt
            register += de
            add(EventKind.METER, tx, j, energy_wh=register, power_w=de * 3_600_000 / dt,
                soc_pct=min(100.0, 20.0 + j))
        t += draw(st.integers(1, 60)) * S
        add(EventKind.ENDED, tx, n + 1, energy_wh=register, stop_reason="EVDisconnected")
        if draw(st.booleans()):
            t += S
            add(EventKind.STATUS, None, None, status="Available")
        t += draw(st.sampled_from([5, 30, 200, 7_200])) * S
    return out


def valid(order: list[MeterEvent], bound: int, by_seq: bool) -> bool:
    """Bounded reordering: no event arrives after one that is `bound` newer than it, and
    at most 2 newer events overtake it (the reorder buffer holds 4).

    Sequence numbers order events within a transaction only. Without a time window
    (`by_seq`), transactions on one connector arrive in order (docs/architecture.md, "Messy input":
    ordering across transactions needs `reorder_window_ms`)."""
    for i, e in enumerate(order):
        newer = [f for f in order[:i] if f.event_time_ms > e.event_time_ms]
        if len(newer) > 2 or any(f.event_time_ms >= e.event_time_ms + bound for f in newer):
            return False
        if by_seq and any(f.transaction_id != e.transaction_id and e.transaction_id is not None
                          and f.transaction_id is not None for f in newer):
            return False
    return True


@st.composite
def messy_logs(draw: st.DrawFn) -> MessyLog:
    with_seq = draw(st.booleans())
    rules = SEQ_RULES if with_seq else TIME_RULES
    rnd = random.Random(draw(st.integers(0, 2**32)))
    lanes: list[list[MeterEvent]] = []
    for s in range(draw(st.integers(1, 2))):
        for connector in range(1, draw(st.integers(1, 2)) + 1):
            lanes.append(connector_events(draw, f"CS-{s}", connector, with_seq))
    clean = [e for lane in lanes for e in lane]
    messy_lanes: list[list[MeterEvent]] = []
    duplicates = 0
    for lane in lanes:
        order = list(lane)
        for _ in range(draw(st.integers(0, 6))):  # bounded reorderings
            i = rnd.randrange(len(order))
            moved = order[:i] + order[i + 1:]
            moved.insert(min(len(moved), i + rnd.randint(1, 2)), order[i])
            if valid(moved, bound_ms(rules), by_seq=with_seq):
                order = moved
        for _ in range(draw(st.integers(0, 4))):  # re-sent events, same or new event id
            i = rnd.randrange(len(order))
            if order[i].kind is EventKind.STATUS:
                continue
            copy = order[i] if rnd.random() < 0.5 else replace(order[i],
                                                               event_id=f"retry-{i}")
            order.insert(min(len(order), i + rnd.randint(1, 3)), copy)
            duplicates += 1
        messy_lanes.append(order)
    return MessyLog(rules, clean, interleave(rnd, messy_lanes), duplicates)


def interleave(rnd: random.Random, lanes: list[list[MeterEvent]]) -> list[MeterEvent]:
    lanes = [list(lane) for lane in lanes if lane]
    out: list[MeterEvent] = []
    while lanes:
        lane = rnd.choice(lanes)
        out.append(lane.pop(0))
        if not lane:
            lanes.remove(lane)
    return out


def positioned(events: list[MeterEvent]) -> list[tuple[MeterEvent, EventPosition]]:
    """One partition; runs of up to three events share a message (index > 0)."""
    rows, offset, index = [], 10, 0
    for n, e in enumerate(events):
        rows.append((e, EventPosition(0, offset, index)))
        index += 1
        if index == 1 + n % 3:
            offset, index = offset + 1, 0
    return rows


def stitcher(rules: StitchRules, template: str = TEMPLATES[0]) -> SessionStitcher:
    return SessionStitcher(StitcherConfig(1, IdTemplate.parse(template), TARIFF, rules))


def finish(run: SessionStitcher, outcome: StitchOutcome,
           rules: StitchRules) -> list[ChargingSession]:
    """Everything completed, after the window has passed every held event."""
    done = list(outcome.completed)
    for state in outcome.states.values():
        done += run.expire(state, state.newest_ms + bound_ms(rules), state.last_receive_ms)
    return done


def run_log(rules: StitchRules, events: list[MeterEvent],
            template: str = TEMPLATES[0]) -> tuple[list[ChargingSession], StitchOutcome]:
    run = stitcher(rules, template)
    outcome = continue_log(run, {}, positioned(events))
    return finish(run, outcome, rules), outcome


def without_ids(sessions: list[ChargingSession]) -> list[ChargingSession]:
    return sorted((replace(s, session_id="") for s in sessions),
                  key=lambda s: (s.station_id, s.connector_id, s.start_ms, s.version))


@settings(max_examples=120, deadline=None)
@given(messy_logs())
def test_duplicates_and_bounded_reordering_give_the_clean_sessions(log: MessyLog) -> None:
    clean, clean_outcome = run_log(log.rules, log.clean)
    assert clean_outcome.rejected == () and clean_outcome.duplicates == 0
    assert all(s.flags == () and s.version == 1 for s in clean)
    assert len(clean) == sum(e.kind is EventKind.ENDED for e in log.clean)
    messy, outcome = run_log(log.rules, log.messy)
    assert outcome.rejected == ()
    assert outcome.duplicates == log.duplicates
    assert without_ids(messy) == without_ids(clean)
    assert len({s.session_id for s in messy}) == len(messy)


@settings(max_examples=80, deadline=None)
@given(messy_logs(), st.sampled_from(TEMPLATES), st.data())
def test_ids_survive_a_restart_anywhere_and_a_replay(
    log: MessyLog, template: str, data: st.DataObject
) -> None:
    events = positioned(log.messy)
    whole, whole_outcome = run_log(log.rules, log.messy, template)
    replay, replay_outcome = run_log(log.rules, log.messy, template)  # fresh state
    assert replay == whole
    cut = data.draw(st.integers(0, len(events)), label="state saved after")
    committed = data.draw(st.integers(0, cut), label="offsets committed up to")
    first = stitcher(log.rules, template)
    before = continue_log(first, {}, events[:cut])
    restored = {k: StationState.from_bytes(v.to_bytes()) for k, v in before.states.items()}
    second = stitcher(log.rules, template)
    after = continue_log(second, restored, events[committed:])
    assert list(before.completed) + finish(second, after, log.rules) == whole
    assert {k: v.to_bytes() for k, v in after.states.items()} == \
        {k: v.to_bytes() for k, v in whole_outcome.states.items()}
    assert replay_outcome.duplicates == whole_outcome.duplicates


@settings(max_examples=60, deadline=None)
@given(messy_logs())
def test_state_per_open_session_stays_small(log: MessyLog) -> None:
    run = stitcher(log.rules)
    states: dict[str, StationState] = {}
    for event, position in positioned(log.messy):
        state = states[event.station_id] = run.apply(states.get(event.station_id), event,
                                                      position).state
        for cid, conn in state.connectors.items():
            if conn.session is not None or conn.held:
                assert len(orjson.dumps(_pack_connector(cid, conn))) < 2048
