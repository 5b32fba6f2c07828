"""Shared helpers for the tariff tests: write a tariff file inline and run a session through
the engine or through the reference pricer (producers/reference_pricing.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from charging.tariffs import Cost, TariffBook, TariffEngine, parse_tariff_book
from producers.reference_pricing import Reading, ReferenceCost, ReferencePricer, Session
from producers.reference_tariffs import TariffFile

ZONE = "Europe/Amsterdam"
MIN = 60_000


Steps = list[tuple[float, float] | tuple[float, float, float | None]]
"""(minutes, kWh delivered[, current A]) per reading interval, in order."""


def doc_of(*elements: dict[str, Any], zone: str = ZONE, **tariff: Any) -> dict[str, Any]:
    """A tariff file with one tariff "T" (OCPI fields in `tariff`) as its decoded document."""
    return {"time_zone": zone,
            "tariffs": [{"id": "T", "currency": "EUR", "elements": list(elements), **tariff}]}


def book_of(*elements: dict[str, Any], zone: str = ZONE, **tariff: Any) -> TariffBook:
    return parse_tariff_book(doc_of(*elements, zone=zone, **tariff), "<test>")


def at(text: str, zone: str = ZONE) -> int:
    """Epoch ms of a local wall-clock time like '2024-05-06 09:30'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def run(engine: TariffEngine, start_ms: int, steps: Steps, end_ms: int | None = None,
        station: str = "CS-1") -> Cost:
    meter = engine.open(station, 1, "TAG", start_ms)
    readings = _readings(start_ms, steps)
    for reading in readings:
        engine.reading(meter, station, reading.time_ms, Decimal(reading.energy_wh),
                       reading.current_a)
    return engine.quote(meter, station, _end(start_ms, readings, end_ms))


def reference_run(doc: dict[str, Any], start_ms: int, steps: Steps, end_ms: int | None = None,
                  station: str = "CS-1") -> ReferenceCost:
    readings = _readings(start_ms, steps)
    return ReferencePricer(TariffFile.read(doc)).price(
        Session(station, 1, "TAG", start_ms, readings, _end(start_ms, readings, end_ms)))


def _readings(start_ms: int, steps: Steps) -> tuple[Reading, ...]:
    out = []
    t = start_ms
    for step in steps:
        t += round(step[0] * MIN)
        out.append(Reading(t, Decimal(str(step[1])) * 1000, step[2] if len(step) > 2 else None))
    return tuple(out)


def _end(start_ms: int, readings: tuple[Reading, ...], end_ms: int | None) -> int:
    if end_ms is not None:
        return end_ms
    return readings[-1].time_ms if readings else start_ms


def ENERGY(price: str, vat: float | None = None, step: int = 1) -> dict[str, Any]:  # noqa: N802
    return _pc("ENERGY", price, vat, step)


def TIME(price: str, vat: float | None = None, step: int = 1) -> dict[str, Any]:  # noqa: N802
    return _pc("TIME", price, vat, step)


def PARKING(price: str, vat: float | None = None, step: int = 1) -> dict[str, Any]:  # noqa: N802
    return _pc("PARKING_TIME", price, vat, step)


def FLAT(price: str, vat: float | None = None) -> dict[str, Any]:  # noqa: N802
    return _pc("FLAT", price, vat, 1)


def _pc(kind: str, price: str, vat: float | None, step: int) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "price": price, "step_size": step}
    if vat is not None:
        out["vat"] = vat
    return out


def el(*components: dict[str, Any], **restrictions: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"price_components": list(components)}
    if restrictions:
        out["restrictions"] = restrictions
    return out
