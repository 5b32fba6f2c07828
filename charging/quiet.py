"""Quiet sessions: when an open session counts as stuck, and the clocks that say so.

A session's stop can be lost (a charger offline, a gateway dropping messages), and on-call
wants to know long before inactivity closes it. Two clocks measure the silence, and the
longer reading wins: event time (the caller's partition clock, which other stations on the
partition advance) and wall time since the worker last applied an event of the station
(the only clock that moves for a station alone on a quiet partition). Wall time is always
the worker's own, taken when it applied the events and passed in, never compared with
event or receive times, so a replay of old days is not taken for silence.
"""

from __future__ import annotations

from charging.rules import Observation, StitchRules
from charging.state import OpenSession, StationState

STUCK_SESSION = "stuck_session"


def wall_quiet(now_wall_ms: int, heard_wall_ms: int | None) -> int:
    """Wall time since the station was last heard (0 when the caller does not say)."""
    return 0 if heard_wall_ms is None else now_wall_ms - heard_wall_ms


def stuck_after_ms(session: OpenSession, rules: StitchRules) -> int:
    """How long this session may be quiet: `stuck_after_ms`, or `stuck_intervals` of its own
    mean time between events when longer (a charger that reports every 15 minutes is not
    stuck after 16)."""
    after = rules.stuck_after_ms
    if session.event_count > 1:
        interval = (session.end_ms - session.start_ms) / (session.event_count - 1)
        after = max(after, int(rules.stuck_intervals * interval))
    return after


def stuck_sessions(state: StationState, rules: StitchRules, now_event_ms: int,
                   wall_quiet_ms: int) -> list[Observation]:
    """`stuck_session` observations for the station's open sessions that are quiet past
    their stuck time but not yet past inactivity (those close, and the close reports them).

    The observation is timed at the session's last event: every timer round that finds it
    still quiet repeats one finding, which the caller reports once.
    """
    if wall_quiet_ms > rules.inactivity_wall_ms:
        return []
    now = max(now_event_ms, state.newest_ms)
    found: list[Observation] = []
    for cid, conn in state.connectors.items():
        session = conn.session
        if session is None or now - session.end_ms > rules.inactivity_ms:
            continue
        event_quiet = now - session.end_ms
        quiet = max(event_quiet, wall_quiet_ms)
        after = stuck_after_ms(session, rules)
        if quiet > after:
            found.append(Observation(
                STUCK_SESSION, cid, session.end_ms, session.session_id,
                (("quiet_ms", str(quiet)), ("stuck_after_ms", str(after)),
                 ("clock", "wall" if wall_quiet_ms > event_quiet else "event"))))
    return found
