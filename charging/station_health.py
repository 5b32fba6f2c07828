"""Station health: availability, failures, MTBF and MTTR from a connector's status history.

The definitions, in plain Python over plain data (no ClickHouse): sinks/health_reports.py
computes the same figures in SQL, and the tests hold both to these and to the simulator's
fault truth. docs/bi.md "Station health" states them for people.

For one connector and a period [start, end):
- The history is the connector's statuses sorted by (time, event id). Each status holds from
  its time until the next one's (the last until `end`); a status from before `start` carries
  into the period. Time before the connector's first status is unknown and not counted.
- observed = the part of those intervals inside the period; down = the part spent in a
  DOWN status (Faulted, Unavailable); up = observed - down; occupied = the part in an
  OCCUPIED status (a vehicle on the connector).
- availability % = 100 * up / observed; occupancy % = 100 * occupied / observed.
- A failure is a Faulted status whose predecessor was not Faulted (a fault's onset), with
  its time inside the period. Its repair is the first later status that is not Faulted; a
  failure repaired before `end` counts as a repair of (repair time - onset) ms.
- MTBF = up / failures (operating time between failures); MTTR = repair ms / repairs.
Stations and model/firmware groups sum the connectors' observed, down, occupied, failures,
repairs and repair ms, then apply the same ratios (a time-weighted mean over connectors).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FAULTED = "Faulted"
DOWN = ("Faulted", "Unavailable")
"""Statuses in which a connector cannot serve a vehicle."""
OCCUPIED = ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Occupied")
"""Statuses with a vehicle on the connector (OCPP 1.6; 2.0.1 says Occupied)."""
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class StatusPoint:
    """One status of a connector's history."""

    time_ms: int
    status: str
    event_id: str = ""
    """Orders statuses with the same time (as the reports do)."""


@dataclass(frozen=True, slots=True)
class HealthFigures:
    """Summable time and counts of one connector (or a sum of connectors) over a period."""

    observed_ms: int = 0
    down_ms: int = 0
    occupied_ms: int = 0
    failures: int = 0
    repairs: int = 0
    repair_ms: int = 0

    def __add__(self, other: HealthFigures) -> HealthFigures:
        return HealthFigures(self.observed_ms + other.observed_ms, self.down_ms + other.down_ms,
                             self.occupied_ms + other.occupied_ms,
                             self.failures + other.failures, self.repairs + other.repairs,
                             self.repair_ms + other.repair_ms)

    @property
    def up_ms(self) -> int:
        return self.observed_ms - self.down_ms

    @property
    def availability_pct(self) -> float | None:
        return 100 * self.up_ms / self.observed_ms if self.observed_ms else None

    @property
    def occupancy_pct(self) -> float | None:
        return 100 * self.occupied_ms / self.observed_ms if self.observed_ms else None

    @property
    def mtbf_ms(self) -> float | None:
        return self.up_ms / self.failures if self.failures else None

    @property
    def mttr_ms(self) -> float | None:
        return self.repair_ms / self.repairs if self.repairs else None


def connector_health(points: Iterable[StatusPoint], start_ms: int, end_ms: int) -> HealthFigures:
    """The figures of one connector's status history over [start_ms, end_ms)."""
    history = sorted((p for p in points if p.time_ms < end_ms),
                     key=lambda p: (p.time_ms, p.event_id))
    observed = down = occupied = failures = repairs = repair_ms = 0
    for i, point in enumerate(history):
        following = history[i + 1].time_ms if i + 1 < len(history) else end_ms
        length = max(0, min(following, end_ms) - max(point.time_ms, start_ms))
        observed += length
        down += length if point.status in DOWN else 0
        occupied += length if point.status in OCCUPIED else 0
        onset = point.status == FAULTED and (i == 0 or history[i - 1].status != FAULTED)
        if onset and start_ms <= point.time_ms:
            failures += 1
            repair = _repair_ms(history, i)
            if repair is not None:
                repairs += 1
                repair_ms += repair
    return HealthFigures(observed, down, occupied, failures, repairs, repair_ms)


def _repair_ms(history: Sequence[StatusPoint], onset: int) -> int | None:
    """Time from the onset to the first later status that is not Faulted (None: none yet)."""
    for point in history[onset + 1:]:
        if point.status != FAULTED:
            return point.time_ms - history[onset].time_ms
    return None
