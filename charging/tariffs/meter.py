"""What the engine remembers about one open session: small, mutable, serializable.

A `Meter` holds, per charging period (a run of constant active tariff elements), the
metered energy, charging time and parking time; per dimension the open step-size chain;
the session's energy so far; and the parking since the last charging (the tail), held
apart until the session ends or charges again, because only then is it known whether the
tail is parking at all (see `Meter.tail`). It never holds a reading list, so an open
session's state stays a few hundred bytes however long it runs (`MAX_PERIODS` bounds the
periods, and the tail keeps one entry per run of equal elements).
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
_NO_SURPLUS = (_ZERO, _ZERO, _ZERO)
_ELEMENTS: dict[tuple[int, int, int], tuple[int, int, int]] = {}


def shared_elements(energy: int, time: int, parking: int) -> tuple[int, int, int]:
    """One tuple per combination of active elements (a tariff has few), shared by every
    period that has it: periods are what open sessions are made of."""
    elements = (energy, time, parking)
    return _ELEMENTS.setdefault(elements, elements)


@dataclass(slots=True)
class Period:
    """A charging period: `elements` = active element index for (ENERGY, TIME, PARKING_TIME)."""

    start_ms: int
    elements: tuple[int, int, int]
    energy_wh: Decimal = _ZERO
    charging_ms: int = 0
    parking_ms: int = 0
    surplus: tuple[Decimal, Decimal, Decimal] = _NO_SURPLUS
    """Step-size rounding billed on top of the metered volumes (Wh, ms, ms); may be
    negative for parking waived under the charging step (see engine). A tuple, replaced
    when it changes: most periods never get one and share the zeros (memory per session)."""

    def add_surplus(self, dimension: int, amount: Decimal) -> None:
        changed = list(self.surplus)
        changed[dimension] += amount
        self.surplus = (changed[0], changed[1], changed[2])

    def pack(self) -> list[Any]:
        row: list[Any] = [self.start_ms, *self.elements, str(self.energy_wh),
                          self.charging_ms, self.parking_ms]
        if any(self.surplus):
            row.append([str(s) for s in self.surplus])
        return row

    @classmethod
    def unpack(cls, row: list[Any]) -> Period:
        surplus = _NO_SURPLUS
        if len(row) > 7:
            surplus = (Decimal(row[7][0]), Decimal(row[7][1]), Decimal(row[7][2]))
        return cls(row[0], shared_elements(row[1], row[2], row[3]), Decimal(row[4]), row[5],
                   row[6], surplus)


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
    tail: list[list[int]] = field(default_factory=list)
    """Parking since the last charging, not booked yet: `[start_ms, span_ms, energy element,
    time element, parking element]` per run of equal active elements. Booked as parking when
    the session charges again or ends, or, at the end, booked as not billed when the
    charging time's last step-size round-up covers it (OCPI step_size example #1: parking
    "within the extra minutes of charging billed because of the step_size")."""
    periods: list[Period] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=lambda: [Chain(), Chain(), Chain()])

    @property
    def tail_ms(self) -> int:
        return sum(run[1] for run in self.tail)

    def copy(self) -> Meter:
        return Meter(self.tariff_id, self.start_ms, self.cursor_ms, self.energy_wh,
                     [list(run) for run in self.tail],
                     [Period(p.start_ms, p.elements, p.energy_wh, p.charging_ms, p.parking_ms,
                             p.surplus) for p in self.periods],
                     [Chain(c.volume, c.period, c.element) for c in self.chains])

    def pack(self) -> list[Any]:
        return [self.tariff_id, self.start_ms, self.cursor_ms, str(self.energy_wh),
                [list(run) for run in self.tail], [p.pack() for p in self.periods],
                [[str(c.volume), c.period, c.element] for c in self.chains]]

    @classmethod
    def unpack(cls, row: list[Any]) -> Meter:
        """Also reads meters packed before the tail was held apart (a number there: that
        tail is booked as parking already, so nothing is pending)."""
        tariff_id, start, cursor, energy, tail, periods, chains = row
        return cls(tariff_id, start, cursor, Decimal(energy),
                   [list(run) for run in tail] if isinstance(tail, list) else [],
                   [Period.unpack(p) for p in periods],
                   [Chain(Decimal(v), p, e) for v, p, e in chains])
