"""Charger clocks judged by plausibility, not age (issue 15 §4): old but honest times are
kept, a clock before 2010 or ahead of the receive time is caught, and a clock that jumps
back out of line with the charger's own messages is caught until it is back in line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charging.charger_clock import ChargerClock
from charging.rules import Observation, StitchRules
from charging.state import StationState
from charging.stitcher import StitchResult
from schemas.records import ChargingSession, MeterEvent
from tests.unit.test_messy import ENDED, HOUR, METER, MIN, STARTED, STATUS, T0, Run, ev

pytestmark = pytest.mark.unit

DAY = 24 * HOUR
LATENCY = 300


def session(run: Run, t: int, tx: str, *, offset: int = 0, received: int | None = None,
            start_wh: float = 10_000.0) -> ChargingSession:
    """A start, two readings and a stop, a minute apart, at charger time `t`; received
    `offset` ms later than their charger times, or all at `received` (an upload)."""
    events = [(STARTED, 0), (METER, 1), (METER, 2), (ENDED, 3)]
    done: list[ChargingSession] = []
    for seq, (kind, minute) in enumerate(events):
        at = t + minute * MIN
        arrive = at + offset + LATENCY if received is None else received + seq
        done += run(ev(kind, at, received=arrive, transaction_id=tx, seq=seq,
                       energy_wh=start_wh + 100 * minute, power_w=6_000.0)).completed
    (closed,) = done
    return closed


def skew_rules(run: Run) -> list[str]:
    return [dict(o.values)["rule"] for o in run.observations_full if o.kind == "clock_skew"]


class ClockRun(Run):
    """A Run that also keeps the observations themselves (their evidence)."""

    def __init__(self, rules: StitchRules | None = None) -> None:
        super().__init__(rules)
        self.observations_full: list[Observation] = []

    def __call__(self, event: MeterEvent) -> StitchResult:
        result = super().__call__(event)
        self.observations_full += result.observations
        return result


def test_a_20_day_old_transaction_uploaded_now_keeps_its_times() -> None:
    run = ClockRun()
    old = T0 - 20 * DAY
    done = session(run, old, "T1", received=T0)
    assert (done.start_ms, done.end_ms, done.energy_wh, done.flags) == \
        (old, old + 3 * MIN, 300.0, ())
    assert skew_rules(run) == []


def test_an_offline_upload_after_a_status_sent_on_reconnect_keeps_its_times() -> None:
    """A charger heard 21 days ago reconnects: a status now, then its queued transaction
    from 20 days ago, then live traffic. Its transaction messages continue forward from its
    last known time; the newer status does not count against them."""
    run = ClockRun()
    before = session(run, T0 - 21 * DAY, "T1")
    run(ev(STATUS, T0, received=T0 + LATENCY, status="Available"))
    uploaded = session(run, T0 - 20 * DAY, "T2", received=T0 + 1_000, start_wh=10_300.0)
    live = session(run, T0 + 10 * MIN, "T3", start_wh=10_600.0)
    assert [(s.start_ms, s.flags) for s in (before, uploaded, live)] == [
        (T0 - 21 * DAY, ()), (T0 - 20 * DAY, ()), (T0 + 10 * MIN, ())]
    assert skew_rules(run) == []


def test_a_clock_reset_to_1970_is_caught_whatever_came_before() -> None:
    run = ClockRun()
    session(run, T0, "T1")
    done = session(run, 3_600_000, "T2", received=T0 + HOUR)  # 1970-01-01T01:00Z
    assert (done.start_ms, done.end_ms, done.flags) == (T0 + HOUR, T0 + HOUR + 3, ("clock_skew",))
    assert set(skew_rules(run)) == {"before_epoch"}


def test_a_clock_ahead_of_the_receive_time_is_caught() -> None:
    run = ClockRun()
    done = session(run, T0 + 3 * HOUR, "T1", offset=-3 * HOUR)
    assert (done.start_ms, done.flags) == (T0 + LATENCY, ("clock_skew",))
    assert set(skew_rules(run)) == {"ahead_of_receive"}


def test_a_clock_that_jumps_back_stays_caught_until_it_is_back_in_line() -> None:
    """Live at T0; the clock then jumps back 30 hours (a reboot to a stale RTC, after 2010).
    Later sessions stay judged skew by their offset, even once their times pass the
    charger's old line minus a day; after a time sync its times are used again."""
    run = ClockRun()
    session(run, T0, "T1")
    jump = 30 * HOUR
    first = session(run, T0 + HOUR - jump, "T2", offset=jump, start_wh=10_300.0)
    later = session(run, T0 + 8 * HOUR - jump, "T3", offset=jump, start_wh=10_600.0)
    assert T0 + 8 * HOUR - jump > T0 - DAY  # in line by its time alone: caught by its offset
    synced = session(run, T0 + 9 * HOUR, "T4", start_wh=10_900.0)
    assert [(s.start_ms, s.flags) for s in (first, later, synced)] == [
        (T0 + HOUR + LATENCY, ("clock_skew",)), (T0 + 8 * HOUR + LATENCY, ("clock_skew",)),
        (T0 + 9 * HOUR, ())]
    assert set(skew_rules(run)) == {"jumped_back"} and len(skew_rules(run)) == 8
    assert run.state is not None and run.state.skew_offset_ms is None


def test_a_status_during_a_jump_is_dated_by_receive_time_too() -> None:
    run = ClockRun()
    session(run, T0, "T1")
    session(run, T0 + HOUR - 2 * DAY, "T2", offset=2 * DAY, start_wh=10_300.0)
    status = run(ev(STATUS, T0 + 2 * HOUR - 2 * DAY, received=T0 + 2 * HOUR,
                    status="Faulted"))
    assert status.time_ms == T0 + 2 * HOUR


def test_a_reading_hours_late_is_a_late_event_not_a_clock_jump() -> None:
    run = ClockRun()
    run(ev(STARTED, T0, transaction_id="T1", seq=0, energy_wh=0.0))
    run(ev(METER, T0 + 2 * MIN, transaction_id="T1", seq=2, energy_wh=200.0))
    run(ev(METER, T0 + 8 * HOUR, transaction_id="T1", seq=3, energy_wh=300.0))
    late = run(ev(METER, T0 + MIN, received=T0 + 8 * HOUR + MIN, transaction_id="T1", seq=1,
                  energy_wh=100.0))
    assert late.time_ms == T0 + MIN and "late_event" in run.observations
    assert skew_rules(run) == []


def test_a_jump_back_smaller_than_clock_jump_ms_is_kept_and_a_larger_one_is_not() -> None:
    for jump, skewed in ((20 * HOUR, False), (26 * HOUR, True)):
        run = ClockRun()
        session(run, T0, "T1")
        done = session(run, T0 + HOUR - jump, "T2", offset=jump, start_wh=10_300.0)
        assert (done.flags == ("clock_skew",)) is skewed, jump


def test_a_charger_wrong_from_its_first_message_after_2010_keeps_its_times() -> None:
    """Documented limit: with nothing to be out of line with, it looks like an upload."""
    run = ClockRun()
    done = session(run, T0 - 400 * DAY, "T1", offset=400 * DAY)
    assert done.start_ms == T0 - 400 * DAY and done.flags == ()


def test_the_clock_state_survives_a_round_trip() -> None:
    run = ClockRun()
    session(run, T0, "T1")
    session(run, T0 + HOUR - 2 * DAY, "T2", offset=2 * DAY, start_wh=10_300.0)
    assert run.state is not None and run.state.skew_offset_ms is not None
    assert StationState.from_bytes(run.state.to_bytes()) == run.state


def test_the_epoch_and_the_jump_are_settings() -> None:
    run = ClockRun(StitchRules(clock_epoch_ms=T0 - DAY, clock_jump_ms=HOUR))
    done = session(run, T0 - 2 * DAY, "T1", offset=2 * DAY)
    assert done.flags == ("clock_skew",)  # before this epoch
    session(run, T0, "T2", start_wh=10_300.0)
    jumped = session(run, T0 + HOUR - 2 * HOUR, "T3", offset=2 * HOUR, start_wh=10_600.0)
    assert jumped.flags == ("clock_skew",)


_CLOCK = ChargerClock(StitchRules())


@settings(max_examples=300, deadline=None)
@given(line=st.none() | st.integers(-3 * DAY, DAY), offset=st.integers(-HOUR, 30 * DAY),
       skew=st.none() | st.integers(-HOUR, 40 * DAY), at=st.integers(-40 * DAY, 2 * DAY),
       lag=st.integers(-HOUR, 60 * DAY))
def test_the_hot_paths_check_agrees_with_the_judgement(line: int | None, offset: int,
                                                       skew: int | None, at: int,
                                                       lag: int) -> None:
    """`in_line` (the stitcher's fast check) never passes what `judge` would not keep."""
    clock_ms, t = -1 if line is None else T0 + line, T0 + at
    state = StationState("CS-1", clock_ms=clock_ms, clock_offset_ms=offset,
                         skew_offset_ms=skew)
    if _CLOCK.in_line(state, t, t + lag):
        assert _CLOCK.judge(state, ev(METER, t, received=t + lag, transaction_id="T1")) == \
            (t, None)
        assert state.clock_ms == max(clock_ms, t)
