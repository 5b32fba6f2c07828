"""One batch of meter-events messages through the stitcher: the engine-free heart of the agent.

The Faust agent (and a plain consumer loop in benchmarks) hands over raw messages and a way
to read station state; it gets back what to publish and which station states changed.
Each station's state is decoded once and encoded once per batch, and open sessions are
published once per batch with their latest running state, because per-message framework
cost, not the domain logic, is the ceiling (DESIGN.md). A message may carry the events of
several stations of its partition (publishers gather a partition's events over a short
window): state, positions and changelog records stay per station, whatever the grouping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from charging.anomalies import AnomalyDetector
from charging.rules import MISSING_STOP, Observation
from charging.state import StationState
from charging.status import StatusHistory
from charging.stitcher import SessionStitcher
from schemas.errors import DecodeError
from schemas.records import (
    Anomaly,
    ChargingSession,
    ConnectorStatus,
    DeadLetter,
    EventPosition,
    MeterEvent,
)

MAX_DEAD_LETTER_ORIGINAL = 256 * 1024
"""Bytes of a rejected message kept in its dead letter (Kafka's default limit is 1 MB)."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class BatchCounts:
    """The books of a batch: read = used + duplicates + dead-lettered."""

    messages: int = 0
    events_read: int = 0
    events_used: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


@dataclass(slots=True)
class BatchOutput:
    updates: list[ChargingSession] = field(default_factory=list)
    completed: list[ChargingSession] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    statuses: list[ConnectorStatus] = field(default_factory=list)
    """Every applied connector status, for `connector-status` (charging/status.py)."""
    states: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    """Changed station states: station id -> (its partition, encoded state)."""
    counts: BatchCounts = field(default_factory=BatchCounts)


class BatchProcessor:
    """Decodes, stitches and collects the outputs of one batch of messages."""

    def __init__(
        self,
        stitcher: SessionStitcher,
        decode: Callable[[bytes], list[MeterEvent]],
        clock_ms: Callable[[], int],
        detector: AnomalyDetector | None = None,
        statuses: StatusHistory | None = None,
        decode_items: Callable[[bytes], list[MeterEvent | str]] | None = None,
    ) -> None:
        """`decode_items` reads a batch `decode` refused event by event (None: the whole
        message is one dead letter), so one bad event of a message that gathers a
        partition's stations costs only that event."""
        self._stitcher = stitcher
        self._decode_items = decode_items
        self._statuses = statuses or StatusHistory()
        self._detector = detector or AnomalyDetector()
        self._decode = decode
        self._clock_ms = clock_ms
        self._processed_wall_ms: dict[str, int] = {}
        """When this worker last applied an event of each station (wall clock, memory only)."""
        self._stuck_reported: set[str] = set()
        """Open sessions already reported stuck (`expire`)."""
        self._saved: dict[str, tuple[bytes, StationState]] = {}
        """Each station's state object as this processor last encoded it, reused while the
        store still holds those bytes: decoding every touched state per batch cost more
        than stitching its events. One entry per station, replaced on every save."""

    def process(
        self, messages: Sequence[RawMessage], load_state: Callable[[str], bytes | None]
    ) -> BatchOutput:
        out = BatchOutput()
        states: dict[str, StationState | None] = {}
        partitions: dict[str, int] = {}
        touched: dict[tuple[str, int], None] = {}
        stitcher = self._stitcher
        for message in messages:
            out.counts.messages += 1
            try:
                events: Iterable[tuple[int, MeterEvent]] = enumerate(self._decode(message.value))
            except DecodeError as exc:
                events = self._salvage(out, message, exc)
            for index, event in events:
                out.counts.events_read += 1
                station = event.station_id
                if station not in states:
                    states[station] = self._load(station, load_state)
                result = stitcher.apply(states[station], event,
                                        EventPosition(message.partition, message.offset, index))
                if result.duplicate:
                    out.counts.duplicates += 1
                    continue
                states[station] = result.state
                partitions[station] = message.partition
                if result.rejected is not None:
                    self._dead_letter(out, message, f"event {index} ({event.event_id}): "
                                                    f"{result.rejected}")
                    continue
                out.counts.events_used += 1
                status = self._statuses.record(event, result.time_ms)
                if status is not None:
                    out.statuses.append(status)
                for connector_id in result.updates:
                    touched[(station, connector_id)] = None
                self._episodes(out, result.state, result.observations, result.completed)
        self._detect_on_completed(out)
        self._close_quiet(out, (states[station] for station in partitions))
        self._finish(out, states, partitions, touched)
        return out

    def _salvage(self, out: BatchOutput, message: RawMessage,
                 error: DecodeError) -> list[tuple[int, MeterEvent]]:
        """The usable events (with their index in the message) of a message `decode`
        refused; one dead letter per unusable event, or one for the whole message when it
        cannot be read event by event."""
        items = None
        if self._decode_items is not None:
            try:
                items = self._decode_items(message.value)
            except DecodeError:
                items = None
        if items is None:
            out.counts.events_read += 1
            self._dead_letter(out, message, f"undecodable meter-events message: {error}")
            return []
        usable = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                out.counts.events_read += 1
                self._dead_letter(out, message, f"event {index}: undecodable: {item}")
            else:
                usable.append((index, item))
        return usable

    def _finish(self, out: BatchOutput, states: dict[str, StationState | None],
                partitions: dict[str, int], touched: dict[tuple[str, int], None]) -> None:
        """The batch's running updates of touched connectors and the states to save."""
        now = self._clock_ms()
        for station in partitions:
            self._processed_wall_ms[station] = now
        for station, connector_id in touched:
            state = states[station]
            running = self._stitcher.snapshot(state, connector_id) if state else None
            if running is not None:
                out.updates.append(running)
        for station, state in states.items():
            if state is not None and station and station in partitions:
                blob = state.to_bytes()
                out.states[station] = (partitions[station], blob)
                self._saved[station] = (blob, state)

    def _load(self, station: str,
              load_state: Callable[[str], bytes | None]) -> StationState | None:
        """The station's state as stored; the object is taken out of `_saved`, so one that
        a batch changes but does not save is decoded afresh next time."""
        blob = load_state(station) if station else None
        saved = self._saved.pop(station, None)
        if blob is None:
            return None
        if saved is not None and saved[0] == blob:
            return saved[1]
        return StationState.from_bytes(blob)

    def expire(self, states: Iterable[tuple[str, bytes]], now_wall_ms: int) -> BatchOutput:
        """Report quiet sessions and close what inactivity ended, over every station state
        this worker holds.

        The event-time clock of a station is the newest event time among the stations of
        its partition: a partition is read in order, so a station that went quiet is judged
        by the time its neighbours report, while a partition that is merely behind another
        never closes its sessions early.

        Wall time is this worker's own: how long since it last applied an event of the
        station (`now_wall_ms` is the same clock's now). That moves for a station alone on
        a quiet partition, and a replay of old days is not mistaken for silence. A station
        this worker has not applied an event of yet (a restart, a rebalance) is timed from
        the first expiry round that sees it.
        """
        out = BatchOutput()
        decoded = [(station, blob, StationState.from_bytes(blob)) for station, blob in states]
        clocks: dict[int, int] = {}
        for _, _, state in decoded:
            clocks[state.last_partition] = max(clocks.get(state.last_partition, -1),
                                               state.newest_ms)
        still_open: set[str] = set()
        for station, blob, state in decoded:
            heard = self._processed_wall_ms.setdefault(station, now_wall_ms)
            clock = clocks[state.last_partition]
            self._report_stuck(out, station, self._stitcher.stuck(state, clock, now_wall_ms,
                                                                  heard))
            closed = self._stitcher.expire(state, clock, now_wall_ms, heard)
            self._episodes(out, state, (), closed)
            out.anomalies.extend(self._detector.close_quiet(
                state.episodes, station, clock, now_wall_ms - heard))
            still_open.update(s.session_id for s in state.open_sessions().values())
            changed = state.to_bytes()
            if changed != blob and state.last_partition >= 0:
                out.states[station] = (state.last_partition, changed)
            silent = self._detector.station_silent(station, heard, now_wall_ms)
            if silent is not None:
                out.anomalies.append(silent)
        self._stuck_reported &= still_open
        self._detect_on_completed(out)
        return out

    def _report_stuck(self, out: BatchOutput, station: str,
                      observations: list[Observation]) -> None:
        """Each stuck session once while it stays open (memory only: after a restart it is
        reported again, under the same anomaly ID)."""
        for observation in observations:
            session_id = observation.session_id
            if session_id is None or session_id in self._stuck_reported:
                continue
            self._stuck_reported.add(session_id)
            found = self._detector.from_observation(station, observation)
            if found is not None:
                out.anomalies.append(found)

    def _close_quiet(self, out: BatchOutput, states: Iterable[StationState | None]) -> None:
        """Close the episodes of the batch's stations that went quiet in event time."""
        for state in states:
            if state is not None and state.episodes:
                out.anomalies.extend(self._detector.close_quiet(
                    state.episodes, state.station_id, state.newest_ms))

    def _episodes(self, out: BatchOutput, state: StationState,
                  observations: Iterable[Observation],
                  completed: Iterable[ChargingSession]) -> None:
        """Count the observations into the station's anomaly episodes, close those of the
        sessions that closed (charging/episodes.py), and keep the completed sessions."""
        station = state.station_id
        for observation in observations:
            found = self._detector.observe(state.episodes, station, observation)
            if found is not None:
                out.anomalies.append(found)
        for session in completed:
            out.completed.append(session)
            out.anomalies.extend(self._detector.close_session(state.episodes, session))

    def dead_letter_spike(self, count: int, window_ms: int, now_ms: int) -> Anomaly | None:
        return self._detector.dead_letter_spike(count, window_ms, now_ms)

    def _detect_on_completed(self, out: BatchOutput) -> None:
        for session in out.completed:
            out.anomalies.extend(self._detector.from_completed(session))
            if session.session_id in self._stuck_reported:
                self._stuck_reported.discard(session.session_id)
                if MISSING_STOP not in session.flags:
                    out.anomalies.append(self._detector.stuck_resumed(session))

    def _dead_letter(self, out: BatchOutput, message: RawMessage, reason: str) -> None:
        out.counts.dead_lettered += 1
        original = message.value
        if len(original) > MAX_DEAD_LETTER_ORIGINAL:
            # The letter must fit the dead-letters topic, or publishing it fails the batch
            # over and over; its source offset still finds the whole message.
            reason = (f"{reason} (original truncated from {len(original)} to "
                      f"{MAX_DEAD_LETTER_ORIGINAL} bytes)")
            original = original[:MAX_DEAD_LETTER_ORIGINAL]
        out.dead_letters.append(DeadLetter(
            original=original, source_topic=message.topic,
            source_partition=message.partition, source_offset=message.offset,
            stage="processor", error=reason, failed_ms=self._clock_ms(),
            original_key=message.key,
        ))
