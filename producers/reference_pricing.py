"""A reference pricer written from the OCPI 2.2.1 Tariffs module text: the truth's costs.

The simulator's ground truth and the tests price sessions here, never with the product's
engine (`charging/tariffs`, `charging/pricing`), so a pricing bug cannot hide by being on both
sides of a comparison. It is slow and plain on purpose: exact fractions, no state carried
between readings, every interval cut into slices and every slice priced from scratch.

How a session is priced (OCPI 2.2.1, mod_tariffs):
1. The tariff is the one that applies when the session starts (`TariffFile.tariff_for`).
2. Each reading interval (start or previous reading -> this reading; the last reading ->
   the end) is cut wherever an element may switch on or off: at every minute where the
   local clock or calendar switches some element (found by walking the interval minute by
   minute in the station's time zone, so a daylight-saving night needs no special case),
   where the session's duration reaches a min/max_duration, and where its energy reaches a
   min/max_kwh.
3. Per slice and per dimension the first element in the list that has the dimension and
   whose restrictions all hold is used ("the first Tariff Element with that Dimension in the
   list with matching Tariff Restrictions"); none: the dimension is free there.
4. step_size is applied "only for the last TariffElement and when switching to another
   TariffElement for the PriceComponents that is not in the new TariffElement": per dimension
   the volume of a run of slices that price it is rounded up once, with the step size of the
   last element that received volume, and the round-up is billed at that element's price.
5. VAT is added per component; min_price and max_price bound both totals ("they both
   apply"); each total is rounded to the cent once, at the end.

Where OCPI leaves a choice open, the reference makes the one the product's engine made, and
docs/tariffs.md ("Choices where OCPI is silent") lists the same ones:
- C1 an interval with energy flowing is charging time (TIME); one without is parking
  (PARKING_TIME), as is the time from the last reading to the end. A negative delta (a
  register reset) counts as no energy. A reading older than the last one counted is ignored.
- C2 an interval's power is its average (energy over time); its current is the one the
  reading that closes it reports; unknown (a zero-length interval, no current reported): a
  power or current restriction does not hold.
- C3 energy flows linearly inside an interval; at a cut, the energy so far is rounded to the
  mWh (half-even), except where a kWh threshold is reached: there the cut is at the threshold
  exactly, at the millisecond (rounded down) where the line reaches it.
- C4 day_of_week and dates are those of the local moment priced (a 22:00-06:00 window on
  FRIDAY covers Friday 00:00-06:00 and 22:00-24:00); start_time after end_time spans
  midnight; equal times: all day; only a start: until midnight; only an end: from midnight.
- C5 FLAT is decided at the start: energy 0, duration 0, power and current unknown.
- C6 parking after the last charging (the tail) is not parking at all when the round-up of
  the charging-time run still open where charging last stopped is at least the tail (the
  errata of OCPI's step_size example #1: the parking "is within the extra 5 minutes of
  charging billed because of the step_size"); a longer tail is parking, billed whole.
- C7 a min_price or max_price without incl_vat moves the incl. VAT total by VAT at the
  lowest rate among the components with an amount (none: no VAT): a minimum's top-up is
  taxed at that rate, a maximum's cut is taken from the lowest-taxed amounts first.
- C8 a session no tariff applies to is free, in the first tariff's currency.

Local time-of-day restrictions are whole local minutes, and every IANA zone's UTC offset is
a whole number of minutes since 1972, so walking whole UTC minutes visits every local
minute; the walk checks it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from math import ceil, floor
from zoneinfo import ZoneInfo

from producers.reference_tariffs import Component, Element, TariffFile, TariffText

ENERGY, TIME, PARKING, FLAT = "ENERGY", "TIME", "PARKING_TIME", "FLAT"
_METERED = (ENERGY, TIME, PARKING)
_PER_UNIT = {ENERGY: Fraction(1000), TIME: Fraction(3_600_000), PARKING: Fraction(3_600_000)}
"""Volumes are Wh and ms; prices are per kWh and per hour."""
_STEP_UNIT = {ENERGY: 1, TIME: 1000, PARKING: 1000}
"""step_size is in Wh (ENERGY) or seconds (TIME, PARKING_TIME)."""
_MINUTE_MS = 60_000
_ZERO = Fraction(0)


@dataclass(frozen=True, slots=True)
class Reading:
    time_ms: int
    energy_wh: Fraction | Decimal | int
    """Delivered since the previous reading (or the start)."""
    current_a: float | None = None


@dataclass(frozen=True, slots=True)
class Session:
    station_id: str
    connector_id: int
    id_tag: str | None
    start_ms: int
    readings: tuple[Reading, ...]
    end_ms: int


@dataclass(frozen=True, slots=True)
class ReferenceCost:
    tariff_id: str | None
    currency: str
    excl_vat: Decimal
    incl_vat: Decimal


@dataclass(frozen=True, slots=True)
class SimplePrices:
    """ChargeWatch's simple tariff (docs/tariffs.md): per kWh plus per plugged-in minute,
    no VAT, no step size, rounded half-up to the cent."""

    currency: str
    per_kwh: Decimal
    per_minute: Decimal

    def cost(self, energy_wh: Fraction | Decimal | float | int, plugged_ms: int) -> Decimal:
        """`energy_wh` as written (a float register value goes through its text)."""
        amount = (_exact(energy_wh) / 1000 * _exact(self.per_kwh)
                  + Fraction(plugged_ms, _MINUTE_MS) * _exact(self.per_minute))
        return _cents(amount)

    def price(self, session: Session) -> ReferenceCost:
        """Energy is the sum of the positive deltas (C1); plugged-in time start to end."""
        energy = sum((max(_ZERO, _exact(r.energy_wh)) for r in session.readings), _ZERO)
        total = self.cost(energy, session.end_ms - session.start_ms)
        return ReferenceCost("SIMPLE", self.currency, total, total)


DEFAULT_SIMPLE_PRICES = SimplePrices("EUR", Decimal("0.39"), Decimal("0.02"))
"""The product's default simple tariff (infra/settings.py TariffSettings; a test holds them
equal)."""


@dataclass(frozen=True, slots=True)
class _Slice:
    ms: int
    energy_wh: Fraction
    charging: bool
    active: dict[str, int | None]
    """Per metered dimension, the index of the element pricing it (None: free)."""


class ReferencePricer:
    """Prices sessions under a tariff file, from the OCPI text (see the module docstring)."""

    def __init__(self, tariffs: TariffFile) -> None:
        self.tariffs = tariffs

    def price(self, session: Session) -> ReferenceCost:
        tariff = self.tariffs.tariff_for(session.station_id, session.connector_id,
                                         session.id_tag, session.start_ms)
        if tariff is None:
            zero = _cents(_ZERO)
            return ReferenceCost(None, self.tariffs.first_currency, zero, zero)
        zone = ZoneInfo(self.tariffs.zone_name(session.station_id))
        slices = list(_session_slices(tariff, zone, session))
        lines = _flat_line(tariff, zone, session.start_ms)
        lines += _metered_lines(tariff, slices)
        excl, incl = _bounded(tariff, lines)
        return ReferenceCost(tariff.tariff_id, tariff.currency, _cents(excl), _cents(incl))


TruthPricing = SimplePrices | TariffFile
"""What the truth prices with: the simple tariff, or a tariff file as the reference reads it."""


def reference_cost(tariff: TruthPricing, session: Session) -> ReferenceCost:
    """The truth's cost of a session under the simple tariff or a tariff file."""
    if isinstance(tariff, SimplePrices):
        return tariff.price(session)
    return ReferencePricer(tariff).price(session)


# -- slicing the session ------------------------------------------------------------------

def _session_slices(tariff: TariffText, zone: ZoneInfo, session: Session) -> Iterator[_Slice]:
    cursor, energy_so_far = session.start_ms, _ZERO
    for reading in (*session.readings, Reading(session.end_ms, 0)):
        energy = max(_ZERO, _exact(reading.energy_wh))
        if reading.time_ms < cursor or (reading.time_ms == cursor and not energy):
            continue
        current = None if reading.current_a is None else _exact(reading.current_a)
        for piece in _interval_slices(tariff, zone, session.start_ms, cursor, reading.time_ms,
                                      energy, energy_so_far, current):
            energy_so_far += piece.energy_wh
            yield piece
        cursor = reading.time_ms


def _interval_slices(tariff: TariffText, zone: ZoneInfo, start_ms: int, t0: int, t1: int,
                     energy: Fraction, before: Fraction, current: Fraction | None
                     ) -> Iterator[_Slice]:
    """The interval t0..t1 (`energy` Wh delivered in it, `before` Wh earlier) in slices."""
    span = t1 - t0
    power = energy * 3600 / span if span else None  # Wh per ms to kW
    cuts: dict[int, Fraction] = {}
    if span:
        thresholds = [start_ms + s * 1000 for e in tariff.elements
                      for s in (e.min_duration, e.max_duration) if s is not None]
        for at in [*_clock_switches(tariff, zone, t0, t1), *thresholds]:
            if t0 < at < t1:
                cuts[at] = round(energy * (at - t0) / span, 3)
    kwh = sorted({k * 1000 for e in tariff.elements for k in (e.min_kwh, e.max_kwh)
                  if k is not None})
    for threshold in kwh:
        if before < threshold < before + energy:
            cuts[t0 + floor(span * (threshold - before) / energy)] = threshold - before
    points = [(t0, _ZERO), *sorted(cuts.items()), (t1, energy)]
    for (ta, ea), (tb, eb) in pairwise(points):
        if tb > ta or eb > ea:
            moment = _local(zone, ta)
            duration_s = Fraction(ta - start_ms, 1000)
            kwh_so_far = (before + ea) / 1000
            active = {d: _first(tariff, d, moment, duration_s, kwh_so_far, power, current)
                      for d in _METERED}
            yield _Slice(tb - ta, eb - ea, energy > 0, active)


def _clock_switches(tariff: TariffText, zone: ZoneInfo, t0: int, t1: int) -> Iterator[int]:
    """Every whole minute in (t0, t1) where some element's local-clock restrictions change."""
    clocked = [e for e in tariff.elements if e.on_the_clock]
    if not clocked:
        return
    outcome = [_on_the_clock(e, _local(zone, t0)) for e in clocked]
    minute = t0 // _MINUTE_MS * _MINUTE_MS + _MINUTE_MS
    while minute < t1:
        moment = _local(zone, minute)
        if moment.second:
            raise ValueError(f"{zone.key}: a UTC offset that is not whole minutes")
        now = [_on_the_clock(e, moment) for e in clocked]
        if now != outcome:
            outcome = now
            yield minute
        minute += _MINUTE_MS


def _local(zone: ZoneInfo, time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms // 1000, zone)


# -- restrictions -------------------------------------------------------------------------

def _first(tariff: TariffText, dimension: str, moment: datetime, duration_s: Fraction,
           kwh: Fraction, power: Fraction | None, current: Fraction | None) -> int | None:
    for index, element in enumerate(tariff.elements):
        if dimension in element.components and _holds(element, moment, duration_s, kwh,
                                                      power, current):
            return index
    return None


def _holds(e: Element, moment: datetime, duration_s: Fraction, kwh: Fraction,
           power: Fraction | None, current: Fraction | None) -> bool:
    """All of an element's restrictions; minimums inclusive, maximums exclusive (OCPI)."""
    return (_on_the_clock(e, moment)
            and _between(kwh, e.min_kwh, e.max_kwh)
            and _between(duration_s, e.min_duration, e.max_duration)
            and _between(power, e.min_power, e.max_power)
            and _between(current, e.min_current, e.max_current))


def _on_the_clock(e: Element, moment: datetime) -> bool:
    """Day of week, dates and time of day, all of the local moment (C4)."""
    if e.days and moment.weekday() not in e.days:
        return False
    if not _between(moment.date(), e.start_date, e.end_date):
        return False
    second = moment.hour * 3600 + moment.minute * 60 + moment.second
    start = 0 if e.start_time is None else e.start_time
    end = 86_400 if e.end_time is None else e.end_time
    if start < end:
        return start <= second < end
    if start > end:
        return second >= start or second < end
    return True


def _between(value: object, low: object, high: object) -> bool:
    """low <= value < high for the bounds that are set; an unknown value meets no bound."""
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value < high)  # type: ignore[operator]


# -- volumes to money ---------------------------------------------------------------------

_Line = tuple[Fraction, Fraction]
"""(amount excl. VAT, incl./excl. factor) of one component."""


def _flat_line(tariff: TariffText, zone: ZoneInfo, start_ms: int) -> list[_Line]:
    moment = _local(zone, start_ms)
    for element in tariff.elements:
        component = element.components.get(FLAT)
        if component is not None and _holds(element, moment, _ZERO, _ZERO, None, None):
            return [(component.price, _factor(component))]
    return []


def _metered_lines(tariff: TariffText, slices: list[_Slice]) -> list[_Line]:
    charged = [i for i, s in enumerate(slices) if s.charging]
    until_charged = slices[:charged[-1] + 1] if charged else []
    tail = slices[len(until_charged):]
    energy, _ = _billed(tariff, ENERGY, ((s.active[ENERGY], s.energy_wh if s.charging else 0)
                                         for s in slices))
    # The tail adds no charging time, so TIME bills the same over the slices up to the last
    # charging; its run open there is the one whose round-up may cover the tail (C6).
    time, round_up = _billed(tariff, TIME, ((s.active[TIME], s.ms if s.charging else 0)
                                            for s in until_charged))
    parked = until_charged if tail and round_up >= sum(s.ms for s in tail) else slices
    parking, _ = _billed(tariff, PARKING, ((s.active[PARKING], 0 if s.charging else s.ms)
                                           for s in parked))
    lines = []
    for dimension, billed in ((ENERGY, energy), (TIME, time), (PARKING, parking)):
        for index, volume in billed.items():
            component = tariff.elements[index].components[dimension]
            lines.append((volume * component.price / _PER_UNIT[dimension], _factor(component)))
    return lines


def _billed(tariff: TariffText, dimension: str, slices: Iterable[tuple[int | None, Fraction | int]]
            ) -> tuple[dict[int, Fraction], Fraction]:
    """Billed volume per element of one dimension, and the round-up of the run still open at
    the end. A run ends where no element prices the dimension (step 4)."""
    billed: dict[int, Fraction] = defaultdict(Fraction)
    run, last = _ZERO, None
    round_up = _ZERO
    for element, volume in slices:
        if element is None:
            if last is not None:
                billed[last] += _round_up(tariff, dimension, last, run)
            run, last = _ZERO, None
        elif volume:
            billed[element] += volume
            run += volume
            last = element
    if last is not None:
        round_up = _round_up(tariff, dimension, last, run)
        billed[last] += round_up
    return billed, round_up


def _round_up(tariff: TariffText, dimension: str, element: int, volume: Fraction) -> Fraction:
    step = tariff.elements[element].components[dimension].step_size * _STEP_UNIT[dimension]
    return ceil(volume / step) * step - volume if step else _ZERO


def _factor(component: Component) -> Fraction:
    return 1 + component.vat / 100 if component.vat is not None else Fraction(1)


def _bounded(tariff: TariffText, lines: list[_Line]) -> tuple[Fraction, Fraction]:
    """Both totals within min_price and max_price ("they both apply"; C7 without incl_vat)."""
    excl = sum((amount for amount, _ in lines), _ZERO)
    incl = sum((amount * factor for amount, factor in lines), _ZERO)
    taxed = sorted(factor for amount, factor in lines if amount)
    low, high = tariff.min_price, tariff.max_price
    if low is not None and excl < low.excl_vat:
        incl += (low.excl_vat - excl) * (taxed[0] if taxed else 1)
        excl = low.excl_vat
    if low is not None and low.incl_vat is not None and incl < low.incl_vat:
        incl = low.incl_vat
    if high is not None and excl > high.excl_vat:
        cut, incl = excl - high.excl_vat, _ZERO
        for amount, factor in sorted(lines, key=lambda line: line[1]):
            taken = min(cut, amount)
            cut -= taken
            incl += (amount - taken) * factor
        excl = high.excl_vat
    if high is not None and high.incl_vat is not None and incl > high.incl_vat:
        incl = high.incl_vat
    return excl, incl


def _cents(amount: Fraction) -> Decimal:
    """Half-up to the cent (amounts are never negative)."""
    return (Decimal(floor(amount * 100 + Fraction(1, 2))) / 100).quantize(Decimal("0.01"))


def _exact(value: Fraction | Decimal | float | int) -> Fraction:
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)
