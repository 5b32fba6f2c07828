"""Reused transaction ids, rule by rule: a start after a closed session with the same id is a
new session; events go to the session whose time span holds them; duplicates by
transaction + sequence number count only within that session (issue 15 §1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from charging.rules import StitchRules
from charging.state import StationState
from schemas.records import ChargingSession, SessionState
from tests.unit.test_messy import ENDED, HOUR, METER, MIN, STARTED, T0, Run, charge, ev

pytestmark = pytest.mark.unit


def completed(run: Run, tx: str = "T1", t: int = T0) -> ChargingSession:
    """A session with a start, three readings (seq 1..3, 100 Wh each) and its stop."""
    last = charge(run, tx=tx, t=t)
    (done,) = run(ev(ENDED, last + MIN, transaction_id=tx, seq=4, energy_wh=10_300.0)
                  ).completed
    return done


def reuse_observations(run: Run, start: int = 0) -> list[str]:
    return [o for o in run.observations[start:] if o == "transaction_id_reused"]


def test_a_start_after_a_closed_session_with_the_same_id_opens_a_new_session() -> None:
    run = Run()
    old = completed(run)
    opened = run(ev(STARTED, T0 + HOUR, transaction_id="T1", seq=0, energy_wh=20_000.0))
    assert opened.updates == (1,) and not opened.duplicate
    (found,) = [o for o in opened.observations if o.kind == "transaction_id_reused"]
    new = run.running()
    assert found.session_id == new.session_id != old.session_id
    assert dict(found.values) == {"transaction_id": "T1", "previous_session_id": old.session_id}
    for i in (1, 2):  # the new session's own numbers start again: not duplicates of the old
        step = run(ev(METER, T0 + HOUR + i * MIN, transaction_id="T1", seq=i,
                      energy_wh=20_000.0 + 50 * i))
        assert not step.duplicate and step.updates == (1,)
    (done,) = run(ev(ENDED, T0 + HOUR + 3 * MIN, transaction_id="T1", seq=3,
                     energy_wh=20_150.0)).completed
    assert (done.session_id, done.start_ms, done.end_ms, done.energy_wh, done.version,
            done.flags) == (new.session_id, T0 + HOUR, T0 + HOUR + 3 * MIN, 150.0, 1, ())
    assert [s.session_id for s in run.completed] == [old.session_id, new.session_id]
    assert run.completed[0] == old  # never republished
    assert "late_event" not in run.observations


@pytest.mark.parametrize("at", [T0, T0 + 2 * MIN, T0 + 4 * MIN])
def test_a_start_inside_the_closed_sessions_span_is_a_late_copy(at: int) -> None:
    run = Run()
    old = completed(run)
    late = run(ev(STARTED, at, transaction_id="T1", energy_wh=10_000.0))
    assert late.updates == () and late.completed == () and not late.duplicate
    assert [o.kind for o in late.observations] == ["late_event"]
    assert run.state is not None and run.state.connectors[1].session is None
    assert run.completed == [old]


def test_a_start_with_the_old_sequence_number_inside_the_span_is_a_duplicate() -> None:
    run = Run()
    completed(run)
    again = run(replace(ev(STARTED, T0, transaction_id="T1", seq=0, energy_wh=10_000.0),
                        event_id="retry"))
    assert again.duplicate


def test_a_late_reading_of_the_old_session_corrects_only_the_old_session() -> None:
    run = Run()
    run(ev(STARTED, T0, transaction_id="T1", seq=0, energy_wh=0.0))
    run(ev(METER, T0 + 2 * MIN, transaction_id="T1", seq=2, energy_wh=200.0))
    run(ev(METER, T0 + 5 * MIN, transaction_id="T1", seq=3, energy_wh=300.0))  # seq 1: a gap
    (old,) = run(ev(ENDED, T0 + 6 * MIN, transaction_id="T1", seq=4, energy_wh=300.0)).completed
    run(ev(STARTED, T0 + HOUR, transaction_id="T1", seq=0, energy_wh=1_000.0))
    run(ev(METER, T0 + HOUR + MIN, transaction_id="T1", seq=1, energy_wh=1_090.0))
    late = run(ev(METER, T0 + MIN, transaction_id="T1", seq=1, energy_wh=90.0, power_w=9e3))
    assert not late.duplicate
    (fixed,) = late.completed
    assert (fixed.session_id, fixed.version, fixed.event_count, fixed.max_power_w) == \
        (old.session_id, 2, 5, 9e3)
    assert fixed.flags == ("late_event",) and fixed.energy_wh == 300.0
    new = run.running()
    assert (new.event_count, new.energy_wh, new.flags) == (2, 90.0, ())


def test_without_sequence_numbers_a_late_reading_goes_by_time_span() -> None:
    run = Run()
    run(ev(STARTED, T0, transaction_id="T1", energy_wh=0.0))
    run(ev(METER, T0 + MIN, transaction_id="T1", energy_wh=100.0))
    run(ev(METER, T0 + 3 * MIN, transaction_id="T1", energy_wh=300.0))
    (old,) = run(ev(ENDED, T0 + 4 * MIN, transaction_id="T1", energy_wh=300.0)).completed
    run(ev(STARTED, T0 + HOUR, transaction_id="T1", energy_wh=300.0))
    (fixed,) = run(ev(METER, T0 + 2 * MIN, transaction_id="T1", energy_wh=200.0)).completed
    assert (fixed.session_id, fixed.version) == (old.session_id, 2)
    run(ev(METER, T0 + HOUR + MIN, transaction_id="T1", energy_wh=340.0))
    (new,) = run(ev(ENDED, T0 + HOUR + 2 * MIN, transaction_id="T1", energy_wh=360.0)
                 ).completed
    assert (new.start_ms, new.energy_wh, new.event_count, new.version) == (T0 + HOUR, 60.0, 3, 1)


def test_retries_count_as_duplicates_of_the_session_whose_span_holds_them() -> None:
    run = Run()
    completed(run)
    run(ev(STARTED, T0 + HOUR, transaction_id="T1", seq=0, energy_wh=20_000.0))
    run(ev(METER, T0 + HOUR + MIN, transaction_id="T1", seq=1, energy_wh=20_050.0))
    retry_new = replace(ev(METER, T0 + HOUR + MIN, transaction_id="T1", seq=1,
                           energy_wh=20_050.0), event_id="retry-new")
    retry_old = replace(ev(METER, T0 + MIN, transaction_id="T1", seq=1, energy_wh=10_100.0),
                        event_id="retry-old")
    retry_stop = replace(ev(ENDED, T0 + 4 * MIN, transaction_id="T1", seq=4,
                            energy_wh=10_300.0), event_id="retry-stop")
    assert all(run(e).duplicate for e in (retry_new, retry_old, retry_stop))
    assert run.running().event_count == 2 and len(run.completed) == 1


def test_reuse_while_the_old_session_is_open_closes_it_and_its_late_stop_corrects_it() -> None:
    run = Run()
    last = charge(run)  # no stop yet: the charger rebooted and started counting again
    start = T0 + 30 * MIN
    held = run(ev(STARTED, start, transaction_id="T1", seq=0, energy_wh=20_000.0))
    assert held.completed == () and held.updates == ()  # waits for the old session's stop
    for i in (1, 2, 3):  # the new session's numbers: not duplicates of the open old one's
        assert not run(ev(METER, start + i * MIN, transaction_id="T1", seq=i,
                          energy_wh=20_000.0 + 10 * i)).duplicate
    (old,) = run.completed  # the gap window (120 s) passed: the new start displaced it
    assert (old.state, old.flags, old.end_ms) == (SessionState.INCOMPLETE, ("overlapped",), last)
    assert reuse_observations(run) == ["transaction_id_reused"]
    new = run.running()
    assert (new.start_ms, new.event_count, new.energy_wh) == (start, 4, 30.0)
    (fixed,) = run(ev(ENDED, last + MIN, transaction_id="T1", seq=4, energy_wh=10_350.0,
                      stop_reason="Local")).completed
    assert (fixed.session_id, fixed.version, fixed.state, fixed.energy_wh) == \
        (old.session_id, 2, SessionState.COMPLETED, 350.0)
    assert fixed.flags == ("overlapped", "late_stop")
    assert run.running() == new  # the late stop of the old session left the new one be


def test_a_reading_with_a_reused_id_after_a_completed_session_opens_a_new_one() -> None:
    """The new transaction's start was lost: its readings are not late events of the old."""
    run = Run()
    old = completed(run, t=T0)
    found = run(ev(METER, T0 + HOUR, transaction_id="T1", energy_wh=20_000.0))
    assert found.completed == () and found.updates == (1,)
    assert reuse_observations(run) == ["transaction_id_reused"]
    (new,) = run(ev(ENDED, T0 + HOUR + 5 * MIN, transaction_id="T1", energy_wh=20_400.0)
                 ).completed
    assert new.session_id != old.session_id and new.flags == ("missing_start",)
    assert (new.start_ms, new.energy_wh, new.version) == (T0 + HOUR, 400.0, 1)
    assert "late_event" not in run.observations


def test_a_stop_with_a_reused_id_outside_every_span_is_rejected_not_folded_in() -> None:
    run = Run()
    old = completed(run)
    stray = run(ev(ENDED, T0 + HOUR, transaction_id="T1", energy_wh=10_900.0))
    assert stray.rejected is not None and "stop without an open session" in stray.rejected
    assert run.completed == [old]


def test_a_start_of_a_session_opened_without_one_still_joins_it() -> None:
    run = Run()
    run(ev(METER, T0 + MIN, transaction_id="T1", energy_wh=100.0))
    own = run(ev(STARTED, T0, transaction_id="T1", energy_wh=0.0, id_tag="TAG"))
    assert own.updates == (1,) and reuse_observations(run) == []
    session = run.running()
    assert (session.flags, session.id_tag, session.event_count) == \
        (("missing_start", "late_event"), "TAG", 2)


def test_reuse_beyond_the_remembered_sessions_is_an_ordinary_new_session() -> None:
    run = Run(StitchRules(recent_sessions=1))
    completed(run, tx="T1")
    completed(run, tx="T2", t=T0 + HOUR)
    run(ev(STARTED, T0 + 2 * HOUR, transaction_id="T1", seq=0, energy_wh=30_000.0))
    assert reuse_observations(run) == []  # T1's session is no longer remembered
    assert run.running().start_ms == T0 + 2 * HOUR


def test_state_with_a_reused_id_survives_a_round_trip() -> None:
    run = Run()
    completed(run)
    run(ev(STARTED, T0 + HOUR, transaction_id="T1", seq=0, energy_wh=20_000.0))
    assert run.state is not None
    restored = StationState.from_bytes(run.state.to_bytes())
    assert restored == run.state
    run.state = restored
    assert not run(ev(METER, T0 + HOUR + MIN, transaction_id="T1", seq=1,
                      energy_wh=20_050.0)).duplicate
