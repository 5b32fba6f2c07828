"""Ordering and membership: the reorder buffer, duplicates, and which session an event is for.

Membership by transaction id is membership by id *and* time (`claim`): chargers reuse
transaction ids, so an event joins the session with its id whose time span holds it, and a
start after every such span is a new session.

An event is held (with its log position, so IDs stay fixed by the log) while an earlier
one may still arrive: across a gap in sequence numbers, or within the reorder window of
event time (`charging.rules.StitchRules`). Held events are part of station state, so
they must serialize compactly: `pack` drops the station id (the state's key) and trailing
empty fields.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charging.rules import MISSING_START
from schemas.records import EventKind, EventPosition, MeterEvent, SessionState

if TYPE_CHECKING:
    from charging.state import ClosedSession, ConnectorState, OpenSession

KIND_RANK = {EventKind.STARTED: 0, EventKind.METER: 1, EventKind.ENDED: 2, EventKind.STATUS: 3}
"""Order of kinds at equal time: a start before readings before a stop."""
_KINDS = tuple(KIND_RANK)


@dataclass(frozen=True, slots=True)
class Held:
    event: MeterEvent
    position: EventPosition
    time_ms: int
    """Effective time: event time, or receive time when the charger clock is skewed."""

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        seq = self.event.seq
        return (self.time_ms, KIND_RANK[self.event.kind], -1 if seq is None else seq,
                self.position.offset, self.position.index)

    def __lt__(self, other: Held) -> bool:
        return self.key < other.key

    def pack(self) -> list[Any]:
        e, p = self.event, self.position
        row: list[Any] = [p.partition, p.offset, p.index, self.time_ms, e.event_id,
                          KIND_RANK[e.kind], e.event_time_ms, e.receive_time_ms,
                          e.transaction_id, e.seq, e.id_tag, e.vehicle_id, e.energy_wh,
                          e.power_w, e.soc_pct, e.current_a, e.voltage_v, e.status,
                          e.error_code, e.stop_reason]
        while row[-1] is None:
            row.pop()
        return row

    @classmethod
    def unpack(cls, row: list[Any], station_id: str, connector_id: int) -> Held:
        row = row + [None] * (20 - len(row))
        partition, offset, index, time_ms, event_id, kind, t, r, *rest = row
        event = MeterEvent(event_id, station_id, connector_id, _KINDS[kind], t, r, *rest)
        return cls(event, EventPosition(partition, offset, index), time_ms)


def hold(buffer: list[Held], held: Held) -> None:
    """Insert in application order."""
    insort(buffer, held)


def ahead(conn: ConnectorState, event: MeterEvent, t: int) -> bool:
    """Whether an earlier event of its session is still missing (by sequence number)."""
    seq = event.seq
    if seq is None:
        return False
    session, tx = conn.session, event.transaction_id
    if session is not None and (tx is None or session.transaction_id is None):
        return session.seq_max is not None and seq > session.seq_max + 1
    found = claim(conn, event, t) if tx is not None else None
    if found is not None:
        top = found[0].seq_max
        return top is not None and seq > top + 1
    # another transaction while one awaits its stop, or a new one without its start
    return session is not None or (seq > 0 and event.kind is not EventKind.STARTED)


def claim(conn: ConnectorState, event: MeterEvent, t: int,
          since_ms: int = -1) -> tuple[OpenSession, ClosedSession | None] | None:
    """The session on the connector that an event with a transaction id belongs to.

    Chargers reuse transaction ids (a counter reset by a firmware update or a factory
    reset, recycled 2.0.1 ids, a CSMS migration), so the id only names the candidates: the
    open session and the recently closed ones with that id (closed ones that ended before
    `since_ms` excepted). The event's time `t` picks among them:

    - the open session takes what comes at or after its start; a start only up to its
      latest event (a start after it is a new transaction reusing the id), and nothing
      from such a start on while it waits in the reorder buffer;
    - else the newest closed session that started at or before `t` takes what falls inside
      its span; an incomplete one (its stop never came) also what comes after its end,
      except a start; anything else after a completed session belongs to the open session
      with the id if there is one (an early reading of it), else to none;
    - before every candidate's start: the oldest one's own early reading, or its own start
      when it was opened without one (`missing_start`).

    Returns the session and, when it is a closed one, its `ClosedSession`; None: a start
    no session's span holds, or nothing with that id on the connector.
    """
    tx = event.transaction_id
    starting = event.kind is EventKind.STARTED
    session = conn.session
    mine = (session, None) if session is not None and session.transaction_id == tx else None
    if mine is not None and mine[0].start_ms <= t:
        if (starting and t > mine[0].end_ms) or _pending_start(conn, tx, mine[0].end_ms, t):
            return None
        return mine
    oldest = mine
    for closed in reversed(conn.recent):
        done = closed.session
        if done.transaction_id != tx:
            continue
        if closed.end_ms < since_ms:
            break
        if done.start_ms > t:
            oldest = (done, closed)
            continue
        if t <= closed.end_ms or (closed.final is SessionState.INCOMPLETE and not starting
                                  and not _pending_start(conn, tx, closed.end_ms, t)):
            return done, closed
        return None if starting else mine
    if oldest is None or not starting:
        return oldest
    first = oldest[0]
    return oldest if MISSING_START in first.flags and t <= first.end_ms else None


def _pending_start(conn: ConnectorState, tx: str | None, after_ms: int, t: int) -> bool:
    """Whether a start with the id, after `after_ms` and at or before `t`, waits in the
    reorder buffer: what comes after it is its session's, not an earlier one's."""
    return any(h.event.kind is EventKind.STARTED and h.event.transaction_id == tx
               and after_ms < h.time_ms <= t for h in conn.held)


def previous_with(conn: ConnectorState, tx: str | None) -> str | None:
    """Session ID of the latest session on the connector with transaction id `tx`, open or
    recently closed: a new session with that id reuses it."""
    if tx is None:
        return None
    session = conn.session
    if session is not None and session.transaction_id == tx:
        return session.session_id
    for closed in reversed(conn.recent):
        if closed.session.transaction_id == tx:
            return closed.session.session_id
    return None


def is_duplicate(conn: ConnectorState, event: MeterEvent, t: int) -> bool:
    """Same content as an event already received on the connector: transaction + sequence
    number (of the session whose span holds `t`: a reused id starts its numbers again) where
    the charger sends one, else kind + event time + register (the last RING_SIZE such
    events). A retry often carries a new event id, so the id is ignored."""
    seq, tx = event.seq, event.transaction_id
    if seq is None:
        key = [KIND_RANK[event.kind], event.event_time_ms, event.energy_wh]
        return key in conn.ring or any(
            h.event.seq is None and h.event.kind is event.kind
            and h.event.event_time_ms == key[1] and h.event.energy_wh == key[2]
            for h in conn.held)
    for held in conn.held:
        if held.event.seq == seq and held.event.transaction_id == tx \
                and held.event.event_time_ms == event.event_time_ms:
            return True
    if tx is None:
        done = conn.session
    else:
        found = claim(conn, event, t)
        done = None if found is None else found[0]
    if done is None:
        return False
    top = done.seq_max
    return top is not None and seq <= top and seq not in done.gaps


def recent_by_time(conn: ConnectorState, event: MeterEvent, t: int,
                   since_ms: int) -> ClosedSession | None:
    """The recently closed session a late event without a transaction id belongs to: its
    time inside the session, or a stop after an inactivity close."""
    for closed in reversed(conn.recent):
        if closed.end_ms < since_ms:
            return None
        session = closed.session
        if session.start_ms <= t <= closed.end_ms or (
            event.kind is EventKind.ENDED and closed.final is SessionState.INCOMPLETE
            and closed is conn.recent[-1] and t >= session.start_ms
        ):
            return closed
    return None
