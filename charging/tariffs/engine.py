"""The incremental OCPI tariff engine: fold each reading interval into a `Meter`, price at the end.

Per interval between two readings the engine splits at every point where an element's
restrictions may change (local time-of-day and date boundaries, session duration
thresholds, session kWh thresholds, interpolating energy linearly inside the interval),
picks per dimension the first element whose restrictions hold (OCPI: first match in list
order), and adds the piece's volumes to the current charging period. Energy flowing makes
the interval charging time (TIME); none makes it parking time (PARKING_TIME).

Interval facts used by restrictions: power = the interval's average power (energy over
time, so splitting a reading interval never changes it); current = the current reported
by the reading that closes the interval (unknown: current restrictions do not match).
FLAT is chosen once, at the session start (power and current unknown then).

Step sizes follow OCPI 2.2.1: per dimension, volume accumulates in a chain across element
switches; the chain is rounded up with the step size of the last element that received
volume, when the dimension becomes unpriced (switch to no element for it) and at the end;
the rounding surplus is billed at that element's price. Parking after the last charging
(the tail) is held apart (`Meter.tail`); at the end it is not billed when the round-up of
the charging time's last chain covers it (OCPI step_size example #1), else it is parking.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from charging.tariffs.clock import boundary_seconds, local, local_match, next_boundary
from charging.tariffs.cost import Cost, close_chain, price_meter
from charging.tariffs.meter import MAX_PERIODS, NONE, Meter, Period, shared_elements
from charging.tariffs.model import Dimension, Restrictions, Tariff, TariffBook

_ZERO = Decimal(0)
_ENERGY, _TIME, _PARKING = 0, 1, 2
_DIMENSIONS = (Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME)
_WH_PER_KWH = Decimal(1000)
_MWH = Decimal("0.001")
_KW_FACTOR = Decimal(3600)
"""Wh per ms to kW."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """A tariff prepared for the hot path."""

    tariff: Tariff
    candidates: tuple[tuple[tuple[int, Restrictions], ...], ...]
    """Per dimension (ENERGY, TIME, PARKING_TIME): (element index, restrictions)."""
    local_elements: tuple[int, ...]
    """Elements with local-clock restrictions."""
    seconds: tuple[int, ...]
    """Local boundary seconds of day (empty: the tariff ignores the clock)."""
    duration_ms: tuple[int, ...]
    kwh_wh: tuple[Decimal, ...]
    static: tuple[int, int, int] | None
    """The active elements when no restriction can ever change them (the fast path)."""
    needs_current: bool


class TariffEngine:
    """Prices sessions with a TariffBook; holds configuration and caches, never session state."""

    def __init__(self, book: TariffBook) -> None:
        self.book = book
        self._plans = {tid: _prepare(t) for tid, t in book.tariffs.items()}
        self._windows: dict[tuple[str, str], tuple[int, int, tuple[bool, ...]]] = {}

    def open(self, station_id: str, connector_id: int, id_tag: str | None,
             start_ms: int) -> Meter:
        tariff = self.book.select(station_id, connector_id, id_tag, start_ms)
        return Meter(tariff.tariff_id if tariff else None, start_ms, start_ms)

    def currency(self, meter: Meter) -> str | None:
        return self.book.tariffs[meter.tariff_id].currency if meter.tariff_id else None

    def reading(self, meter: Meter, station_id: str, time_ms: int, energy_wh: Decimal,
                current_a: float | None = None) -> None:
        """Account the interval from the meter's cursor to `time_ms` with `energy_wh`
        delivered in it (negative: treated as none, e.g. a register reset)."""
        start = meter.cursor_ms
        if time_ms < start:
            return
        meter.cursor_ms = time_ms
        if energy_wh < 0:
            energy_wh = _ZERO
        if meter.tariff_id is None or (time_ms == start and not energy_wh):
            meter.energy_wh += energy_wh
            return
        plan = self._plans[meter.tariff_id]
        charging = energy_wh > 0
        if plan.static is not None:
            _add(meter, plan.tariff, start, time_ms, energy_wh, charging, plan.static)
            return
        zone = self.book.zone(station_id)
        span = time_ms - start
        power = energy_wh * _KW_FACTOR / span if span else None
        current = Decimal(str(current_a)) if current_a is not None and plan.needs_current \
            else None
        cuts = self._cuts(plan, zone, meter, start, time_ms, energy_wh)
        t0, e0 = start, _ZERO
        for t1, e1 in cuts:
            if t1 > t0 or e1 > e0:
                self._piece(plan, zone, meter, t0, t1, e1 - e0, charging, power, current)
            t0, e0 = t1, e1

    def quote(self, meter: Meter, station_id: str, end_ms: int) -> Cost:
        """The cost if the session ended at `end_ms` (time after the last reading is parking).

        Does not change `meter`: running costs quote a copy.
        """
        final = meter.copy()
        if end_ms > final.cursor_ms:
            self.reading(final, station_id, end_ms, _ZERO)
        tariff = self.book.tariffs[final.tariff_id] if final.tariff_id else None
        if tariff is not None:
            _settle_tail(final, tariff)
        flat = self._flat(tariff, station_id, final.start_ms) if tariff else None
        currency = tariff.currency if tariff else self.book.default_currency
        return price_meter(final, tariff, flat, currency)

    # -- internals ---------------------------------------------------------------------

    def _cuts(self, plan: _Plan, zone: ZoneInfo, meter: Meter, start: int, end: int,
              energy: Decimal) -> list[tuple[int, Decimal]]:
        """Piece ends (time, energy since `start`) at every restriction boundary, then the end."""
        span = end - start
        cuts: dict[int, Decimal] = {}
        if plan.seconds and span:
            at = self._window(plan, zone, start)[1]
            while at < end:
                cuts[at] = _share(energy, at - start, span)
                at = next_boundary(zone, plan.seconds, at)
        for threshold in plan.duration_ms:
            at = meter.start_ms + threshold
            if start < at < end:
                cuts[at] = _share(energy, at - start, span)
        if energy:
            before = meter.energy_wh
            for threshold in plan.kwh_wh:
                if before < threshold < before + energy:
                    part = threshold - before
                    cuts[start + int(span * part / energy)] = part
        ordered = sorted(cuts.items(), key=lambda kv: (kv[1], kv[0]))
        ordered.append((end, energy))
        return ordered

    def _window(self, plan: _Plan, zone: ZoneInfo, at: int) -> tuple[int, int, tuple[bool, ...]]:
        """[from, until) around `at` in which local restrictions do not change, and their
        outcome per element there (cached per zone and tariff: events arrive in time order)."""
        key = (zone.key, plan.tariff.tariff_id)
        window = self._windows.get(key)
        if window is None or not window[0] <= at < window[1]:
            moment = local(zone, at)
            outcome = tuple(local_match(e.restrictions, moment)
                            for e in plan.tariff.elements)
            window = self._windows[key] = (at, next_boundary(zone, plan.seconds, at), outcome)
        return window

    def _piece(self, plan: _Plan, zone: ZoneInfo, meter: Meter, t0: int, t1: int,
               energy: Decimal, charging: bool, power: Decimal | None,
               current: Decimal | None) -> None:
        local_ok = self._window(plan, zone, t0)[2] if plan.seconds else None
        duration_s = Decimal(t0 - meter.start_ms) / 1000
        kwh = meter.energy_wh / _WH_PER_KWH
        energy_element, time_element, parking_element = (
            _first(candidates, local_ok, kwh, duration_s, power, current)
            for candidates in plan.candidates)
        _add(meter, plan.tariff, t0, t1, energy, charging,
             (energy_element, time_element, parking_element))

    def _flat(self, tariff: Tariff, station_id: str, start_ms: int) -> int | None:
        moment = local(self.book.zone(station_id), start_ms)
        for index, element in tariff.candidates[Dimension.FLAT]:
            r = element.restrictions
            if r.empty or (local_match(r, moment)
                           and _holds(r, _ZERO, _ZERO, None, None)):
                return index
        return None


def _share(energy: Decimal, part: int, span: int) -> Decimal:
    """Energy of the first `part` ms of an interval, linear, to the mWh: the pieces still add
    up to the interval's energy exactly (the last piece takes the rest) and the state keeps
    short numbers."""
    return (energy * part / span).quantize(_MWH)


def _add(meter: Meter, tariff: Tariff, t0: int, t1: int, energy: Decimal, charging: bool,
         active: tuple[int, int, int]) -> None:
    """Account one piece: parking joins the tail; charging books the tail, then itself.

    `charging` is the reading interval's, not the piece's: a piece of a charging interval is
    charging time even when its share of the energy rounds to nothing (a cut a second into a
    slow interval), as the docs promise ("an interval with energy flowing is charging time").
    """
    if not charging:
        tail = meter.tail
        if tail and tail[-1][2:] == list(active):
            tail[-1][1] += t1 - t0
        else:
            tail.append([t0, t1 - t0, *active])
        return
    if meter.tail:
        _book_tail(meter, tariff, billed=True)
    _book(meter, tariff, t0, t1 - t0, energy, True, active)


def _settle_tail(meter: Meter, tariff: Tariff) -> None:
    """At the end: the tail is not parking when the charging time's last chain, rounded up
    now, covers it (OCPI step_size example #1, errata: "the 2 minutes parking time is within
    the extra 5 minutes of charging billed because of the step_size"); else it is."""
    if meter.tail:
        round_up = close_chain(meter, tariff, _TIME)
        _book_tail(meter, tariff, billed=round_up < meter.tail_ms)


def _book_tail(meter: Meter, tariff: Tariff, billed: bool) -> None:
    """Book the held parking in order; not `billed`: into the periods (a CDR shows the time)
    with a surplus that takes it off the bill, and into no chain."""
    for start, span, *active in meter.tail:
        elements = (active[0], active[1], active[2])
        if billed:
            _book(meter, tariff, start, span, _ZERO, False, elements)
        else:
            period = meter.periods[_period(meter, start, elements)]
            period.parking_ms += span
            period.add_surplus(_PARKING, Decimal(-span))
    meter.tail.clear()


def _book(meter: Meter, tariff: Tariff, t0: int, span: int, energy: Decimal, charging: bool,
          active: tuple[int, int, int]) -> None:
    """Book one piece: its volumes to the period of its active elements and to the chains."""
    index = _period(meter, t0, active)
    period = meter.periods[index]
    chains = meter.chains
    if charging:
        period.energy_wh += energy
        meter.energy_wh += energy
        period.charging_ms += span
        volumes: tuple[Decimal | int, ...] = (energy, span, 0)
    else:
        period.parking_ms += span
        volumes = (0, 0, span)
    for d in (_ENERGY, _TIME, _PARKING):
        element = active[d]
        if element == NONE:
            if chains[d].volume:
                close_chain(meter, tariff, d)
        elif volumes[d]:
            chain = chains[d]
            chain.volume += volumes[d]
            chain.period = index
            chain.element = element


def _period(meter: Meter, start: int, active: tuple[int, ...]) -> int:
    """Index of the period this piece belongs to, opening one when the elements change."""
    periods = meter.periods
    if periods and periods[-1].elements == active:
        return len(periods) - 1
    if len(periods) >= MAX_PERIODS:
        for index in range(len(periods) - 1, -1, -1):
            if periods[index].elements == active:
                return index
    periods.append(Period(start, shared_elements(active[0], active[1], active[2])))
    return len(periods) - 1


def _first(candidates: tuple[tuple[int, Restrictions], ...], local_ok: tuple[bool, ...] | None,
           kwh: Decimal, duration_s: Decimal, power: Decimal | None,
           current: Decimal | None) -> int:
    for index, r in candidates:
        if r.empty:
            return index
        if local_ok is not None and not local_ok[index]:
            continue
        if _holds(r, kwh, duration_s, power, current):
            return index
    return NONE


def _holds(r: Restrictions, kwh: Decimal, duration_s: Decimal, power: Decimal | None,
           current: Decimal | None) -> bool:
    """The non-clock restrictions: minimums inclusive, maximums exclusive."""
    if (r.min_kwh is not None and kwh < r.min_kwh) or (r.max_kwh is not None
                                                       and kwh >= r.max_kwh):
        return False
    if (r.min_duration is not None and duration_s < r.min_duration) or (
            r.max_duration is not None and duration_s >= r.max_duration):
        return False
    return _within(power, r.min_power, r.max_power) and _within(
        current, r.min_current, r.max_current)


def _within(value: Decimal | None, low: Decimal | None, high: Decimal | None) -> bool:
    """low <= value < high for the bounds that are set; an unknown value meets no bound."""
    if low is None and high is None:
        return True
    return value is not None and (low is None or value >= low) and (
        high is None or value < high)


def _prepare(tariff: Tariff) -> _Plan:
    restrictions = [e.restrictions for e in tariff.elements]
    local_elements = tuple(i for i, r in enumerate(restrictions) if r.local_time)
    durations = sorted({s * 1000 for r in restrictions
                        for s in (r.min_duration, r.max_duration) if s})
    kwh = sorted({k * _WH_PER_KWH for r in restrictions for k in (r.min_kwh, r.max_kwh)
                  if k})
    candidates = tuple(tuple((i, e.restrictions) for i, e in tariff.candidates[d])
                       for d in _DIMENSIONS)
    static = tuple(c[0][0] if c else NONE for c in candidates)
    fixed = all(not c or c[0][1].empty for c in candidates)
    return _Plan(
        tariff=tariff,
        candidates=candidates,
        static=(static[0], static[1], static[2]) if fixed else None,
        needs_current=any(r.min_current is not None or r.max_current is not None
                          for r in restrictions),
        local_elements=local_elements,
        seconds=boundary_seconds([restrictions[i] for i in local_elements]),
        duration_ms=tuple(durations), kwh_wh=tuple(kwh))
