"""Charger faults for the simulator: station models and firmware, and when connectors fail.

Off unless `FleetConfig.faults` is set, so fleets without faults keep their exact messages
and truth. With faults, every station gets a (model, firmware) profile from its own random
stream, each connector draws faults from another (seeded by seed, station, connector), so
fault draws never shift the sessions' random stream, and:
- every connector reports Available at the start of the period (a charger's boot
  StatusNotification), so its status is known from the start;
- faults strike idle connectors only, as a Poisson process at the profile's rate; a fault is
  a Faulted status with an error code, then Available after the repair time; the connector
  takes no session meanwhile (an arrival that finds it faulted goes elsewhere);
- a fault that would fall inside a session is drawn again from the session's end.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass

from schemas.records import EventKind, MeterEvent

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """A charger model on one firmware, and how often its connectors fail."""

    model: str
    firmware: str
    faults_per_day: float
    """Per connector, while idle."""


DEFAULT_PROFILES = (
    FaultProfile("Terra 54", "1.8.3", 0.1),
    FaultProfile("Terra 54", "1.9.0", 1.5),
    FaultProfile("Wallbox Pulsar", "5.2.1", 0.05),
    FaultProfile("Wallbox Pulsar", "5.3.0", 0.6),
)
"""Two models, each with a stable firmware and a newer one that fails more."""
ERROR_CODES = ("GroundFailure", "ConnectorLockFailure", "PowerSwitchFailure",
               "HighTemperature", "InternalError", "OverCurrentFailure")
"""OCPP 1.6 ChargePointErrorCode values."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    profiles: tuple[FaultProfile, ...] = DEFAULT_PROFILES
    mean_repair_s: int = 7_200
    """Repair time is this plus an exponential part with the same mean, at least..."""
    min_repair_s: int = 600
    """...this long."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """One fault of one connector: Faulted at `start_ms`, Available again at `end_ms`."""

    station_id: str
    connector_id: int
    number: int
    start_ms: int
    end_ms: int
    error_code: str


def station_profile(seed: int, station_id: str, faults: FaultConfig) -> FaultProfile:
    """The station's model and firmware: its own random stream, independent of the fleet's."""
    return random.Random(f"{seed}/{station_id}/model").choice(faults.profiles)


class FaultClock:
    """Draws one connector's faults in time order (the simulator asks before each arrival)."""

    def __init__(self, seed: int, station_id: str, connector_id: int, profile: FaultProfile,
                 faults: FaultConfig, start_ms: int, end_ms: int) -> None:
        self._rng = random.Random(f"{seed}/{station_id}/{connector_id}/faults")
        self._station, self._connector = station_id, connector_id
        self._rate = profile.faults_per_day
        self._faults = faults
        self._last_start_ms = end_ms - 600_000
        self._end_ms = end_ms
        self._number = 0
        self.next_ms = self._draw(start_ms)

    def _draw(self, after_ms: int) -> int:
        if self._rate <= 0:
            return self._end_ms
        return after_ms + math.ceil(self._rng.expovariate(self._rate) * DAY_MS)

    def take(self, before_ms: int) -> FaultPlan | None:
        """The next fault if it starts before `before_ms` (the next arrival), else None."""
        start = self.next_ms
        if start >= before_ms or start >= self._last_start_ms:
            return None
        faults = self._faults
        repair_ms = max(faults.min_repair_s * 1000, math.ceil(
            (faults.mean_repair_s / 2 + self._rng.expovariate(2 / faults.mean_repair_s)) * 1000))
        end = min(start + repair_ms, self._end_ms - 1000)
        self._number += 1
        code = self._rng.choice(ERROR_CODES)
        self.next_ms = self._draw(end + 1000)
        return FaultPlan(self._station, self._connector, self._number, start, end, code)

    def idle_from(self, free_ms: int) -> None:
        """The connector was busy until `free_ms`: a fault drawn inside that time moves on."""
        if self.next_ms < free_ms:
            self.next_ms = self._draw(free_ms)


def status_event(station_id: str, connector_id: int, event_id: str, time_ms: int, status: str,
                 last_receive_ms: int, max_latency_ms: int,
                 error_code: str | None = None) -> MeterEvent:
    """A STATUS event received after `last_receive_ms` (the connector's receive order)."""
    latency = 50 + zlib.crc32(event_id.encode()) % (max_latency_ms - 49)
    return MeterEvent(event_id, station_id, connector_id, EventKind.STATUS, time_ms,
                      max(time_ms + latency, last_receive_ms + 1), status=status,
                      error_code=error_code)


def fault_events(fault: FaultPlan, last_receive_ms: int, max_latency_ms: int
                 ) -> tuple[MeterEvent, MeterEvent]:
    """Faulted (with the error code) at the start, Available at the end."""
    prefix = f"{fault.station_id}-{fault.connector_id}-F{fault.number}"
    faulted = status_event(fault.station_id, fault.connector_id, f"{prefix}:0", fault.start_ms,
                           "Faulted", last_receive_ms, max_latency_ms, fault.error_code)
    return faulted, status_event(fault.station_id, fault.connector_id, f"{prefix}:1",
                                 fault.end_ms, "Available", faulted.receive_time_ms,
                                 max_latency_ms)
