"""The tariffs the reference pricer reads: a tariff file's OCPI dicts, taken as written.

The simulator's truth and the tests price with `producers/reference_pricing.py`, which must
share no code with the product's tariff engine (`charging/tariffs`, `charging/pricing`), not
even its loader: a loader bug would otherwise be invisible to both sides. So this module reads
the file (YAML or JSON) itself into plain values. It checks only what it needs to price; the
product's loader is the one that refuses bad files with a clear message.

What is read, by the OCPI 2.2.1 Tariffs module: per tariff `id`, `currency`, `elements`
(`price_components` with `type`, `price`, `vat`, `step_size`; `restrictions`), `min_price`,
`max_price` (`excl_vat`, optional `incl_vat`), `start_date_time`, `end_date_time`. And the
ChargeWatch parts of the file (docs/tariffs.md): `time_zone` (default UTC) and
`station_time_zones`, which play OCPI's `Location.time_zone`; `id_tag_groups` and
`assignments`, which say who pays which tariff. Station time zones live in the tariff file:
the stations file (charging/stations.py) holds ratings only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

DAY_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
"""OCPI DayOfWeek in `date.weekday()` order."""


@dataclass(frozen=True, slots=True)
class Component:
    """An OCPI PriceComponent: price per unit excl. VAT (kWh, hour, or once for FLAT)."""

    price: Fraction
    step_size: int
    """Wh for ENERGY, seconds for TIME and PARKING_TIME; 0 (only in code): no rounding."""
    vat: Fraction | None
    """Percent; None when the file gives none (OCPI: no VAT applicable)."""


@dataclass(frozen=True, slots=True)
class Element:
    """An OCPI TariffElement: its components by dimension name, and its restrictions."""

    components: dict[str, Component]
    start_time: int | None = None
    """Seconds after local midnight."""
    end_time: int | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_kwh: Fraction | None = None
    max_kwh: Fraction | None = None
    min_current: Fraction | None = None
    max_current: Fraction | None = None
    min_power: Fraction | None = None
    max_power: Fraction | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    days: frozenset[int] = frozenset()
    """`date.weekday()` numbers; empty: every day."""

    @property
    def on_the_clock(self) -> bool:
        """Whether the local clock or calendar can switch this element on or off."""
        return (self.start_time is not None or self.end_time is not None
                or self.start_date is not None or self.end_date is not None or bool(self.days))


@dataclass(frozen=True, slots=True)
class Bound:
    """An OCPI Price used as min_price or max_price."""

    excl_vat: Fraction
    incl_vat: Fraction | None


@dataclass(frozen=True, slots=True)
class TariffText:
    tariff_id: str
    currency: str
    elements: tuple[Element, ...]
    min_price: Bound | None
    max_price: Bound | None
    start_ms: int | None
    end_ms: int | None


@dataclass(frozen=True, slots=True)
class Assignment:
    tariff_id: str
    stations: frozenset[str]
    connectors: frozenset[int]
    group: str | None
    valid_from_ms: int | None
    valid_until_ms: int | None


@dataclass(frozen=True)
class TariffFile:
    """A tariff file as the reference reads it."""

    tariffs: dict[str, TariffText]
    assignments: tuple[Assignment, ...]
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    time_zone: str = "UTC"
    station_time_zones: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str) -> TariffFile:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        return cls.read(json.loads(text) if path.suffix.lower() == ".json"
                        else yaml.safe_load(text))

    @classmethod
    def read(cls, doc: dict[str, Any]) -> TariffFile:
        """From an already decoded document (the dicts a test writes, or a file's)."""
        tariffs = {str(raw["id"]): _tariff(raw) for raw in doc["tariffs"]}
        if "assignments" in doc:
            assignments = tuple(_assignment(raw) for raw in doc["assignments"])
        else:  # a file with a single tariff applies it everywhere
            (only,) = tariffs
            assignments = (Assignment(only, frozenset(), frozenset(), None, None, None),)
        groups = {str(name): frozenset(map(str, tags))
                  for name, tags in (doc.get("id_tag_groups") or {}).items()}
        zones = {str(k): str(v) for k, v in (doc.get("station_time_zones") or {}).items()}
        return cls(tariffs, assignments, groups, str(doc.get("time_zone", "UTC")), zones)

    def zone_name(self, station_id: str) -> str:
        return self.station_time_zones.get(station_id, self.time_zone)

    def tariff_for(self, station_id: str, connector_id: int, id_tag: str | None,
                   start_ms: int) -> TariffText | None:
        """The tariff a session pays: decided once, at its start (OCPI: the driver accepts
        the tariff valid when the session starts).

        Among the assignments that match, the most specific wins: one naming an id-tag group
        beats one that does not; then one naming connectors; then one naming stations; the
        first in the file among equals. A tariff outside its start/end_date_time does not
        apply. None: the session is free.
        """
        best: Assignment | None = None
        best_rank = (-1, -1, -1)
        for a in self.assignments:
            tariff = self.tariffs[a.tariff_id]
            matches = (
                (not a.stations or station_id in a.stations)
                and (not a.connectors or connector_id in a.connectors)
                and (a.group is None or (id_tag is not None and id_tag in self.groups[a.group]))
                and (a.valid_from_ms is None or a.valid_from_ms <= start_ms)
                and (a.valid_until_ms is None or start_ms < a.valid_until_ms)
                and (tariff.start_ms is None or tariff.start_ms <= start_ms)
                and (tariff.end_ms is None or start_ms < tariff.end_ms))
            rank = (int(a.group is not None), int(bool(a.connectors)), int(bool(a.stations)))
            if matches and rank > best_rank:
                best, best_rank = a, rank
        return None if best is None else self.tariffs[best.tariff_id]

    @property
    def first_currency(self) -> str:
        """The currency of a free session: the first tariff's."""
        return next(iter(self.tariffs.values())).currency


def _tariff(raw: dict[str, Any]) -> TariffText:
    return TariffText(
        tariff_id=str(raw["id"]), currency=str(raw["currency"]),
        elements=tuple(_element(e) for e in raw["elements"]),
        min_price=_bound(raw.get("min_price")), max_price=_bound(raw.get("max_price")),
        start_ms=_instant(raw.get("start_date_time")),
        end_ms=_instant(raw.get("end_date_time")))


def _element(raw: dict[str, Any]) -> Element:
    components = {str(c["type"]): Component(_number(c["price"]), int(c.get("step_size", 1)),
                                            _optional(c.get("vat")))
                  for c in raw["price_components"]}
    r = raw.get("restrictions") or {}
    return Element(
        components=components,
        start_time=_clock(r.get("start_time")), end_time=_clock(r.get("end_time")),
        start_date=_day(r.get("start_date")), end_date=_day(r.get("end_date")),
        min_kwh=_optional(r.get("min_kwh")), max_kwh=_optional(r.get("max_kwh")),
        min_current=_optional(r.get("min_current")), max_current=_optional(r.get("max_current")),
        min_power=_optional(r.get("min_power")), max_power=_optional(r.get("max_power")),
        min_duration=r.get("min_duration"), max_duration=r.get("max_duration"),
        days=frozenset(DAY_NAMES.index(d) for d in r.get("day_of_week") or ()))


def _assignment(raw: dict[str, Any]) -> Assignment:
    group = raw.get("id_tag_group")
    return Assignment(str(raw["tariff"]), frozenset(map(str, raw.get("stations") or ())),
                      frozenset(int(c) for c in raw.get("connectors") or ()),
                      None if group is None else str(group),
                      _instant(raw.get("valid_from")), _instant(raw.get("valid_until")))


def _bound(raw: dict[str, Any] | None) -> Bound | None:
    if raw is None:
        return None
    return Bound(_number(raw["excl_vat"]), _optional(raw.get("incl_vat")))


def _number(value: Any) -> Fraction:
    """A JSON/YAML number as written: through its text, so 0.1 is one tenth."""
    return Fraction(str(value))


def _optional(value: Any) -> Fraction | None:
    return None if value is None else _number(value)


def _clock(value: str | None) -> int | None:
    if value is None:
        return None
    hours, minutes = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _day(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _instant(value: str | datetime | None) -> int | None:
    """An OCPI DateTime (UTC when it names no zone) as epoch ms."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(
        value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
