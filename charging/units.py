"""Quantities in the units a person reads: "3 d 4 h", "3.7 MW", "60.09 kWh".

The one place anomaly messages (and anything else meant for people) format durations,
power and energy, so no text shows raw epoch or millisecond values.
"""

from __future__ import annotations

_MINUTE_MS = 60_000


def duration(ms: int | float) -> str:
    """A duration in its two largest units: "40 s", "12 min", "2 h 5 min", "3 d 4 h", "56 y 3 d"."""
    ms = abs(int(ms))
    if ms < _MINUTE_MS:
        return f"{ms / 1000:.0f} s"
    minutes = ms // _MINUTE_MS
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return _two(hours, "h", minutes, "min")
    days, hours = divmod(hours, 24)
    if days < 365:
        return _two(days, "d", hours, "h")
    years, days = divmod(days, 365)
    return _two(years, "y", days, "d")


def power(watts: float) -> str:
    """Power with one decimal at most: "500 W", "11 kW", "7.4 kW", "3.7 MW"."""
    for scale, unit in ((1e6, "MW"), (1e3, "kW")):
        if abs(watts) >= scale:
            return f"{_one_decimal(watts / scale)} {unit}"
    return f"{watts:.0f} W"


def energy(wh: float) -> str:
    """Energy to four significant digits: "61.83 Wh", "60.09 kWh", "1.25 MWh"."""
    for scale, unit in ((1e6, "MWh"), (1e3, "kWh")):
        if abs(wh) >= scale:
            return f"{wh / scale:.4g} {unit}"
    return f"{wh:.4g} Wh"


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"


def _one_decimal(value: float) -> str:
    text = f"{value:.1f}"
    return text.removesuffix(".0")
