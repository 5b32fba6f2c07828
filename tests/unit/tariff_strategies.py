"""Hypothesis strategies for random OCPI tariff files and random sessions.

Tariffs: every dimension, step sizes from 1 Wh / 1 s to whole hours, VAT or none, every
restriction (time of day across midnight, day of week, dates, kWh, power, current, duration),
min/max price with and without incl_vat, validity dates. Sessions: reading intervals of any
length down to 0 ms, idle (0 Wh) intervals, register resets, currents or none, a parking
tail, starts in several time zones (whole-hour, half-hour and 45-minute offsets, northern and
southern daylight saving) and near their daylight-saving nights.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "Australia/Sydney",
         "Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham", "UTC")
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
STATIONS = ("CS-1", "CS-2", "CS-3")
"""CS-1 uses the file's time_zone, CS-2 and CS-3 a zone of their own."""
FROM = datetime(2025, 6, 1, tzinfo=UTC)
UNTIL = datetime(2027, 6, 1, tzinfo=UTC)
HOUR_MS = 3_600_000

prices = st.sampled_from([Decimal(p) for p in ("0.25", "0.39", "0.59", "1.20", "2.00", "6.00")]) \
    | st.decimals(min_value=0, max_value=12, places=2)
vats = st.sampled_from([19, 0, 5.5, 7, 10, 20, 21]) | st.none()
steps = st.sampled_from([1, 1, 10, 60, 100, 300, 500, 900, 1000, 1800, 3600]) | st.integers(1, 2000)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


clock_times = st.sampled_from([0, 6 * 60, 8 * 60, 17 * 60, 20 * 60, 22 * 60, 23 * 60 + 59]) \
    | st.integers(0, 24 * 60 - 1)


@st.composite
def _pair(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> tuple[Any, Any]:
    """(min, max) with either or both unset; min < max when both are set (the loader's rule)."""
    low, high = draw(st.none() | values), draw(st.none() | values)
    if low is not None and high is not None:
        if low == high:
            return low, None
        low, high = min(low, high), max(low, high)
    return low, high


@st.composite
def restrictions(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        for key in draw(st.sampled_from([("start_time",), ("end_time",),
                                         ("start_time", "end_time")])):
            out[key] = _hhmm(draw(clock_times))
    if draw(st.integers(0, 4)) == 0:
        out["day_of_week"] = sorted(draw(st.sets(st.sampled_from(DAYS), min_size=1)),
                                    key=DAYS.index)
    if draw(st.integers(0, 6)) == 0:
        low, high = draw(_pair(st.dates(FROM.date(), UNTIL.date())))
        out.update({k: v.isoformat() for k, v in (("start_date", low), ("end_date", high))
                    if v is not None})
    for name, values in (
            ("kwh", st.decimals(0, 60, places=1) | st.decimals(0, 5, places=3)),
            ("power", st.sampled_from([Decimal(v) for v in (3, 7, 11, 16, 22, 32, 50)])
             | st.decimals(0, 150, places=1)),
            ("current", st.decimals(0, 200, places=0)),
            ("duration", st.integers(0, 6 * 3600) | st.sampled_from([900, 1800, 3600]))):
        if draw(st.integers(0, 3)) == 0:
            low, high = draw(_pair(values))
            for key, value in ((f"min_{name}", low), (f"max_{name}", high)):
                if value is not None:
                    out[key] = value if isinstance(value, int) else str(value)
    return out


@st.composite
def elements(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]),
                          min_size=1, max_size=3, unique=True))
    components = []
    for kind in kinds:
        component: dict[str, Any] = {"type": kind, "price": str(draw(prices)),
                                     "step_size": 1 if kind == "FLAT" else draw(steps)}
        vat = draw(vats)
        if vat is not None:
            component["vat"] = vat
        components.append(component)
    element: dict[str, Any] = {"price_components": components}
    found = draw(restrictions())
    if found:
        element["restrictions"] = found
    return element


@st.composite
def _price(draw: st.DrawFn, excl: Decimal) -> dict[str, str]:
    out = {"excl_vat": str(excl)}
    if draw(st.booleans()):
        out["incl_vat"] = str(excl + draw(st.decimals(0, 5, places=2)))
    return out


@st.composite
def tariff_files(draw: st.DrawFn) -> dict[str, Any]:
    """A tariff file with one tariff, assigned to every station."""
    tariff: dict[str, Any] = {"id": "T", "currency": "EUR",
                              "elements": draw(st.lists(elements(), min_size=1, max_size=6))}
    low, high = draw(_pair(st.decimals(0, 5, places=2) | st.decimals(0, 80, places=2)))
    if low is not None:
        tariff["min_price"] = draw(_price(low))
    if high is not None:
        tariff["max_price"] = draw(_price(high))
    if draw(st.integers(0, 9)) == 5:
        tariff["start_date_time"] = "2026-01-01T00:00:00Z"
    return {"time_zone": draw(st.sampled_from(ZONES)),
            "station_time_zones": {"CS-2": draw(st.sampled_from(ZONES)), "CS-3": "UTC"},
            "tariffs": [tariff]}


@st.composite
def bounded_tariff_files(draw: st.DrawFn) -> dict[str, Any]:
    """A tariff whose every component carries VAT (rates may differ), with a min_price and/or
    a max_price, each with or without incl_vat, in reach of a short session's cost: where
    the bounds' VAT rules (C7) decide the incl. VAT total."""
    fallback = {"price_components": [
        {"type": kind, "price": str(draw(st.decimals("0.01", 3, places=2))),
         "step_size": draw(steps)} for kind in ("ENERGY", "PARKING_TIME")]}
    elements_ = [*draw(st.lists(elements(), max_size=3)), fallback]
    for element in elements_:
        for component in element["price_components"]:
            component["vat"] = draw(st.sampled_from([5.5, 7, 10, 19, 20, 21]))
    tariff: dict[str, Any] = {"id": "T", "currency": "EUR", "elements": elements_}
    low, high = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    amounts = sorted(draw(st.lists(st.decimals(0, 15, places=2), min_size=2, max_size=2)))
    if low:
        tariff["min_price"] = draw(_price(amounts[0]))
    if high:
        tariff["max_price"] = draw(_price(amounts[1]))
    return {"time_zone": draw(st.sampled_from(ZONES)), "station_time_zones": {},
            "tariffs": [tariff]}


@cache
def offset_changes(zone: str) -> tuple[int, ...]:
    """Epoch ms of every UTC-offset change of `zone` in [FROM, UNTIL), found by bisection."""
    tz = ZoneInfo(zone)
    found = []
    day = FROM
    while day < UNTIL:
        low, high = day, day + timedelta(days=1)
        if low.astimezone(tz).utcoffset() != high.astimezone(tz).utcoffset():
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(int(high.timestamp() * 1000))
        day += timedelta(days=1)
    return tuple(found)


@st.composite
def starts(draw: st.DrawFn, zone: str) -> int:
    """A session start: near one of the zone's daylight-saving changes, or any time."""
    changes = offset_changes(zone)
    if changes and draw(st.booleans()):
        return draw(st.sampled_from(changes)) + draw(st.integers(-14 * HOUR_MS, 2 * HOUR_MS))
    return draw(st.integers(int(FROM.timestamp() * 1000), int(UNTIL.timestamp() * 1000)))


interval_ms = (st.integers(0, 240).map(lambda m: m * 60_000)
               | st.integers(0, 4 * HOUR_MS) | st.sampled_from([0, 1, 999, 60_000]))
energies = (st.integers(0, 60_000) | st.sampled_from([0, 0, 1, 1000, -500])
            | st.decimals(0, 5000, places=3))
currents = st.none() | st.floats(0, 250).map(lambda a: round(a, 1))


@st.composite
def sessions(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """A session at one of STATIONS: start, (ms since previous, Wh, A) readings, end."""
    station = draw(st.sampled_from(STATIONS))
    zone = doc["station_time_zones"].get(station, doc["time_zone"])
    start = draw(starts(zone))
    readings = []
    t = start
    for _ in range(draw(st.sampled_from([1, 2, 3, 4, 6, 10, 0]))):
        t += draw(interval_ms)
        readings.append((t, Decimal(draw(energies)), draw(currents)))
    end = t + draw(st.sampled_from([0, 0]) | interval_ms)
    return {"station": station, "start": start, "readings": readings, "end": end}
