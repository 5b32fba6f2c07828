"""Session pricing, behind one function so the full tariff engine can replace it.

Every amount is a Decimal; rounding happens once, on the final figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_CENT = Decimal("0.01")
_WH_PER_KWH = Decimal(1000)
_MS_PER_MINUTE = Decimal(60_000)


@dataclass(frozen=True, slots=True)
class SimpleTariff:
    """A price per kWh delivered plus a price per minute plugged in."""

    currency: str = "EUR"
    per_kwh: Decimal = Decimal("0.39")
    per_minute: Decimal = Decimal("0.02")


def price_session(energy_wh: float, plugged_ms: int, tariff: SimpleTariff) -> Decimal:
    """Cost of a session (or of a running one so far), rounded half-up to the cent.

    `energy_wh` goes through `str` so a float register value like 1234.5 is taken as written.
    """
    energy_kwh = Decimal(str(energy_wh)) / _WH_PER_KWH
    minutes = Decimal(plugged_ms) / _MS_PER_MINUTE
    raw = energy_kwh * tariff.per_kwh + minutes * tariff.per_minute
    return raw.quantize(_CENT, rounding=ROUND_HALF_UP)
