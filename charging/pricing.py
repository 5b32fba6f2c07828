"""Session pricing, behind one entry point: `pricing_engine` gives the TariffEngine to use.

Configuration is either the simple tariff (a price per kWh plus a price per minute
plugged in, the default when no tariff file is configured) or a `TariffBook` loaded from
an OCPI 2.2.1 tariff file (`processors/tariffs`). The simple tariff is run by the same
engine as a one-element tariff priced exactly (no step-size rounding), so running and
final costs always come from one place. Every amount is a Decimal; rounding happens once,
on the final figure (see charging/tariffs/cost.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from charging.tariffs import TariffBook, TariffEngine
from charging.tariffs.model import Assignment, Dimension, PriceComponent, Tariff, TariffElement

_CENT = Decimal("0.01")
_WH_PER_KWH = Decimal(1000)
_MS_PER_MINUTE = Decimal(60_000)
SIMPLE_TARIFF_ID = "SIMPLE"


@dataclass(frozen=True, slots=True)
class SimpleTariff:
    """A price per kWh delivered plus a price per minute plugged in."""

    currency: str = "EUR"
    per_kwh: Decimal = Decimal("0.39")
    per_minute: Decimal = Decimal("0.02")


Pricing = SimpleTariff | TariffBook
"""What configures pricing: the simple tariff or a tariff file's book."""


def price_session(energy_wh: float, plugged_ms: int, tariff: SimpleTariff) -> Decimal:
    """Cost of a session under the simple tariff, rounded half-up to the cent.

    `energy_wh` goes through `str` so a float register value like 1234.5 is taken as written.
    Equal to what the engine computes for the simple tariff (its reference formula).
    """
    energy_kwh = Decimal(str(energy_wh)) / _WH_PER_KWH
    minutes = Decimal(plugged_ms) / _MS_PER_MINUTE
    raw = energy_kwh * tariff.per_kwh + minutes * tariff.per_minute
    return raw.quantize(_CENT, rounding=ROUND_HALF_UP)


def simple_book(tariff: SimpleTariff) -> TariffBook:
    """The simple tariff as a tariff book: energy plus all plugged time (charging and
    parking alike) at the per-minute price, step size 0 (exact), no VAT, every station."""
    per_hour = tariff.per_minute * 60
    element = TariffElement((
        PriceComponent(Dimension.ENERGY, tariff.per_kwh, 0),
        PriceComponent(Dimension.TIME, per_hour, 0),
        PriceComponent(Dimension.PARKING_TIME, per_hour, 0),
    ))
    return TariffBook({SIMPLE_TARIFF_ID: Tariff(SIMPLE_TARIFF_ID, tariff.currency, (element,))},
                      (Assignment(SIMPLE_TARIFF_ID),), source="simple tariff")


def pricing_engine(pricing: Pricing) -> TariffEngine:
    """The engine for a pricing configuration: the one way the stitcher and the simulator
    price sessions."""
    return TariffEngine(simple_book(pricing) if isinstance(pricing, SimpleTariff) else pricing)
