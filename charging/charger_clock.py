"""The charger's clock: whether an event's own time can be believed.

One judgement for everything that dates an event (sessions, connector status): the
stitcher calls `ChargerClock.judge` once per event in arrival order and reports the time it
used (`StitchResult.time_ms`), which connector status takes as is (charging/status.py).
The rule and why it is shaped so are in charging/rules.py: implausible is before
`clock_epoch_ms`, ahead of the receive time by more than `skew_ahead_ms`, or out of line
with the charger's own transaction messages by more than `clock_jump_ms` (a jump back),
never merely old. The line lives in station state (`clock_ms`, `clock_offset_ms`,
`skew_offset_ms`), so a restart or a replay judges the same log the same way.
"""

from __future__ import annotations

from charging.rules import StitchRules
from charging.state import StationState
from schemas.records import EventKind, MeterEvent

BEFORE_EPOCH = "before_epoch"
AHEAD_OF_RECEIVE = "ahead_of_receive"
JUMPED_BACK = "jumped_back"


class ChargerClock:
    """Judges charger times against the station's line; holds configuration only."""

    __slots__ = ("ahead_ms", "epoch_ms", "jump_ms")

    def __init__(self, rules: StitchRules) -> None:
        self.epoch_ms = rules.clock_epoch_ms
        self.ahead_ms = rules.skew_ahead_ms
        self.jump_ms = rules.clock_jump_ms

    def in_line(self, state: StationState, t: int, received: int) -> bool:
        """Whether a transaction event at charger time `t` is plainly honest (the common
        case, judged without moving the line; `judge` moves it)."""
        return (state.skew_offset_ms is None and self.epoch_ms <= t <= received + self.ahead_ms
                and t >= state.clock_ms - self.jump_ms)

    def judge(self, state: StationState, event: MeterEvent) -> tuple[int, str | None]:
        """The time to order and date the event by, and which rule found the charger's
        own time implausible (None: it is used). Advances the station's line: call it once
        per event, in arrival order."""
        t, received = event.event_time_ms, event.receive_time_ms
        if t < self.epoch_ms:
            return received, BEFORE_EPOCH
        if t - received > self.ahead_ms:
            return received, AHEAD_OF_RECEIVE
        offset = received - t
        jumped = state.skew_offset_ms
        if jumped is not None:
            if abs(offset - jumped) < abs(offset - state.clock_offset_ms):
                state.skew_offset_ms = offset
                return received, JUMPED_BACK
            state.skew_offset_ms = None  # back in line: the episode is over
        if event.kind is EventKind.STATUS:
            return t, None  # not queued in order by the charger: judged, never the line
        if t < state.clock_ms - self.jump_ms:
            state.skew_offset_ms = offset
            return received, JUMPED_BACK
        self.advance(state, t, received)
        return t, None

    @staticmethod
    def advance(state: StationState, t: int, received: int) -> None:
        """Move the line to an in-line transaction event."""
        if t > state.clock_ms:
            state.clock_ms = t
            state.clock_offset_ms = received - t
