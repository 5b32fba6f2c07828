"""The session stitcher: meter events in, charging sessions out, as a plain state machine.

Like a bytewax stateful operator it holds no state itself: `apply` takes one station's
state and one event and returns the state and what to emit, so the same core runs under
Faust, under a plain consumer loop and under hypothesis. It is idempotent by position:
an event at or before the station's last applied position changes nothing, which is what
makes Faust's non-atomic changelog-then-commit safe to restart.

Messy input is the normal case (charging/rules.py lists the flags and thresholds):
duplicates are recognised by content, out-of-order events wait in a small per-connector
reorder buffer (charging/reorder.py), each event goes to the session its transaction id
*and* time span name (charging/routing.py: ids get reused), a late event for a recently
closed session publishes a corrected version (same session_id, version + 1), `expire`
closes sessions whose stop never came, readings are checked for resets and units
(charging/readings.py), and charger clocks are judged by plausibility, not age
(charging/charger_clock.py). Everything that decides an output lives in station state, so
the same log gives the same sessions and IDs after a restart or a replay.

Hot path: the next in-order reading of an open session, clock in line, updates a few
fields in place and allocates only its result (`_next_reading`). Running sessions are not
built per event; `updates` names the touched connectors and `snapshot` builds (and
prices) a session once per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from charging.charger_clock import ChargerClock
from charging.errors import PositionOutOfRange
from charging.pricing import Pricing, pricing_engine
from charging.quiet import stuck_sessions, wall_quiet
from charging.readings import ReadingFolder
from charging.reorder import KIND_RANK, Held, ahead, hold, is_duplicate
from charging.routing import EventRouter
from charging.routing import Outputs as _Out
from charging.rules import CLOCK_SKEW, MISSING_STOP, Observation, StitchRules
from charging.session_ids import IdTemplate
from charging.sessions import SessionRecords
from charging.state import RING_SIZE, ConnectorState, OpenSession, StationState
from charging.stations import StationRegistry
from schemas.records import (
    MAX_EVENTS_PER_MESSAGE,
    ChargingSession,
    EventKind,
    EventPosition,
    MeterEvent,
    SessionState,
)

_INF = float("inf")
_METER, _ENDED, _STATUS = EventKind.METER, EventKind.ENDED, EventKind.STATUS
_NO_KEYS: tuple[int, ...] = ()
_NO_SESSIONS: tuple[ChargingSession, ...] = ()


@dataclass(frozen=True, slots=True)
class StitcherConfig:
    partitions: int
    """Partition count of the meter-events topic (part of the `{num}` formula)."""
    id_template: IdTemplate
    tariff: Pricing
    """The simple tariff or a tariff file's book (charging.pricing)."""
    rules: StitchRules = field(default_factory=StitchRules)
    """Thresholds for messy input (charging.rules); the defaults leave clean input as is."""
    registry: StationRegistry | None = None
    """Rated power per connector for plausibility; None: `rules.max_plausible_power_w`."""


@dataclass(frozen=True, slots=True)
class StitchResult:
    """What one event did.

    `state` is the station state after the event: the *same object* that was passed in,
    mutated in place (a new one only when None was passed). `updates` holds the connector
    ids whose open session changed and is still open after the event; build the running
    session with `SessionStitcher.snapshot(state, connector_id)` (once per batch is
    enough). `completed` holds sessions this event closed (version 1: COMPLETED, or
    INCOMPLETE when a new transaction or inactivity displaced them) and corrected versions
    of recently closed sessions (same session_id, version + 1) that a late event changed.
    An event may be held in the connector's reorder buffer: then nothing is emitted for it
    yet, and a later event's result carries what it did.
    """

    state: StationState
    updates: tuple[int, ...]
    completed: tuple[ChargingSession, ...]
    rejected: str | None = None
    """Why the event cannot be used (the agent dead-letters it); the state only records
    its position, so a redelivery of it is a duplicate."""
    duplicate: bool = False
    """Already applied: same partition and offset/index <= the station's last applied one,
    or the same content as an event already received (transaction + sequence number, or
    kind + event time + register). Nothing changed except the remembered position.
    Positions on another partition than the last applied one are never duplicates by
    position: offsets of different partitions are not comparable, and a station only
    moves partition when the topic's partition count changes."""
    observations: tuple[Observation, ...] = ()
    """Per-event findings for anomaly detection (charging.rules.Observation)."""
    time_ms: int | None = None
    """The time the event is dated by: its charger time, or its receive time when the
    charger's clock was judged implausible (charging/charger_clock.py). None when it was
    not judged (a duplicate by position, or rejected as invalid)."""


class SessionStitcher:
    """Stitches one station's events into sessions; holds configuration only."""

    def __init__(self, config: StitcherConfig) -> None:
        self._config = config
        self._partitions = config.partitions
        self._engine = pricing_engine(config.tariff)
        self._rules = rules = config.rules
        self._folder = ReadingFolder(self._engine, rules, config.registry)
        self._records = SessionRecords(config.id_template, config.partitions, self._engine,
                                       rules)
        self._route = EventRouter(self._folder, self._records, rules).route
        self._clock = clock = ChargerClock(rules)
        self._epoch, self._ahead, self._jump = clock.epoch_ms, clock.ahead_ms, clock.jump_ms
        self._window = rules.reorder_window_ms
        self._gap_window = max(rules.reorder_window_ms, rules.seq_gap_ms)
        self._observations: list[Observation] = []

    def apply(
        self, state: StationState | None, event: MeterEvent, position: EventPosition
    ) -> StitchResult:
        """Apply one event of the station `state` belongs to (None: first event seen).

        The next in-order reading of an open session, clock in line, takes the short way
        (`_next_reading`, most events); everything else goes through `_intake`.
        """
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
        conn = state.connectors.get(event.connector_id)
        if conn is None:
            conn = state.connectors[event.connector_id] = ConnectorState()
        received = event.receive_time_ms
        if received > state.last_receive_ms:
            state.last_receive_ms = received
        session = conn.session
        kind = event.kind
        if session is not None and (kind is _METER or kind is _ENDED) and not conn.held:
            seq, top, t = event.seq, session.seq_max, event.event_time_ms
            if seq is not None and top is not None and seq == top + 1 \
                    and event.transaction_id == session.transaction_id is not None \
                    and t >= session.end_ms and state.skew_offset_ms is None \
                    and self._epoch <= t <= received + self._ahead \
                    and t >= state.clock_ms - self._jump:  # ChargerClock.in_line, inlined
                return self._next_reading(state, conn, session, event)
        return self._intake(state, conn, event, position)

    def _next_reading(self, state: StationState, conn: ConnectorState, session: OpenSession,
                      event: MeterEvent) -> StitchResult:
        """The next event of the open transaction, in order, clock in line: update a few
        fields in place and allocate only the result."""
        t = event.event_time_ms
        if t > state.newest_ms:
            state.newest_ms = t
        if t > conn.newest_ms:
            conn.newest_ms = t
        if t > state.clock_ms:  # ChargerClock.advance, inlined
            state.clock_ms = t
            state.clock_offset_ms = event.receive_time_ms - t
        observations = self._observations
        self._folder.absorb(session, event, t, observations)
        found = tuple(observations) if observations else ()
        observations.clear()
        cid = event.connector_id
        if event.kind is _METER:
            return StitchResult(state, (cid,), _NO_SESSIONS, None, False, found, t)
        conn.session = None
        return StitchResult(state, _NO_KEYS, (self._records.close(
            state, cid, conn, session, SessionState.COMPLETED, event.stop_reason,
            session.end_ms),), None, False, found, t)

    def _intake(self, state: StationState, conn: ConnectorState, event: MeterEvent,
                position: EventPosition) -> StitchResult:
        """Any other event: judge its clock, record a status, drop a duplicate, then apply
        it now or hold it until the events it may have overtaken have come."""
        kind = event.kind
        if kind not in KIND_RANK:
            return StitchResult(state, _NO_KEYS, _NO_SESSIONS, f"unknown event kind {kind!r}")
        out = _Out()
        t, rule = self._clock.judge(state, event)
        if t > state.newest_ms:
            state.newest_ms = t
        duplicate = False
        if kind is _STATUS:
            self._status(conn, event, t, out)
        elif is_duplicate(conn, event, t):
            duplicate = True
        else:
            self._take(state, conn, event, position, t, out)
        if rule is not None:
            out.observations.insert(0, Observation(
                CLOCK_SKEW, event.connector_id, t, _session_of(conn, event.connector_id, out),
                (("event_time_ms", str(event.event_time_ms)),
                 ("receive_time_ms", str(event.receive_time_ms)), ("rule", rule))))
        if duplicate:
            return StitchResult(state, _NO_KEYS, _NO_SESSIONS, None, True,
                                tuple(out.observations), t)
        return StitchResult(
            state, tuple(dict.fromkeys(c for c in out.updates
                                       if state.connectors[c].session is not None)),
            tuple(out.completed) if out.completed else _NO_SESSIONS, out.rejected, False,
            tuple(out.observations) if out.observations else (), t)

    @staticmethod
    def _status(conn: ConnectorState, event: MeterEvent, t: int, out: _Out) -> None:
        conn.status = event.status
        conn.error_code = event.error_code
        if event.status == "Faulted" or event.error_code not in (None, "NoError"):
            out.observations.append(Observation(
                "faulted", event.connector_id, t,
                conn.session.session_id if conn.session else None,
                (("status", str(event.status)), ("error_code", str(event.error_code)))))

    def _take(self, state: StationState, conn: ConnectorState, event: MeterEvent,
              position: EventPosition, t: int, out: _Out) -> None:
        """Apply a transaction event now, or hold it in the reorder buffer."""
        if t > conn.newest_ms:
            conn.newest_ms = t
        if event.seq is None:
            conn.ring.append([KIND_RANK[event.kind], event.event_time_ms, event.energy_wh])
            if len(conn.ring) > RING_SIZE:
                del conn.ring[0]
        if not conn.held and self._ready(conn, event, t):
            self._route(state, conn, event, position, t, out, True)
        else:
            hold(conn.held, Held(event, position, t))
            self._release(state, conn, out, event)

    def expire(self, state: StationState, now_event_ms: int, now_wall_ms: int,
               heard_wall_ms: int | None = None) -> list[ChargingSession]:
        """Close what inactivity ended; call it periodically per station, then save the state.

        `now_event_ms` is the caller's event-time clock (e.g. the newest event time seen on
        the partition; the station's own newest is used when later). Held events the
        window has passed are applied; an open session idle for `rules.inactivity_ms` of
        event time is closed as INCOMPLETE (`missing_stop`), with its ID, energy and cost.
        A station alone on a quiet partition never advances event time, so wall time
        counts too: `heard_wall_ms` is when the caller last applied an event of this
        station, on its own clock, and `now_wall_ms` that clock's now (None: no wall-clock
        rule). Silent for `rules.inactivity_wall_ms`, every held event is applied and every
        open session closed. Closing by wall time changes when a session closes, never
        its ID or its contents. Returns the closed sessions and any corrections, as
        `StitchResult.completed` would.
        """
        rules = self._rules
        now = max(now_event_ms, state.newest_ms)
        silent = wall_quiet(now_wall_ms, heard_wall_ms) > rules.inactivity_wall_ms
        out = _Out()
        for cid, conn in state.connectors.items():
            while conn.held and (silent or conn.held[0].time_ms <= now - self._gap_window):
                held = conn.held.pop(0)
                self._route(state, conn, held.event, held.position, held.time_ms, out, False)
            session = conn.session
            if session is not None and (silent or now - session.end_ms > rules.inactivity_ms):
                out.completed.append(self._records.displace(state, cid, conn, MISSING_STOP))
        return out.completed

    def stuck(self, state: StationState, now_event_ms: int, now_wall_ms: int,
              heard_wall_ms: int | None = None) -> list[Observation]:
        """Open sessions gone quiet, not yet closed: `stuck_session` observations
        (charging/quiet.py). Same clocks as `expire`; call it before `expire`."""
        return stuck_sessions(state, self._rules, now_event_ms,
                              wall_quiet(now_wall_ms, heard_wall_ms))

    def snapshot(self, state: StationState, connector_id: int) -> ChargingSession | None:
        """The running session (state OPEN, version 0, cost so far) on a connector, if open."""
        conn = state.connectors.get(connector_id)
        if conn is None or conn.session is None:
            return None
        session = conn.session
        return self._records.build(state, connector_id, session, SessionState.OPEN, 0, None,
                                   session.end_ms, session.flags)

    # -- ordering -------------------------------------------------------------------------

    def _ready(self, conn: ConnectorState, event: MeterEvent, t: int) -> bool:
        window = self._gap_window if ahead(conn, event, t) else self._window
        return t <= conn.newest_ms - window

    def _release(self, state: StationState, conn: ConnectorState, out: _Out,
                 current: MeterEvent) -> None:
        held = conn.held
        while held:
            head = held[0]
            if len(held) <= self._rules.max_held and not self._ready(conn, head.event,
                                                                      head.time_ms):
                return
            del held[0]
            self._route(state, conn, head.event, head.position, head.time_ms, out,
                        head.event is current)


_LATEST_MS = 4_102_444_800_000
"""2100-01-01T00:00Z: later (or negative) times are absurd; a charger clock reset to 1970
is skew that receive time corrects, not an absurd timestamp."""


def _invalid(event: MeterEvent, position: EventPosition) -> str | None:
    """Why an event is semantically unusable, or None. Comparisons also catch NaN."""
    energy, power, soc = event.energy_wh, event.power_w, event.soc_pct
    if (
        event.station_id and event.connector_id >= 0 and position.index < MAX_EVENTS_PER_MESSAGE
        and (energy is None or 0.0 <= energy < _INF)
        and (power is None or 0.0 <= power < _INF)
        and (soc is None or 0.0 <= soc <= 100.0)
        and 0 <= event.receive_time_ms < _LATEST_MS and 0 <= event.event_time_ms < _LATEST_MS
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
    for name, value in (("receive_time_ms", event.receive_time_ms),
                        ("event_time_ms", event.event_time_ms)):
        if not 0 <= value < _LATEST_MS:
            return f"{name} {value} on {where} is outside 1970..2100"
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


def _session_of(conn: ConnectorState, connector_id: int, out: _Out) -> str | None:
    """The session an event just applied went to: the connector's open one, else the one it
    closed (a stop); None when neither (a status on an idle connector)."""
    if conn.session is not None:
        return conn.session.session_id
    for session in reversed(out.completed):
        if session.connector_id == connector_id:
            return session.session_id
    return None
