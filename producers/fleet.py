"""The fleet model behind the simulator: stations, connectors, vehicles, arrivals, charging curve.

Pure and deterministic: every random draw comes from a `random.Random` the caller passes in,
so the same seed always builds the same fleet. The charging curve is solved in closed form
(constant power up to the taper knee, then power falling linearly with state of charge),
so energy between two meter readings is exact rather than a sum of time steps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

_HOUR_MS = 3_600_000
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # a VIN never uses I, O or Q

TAPER_KNEE = 0.80
"""State of charge (fraction) above which the vehicle draws less than its full power."""
TAPER_FLOOR = 0.10
"""Fraction of full power drawn at 100 % state of charge."""

ARRIVAL_PROFILE = (
    0.08, 0.05, 0.04, 0.04, 0.06, 0.15, 0.40, 0.85, 1.00, 0.90, 0.65, 0.55,
    0.60, 0.55, 0.55, 0.65, 0.85, 1.00, 0.95, 0.70, 0.50, 0.35, 0.22, 0.12,
)
"""Relative arrival rate per local hour: a quiet night, morning and evening peaks."""


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A car that comes back to the same connector pool: identification and what it can take."""

    id_tag: str
    """RFID card UID as OCPP sends it: 14 upper-case hex digits (a 7-byte MIFARE UID)."""
    vehicle_id: str
    """A 17-character VIN, or the EVCCID (MAC) a DC charger reads over ISO 15118."""
    capacity_wh: int
    max_ac_w: int
    max_dc_w: int

    def max_power_w(self, dc: bool) -> int:
        return self.max_dc_w if dc else self.max_ac_w


@dataclass(frozen=True, slots=True)
class Connector:
    connector_id: int
    rated_w: int
    dc: bool
    register_start_wh: int
    """The lifetime Energy.Active.Import.Register at the start of the simulated period."""


@dataclass(frozen=True, slots=True)
class Station:
    station_id: str
    index: int
    connectors: tuple[Connector, ...]


def random_vehicle(rng: random.Random) -> Vehicle:
    id_tag = f"{rng.getrandbits(56):014X}"
    if rng.random() < 0.5:
        vehicle_id = "".join(rng.choice(_VIN_CHARS) for _ in range(17))
    else:
        vehicle_id = f"{rng.getrandbits(48):012X}"
    return Vehicle(
        id_tag=id_tag,
        vehicle_id=vehicle_id,
        capacity_wh=rng.randint(40, 100) * 1000,
        max_ac_w=rng.choice((7_400, 11_000, 11_000, 22_000)),
        max_dc_w=rng.choice((50_000, 100_000, 150_000, 200_000, 250_000)),
    )


def random_station(rng: random.Random, index: int, connectors: tuple[int, int],
                   dc_share: float) -> Station:
    """A station whose connectors share one kind: AC 11/22 kW or DC 50/150 kW."""
    dc = rng.random() < dc_share
    rated = rng.choice((50_000, 150_000)) if dc else rng.choice((11_000, 22_000))
    count = rng.randint(*connectors)
    return Station(
        station_id=f"CS-{index:04d}",
        index=index,
        connectors=tuple(
            Connector(connector_id=c, rated_w=rated, dc=dc,
                      register_start_wh=rng.randint(1_000_000, 50_000_000))
            for c in range(1, count + 1)
        ),
    )


def arrival_rate(time_ms: int, utc_offset_h: int, peak_per_hour: float) -> float:
    hour = (time_ms // _HOUR_MS + utc_offset_h) % 24
    return ARRIVAL_PROFILE[hour] * peak_per_hour


def next_arrival(rng: random.Random, after_ms: int, until_ms: int, utc_offset_h: int,
                 peak_per_hour: float) -> int | None:
    """Next arrival of a non-homogeneous Poisson process (by thinning), or None past `until_ms`."""
    t = float(after_ms)
    while True:
        t += rng.expovariate(peak_per_hour) * _HOUR_MS
        if t >= until_ms:
            return None
        if rng.random() * peak_per_hour < arrival_rate(int(t), utc_offset_h, peak_per_hour):
            return int(t)


@dataclass(frozen=True, slots=True)
class ChargingCurve:
    """State of charge over time for one vehicle on one connector.

    Power is `max_w` up to `TAPER_KNEE`, then falls linearly to `TAPER_FLOOR * max_w` at
    100 %. With dx/dt proportional to power, the taper phase is an exponential approach that
    has a closed form, so `soc_at` is exact for any elapsed time.
    """

    capacity_wh: int
    max_w: int
    soc_start: float
    """Fraction 0..1."""

    _rate: float = field(init=False, repr=False, compare=False)
    """State-of-charge fraction per second at full power."""
    _slope: float = field(init=False, repr=False, compare=False)
    _knee_s: float = field(init=False, repr=False, compare=False)
    """Seconds from the start to the taper knee."""

    def __post_init__(self) -> None:
        rate = self.max_w / (self.capacity_wh * 3600.0)
        object.__setattr__(self, "_rate", rate)
        object.__setattr__(self, "_slope", (1.0 - TAPER_FLOOR) / (1.0 - TAPER_KNEE))
        object.__setattr__(self, "_knee_s", max(0.0, TAPER_KNEE - self.soc_start) / rate)

    def soc_at(self, elapsed_s: float) -> float:
        if self.soc_start >= TAPER_KNEE:
            return self._taper(self.soc_start, elapsed_s)
        if elapsed_s <= self._knee_s:
            return self.soc_start + self._rate * elapsed_s
        return self._taper(TAPER_KNEE, elapsed_s - self._knee_s)

    def _taper(self, soc0: float, elapsed_s: float) -> float:
        y0 = 1.0 - self._slope * (soc0 - TAPER_KNEE)
        y = y0 * math.exp(-self._slope * self._rate * elapsed_s)
        return min(TAPER_KNEE + (1.0 - y) / self._slope, 1.0)

    def power_at_soc(self, soc: float) -> float:
        if soc <= TAPER_KNEE:
            return float(self.max_w)
        return self.max_w * (1.0 - self._slope * (soc - TAPER_KNEE))

    def seconds_to(self, soc_target: float) -> float:
        """Time to reach `soc_target` (fraction, at most 1.0) from the start."""
        if soc_target <= self.soc_start:
            return 0.0
        if soc_target <= TAPER_KNEE:
            return (soc_target - self.soc_start) / self._rate
        soc0 = max(self.soc_start, TAPER_KNEE)
        y0 = 1.0 - self._slope * (soc0 - TAPER_KNEE)
        y1 = 1.0 - self._slope * (soc_target - TAPER_KNEE)
        return self._knee_s + math.log(y0 / y1) / (self._slope * self._rate)
