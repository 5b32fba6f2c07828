"""The session stitcher: meter events in, charging sessions out, as a plain state machine.

Like a bytewax stateful operator it holds no state itself: `apply` takes one station's
state and one event and returns the state and what to emit, so the same core runs under
Faust, under a plain consumer loop and under hypothesis. It is idempotent by position:
an event at or before the station's last applied position changes nothing, which is what
makes Faust's non-atomic changelog-then-commit safe to restart.

Hot path: a METER event on an open session updates a few fields in place and allocates
only its result. Running sessions are not built per event; `updates` names the touched
connectors and `snapshot` builds (and prices) a session once per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from processors.errors import PositionOutOfRange
from processors.pricing import Pricing, pricing_engine
from processors.session_ids import IdContext, IdTemplate, utc_date
from processors.state import ConnectorState, OpenSession, StationState
from schemas.records import (
    MAX_EVENTS_PER_MESSAGE,
    ChargingSession,
    EventKind,
    EventPosition,
    MeterEvent,
    SessionState,
)

_INF = float("inf")
_MS_PER_HOUR = 3_600_000
_METER, _STARTED, _ENDED, _STATUS = EventKind.METER, EventKind.STARTED, EventKind.ENDED, \
    EventKind.STATUS
_NO_KEYS: tuple[int, ...] = ()
_NO_SESSIONS: tuple[ChargingSession, ...] = ()
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class StitcherConfig:
    partitions: int
    """Partition count of the meter-events topic (part of the `{num}` formula)."""
    id_template: IdTemplate
    tariff: Pricing
    """The simple tariff or a tariff file's book (processors.pricing)."""


@dataclass(frozen=True, slots=True)
class StitchResult:
    """What one event did.

    `state` is the station state after the event: the *same object* that was passed in,
    mutated in place (a new one only when None was passed). `updates` holds the connector
    ids whose open session changed and is still open after the event; build the running
    session with `SessionStitcher.snapshot(state, connector_id)` (once per batch is
    enough). `completed` holds sessions this event closed (version 1).
    """

    state: StationState
    updates: tuple[int, ...]
    completed: tuple[ChargingSession, ...]
    rejected: str | None = None
    """Why the event cannot be used (the agent dead-letters it); the state only records
    its position, so a redelivery of it is a duplicate."""
    duplicate: bool = False
    """Already applied (same partition, offset/index <= the station's last applied one):
    nothing changed. Positions on another partition than the last applied one are never
    duplicates: offsets of different partitions are not comparable, and a station only
    moves partition when the topic's partition count changes."""


class SessionStitcher:
    """Stitches one station's events into sessions; holds configuration only."""

    def __init__(self, config: StitcherConfig) -> None:
        self._config = config
        self._partitions = config.partitions
        self._template = config.id_template
        self._daily = config.id_template.uses_daily
        self._engine = pricing_engine(config.tariff)

    def apply(
        self, state: StationState | None, event: MeterEvent, position: EventPosition
    ) -> StitchResult:
        """Apply one event of the station `state` belongs to (None: first event seen)."""
        if state is None:
            state = StationState(event.station_id)
        elif state.station_id != event.station_id:
            raise ValueError(f"event of station {event.station_id!r} applied to the state of "
                             f"{state.station_id!r}: state must be keyed by station id")
        offset = position.offset
        if position.partition == state.last_partition and (offset < state.last_offset or (
            offset == state.last_offset and position.index <= state.last_index
        )):
            return StitchResult(state, _NO_KEYS, _NO_SESSIONS, None, True)
        if not 0 <= position.partition < self._partitions:
            raise PositionOutOfRange(
                f"partition {position.partition} is outside 0..{self._partitions - 1}: the "
                f"meter-events topic has more partitions than configured")
        state.last_partition = position.partition
        state.last_offset = offset
        state.last_index = position.index

        reason = _invalid(event, position)
        if reason is not None:
            return StitchResult(state, _NO_KEYS, _NO_SESSIONS, reason)
        cid = event.connector_id
        conn = state.connectors.get(cid)
        if conn is None:
            conn = state.connectors[cid] = ConnectorState()
        kind = event.kind
        if kind is _METER:
            session = conn.session
            if session is None:
                conn.session = self._open(state, event, position, ("missing_start",))
            else:
                self._absorb(session, event)
            return StitchResult(state, (cid,), _NO_SESSIONS)
        if kind is _STARTED:
            closed = _NO_SESSIONS
            if conn.session is not None:
                closed = (self._close(state, cid, conn.session, SessionState.INCOMPLETE, None,
                                      conn.session.end_ms, ("overlapped",)),)
            conn.session = self._open(state, event, position, ())
            return StitchResult(state, (cid,), closed)
        if kind is _ENDED:
            session = conn.session
            if session is None:
                tx = event.transaction_id
                return StitchResult(state, _NO_KEYS, _NO_SESSIONS, (
                    f"stop without an open session on {event.station_id}/{cid} "
                    f"({f'transaction {tx}' if tx is not None else 'no transaction id'})"))
            self._absorb(session, event)
            conn.session = None
            done = self._close(state, cid, session, SessionState.COMPLETED, event.stop_reason,
                               event.event_time_ms, ())
            return StitchResult(state, _NO_KEYS, (done,))
        if kind is _STATUS:
            conn.status = event.status
            conn.error_code = event.error_code
            return StitchResult(state, _NO_KEYS, _NO_SESSIONS)
        return StitchResult(state, _NO_KEYS, _NO_SESSIONS, f"unknown event kind {kind!r}")

    def snapshot(self, state: StationState, connector_id: int) -> ChargingSession | None:
        """The running session (state OPEN, version 0, cost so far) on a connector, if open."""
        conn = state.connectors.get(connector_id)
        if conn is None or conn.session is None:
            return None
        session = conn.session
        return self._build(state, connector_id, session, SessionState.OPEN, 0, None,
                           session.end_ms, session.flags)

    def _open(self, state: StationState, event: MeterEvent, position: EventPosition,
              flags: tuple[str, ...]) -> OpenSession:
        start = event.event_time_ms
        state.seq += 1
        daily = 0
        if self._daily:
            day = utc_date(start).isoformat()
            daily = state.daily[day] = state.daily.get(day, 0) + 1
        session_id = self._template.render(IdContext(
            event.station_id, event.connector_id, start, position, self._partitions,
            state.seq, daily))
        power = event.power_w
        return OpenSession(
            session_id=session_id, transaction_id=event.transaction_id, id_tag=event.id_tag,
            vehicle_id=event.vehicle_id, start_ms=start, end_ms=start,
            meter_start_wh=event.energy_wh, meter_last_wh=event.energy_wh, reading_ms=start,
            soc_start_pct=event.soc_pct, soc_end_pct=event.soc_pct,
            max_power_w=power if power is not None else 0.0, charging_ms=0, event_count=1,
            meter=self._engine.open(event.station_id, event.connector_id, event.id_tag, start),
            flags=flags)

    def _absorb(self, session: OpenSession, event: MeterEvent) -> None:
        """Fold one reading (METER or ENDED) into an open session, in place."""
        t = event.event_time_ms
        energy = event.energy_wh
        if energy is not None:
            last = session.meter_last_wh
            if last is None:
                session.meter_start_wh = energy
                delta = _ZERO
            else:
                if energy > last:
                    session.charging_ms += t - session.reading_ms
                # Through str: a register like 1234.5 is priced as written, never as a
                # binary float (the same conversion the simulator's truth uses).
                delta = _decimal(energy) - _decimal(last)
            self._engine.reading(session.meter, event.station_id, t, delta, event.current_a)
            session.meter_last_wh = energy
            session.reading_ms = t
        session.end_ms = t
        power = event.power_w
        if power is not None and power > session.max_power_w:
            session.max_power_w = power
        soc = event.soc_pct
        if soc is not None:
            session.soc_end_pct = soc
            if session.soc_start_pct is None:
                session.soc_start_pct = soc
        session.event_count += 1
        if session.id_tag is None and event.id_tag is not None:
            session.id_tag = event.id_tag
        if session.vehicle_id is None and event.vehicle_id is not None:
            session.vehicle_id = event.vehicle_id
        if session.transaction_id is None and event.transaction_id is not None:
            session.transaction_id = event.transaction_id

    def _close(self, state: StationState, connector_id: int, session: OpenSession,
               final: SessionState, stop_reason: str | None, end_ms: int,
               extra_flags: tuple[str, ...]) -> ChargingSession:
        return self._build(state, connector_id, session, final, 1, stop_reason, end_ms,
                           session.flags + extra_flags)

    def _build(self, state: StationState, connector_id: int, session: OpenSession,
               kind: SessionState, version: int, stop_reason: str | None, end_ms: int,
               flags: tuple[str, ...]) -> ChargingSession:
        energy = session.energy_wh
        plugged = end_ms - session.start_ms
        charging = session.charging_ms
        cost = self._engine.quote(session.meter, state.station_id, end_ms)
        meter_start = session.meter_start_wh
        return ChargingSession(
            session_id=session.session_id, version=version, state=kind,
            station_id=state.station_id, connector_id=connector_id,
            transaction_id=session.transaction_id, id_tag=session.id_tag,
            vehicle_id=session.vehicle_id, start_ms=session.start_ms, end_ms=end_ms,
            meter_start_wh=meter_start if meter_start is not None else 0.0,
            meter_end_wh=session.meter_last_wh if session.meter_last_wh is not None else 0.0,
            energy_wh=energy, soc_start_pct=session.soc_start_pct,
            soc_end_pct=session.soc_end_pct, max_power_w=session.max_power_w,
            avg_power_w=energy * _MS_PER_HOUR / charging if charging > 0 else 0.0,
            charging_ms=charging, plugged_ms=plugged,
            cost=cost.incl_vat, currency=cost.currency,
            event_count=session.event_count, stop_reason=stop_reason, flags=flags)


def _decimal(value: float) -> Decimal:
    """A register value as written: through `repr`, never the binary float (whole numbers,
    the usual case, take the faster exact path)."""
    return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))


def _invalid(event: MeterEvent, position: EventPosition) -> str | None:
    """Why an event is semantically unusable, or None. Comparisons also catch NaN."""
    energy, power, soc = event.energy_wh, event.power_w, event.soc_pct
    if (
        event.station_id and event.connector_id >= 0 and position.index < MAX_EVENTS_PER_MESSAGE
        and (energy is None or 0.0 <= energy < _INF)
        and (power is None or 0.0 <= power < _INF)
        and (soc is None or 0.0 <= soc <= 100.0)
    ):
        return None
    where = f"{event.station_id or '<empty>'}/{event.connector_id}"
    if not event.station_id:
        return "empty station_id"
    if event.connector_id < 0:
        return f"negative connector_id {event.connector_id} on {where}"
    if position.index >= MAX_EVENTS_PER_MESSAGE:
        return (f"event index {position.index} exceeds the {MAX_EVENTS_PER_MESSAGE} events one "
                f"message may carry")
    for name, value in (("energy_wh", energy), ("power_w", power), ("soc_pct", soc)):
        if value is not None and not 0.0 <= value < _INF:
            return f"{name} {value!r} on {where} is negative or not finite"
    return f"soc_pct {soc!r} on {where} is above 100"


@dataclass(frozen=True, slots=True)
class Rejected:
    event: MeterEvent
    position: EventPosition
    reason: str


@dataclass(frozen=True, slots=True)
class StitchOutcome:
    """A whole log stitched: for tests and tooling."""

    completed: tuple[ChargingSession, ...]
    """Every closed session, in the order the log closed them."""
    open_sessions: dict[str, ChargingSession]
    """Sessions still open at the end, by session id: their latest running state."""
    rejected: tuple[Rejected, ...]
    duplicates: int
    states: dict[str, StationState]
    """Final state per station id."""


def stitch_log(events: Iterable[tuple[MeterEvent, EventPosition]],
               config: StitcherConfig) -> StitchOutcome:
    """Run a log of positioned events through a fresh stitcher, as one agent would."""
    stitcher = SessionStitcher(config)
    return continue_log(stitcher, {}, events)


def continue_log(stitcher: SessionStitcher, states: dict[str, StationState],
                 events: Iterable[tuple[MeterEvent, EventPosition]]) -> StitchOutcome:
    """Continue a log from existing station states (which are updated in place)."""
    completed: list[ChargingSession] = []
    rejected: list[Rejected] = []
    duplicates = 0
    for event, position in events:
        result = stitcher.apply(states.get(event.station_id), event, position)
        states[event.station_id] = result.state
        completed.extend(result.completed)
        duplicates += result.duplicate
        if result.rejected is not None:
            rejected.append(Rejected(event, position, result.rejected))
    open_sessions: dict[str, ChargingSession] = {}
    for state in states.values():
        for cid in state.open_sessions():
            running = stitcher.snapshot(state, cid)
            if running is not None:
                open_sessions[running.session_id] = running
    return StitchOutcome(tuple(completed), open_sessions, tuple(rejected), duplicates, states)
