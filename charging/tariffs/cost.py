"""Turning a finished `Meter` into money: step sizes, min/max price, VAT, one rounding.

Rounding rules (applied once, at the end):
- volumes are exact (Wh and ms as Decimal); each line's amount is quantity x unit price
  and VAT is added per line from its component's percentage, all unrounded;
- the session total excl. VAT and the total incl. VAT are each bounded by the tariff's
  min_price/max_price (OCPI: both bounds apply to both totals; a bound without incl_vat
  moves the incl. total by VAT at the lowest rate among the lines, see `_bounded`), then
  rounded half-up to the cent;
- lines keep their exact amounts; shown with 4 decimals they may differ from the rounded
  total by less than a cent per line. A component without VAT adds none (OCPI: "no VAT
  applicable" differs from 0 %, but both add nothing to the total).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from charging.tariffs.meter import NONE, Meter
from charging.tariffs.model import Dimension, Price, Tariff

CENT = Decimal("0.01")
_SNAP = Decimal("1e-15")
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_UNITS = (Decimal(1000), Decimal(3_600_000), Decimal(3_600_000))
"""Wh per kWh, ms per hour, ms per hour: metered volumes to the OCPI price units."""
_DIMENSIONS = (Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME)


@dataclass(frozen=True, slots=True)
class CostLine:
    """One dimension of one charging period at one element's price."""

    period: int
    dimension: Dimension
    element: int
    metered: Decimal
    """kWh or hours as measured (1 for FLAT)."""
    billed: Decimal
    """After step-size rounding."""
    unit_price: Decimal
    vat: Decimal | None
    excl_vat: Decimal
    """Exact, unrounded."""
    incl_vat: Decimal


@dataclass(frozen=True, slots=True)
class ChargingPeriod:
    """OCPI CDR charging period: from `start_ms` until the next period starts."""

    start_ms: int
    elements: tuple[int, int, int]
    """Active element for ENERGY, TIME, PARKING_TIME (-1: none, free)."""
    energy_wh: Decimal
    charging_ms: int
    parking_ms: int


@dataclass(frozen=True, slots=True)
class Cost:
    tariff_id: str | None
    currency: str
    excl_vat: Decimal
    """Rounded half-up to the cent."""
    incl_vat: Decimal
    lines: tuple[CostLine, ...]
    periods: tuple[ChargingPeriod, ...]
    bound: str | None = None
    """"min_price" or "max_price" when that bound set a total."""

    def by_dimension(self) -> dict[Dimension, tuple[Decimal, Decimal]]:
        """Exact (excl. VAT, incl. VAT) per dimension, before min/max bounds and rounding."""
        out: dict[Dimension, tuple[Decimal, Decimal]] = {}
        for line in self.lines:
            excl, incl = out.get(line.dimension, (_ZERO, _ZERO))
            out[line.dimension] = (excl + line.excl_vat, incl + line.incl_vat)
        return out


def price_meter(meter: Meter, tariff: Tariff | None, flat: int | None,
                currency: str) -> Cost:
    """Close the chains of a finished meter (mutates it; its tail settled) and price it."""
    periods = tuple(ChargingPeriod(p.start_ms, p.elements, p.energy_wh, p.charging_ms,
                                   p.parking_ms) for p in meter.periods)
    if tariff is None:
        return Cost(None, currency, _ZERO.quantize(CENT), _ZERO.quantize(CENT), (), periods)
    for dimension in range(3):
        close_chain(meter, tariff, dimension)
    lines: list[CostLine] = []
    if flat is not None:
        component = tariff.elements[flat].component(Dimension.FLAT)
        assert component is not None
        lines.append(_line(0, Dimension.FLAT, flat, Decimal(1), Decimal(1), Decimal(1),
                           component.price, component.vat))
    for index, period in enumerate(meter.periods):
        metered = (period.energy_wh, Decimal(period.charging_ms), Decimal(period.parking_ms))
        for d, dimension in enumerate(_DIMENSIONS):
            element = period.elements[d]
            billed = metered[d] + period.surplus[d]
            if element == NONE or not (metered[d] or billed):
                continue
            component = tariff.elements[element].component(dimension)
            assert component is not None
            lines.append(_line(index, dimension, element, metered[d], billed, _UNITS[d],
                               component.price, component.vat))
    excl, incl, bound = _bounded(lines, tariff.min_price, tariff.max_price)
    return Cost(tariff.tariff_id, tariff.currency, to_cents(excl), to_cents(incl),
                tuple(lines), periods, bound)


def to_cents(amount: Decimal) -> Decimal:
    """Half-up to the cent, as OCPI's exact arithmetic would round.

    Amounts are not exact here: 0.25/h over 1,000 s is a repeating decimal, cut at 28
    digits, and a total that is exactly half a cent (0.535) can come out a hair below it.
    Every true amount is a fraction with a small denominator (prices, Wh, ms, percent), so
    none lies within 1e-15 of a half cent without being on it: snapping to 1e-15 first puts
    those back on the half cent before rounding."""
    return amount.quantize(_SNAP, rounding=ROUND_HALF_EVEN).quantize(CENT, rounding=ROUND_HALF_UP)


def close_chain(meter: Meter, tariff: Tariff, dimension: int) -> Decimal:
    """Round the dimension's open chain up to its step size; returns the surplus added."""
    chain = meter.chains[dimension]
    surplus = _ZERO
    if chain.volume and chain.element != NONE:
        component = tariff.elements[chain.element].component(_DIMENSIONS[dimension])
        assert component is not None
        step = Decimal(component.step_size * (1 if dimension == 0 else 1000))
        if step:
            blocks = (chain.volume / step).to_integral_value(rounding=ROUND_CEILING)
            surplus = blocks * step - chain.volume
            meter.periods[chain.period].add_surplus(dimension, surplus)
    chain.volume, chain.period, chain.element = _ZERO, NONE, NONE
    return surplus


def _line(period: int, dimension: Dimension, element: int, metered: Decimal, billed: Decimal,
          unit: Decimal, price: Decimal, vat: Decimal | None) -> CostLine:
    """Multiply before dividing, so an amount that is a terminating decimal stays exact."""
    excl = billed * price / unit
    incl = excl + excl * vat / _HUNDRED if vat is not None else excl
    return CostLine(period, dimension, element, metered / unit, billed / unit, price, vat,
                    excl, incl)


def _bounded(lines: list[CostLine], low: Price | None,
             high: Price | None) -> tuple[Decimal, Decimal, str | None]:
    """Both totals within min_price/max_price.

    A bound given without incl_vat moves the incl. total by VAT at the lowest rate among
    the lines: a minimum's top-up is taxed at it, a maximum's cut is taken from the lowest
    taxed lines first. Either way more energy or time never lowers the incl. total, which
    scaling by the mix of VAT rates would (a cheap-VAT parking minute could lower it).
    """
    excl = sum((line.excl_vat for line in lines), _ZERO)
    incl = sum((line.incl_vat for line in lines), _ZERO)
    factors = sorted((_factor(line), line.excl_vat) for line in lines if line.excl_vat)
    bound = None
    if low is not None and excl < low.excl_vat:
        lowest = factors[0][0] if factors else Decimal(1)
        incl += (low.excl_vat - excl) * lowest
        excl, bound = low.excl_vat, "min_price"
    if low is not None and low.incl_vat is not None and incl < low.incl_vat:
        incl, bound = low.incl_vat, "min_price"
    if high is not None and excl > high.excl_vat:
        cut = excl - high.excl_vat
        incl = _ZERO
        for factor, amount in factors:
            taken = min(cut, amount)
            cut -= taken
            incl += (amount - taken) * factor
        excl, bound = high.excl_vat, "max_price"
    if high is not None and high.incl_vat is not None and incl > high.incl_vat:
        incl, bound = high.incl_vat, "max_price"
    return excl, incl, bound


def _factor(line: CostLine) -> Decimal:
    return line.incl_vat / line.excl_vat
