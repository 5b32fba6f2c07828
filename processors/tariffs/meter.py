"""What the engine remembers about one open session: small, mutable, serializable.

A `Meter` holds, per charging period (a run of constant active tariff elements), the
metered energy, charging time and parking time; per dimension the open step-size chain;
and the session's energy so far. It never holds a reading list, so an open session's
state stays a few hundred bytes however long it runs (`MAX_PERIODS` bounds the runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MAX_PERIODS = 24
"""Runs kept in order; beyond this a run is folded into the latest period with the same
elements (costs unchanged, only the period's chronology is coarser)."""

NONE = -1
"""No element prices this dimension here (free)."""

_ZERO = Decimal(0)


@dataclass(slots=True)
class Period:
    """A charging period: `elements` = active element index for (ENERGY, TIME, PARKING_TIME)."""

    start_ms: int
    elements: tuple[int, int, int]
    energy_wh: Decimal = _ZERO
    charging_ms: int = 0
    parking_ms: int = 0
    surplus: list[Decimal] = field(default_factory=lambda: [_ZERO, _ZERO, _ZERO])
    """Step-size rounding billed on top of the metered volumes (Wh, ms, ms); may be
    negative for parking waived under the charging step (see engine)."""

    def pack(self) -> list[Any]:
        row: list[Any] = [self.start_ms, *self.elements, str(self.energy_wh),
                          self.charging_ms, self.parking_ms]
        if any(self.surplus):
            row.append([str(s) for s in self.surplus])
        return row

    @classmethod
    def unpack(cls, row: list[Any]) -> Period:
        surplus = [Decimal(s) for s in row[7]] if len(row) > 7 else [_ZERO, _ZERO, _ZERO]
        return cls(row[0], (row[1], row[2], row[3]), Decimal(row[4]), row[5], row[6], surplus)


@dataclass(slots=True)
class Chain:
    """Volume of one dimension since its last break (a stretch where no element priced it)."""

    volume: Decimal = _ZERO
    period: int = NONE
    """Period that last received volume: it gets the chain's rounding surplus."""
    element: int = NONE
    """Element that last received volume: its step size rounds the chain."""


@dataclass(slots=True)
class Meter:
    tariff_id: str | None
    """Chosen at session start and kept (None: no tariff assigned, the session is free)."""
    start_ms: int
    cursor_ms: int
    """Everything up to here is accounted."""
    energy_wh: Decimal = _ZERO
    tail_ms: int = 0
    """Parking since the last charging interval."""
    periods: list[Period] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=lambda: [Chain(), Chain(), Chain()])

    def copy(self) -> Meter:
        return Meter(self.tariff_id, self.start_ms, self.cursor_ms, self.energy_wh,
                     self.tail_ms,
                     [Period(p.start_ms, p.elements, p.energy_wh, p.charging_ms, p.parking_ms,
                             list(p.surplus)) for p in self.periods],
                     [Chain(c.volume, c.period, c.element) for c in self.chains])

    def pack(self) -> list[Any]:
        return [self.tariff_id, self.start_ms, self.cursor_ms, str(self.energy_wh),
                self.tail_ms, [p.pack() for p in self.periods],
                [[str(c.volume), c.period, c.element] for c in self.chains]]

    @classmethod
    def unpack(cls, row: list[Any]) -> Meter:
        tariff_id, start, cursor, energy, tail, periods, chains = row
        return cls(tariff_id, start, cursor, Decimal(energy), tail,
                   [Period.unpack(p) for p in periods],
                   [Chain(Decimal(v), p, e) for v, p, e in chains])
