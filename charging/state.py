"""Station state: everything the stitcher remembers about one charger, and its wire form.

State is per station (the meter-events key), so one table key holds all of a charger's
connectors and is written once per batch. The classes are mutable on purpose: the
stitcher updates them in place on the hot path, where allocating per event would cost
more than the domain logic. Serialization is compact positional JSON (orjson) with a
version field, so a changelog record stays small and old records stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from charging.episodes import Episode, EpisodeKey
from charging.errors import StateDecodeError
from charging.reorder import Held
from charging.tariffs import Meter
from schemas.records import SessionState

STATE_VERSION = 3
"""3: connectors hold a reorder buffer, recent content keys and recently closed sessions;
sessions track sequence numbers and register segments. Version 2 records still read."""
_READABLE = (2, 3)
RING_SIZE = 6
"""Content keys of recent events without a sequence number, per connector (duplicates)."""


@dataclass(slots=True)
class OpenSession:
    """A running session on one connector: the aggregates a ChargingSession is built from."""

    session_id: str
    transaction_id: str | None
    id_tag: str | None
    vehicle_id: str | None
    start_ms: int
    end_ms: int
    """Time of the latest event applied to the session."""
    meter_start_wh: float | None
    """The session's own first register reading (None until one arrives)."""
    meter_last_wh: float | None
    reading_ms: int
    """Time of the latest register reading (meaningful once meter_last_wh is set)."""
    soc_start_pct: float | None
    soc_end_pct: float | None
    max_power_w: float
    charging_ms: int
    event_count: int
    meter: Meter
    """The tariff engine's accumulator: the priced intervals up to `reading_ms`."""
    flags: tuple[str, ...] = ()
    seq_max: int | None = None
    """Highest sequence number applied (None: the charger sends none)."""
    gaps: list[int] = field(default_factory=list)
    """Sequence numbers below `seq_max` skipped when the window passed (bounded): a late
    one is a late event, any other at or below `seq_max` a duplicate."""
    base_wh: float | None = None
    """Register value the current segment counts from (None: `meter_start_wh`); differs
    after a register reset."""
    carried_wh: float = 0.0
    """Energy counted in segments before the last register reset."""
    scale: float = 1.0
    """Unit correction applied to this charger's register values (1000: it sends kWh)."""
    pending_wh: float | None = None
    """A register value not counted yet: it left the trajectory (went down, or up at an
    implausible power), and only the next reading tells a reset from a slip or a spike."""
    pending_ms: int = 0
    """Time of the pending reading."""

    @property
    def energy_wh(self) -> float:
        if self.meter_start_wh is None or self.meter_last_wh is None:
            return 0.0
        base = self.meter_start_wh if self.base_wh is None else self.base_wh
        return self.meter_last_wh - base + self.carried_wh

    def _pack(self) -> list[Any]:
        row = [self.session_id, self.transaction_id, self.id_tag, self.vehicle_id,
               self.start_ms, self.end_ms, self.meter_start_wh, self.meter_last_wh,
               self.reading_ms, self.soc_start_pct, self.soc_end_pct, self.max_power_w,
               self.charging_ms, self.event_count, self.meter.pack(), list(self.flags)]
        extra: dict[str, Any] = {}
        if self.seq_max is not None:
            extra["q"] = self.seq_max
        if self.gaps:
            extra["g"] = self.gaps
        if self.base_wh is not None:
            extra["b"] = self.base_wh
        if self.carried_wh:
            extra["c"] = self.carried_wh
        if self.scale != 1.0:
            extra["x"] = self.scale
        if self.pending_wh is not None:
            extra["u"] = [self.pending_wh, self.pending_ms]
        if extra:
            row.append(extra)
        return row

    @classmethod
    def _unpack(cls, row: list[Any]) -> OpenSession:
        extra: dict[str, Any] = row[16] if len(row) > 16 else {}
        *head, meter, flags = row[:16]
        pending_wh, pending_ms = extra.get("u", (None, 0))
        return cls(*head, meter=Meter.unpack(meter), flags=tuple(flags),
                   seq_max=extra.get("q"), gaps=list(extra.get("g", ())),
                   base_wh=extra.get("b"), carried_wh=extra.get("c", 0.0),
                   scale=extra.get("x", 1.0),
                   pending_wh=pending_wh, pending_ms=pending_ms)


@dataclass(slots=True)
class ClosedSession:
    """A recently closed session, kept so a late event can publish a corrected version."""

    session: OpenSession
    """Its aggregates at close; `flags` are the published flags."""
    final: SessionState
    version: int
    stop_reason: str | None
    end_ms: int

    def _pack(self) -> list[Any]:
        return [self.session._pack(), self.final.value, self.version, self.stop_reason,
                self.end_ms]

    @classmethod
    def _unpack(cls, row: list[Any]) -> ClosedSession:
        session, final, version, stop_reason, end_ms = row
        return cls(OpenSession._unpack(session), SessionState(final), version, stop_reason,
                   end_ms)


@dataclass(slots=True)
class ConnectorState:
    """One connector: its open session (if any), its last reported status, and what the
    messy-input rules need: held events, recent content keys, recently closed sessions."""

    session: OpenSession | None = None
    status: str | None = None
    error_code: str | None = None
    held: list[Held] = field(default_factory=list)
    """Reorder buffer, in application order (charging.reorder)."""
    ring: list[list[Any]] = field(default_factory=list)
    """[kind rank, event time, energy] of the latest events without a sequence number."""
    recent: list[ClosedSession] = field(default_factory=list)
    """Recently closed sessions, oldest first (bounded by StitchRules)."""
    newest_ms: int = -1
    """Newest effective event time seen on the connector (the reorder window's clock)."""

    def _pack_extra(self) -> dict[str, Any] | None:
        extra: dict[str, Any] = {"n": self.newest_ms}
        if self.held:
            extra["h"] = [h.pack() for h in self.held]
        if self.ring:
            extra["k"] = self.ring
        if self.recent:
            extra["r"] = [c._pack() for c in self.recent]
        return extra if self.newest_ms >= 0 or len(extra) > 1 else None


@dataclass(slots=True)
class StationState:
    """All of one station's connectors plus what makes re-applying an event a no-op.

    `last_partition`/`last_offset`/`last_index` is the position of the last applied event
    (-1: none yet); positions of one station only grow because the station is the key.
    `seq` counts the station's sessions ({station_seq}); `daily` counts them per UTC
    start date ({station_daily}) and is kept only when the ID template uses it (it grows
    by ~15 bytes per day the station had a session: dropping old days could reissue an ID
    to a late session on such a day).
    """

    station_id: str
    last_partition: int = -1
    last_offset: int = -1
    last_index: int = -1
    seq: int = 0
    daily: dict[str, int] = field(default_factory=dict)
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    newest_ms: int = -1
    """Newest effective event time seen on the station (inactivity clock)."""
    last_receive_ms: int = -1
    """Newest receive (gateway) time: the wall-clock safety net's reference."""
    clock_ms: int = -1
    """The charger's line: newest charger time of a transaction event judged in line
    (charging/charger_clock.py; -1: none yet)."""
    clock_offset_ms: int = 0
    """Receive time minus charger time of that event."""
    skew_offset_ms: int | None = None
    """While the charger's clock has jumped back: its offset to receive time since."""
    episodes: dict[EpisodeKey, Episode] = field(default_factory=dict)
    """Anomaly episodes open (or recently closed) at the station (charging/episodes.py)."""

    def connector(self, connector_id: int) -> ConnectorState:
        """The connector's state, created on first use."""
        conn = self.connectors.get(connector_id)
        if conn is None:
            conn = self.connectors[connector_id] = ConnectorState()
        return conn

    def open_sessions(self) -> dict[int, OpenSession]:
        return {cid: c.session for cid, c in self.connectors.items() if c.session is not None}

    def to_bytes(self) -> bytes:
        """Compact, versioned JSON; `from_bytes(to_bytes())` equals the original."""
        doc: dict[str, Any] = {
            "v": STATE_VERSION,
            "s": self.station_id,
            "p": [self.last_partition, self.last_offset, self.last_index],
            "q": self.seq,
            "c": [_pack_connector(cid, c) for cid, c in self.connectors.items()],
        }
        if self.newest_ms >= 0 or self.last_receive_ms >= 0:
            doc["t"] = [self.newest_ms, self.last_receive_ms]
        if self.daily:
            doc["d"] = self.daily
        if self.clock_ms >= 0 or self.skew_offset_ms is not None:
            doc["o"] = [self.clock_ms, self.clock_offset_ms, self.skew_offset_ms]
        if self.episodes:
            doc["e"] = [e.pack() for e in self.episodes.values()]
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, blob: bytes) -> StationState:
        """Decode a state written by `to_bytes`; raises StateDecodeError if unreadable."""
        try:
            doc = orjson.loads(blob)
            version = doc["v"]
            if version not in _READABLE:
                raise StateDecodeError(
                    f"station state version {version!r} is not readable by this version "
                    f"(reads {STATE_VERSION}); upgrade the processor or rebuild state by replay")
            partition, offset, index = doc["p"]
            station = doc["s"]
            newest, receive = doc.get("t", (-1, -1))
            clock, clock_offset, skew = doc.get("o", (-1, 0, None))
            return cls(
                station_id=station, last_partition=partition, last_offset=offset,
                last_index=index, seq=doc["q"], daily=dict(doc.get("d", {})),
                connectors={row[0]: _unpack_connector(row, station) for row in doc["c"]},
                newest_ms=newest, last_receive_ms=receive,
                clock_ms=clock, clock_offset_ms=clock_offset, skew_offset_ms=skew,
                episodes={(e := Episode.unpack(row)).key: e for row in doc.get("e", ())},
            )
        except StateDecodeError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StateDecodeError(f"station state is not readable: {exc!r}") from exc


def _pack_connector(cid: int, conn: ConnectorState) -> list[Any]:
    row = [cid, conn.status, conn.error_code, conn.session._pack() if conn.session else None]
    extra = conn._pack_extra()
    if extra is not None:
        row.append(extra)
    return row


def _unpack_connector(row: list[Any], station_id: str) -> ConnectorState:
    cid, status, error, session = row[:4]
    extra: dict[str, Any] = row[4] if len(row) > 4 else {}
    return ConnectorState(
        OpenSession._unpack(session) if session is not None else None, status, error,
        held=[Held.unpack(h, station_id, cid) for h in extra.get("h", ())],
        ring=list(extra.get("k", ())),
        recent=[ClosedSession._unpack(c) for c in extra.get("r", ())],
        newest_ms=extra.get("n", -1))
