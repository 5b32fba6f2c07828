"""Reading a tariff file (YAML or JSON) into a validated `TariffBook`.

Tariff objects follow OCPI 2.2.1 field names, so an OCPI Tariff can be pasted in (its
descriptive fields such as `party_id` or `tariff_alt_text` are accepted and ignored;
`last_updated` is kept for CDRs, the file's modification time where a tariff lacks it).
Every error names the file, the tariff or assignment, and the field::

    tariffs/example.yaml: tariff 'NIGHT': elements[1].restrictions.start_time: '25:00' is
    not a time of day HH:MM
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from charging.tariffs.errors import TariffFileError
from charging.tariffs.model import (
    DAYS,
    Assignment,
    Dimension,
    Price,
    PriceComponent,
    Restrictions,
    Tariff,
    TariffBook,
    TariffElement,
)

_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_DATE = re.compile(r"^[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_OCPI_DESCRIPTIVE = {"country_code", "party_id", "type", "tariff_alt_text", "tariff_alt_url",
                     "energy_mix", "tax_included"}
_TARIFF_KEYS = {"id", "currency", "elements", "min_price", "max_price", "start_date_time",
                "end_date_time", "last_updated"} | _OCPI_DESCRIPTIVE
_BOOK_KEYS = {"time_zone", "station_time_zones", "id_tag_groups", "tariffs", "assignments"}
_ASSIGNMENT_KEYS = {"tariff", "stations", "connectors", "id_tag_group", "valid_from",
                    "valid_until"}
_RESTRICTION_KEYS = {"start_time", "end_time", "start_date", "end_date", "min_kwh", "max_kwh",
                     "min_current", "max_current", "min_power", "max_power", "min_duration",
                     "max_duration", "day_of_week", "reservation"}

class _Where:
    """The path of the value being read, for error messages."""

    def __init__(self, source: str, owner: str = "") -> None:
        self.source = source
        self.owner = owner

    def fail(self, field: str, problem: str) -> TariffFileError:
        owner = f" {self.owner}:" if self.owner else ""
        return TariffFileError(f"{self.source}:{owner} {field}: {problem}")


def load_tariff_book(path: Path | str) -> TariffBook:
    """Read and validate a tariff file; raises TariffFileError naming file, tariff and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TariffFileError(f"{path}: cannot read the tariff file: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise TariffFileError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}:"
                              f" {str(exc).splitlines()[0]}") from None
    book = parse_tariff_book(doc, str(path))
    changed = int(path.stat().st_mtime * 1000)  # last_updated of tariffs that do not say
    return replace(book, tariffs={
        tid: t if t.last_updated_ms is not None else replace(t, last_updated_ms=changed)
        for tid, t in book.tariffs.items()})


def parse_tariff_book(doc: Any, source: str = "<tariffs>") -> TariffBook:
    """Validate an already parsed document (a mapping) into a TariffBook."""
    top = _Where(source)
    if not isinstance(doc, dict):
        raise top.fail("(top level)", "must be a mapping with a 'tariffs' list")
    _known_keys(doc, _BOOK_KEYS, top, "(top level)")
    zone = _zone_name(doc.get("time_zone", "UTC"), top, "time_zone")
    zones_raw = _mapping(doc.get("station_time_zones", {}), top, "station_time_zones")
    station_zones = {str(k): _zone_name(v, top, f"station_time_zones.{k}")
                     for k, v in zones_raw.items()}
    groups_raw = _mapping(doc.get("id_tag_groups", {}), top, "id_tag_groups")
    groups = {str(name): frozenset(str(t) for t in _list(tags, top, f"id_tag_groups.{name}"))
              for name, tags in groups_raw.items()}
    raw_tariffs = _list(doc.get("tariffs"), top, "tariffs")
    if not raw_tariffs:
        raise top.fail("tariffs", "at least one tariff is required")
    tariffs: dict[str, Tariff] = {}
    for i, raw in enumerate(raw_tariffs):
        tariff = _tariff(raw, source, i)
        if tariff.tariff_id in tariffs:
            raise top.fail(f"tariffs[{i}].id", f"duplicate tariff id {tariff.tariff_id!r}")
        tariffs[tariff.tariff_id] = tariff
    if "assignments" in doc:
        assignments = tuple(_assignment(raw, source, i, tariffs, groups)
                            for i, raw in enumerate(_list(doc["assignments"], top,
                                                          "assignments")))
    elif len(tariffs) == 1:
        assignments = (Assignment(next(iter(tariffs))),)
    else:
        raise top.fail("assignments", "required when the file holds more than one tariff")
    return TariffBook(tariffs, assignments, groups, zone, station_zones, source)


def _tariff(raw: Any, source: str, index: int) -> Tariff:
    where = _Where(source, f"tariffs[{index}]")
    if not isinstance(raw, dict):
        raise where.fail("(tariff)", "must be a mapping")
    tariff_id = raw.get("id")
    if not isinstance(tariff_id, str | int) or not str(tariff_id):
        raise where.fail("id", "required (a non-empty string)")
    where = _Where(source, f"tariff {str(tariff_id)!r}")
    _known_keys(raw, _TARIFF_KEYS, where, "(tariff)")
    currency = raw.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise where.fail("currency", f"{currency!r} is not an ISO 4217 code such as 'EUR'")
    elements = tuple(_element(e, where, f"elements[{i}]")
                     for i, e in enumerate(_list(raw.get("elements"), where, "elements")))
    if not elements:
        raise where.fail("elements", "at least one tariff element is required")
    min_price = _price(raw.get("min_price"), where, "min_price")
    max_price = _price(raw.get("max_price"), where, "max_price")
    if min_price and max_price and min_price.excl_vat > max_price.excl_vat:
        raise where.fail("min_price", "is above max_price")
    start = _instant(raw.get("start_date_time"), where, "start_date_time")
    end = _instant(raw.get("end_date_time"), where, "end_date_time")
    if start is not None and end is not None and end <= start:
        raise where.fail("end_date_time", "must be after start_date_time")
    return Tariff(str(tariff_id), currency, elements, min_price, max_price, start, end,
                  _instant(raw.get("last_updated"), where, "last_updated"))


def _element(raw: Any, where: _Where, field: str) -> TariffElement:
    if not isinstance(raw, dict):
        raise where.fail(field, "must be a mapping with price_components")
    _known_keys(raw, {"price_components", "restrictions"}, where, field)
    components = tuple(
        _component(c, where, f"{field}.price_components[{i}]")
        for i, c in enumerate(_list(raw.get("price_components"), where,
                                    f"{field}.price_components")))
    if not components:
        raise where.fail(f"{field}.price_components", "at least one price component is required")
    seen = [c.dimension for c in components]
    if len(seen) != len(set(seen)):
        raise where.fail(f"{field}.price_components", "a dimension appears twice")
    restrictions = _restrictions(raw.get("restrictions"), where, f"{field}.restrictions")
    return TariffElement(components, restrictions)


def _component(raw: Any, where: _Where, field: str) -> PriceComponent:
    if not isinstance(raw, dict):
        raise where.fail(field, "must be a mapping with type, price and step_size")
    _known_keys(raw, {"type", "price", "vat", "step_size"}, where, field)
    kind = raw.get("type")
    if kind not in Dimension.__members__:
        raise where.fail(f"{field}.type", f"{kind!r} is not one of "
                                          f"{', '.join(Dimension.__members__)}")
    price = _decimal(raw.get("price"), where, f"{field}.price", required=True, minimum=0)
    vat = _decimal(raw.get("vat"), where, f"{field}.vat", minimum=0)
    if vat is not None and vat > 100:
        raise where.fail(f"{field}.vat", f"{vat} is a percentage above 100")
    step = raw.get("step_size", 1)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise where.fail(f"{field}.step_size", f"{step!r} is not a whole number >= 1")
    assert price is not None
    return PriceComponent(Dimension(kind), price, step, vat)


def _restrictions(raw: Any, where: _Where, field: str) -> Restrictions:
    if raw is None:
        return Restrictions()
    if not isinstance(raw, dict):
        raise where.fail(field, "must be a mapping")
    _known_keys(raw, _RESTRICTION_KEYS, where, field)
    if "reservation" in raw:
        raise where.fail(f"{field}.reservation", "reservations are not metered by ChargeWatch; "
                                                 "remove this element")
    days = _list(raw.get("day_of_week", []), where, f"{field}.day_of_week")
    for day in days:
        if day not in DAYS:
            raise where.fail(f"{field}.day_of_week", f"{day!r} is not one of {', '.join(DAYS)}")
    out = Restrictions(
        start_time=_time_of_day(raw.get("start_time"), where, f"{field}.start_time"),
        end_time=_time_of_day(raw.get("end_time"), where, f"{field}.end_time"),
        start_date=_date(raw.get("start_date"), where, f"{field}.start_date"),
        end_date=_date(raw.get("end_date"), where, f"{field}.end_date"),
        min_kwh=_decimal(raw.get("min_kwh"), where, f"{field}.min_kwh", minimum=0),
        max_kwh=_decimal(raw.get("max_kwh"), where, f"{field}.max_kwh", minimum=0),
        min_current=_decimal(raw.get("min_current"), where, f"{field}.min_current", minimum=0),
        max_current=_decimal(raw.get("max_current"), where, f"{field}.max_current", minimum=0),
        min_power=_decimal(raw.get("min_power"), where, f"{field}.min_power", minimum=0),
        max_power=_decimal(raw.get("max_power"), where, f"{field}.max_power", minimum=0),
        min_duration=_seconds(raw.get("min_duration"), where, f"{field}.min_duration"),
        max_duration=_seconds(raw.get("max_duration"), where, f"{field}.max_duration"),
        day_of_week=frozenset(DAYS.index(d) for d in days),
    )
    for low, high in (("start_date", "end_date"), ("min_kwh", "max_kwh"),
                      ("min_current", "max_current"), ("min_power", "max_power"),
                      ("min_duration", "max_duration")):
        lo, hi = getattr(out, low), getattr(out, high)
        if lo is not None and hi is not None and lo >= hi:
            raise where.fail(f"{field}.{high}", f"must be above {low} ({lo})")
    return out


def _assignment(raw: Any, source: str, index: int, tariffs: dict[str, Tariff],
                groups: dict[str, frozenset[str]]) -> Assignment:
    where = _Where(source, f"assignments[{index}]")
    if not isinstance(raw, dict):
        raise where.fail("(assignment)", "must be a mapping with a 'tariff'")
    _known_keys(raw, _ASSIGNMENT_KEYS, where, "(assignment)")
    tariff_id = str(raw.get("tariff", ""))
    if tariff_id not in tariffs:
        raise where.fail("tariff", f"{tariff_id!r} is not a tariff id in this file "
                                   f"({', '.join(sorted(tariffs))})")
    group = raw.get("id_tag_group")
    if group is not None and group not in groups:
        raise where.fail("id_tag_group", f"{group!r} is not defined under id_tag_groups")
    connectors = _list(raw.get("connectors", []), where, "connectors")
    if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in connectors):
        raise where.fail("connectors", "must be a list of connector numbers (>= 0)")
    start = _instant(raw.get("valid_from"), where, "valid_from")
    end = _instant(raw.get("valid_until"), where, "valid_until")
    if start is not None and end is not None and end <= start:
        raise where.fail("valid_until", "must be after valid_from")
    return Assignment(tariff_id, frozenset(str(s) for s in _list(raw.get("stations", []),
                                                                  where, "stations")),
                      frozenset(connectors), group, start, end)


# -- scalar readers ---------------------------------------------------------------------

def _known_keys(raw: dict[str, Any], known: set[str], where: _Where, field: str) -> None:
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise where.fail(field, f"unknown field(s) {', '.join(unknown)}; "
                                f"expected some of {', '.join(sorted(known))}")


def _list(value: Any, where: _Where, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise where.fail(field, f"must be a list, got {type(value).__name__}")
    return value


def _mapping(value: Any, where: _Where, field: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise where.fail(field, f"must be a mapping, got {type(value).__name__}")
    return value


def _decimal(value: Any, where: _Where, field: str, *, required: bool = False,
             minimum: int | None = None) -> Decimal | None:
    if value is None:
        if required:
            raise where.fail(field, "required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise where.fail(field, f"{value!r} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise where.fail(field, f"{value!r} is not a number") from None
    if not number.is_finite() or (minimum is not None and number < minimum):
        raise where.fail(field, f"{value!r} must be a finite number >= {minimum}")
    return number


def _seconds(value: Any, where: _Where, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise where.fail(field, f"{value!r} is not a whole number of seconds >= 0")
    return value


def _time_of_day(value: Any, where: _Where, field: str) -> int | None:
    if value is None:
        return None
    match = _TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise where.fail(field, f"{value!r} is not a time of day HH:MM (00:00..23:59)")
    return int(match[1]) * 3600 + int(match[2]) * 60


def _date(value: Any, where: _Where, field: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):  # YAML reads an unquoted 2026-01-01 as a date
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise where.fail(field, f"{value!r} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise where.fail(field, f"{value!r} is not a calendar date") from None


def _instant(value: Any, where: _Where, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise where.fail(field, f"{value!r} is not an ISO-8601 date-time") from None
    else:
        raise where.fail(field, f"{value!r} is not an ISO-8601 date-time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # OCPI DateTimes are UTC
    return int(moment.timestamp() * 1000)


def _price(value: Any, where: _Where, field: str) -> Price | None:
    if value is None:
        return None
    raw = _mapping(value, where, field)
    _known_keys(raw, {"excl_vat", "incl_vat"}, where, field)
    excl = _decimal(raw.get("excl_vat"), where, f"{field}.excl_vat", required=True, minimum=0)
    incl = _decimal(raw.get("incl_vat"), where, f"{field}.incl_vat", minimum=0)
    assert excl is not None
    if incl is not None and incl < excl:
        raise where.fail(f"{field}.incl_vat", "is below excl_vat")
    return Price(excl, incl)


def _zone_name(value: Any, where: _Where, field: str) -> str:
    check: Callable[[str], object] = ZoneInfo
    try:
        check(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise where.fail(field, f"{value!r} is not an IANA time zone such as "
                                f"'Europe/Amsterdam'") from None
    return str(value)
