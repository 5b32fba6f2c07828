"""Reused transaction ids as a property (issue 15 §1): chargers whose transaction ids come
from a pool of three, with duplicates and bounded reorderings, lose no session. Every true
session is present once, with its own ID, its times and its energy, whatever ids it shares
with the sessions before it; the expected values come from the generated plan, not from
the stitcher."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charging.rules import StitchRules
from charging.state import StationState
from charging.stitcher import continue_log
from schemas.records import EventKind, MeterEvent, SessionState
from tests.unit.test_messy_properties import (
    SEQ_RULES,
    T0,
    TIME_RULES,
    S,
    bound_ms,
    finish,
    interleave,
    positioned,
    stitcher,
)

pytestmark = pytest.mark.unit

POOL = ("TX-A", "TX-B", "TX-C")


@dataclass(frozen=True)
class TrueSession:
    station_id: str
    connector_id: int
    transaction_id: str
    start_ms: int
    end_ms: int
    energy_wh: float
    reused: bool
    """Its id is the id of one of the two sessions before it on the connector (the ones the
    stitcher remembers with the default rules)."""


@dataclass(frozen=True)
class ReusedLog:
    rules: StitchRules
    truth: list[TrueSession]
    events: list[MeterEvent]
    duplicates: int


def one_session(draw: st.DrawFn, where: tuple[str, int, int], tx: str, t: int,
                register: float, with_seq: bool) -> list[MeterEvent]:
    """A start, up to four readings, a stop and maybe a status, from charger time `t` and
    register `register`; numbers start at 0 again, as a charger whose counter reset sends."""
    station, connector, index = where
    out: list[MeterEvent] = []

    def add(kind: EventKind, tx: str | None, seq: int | None, **values: object) -> None:
        lag = draw(st.integers(50, 2_000))
        out.append(MeterEvent(f"{station}/{connector}/{index}/{len(out)}", station, connector,
                              kind, t, t + lag, tx, seq if with_seq else None,
                              **values))  # type: ignore[arg-type]

    add(EventKind.STARTED, tx, 0, id_tag="TAG", energy_wh=register)
    n = draw(st.integers(0, 4))
    for j in range(1, n + 1):
        dt = draw(st.integers(30, 90 if with_seq else 200)) * S
        de = draw(st.integers(0, 400))
        t += dt
        register += de
        add(EventKind.METER, tx, j, energy_wh=register, power_w=de * 3_600_000 / dt)
    t += draw(st.integers(1, 60)) * S
    add(EventKind.ENDED, tx, n + 1, energy_wh=register, stop_reason="EVDisconnected")
    if draw(st.booleans()):
        t += S
        add(EventKind.STATUS, None, None, status="Available")
    return out


def connector_sessions(draw: st.DrawFn, station: str, connector: int, with_seq: bool
                       ) -> tuple[list[list[MeterEvent]], list[TrueSession]]:
    """Sessions on one connector (one list of events each), ids drawn from `POOL`."""
    t = T0 + draw(st.integers(0, 3_600)) * S
    register = float(draw(st.integers(0, 10**7)))
    sessions: list[list[MeterEvent]] = []
    truth: list[TrueSession] = []
    for index in range(draw(st.integers(1, 4))):
        tx = draw(st.sampled_from(POOL))
        events = one_session(draw, (station, connector, index), tx, t, register, with_seq)
        stop = next(e for e in events if e.kind is EventKind.ENDED)
        assert stop.energy_wh is not None
        truth.append(TrueSession(station, connector, tx, t, stop.event_time_ms,
                                 stop.energy_wh - register,
                                 tx in [s[0].transaction_id for s in sessions[-2:]]))
        sessions.append(events)
        t = events[-1].event_time_ms + draw(st.sampled_from([5, 30, 200, 7_200])) * S
        register = stop.energy_wh
    return sessions, truth


def bounded(order: list[MeterEvent], session_of: dict[str, int], bound: int,
            by_seq: bool) -> bool:
    """Bounded reordering (tests/unit/test_messy_properties.py `valid`), with sessions told
    apart by the plan, not by transaction id: two sessions may share one."""
    for i, e in enumerate(order):
        newer = [f for f in order[:i] if f.event_time_ms > e.event_time_ms]
        if len(newer) > 2 or any(f.event_time_ms >= e.event_time_ms + bound for f in newer):
            return False
        if by_seq and any(session_of[f.event_id] != session_of[e.event_id] for f in newer):
            return False
    return True


@st.composite
def reused_logs(draw: st.DrawFn) -> ReusedLog:
    with_seq = draw(st.booleans())
    rules = SEQ_RULES if with_seq else TIME_RULES
    rnd = random.Random(draw(st.integers(0, 2**32)))
    lanes: list[list[MeterEvent]] = []
    truth: list[TrueSession] = []
    session_of: dict[str, int] = {}
    for s in range(draw(st.integers(1, 2))):
        for connector in range(1, draw(st.integers(1, 2)) + 1):
            sessions, true = connector_sessions(draw, f"CS-{s}", connector, with_seq)
            for events in sessions:
                session_of.update((e.event_id, len(session_of)) for e in events)
            lanes.append([e for events in sessions for e in events])
            truth += true
    messy: list[list[MeterEvent]] = []
    duplicates = 0
    for lane in lanes:
        order = list(lane)
        for _ in range(draw(st.integers(0, 6))):
            i = rnd.randrange(len(order))
            moved = order[:i] + order[i + 1:]
            moved.insert(min(len(moved), i + rnd.randint(1, 2)), order[i])
            if bounded(moved, session_of, bound_ms(rules), with_seq):
                order = moved
        for _ in range(draw(st.integers(0, 4))):
            i = rnd.randrange(len(order))
            if order[i].kind is EventKind.STATUS:
                continue
            copy = order[i] if rnd.random() < 0.5 else replace(order[i], event_id=f"retry-{i}")
            order.insert(min(len(order), i + rnd.randint(1, 3)), copy)
            duplicates += 1
        messy.append(order)
    return ReusedLog(rules, truth, interleave(rnd, messy), duplicates)


@settings(max_examples=150, deadline=None)
@given(reused_logs())
def test_every_true_session_is_present_with_its_energy_whatever_ids_it_reuses(
    log: ReusedLog,
) -> None:
    run = stitcher(log.rules)
    outcome = continue_log(run, {}, positioned(log.events))
    done = finish(run, outcome, log.rules)
    assert outcome.rejected == () and outcome.duplicates == log.duplicates
    latest = {s.session_id: s for s in sorted(done, key=lambda s: s.version)}
    have = {(s.station_id, s.connector_id, s.start_ms): s for s in latest.values()}
    assert len(have) == len(latest) == len(log.truth), "a session was lost or split"
    for true in log.truth:
        got = have[(true.station_id, true.connector_id, true.start_ms)]
        assert (got.transaction_id, got.end_ms, got.energy_wh, got.state, got.version,
                got.flags) == (true.transaction_id, true.end_ms, true.energy_wh,
                               SessionState.COMPLETED, 1, ()), (true, got)


@settings(max_examples=100, deadline=None)
@given(reused_logs())
def test_a_reused_id_is_reported_once_per_new_session_that_reuses_it(log: ReusedLog) -> None:
    """A later start on every connector releases what the reorder window holds, so every
    observation comes out of `apply` (`expire` returns sessions only)."""
    run = stitcher(log.rules)
    states: dict[str, StationState] = {}
    reused: list[tuple[str, int, int]] = []
    last = max(e.event_time_ms for e in log.events)
    closing = [MeterEvent(f"close/{t.station_id}/{t.connector_id}", t.station_id,
                          t.connector_id, EventKind.STARTED, last + 3_600 * S,
                          last + 3_600 * S, "LATER") for t in log.truth]
    for event, position in positioned(log.events + list(dict.fromkeys(closing))):
        result = run.apply(states.get(event.station_id), event, position)
        states[event.station_id] = result.state
        reused += [(event.station_id, o.connector_id, o.time_ms) for o in result.observations
                   if o.kind == "transaction_id_reused"]
    assert sorted(reused) == sorted((t.station_id, t.connector_id, t.start_ms)
                                    for t in log.truth if t.reused)
