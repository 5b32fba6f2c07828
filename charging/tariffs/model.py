"""The tariff model of OCPI 2.2.1 (Tariffs module), plus who pays which tariff.

Values only: frozen dataclasses, Decimal money, validated by `loader.py`. A `TariffBook`
is everything a deployment prices with: the tariffs, the id-tag groups, the assignments
of tariffs to stations/connectors/groups with validity periods, and each station's time
zone (time-of-use restrictions are local time, OCPI's Location.time_zone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from zoneinfo import ZoneInfo


class Dimension(StrEnum):
    """OCPI TariffDimensionType: what a price component charges for."""

    ENERGY = "ENERGY"
    """Per kWh; step_size in Wh."""
    FLAT = "FLAT"
    """Once per session."""
    PARKING_TIME = "PARKING_TIME"
    """Per hour plugged in without energy flowing; step_size in seconds."""
    TIME = "TIME"
    """Per hour charging; step_size in seconds."""


DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
"""OCPI DayOfWeek, in `date.weekday()` order."""


@dataclass(frozen=True, slots=True)
class PriceComponent:
    dimension: Dimension
    price: Decimal
    """Per unit (kWh, hour, or once for FLAT), excl. VAT."""
    step_size: int
    """Billing block in Wh or seconds (OCPI). 0 only for tariffs built in code that price
    volumes exactly (the simple per-kWh/per-minute tariff); files require >= 1."""
    vat: Decimal | None = None
    """Percent; None: no VAT applies (OCPI distinguishes it from 0 %)."""


@dataclass(frozen=True, slots=True)
class Restrictions:
    """OCPI TariffRestrictions; each bound is inclusive at min/start, exclusive at max/end.

    Times of day and dates are the station's local time; `end_time < start_time` spans
    midnight. Durations in seconds from session start; kWh of the session so far; current
    (A) and power (kW) of the interval being priced.
    """

    start_time: int | None = None
    """Seconds after local midnight."""
    end_time: int | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    day_of_week: frozenset[int] = frozenset()
    """`date.weekday()` numbers; empty: every day."""

    @property
    def local_time(self) -> bool:
        """Depends on the local clock or calendar."""
        return (self.start_time is not None or self.end_time is not None
                or self.start_date is not None or self.end_date is not None
                or bool(self.day_of_week))

    @property
    def empty(self) -> bool:
        return self == _NONE


_NONE = Restrictions()


@dataclass(frozen=True, slots=True)
class TariffElement:
    components: tuple[PriceComponent, ...]
    restrictions: Restrictions = _NONE

    def component(self, dimension: Dimension) -> PriceComponent | None:
        for component in self.components:
            if component.dimension is dimension:
                return component
        return None


@dataclass(frozen=True, slots=True)
class Price:
    """OCPI Price: an amount excl. VAT and, optionally, incl. VAT."""

    excl_vat: Decimal
    incl_vat: Decimal | None = None


@dataclass(frozen=True)
class Tariff:
    tariff_id: str
    currency: str
    elements: tuple[TariffElement, ...]
    min_price: Price | None = None
    max_price: Price | None = None
    start_ms: int | None = None
    """OCPI start_date_time: valid from (UTC)."""
    end_ms: int | None = None
    """OCPI end_date_time: valid until (exclusive)."""
    last_updated_ms: int | None = None
    """OCPI last_updated: from the tariff file, else the file's modification time (None:
    not from a file, e.g. the simple tariff)."""

    def valid_at(self, time_ms: int) -> bool:
        return ((self.start_ms is None or self.start_ms <= time_ms)
                and (self.end_ms is None or time_ms < self.end_ms))

    @cached_property
    def candidates(self) -> dict[Dimension, tuple[tuple[int, TariffElement], ...]]:
        """Per dimension, the (index, element) pairs that price it, in file order."""
        return {d: tuple((i, e) for i, e in enumerate(self.elements) if e.component(d))
                for d in Dimension}


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which sessions pay a tariff. Unset selectors match everything.

    The most specific matching assignment wins (an id-tag group beats none, a connector
    list beats a station list beats all stations); among equals, the first in the file.
    """

    tariff_id: str
    stations: frozenset[str] = frozenset()
    connectors: frozenset[int] = frozenset()
    id_tag_group: str | None = None
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None

    @property
    def specificity(self) -> tuple[bool, bool, bool]:
        return (self.id_tag_group is not None, bool(self.connectors), bool(self.stations))


@dataclass(frozen=True)
class TariffBook:
    """All tariffs of a deployment and the rules that pick one for a session."""

    tariffs: dict[str, Tariff]
    assignments: tuple[Assignment, ...]
    id_tag_groups: dict[str, frozenset[str]] = field(default_factory=dict)
    time_zone: str = "UTC"
    station_time_zones: dict[str, str] = field(default_factory=dict)
    source: str = "<code>"
    """Where the book came from (a file path), for messages."""

    @property
    def default_currency(self) -> str:
        """Currency of sessions no tariff applies to (free): the first tariff's."""
        return next(iter(self.tariffs.values())).currency

    def zone(self, station_id: str) -> ZoneInfo:
        return _zone(self.station_time_zones.get(station_id, self.time_zone))

    def select(self, station_id: str, connector_id: int, id_tag: str | None,
               start_ms: int) -> Tariff | None:
        """The tariff a session starting at `start_ms` pays (None: no assignment matches).

        OCPI: the driver accepts the tariff valid when the session starts, so the choice
        is made once, at the start, and kept if the tariff or its assignment changes later.
        """
        best: Assignment | None = None
        for a in self.assignments:
            if ((a.stations and station_id not in a.stations)
                    or (a.connectors and connector_id not in a.connectors)
                    or (a.id_tag_group is not None
                        and (id_tag is None or id_tag not in self.id_tag_groups[a.id_tag_group]))
                    or (a.valid_from_ms is not None and start_ms < a.valid_from_ms)
                    or (a.valid_until_ms is not None and start_ms >= a.valid_until_ms)
                    or not self.tariffs[a.tariff_id].valid_at(start_ms)):
                continue
            if best is None or a.specificity > best.specificity:
                best = a
        return self.tariffs[best.tariff_id] if best is not None else None


_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    zone = _ZONES.get(name)
    if zone is None:
        zone = _ZONES[name] = ZoneInfo(name)
    return zone
