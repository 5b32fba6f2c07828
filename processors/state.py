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

from processors.errors import StateDecodeError
from processors.tariffs import Meter

STATE_VERSION = 2
"""2: open sessions carry the tariff engine's meter (running cost by period and dimension)."""


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

    @property
    def energy_wh(self) -> float:
        if self.meter_start_wh is None or self.meter_last_wh is None:
            return 0.0
        return self.meter_last_wh - self.meter_start_wh

    def _pack(self) -> list[Any]:
        return [self.session_id, self.transaction_id, self.id_tag, self.vehicle_id,
                self.start_ms, self.end_ms, self.meter_start_wh, self.meter_last_wh,
                self.reading_ms, self.soc_start_pct, self.soc_end_pct, self.max_power_w,
                self.charging_ms, self.event_count, self.meter.pack(), list(self.flags)]

    @classmethod
    def _unpack(cls, row: list[Any]) -> OpenSession:
        *head, meter, flags = row
        return cls(*head, meter=Meter.unpack(meter), flags=tuple(flags))


@dataclass(slots=True)
class ConnectorState:
    """One connector: its open session (if any) and its last reported status."""

    session: OpenSession | None = None
    status: str | None = None
    error_code: str | None = None


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
            "c": [[cid, c.status, c.error_code, c.session._pack() if c.session else None]
                  for cid, c in self.connectors.items()],
        }
        if self.daily:
            doc["d"] = self.daily
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, blob: bytes) -> StationState:
        """Decode a state written by `to_bytes`; raises StateDecodeError if unreadable."""
        try:
            doc = orjson.loads(blob)
            version = doc["v"]
            if version != STATE_VERSION:
                raise StateDecodeError(
                    f"station state version {version!r} is not readable by this version "
                    f"(reads {STATE_VERSION}); upgrade the processor or rebuild state by replay")
            partition, offset, index = doc["p"]
            return cls(
                station_id=doc["s"], last_partition=partition, last_offset=offset,
                last_index=index, seq=doc["q"], daily=dict(doc.get("d", {})),
                connectors={
                    cid: ConnectorState(
                        OpenSession._unpack(row) if row is not None else None, status, error)
                    for cid, status, error, row in doc["c"]
                },
            )
        except StateDecodeError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StateDecodeError(f"station state is not readable: {exc!r}") from exc
