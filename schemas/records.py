"""Typed records that travel between the stages.

These are the in-memory shapes of the Avro records in this folder (the `.avsc` files are
the wire contract; `codec.py` maps between the two). Plain frozen dataclasses, no I/O, so
every stage and every test can build them directly.

Conventions: times are UTC epoch milliseconds (`*_ms`), energy registers are watt-hours,
money is `Decimal` with an ISO 4217 currency next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

MAX_EVENTS_PER_MESSAGE = 1000
"""A batched meter-events message carries at most this many events (it bounds session IDs)."""


class EventKind(StrEnum):
    """What a meter event reports, following OCPP semantics.

    OCPP 1.6 StartTransaction / MeterValues / StopTransaction / StatusNotification and
    OCPP 2.0.1 TransactionEvent Started / Updated / Ended map onto these four.
    """

    STARTED = "started"
    METER = "meter"
    ENDED = "ended"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One reading or transaction event from one connector of one charger."""

    event_id: str
    station_id: str
    connector_id: int
    kind: EventKind
    event_time_ms: int
    """Charger clock."""
    receive_time_ms: int
    """Gateway clock."""
    transaction_id: str | None = None
    """The charger's own transaction id."""
    seq: int | None = None
    """Per-transaction sequence number, where the charger sends one (OCPP 2.0.1 seqNo)."""
    id_tag: str | None = None
    vehicle_id: str | None = None
    energy_wh: float | None = None
    """Energy.Active.Import.Register: the charger's lifetime register, in Wh."""
    power_w: float | None = None
    soc_pct: float | None = None
    current_a: float | None = None
    voltage_v: float | None = None
    status: str | None = None
    error_code: str | None = None
    stop_reason: str | None = None


@dataclass(frozen=True, slots=True)
class EventPosition:
    """Where an event was read: unique in the input log, and the same on every replay."""

    partition: int
    offset: int
    index: int = 0
    """Index of the event inside a batched message."""

    def __le__(self, other: EventPosition) -> bool:
        return (self.offset, self.index) <= (other.offset, other.index)

    def __lt__(self, other: EventPosition) -> bool:
        return (self.offset, self.index) < (other.offset, other.index)


class SessionState(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    """Closed without a stop event (e.g. after inactivity); still has ID, energy and cost."""


NO_ELEMENT = -1
"""A dimension no tariff element prices in a charging period (free there)."""


@dataclass(frozen=True, slots=True)
class SessionPeriod:
    """An OCPI charging period as the tariff engine metered it: from `start_ms` until the
    next period starts, one set of active tariff elements (indexes into the tariff's list)."""

    start_ms: int
    energy_wh: float
    charging_ms: int
    parking_ms: int
    energy_element: int = NO_ELEMENT
    time_element: int = NO_ELEMENT
    parking_element: int = NO_ELEMENT


@dataclass(frozen=True, slots=True)
class DimensionCost:
    """What one OCPI dimension (ENERGY, TIME, PARKING_TIME, FLAT) cost in a session,
    rounded half-up to the cent on its own (before min/max price: the session's totals
    are bounded and rounded separately, so these need not add up to them exactly)."""

    dimension: str
    excl_vat: Decimal
    incl_vat: Decimal


@dataclass(frozen=True, slots=True)
class ChargingSession:
    """A charging session as the processors see it: running while open, final when closed.

    The same shape is published on `session-updates` (running state, state=OPEN) and on
    `sessions-completed` (final, with a version that a late correction increments).
    """

    session_id: str
    version: int
    state: SessionState
    station_id: str
    connector_id: int
    transaction_id: str | None
    id_tag: str | None
    vehicle_id: str | None
    start_ms: int
    end_ms: int
    """Last event time while open; the stop time once closed."""
    meter_start_wh: float
    meter_end_wh: float
    energy_wh: float
    """Energy delivered in this session, from its own first reading, never the lifetime register."""
    soc_start_pct: float | None
    soc_end_pct: float | None
    max_power_w: float
    avg_power_w: float
    """Energy over charging time."""
    charging_ms: int
    """Time between readings during which energy flowed."""
    plugged_ms: int
    """Start to end: charging plus idle."""
    cost: Decimal
    currency: str
    event_count: int
    stop_reason: str | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)
    cost_excl_vat: Decimal | None = None
    """`cost` without VAT (None: published before schema v2, unknown)."""
    tariff_id: str | None = None
    """The tariff applied (chosen at session start); None: no tariff, or before schema v2."""
    periods: tuple[SessionPeriod, ...] = ()
    """The tariff engine's charging periods (empty: free session, or before schema v2)."""
    dimension_costs: tuple[DimensionCost, ...] = ()
    """Cost per priced dimension (empty: nothing priced, or before schema v2)."""

    @property
    def idle_ms(self) -> int:
        return self.plugged_ms - self.charging_ms


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something on-call should see, with the values that show it."""

    anomaly_id: str
    kind: str
    severity: Severity
    station_id: str
    connector_id: int | None
    session_id: str | None
    detected_ms: int
    message: str
    evidence: dict[str, str] = field(default_factory=dict)
    status: str = "single"
    """Episode state: open, update, closed; single for a finding complete in itself
    (charging/episodes.py)."""
    occurrences: int = 1
    first_ms: int | None = None
    """Time of the episode's first occurrence (None: a single finding, `detected_ms`)."""
    last_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be used, with enough context to find and replay it."""

    original: bytes
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str
    """Which stage gave up: replay, processor, sink."""
    error: str
    failed_ms: int
    original_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """One status a connector reported, published on `connector-status` for the status history.

    Every applied status is published, not only changes: arrival order is not time order, so
    only the reader that sorts by `time_ms` (ClickHouse) can tell which report changed anything.
    """

    event_id: str
    station_id: str
    connector_id: int
    status: str
    error_code: str | None
    time_ms: int
    """The status's start: event time, or receive time when the charger clock is skewed."""
    event_time_ms: int
    receive_time_ms: int
