"""Ordering and membership: the reorder buffer, duplicates, and which session an event is for.

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


def ahead(conn: ConnectorState, event: MeterEvent) -> bool:
    """Whether an earlier event of its transaction is still missing (by sequence number)."""
    seq = event.seq
    if seq is None:
        return False
    session, tx = conn.session, event.transaction_id
    if session is not None:
        own = session.transaction_id
        if tx is None or own is None or tx == own:
            return session.seq_max is not None and seq > session.seq_max + 1
    if tx is not None:
        for closed in conn.recent:  # a late event of a closed session
            if closed.session.transaction_id == tx:
                top = closed.session.seq_max
                return top is not None and seq > top + 1
    # another transaction while one awaits its stop, or a new one without its start
    return session is not None or (seq > 0 and event.kind is not EventKind.STARTED)


def continues(session: OpenSession, event: MeterEvent, t: int, inactivity_ms: int) -> bool:
    """Whether an event belongs to the open session: a transaction id proves it either way;
    without one, the session must not have been idle beyond the inactivity period."""
    tx, own = event.transaction_id, session.transaction_id
    if tx is not None and own is not None:
        return tx == own
    return t - session.end_ms <= inactivity_ms


def is_duplicate(conn: ConnectorState, event: MeterEvent) -> bool:
    """Same content as an event already received on the connector: transaction + sequence
    number where the charger sends one, else kind + event time + register (the last
    RING_SIZE such events). A retry often carries a new event id, so the id is ignored."""
    seq, tx = event.seq, event.transaction_id
    if seq is None:
        key = [KIND_RANK[event.kind], event.event_time_ms, event.energy_wh]
        return key in conn.ring or any(
            h.event.seq is None and h.event.kind is event.kind
            and h.event.event_time_ms == key[1] and h.event.energy_wh == key[2]
            for h in conn.held)
    for held in conn.held:
        if held.event.seq == seq and held.event.transaction_id == tx:
            return True
    session = conn.session
    if session is not None and (tx is None or tx == session.transaction_id):
        top = session.seq_max
        return top is not None and seq <= top and seq not in session.gaps
    if tx is not None:
        for closed in conn.recent:
            done = closed.session
            if done.transaction_id == tx:
                top = done.seq_max
                return top is not None and seq <= top and seq not in done.gaps
    return False


def recent_for(conn: ConnectorState, event: MeterEvent, t: int,
               horizon_ms: int) -> ClosedSession | None:
    """The recently closed session a late event belongs to: same transaction, or (no
    transaction id) its time inside the session, or a stop after an inactivity close."""
    tx = event.transaction_id
    horizon = conn.newest_ms - horizon_ms
    for closed in reversed(conn.recent):
        if closed.end_ms < horizon:
            return None
        session = closed.session
        if tx is not None:
            if session.transaction_id == tx:
                return closed
        elif session.start_ms <= t <= closed.end_ms or (
            event.kind is EventKind.ENDED and closed.final is SessionState.INCOMPLETE
            and closed is conn.recent[-1] and t >= session.start_ms
        ):
            return closed
    return None
