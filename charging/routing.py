"""Routing one event, in application order, to its session: open, join, correct, or refuse.

The stitcher (charging/stitcher.py) decides *when* an event is applied (the reorder
buffer); this decides *where*: which session it belongs to (charging/reorder.py `claim`:
transaction id and time span together, since chargers reuse ids), whether it opens a new
session, displaces an open one, corrects a recently closed one (version + 1), or cannot be
used. Flags and observations are named in charging/rules.py.
"""

from __future__ import annotations

from charging.readings import ReadingFolder
from charging.reorder import claim, previous_with, recent_by_time
from charging.rules import (
    CLOCK_SKEW,
    LATE_EVENT,
    LATE_STOP,
    MISSING_START,
    MISSING_STOP,
    OVERLAPPED,
    TRANSACTION_ID_REUSED,
    Observation,
    StitchRules,
)
from charging.sessions import SessionRecords
from charging.state import ClosedSession, ConnectorState, OpenSession, StationState
from schemas.records import ChargingSession, EventKind, EventPosition, MeterEvent, SessionState

_STARTED, _ENDED = EventKind.STARTED, EventKind.ENDED
Owner = tuple[OpenSession, ClosedSession | None]
"""A session an event belongs to: the open one (None beside it) or a closed one."""


class Outputs:
    """What one call produces, collected while events are routed."""

    __slots__ = ("completed", "observations", "rejected", "updates")

    def __init__(self) -> None:
        self.updates: list[int] = []
        self.completed: list[ChargingSession] = []
        self.observations: list[Observation] = []
        self.rejected: str | None = None


class EventRouter:
    """Applies one event, in application order, to a connector's sessions; holds
    configuration only."""

    def __init__(self, folder: ReadingFolder, records: SessionRecords,
                 rules: StitchRules) -> None:
        self._folder = folder
        self._records = records
        self._inactivity = rules.inactivity_ms
        self._horizon = rules.late_horizon_ms

    def route(self, state: StationState, conn: ConnectorState, event: MeterEvent,
              position: EventPosition, t: int, out: Outputs, current: bool) -> None:
        """Apply `event` at effective time `t`; `current`: it is the event being applied now
        (not one released from the buffer), so an unusable one is rejected, not observed."""
        if event.kind is _STARTED:
            self._start(state, conn, event, position, t, out)
            return
        found = self._owner(conn, event, t)
        if found is not None and found[1] is not None:
            self._correct(state, conn, found[1], event, t, out)
        elif found is not None:
            self._join(state, conn, found[0], event, t, out)
        else:
            previous = previous_with(conn, event.transaction_id)
            if conn.session is not None:
                out.completed.append(self._records.displace(state, event.connector_id, conn,
                                                            MISSING_STOP))
            if event.kind is _ENDED:
                self._unusable(event, t, out, current)
            else:
                self._open(state, conn, event, position, t, out, (MISSING_START,), previous)

    def _owner(self, conn: ConnectorState, event: MeterEvent, t: int) -> Owner | None:
        """The session a reading or stop belongs to: by transaction id and time span where
        both have an id, else the open session unless idle past the inactivity period,
        else a closed session whose span holds it."""
        since = conn.newest_ms - self._horizon
        session = conn.session
        if event.transaction_id is not None:
            found = claim(conn, event, t, since)
            if found is not None:
                return found
            if session is None or session.transaction_id is not None:
                return None
        if session is not None and t - session.end_ms <= self._inactivity:
            return session, None
        if event.transaction_id is not None:
            return None
        closed = recent_by_time(conn, event, t, since)
        return None if closed is None else (closed.session, closed)

    def _start(self, state: StationState, conn: ConnectorState, event: MeterEvent,
               position: EventPosition, t: int, out: Outputs) -> None:
        """A start opens a session unless a session's span holds it (then it is that
        session's own start, arriving late); it displaces the open session."""
        since = conn.newest_ms - self._horizon
        tx = event.transaction_id
        found = claim(conn, event, t, since) if tx is not None else None
        if found is not None and found[1] is None:
            self._late(found[0], event, t, out)  # its start, after its readings
            out.updates.append(event.connector_id)
            return
        if found is not None or (tx is None and recent_by_time(conn, event, t, since)):
            out.observations.append(late_observation(event, t, None))  # a late copy
            return
        previous = previous_with(conn, tx)
        session = conn.session
        if session is not None:
            out.completed.append(self._records.displace(
                state, event.connector_id, conn,
                MISSING_STOP if t - session.end_ms > self._inactivity else OVERLAPPED))
        self._open(state, conn, event, position, t, out, (), previous)

    def _open(self, state: StationState, conn: ConnectorState, event: MeterEvent,
              position: EventPosition, t: int, out: Outputs, flags: tuple[str, ...],
              previous: str | None) -> None:
        """A new session; `previous`: ID of a session on the connector with the same
        transaction id (the new one reuses it)."""
        session = conn.session = self._records.open(state, event, position, t, flags)
        cid = event.connector_id
        if t != event.event_time_ms:
            session.flags += (CLOCK_SKEW,)
        if previous is not None:
            out.observations.append(Observation(
                TRANSACTION_ID_REUSED, cid, t, session.session_id,
                (("transaction_id", str(event.transaction_id)),
                 ("previous_session_id", previous))))
        out.updates.append(cid)

    def _join(self, state: StationState, conn: ConnectorState, session: OpenSession,
              event: MeterEvent, t: int, out: Outputs) -> None:
        """A reading or stop of the open session; a stop closes it."""
        seq, top = event.seq, session.seq_max
        if (seq is not None and top is not None and seq <= top) or (seq is None
                                                                    and t < session.end_ms):
            self._late(session, event, t, out)
        else:  # in order by seq, even if the charger's clock says otherwise
            self._folder.absorb(session, event, max(t, session.reading_ms), out.observations)
        if t != event.event_time_ms and CLOCK_SKEW not in session.flags:
            session.flags += (CLOCK_SKEW,)
        cid = event.connector_id
        if event.kind is _ENDED:
            conn.session = None
            out.completed.append(self._records.close(
                state, cid, conn, session, SessionState.COMPLETED, event.stop_reason,
                session.end_ms))
        else:
            out.updates.append(cid)

    def _unusable(self, event: MeterEvent, t: int, out: Outputs, current: bool) -> None:
        tx = event.transaction_id
        reason = (f"stop without an open session on {event.station_id}/{event.connector_id} "
                  f"({f'transaction {tx}' if tx is not None else 'no transaction id'})")
        if current:
            out.rejected = reason
        else:
            out.observations.append(Observation(
                "unusable_held_event", event.connector_id, t, None,
                (("event_id", event.event_id), ("reason", reason))))

    def _late(self, session: OpenSession, event: MeterEvent, t: int, out: Outputs) -> None:
        self._folder.fold_late(session, event)
        if LATE_EVENT not in session.flags:
            session.flags += (LATE_EVENT,)
        out.observations.append(late_observation(event, t, session.session_id))

    def _correct(self, state: StationState, conn: ConnectorState, closed: ClosedSession,
                 event: MeterEvent, t: int, out: Outputs) -> None:
        """A late event for a recently closed session: publish it again, version + 1."""
        session = closed.session
        incomplete = closed.final is SessionState.INCOMPLETE
        if event.kind is _ENDED and not incomplete:
            out.observations.append(late_observation(event, t, session.session_id))
            return  # a second, different stop of a completed session changes nothing
        if incomplete and t >= session.end_ms:
            self._folder.absorb(session, event, t, out.observations)
            closed.end_ms = session.end_ms
        else:
            self._late(session, event, t, out)
        if event.kind is _ENDED:
            session.flags = tuple(f for f in session.flags if f != MISSING_STOP) + (LATE_STOP,)
            closed.final = SessionState.COMPLETED
            closed.stop_reason = event.stop_reason
        closed.version += 1
        out.completed.append(self._records.build(
            state, event.connector_id, session, closed.final, closed.version,
            closed.stop_reason, closed.end_ms, session.flags))


def late_observation(event: MeterEvent, t: int, session_id: str | None) -> Observation:
    return Observation("late_event", event.connector_id, t, session_id,
                       (("event_id", event.event_id), ("kind", event.kind.value)))
