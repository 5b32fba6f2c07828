"""Shared helpers for the tariff tests: build a book inline and run a session through it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from charging.tariffs import Cost, TariffEngine, parse_tariff_book

ZONE = "Europe/Amsterdam"
MIN = 60_000


def book_of(*elements: dict[str, Any], zone: str = ZONE, **tariff: Any):  # noqa: ANN201
    doc = {"time_zone": zone,
           "tariffs": [{"id": "T", "currency": "EUR", "elements": list(elements), **tariff}]}
    return parse_tariff_book(doc, "<test>")


def at(text: str, zone: str = ZONE) -> int:
    """Epoch ms of a local wall-clock time like '2024-05-06 09:30'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def run(engine: TariffEngine, start_ms: int,
        steps: list[tuple[float, float] | tuple[float, float, float | None]],
        end_ms: int | None = None, station: str = "CS-1") -> Cost:
    """`steps`: (minutes, kWh delivered[, current A]) per reading interval, in order."""
    meter = engine.open(station, 1, "TAG", start_ms)
    t = start_ms
    for step in steps:
        minutes, kwh = step[0], step[1]
        current = step[2] if len(step) > 2 else None
        t += round(minutes * MIN)
        engine.reading(meter, station, t, Decimal(str(kwh)) * 1000, current)
    return engine.quote(meter, station, end_ms if end_ms is not None else t)


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
