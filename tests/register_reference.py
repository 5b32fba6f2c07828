"""A reference for what a session's energy must be, from the readings a charger sent.

Written from the register rules in docs/architecture.md ("Messy input"), not from
charging/readings.py, and shaped differently on purpose: it sees a session's whole reading
list at once (the engine sees one reading at a time), so "the next reading decides" is a
look ahead here. Tests use it to hold every stored session to its own readings: energy,
first and last counted register value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from charging.rules import StitchRules
from schemas.records import EventKind, MeterEvent

_HOUR_MS = 3_600_000
DEFAULT_RULES = StitchRules()
Key = tuple[str, int, str, int]
"""(station, connector, transaction id, occurrence of that id on the connector)."""


@dataclass(frozen=True, slots=True)
class Counted:
    """What a session's readings say: its energy and its first and last counted values."""

    energy_wh: float
    meter_start_wh: float
    meter_end_wh: float


@dataclass(frozen=True, slots=True)
class _Reading:
    time_ms: int
    wh: Decimal
    power_w: float | None
    stop: bool


def session_readings(events: Iterable[MeterEvent]) -> dict[Key, list[MeterEvent]]:
    """The register readings (start, meter values, stop) of each session, by (station,
    connector, transaction id, occurrence), each once (re-sent copies dropped), in the
    charger's sequence order. Chargers reuse transaction ids: a start later than every
    reading so far of that id on the connector begins its next occurrence (0, 1, ...)."""
    by_tx: dict[tuple[str, int, str], list[MeterEvent]] = {}
    for event in events:
        if event.transaction_id is None or event.energy_wh is None or event.seq is None:
            continue
        by_tx.setdefault((event.station_id, event.connector_id, event.transaction_id),
                         []).append(event)
    found: dict[Key, list[MeterEvent]] = {}
    for (station, connector, tx), sent in by_tx.items():
        occurrences: list[dict[int, MeterEvent]] = [{}]
        newest = None
        for event in sorted(sent, key=lambda e: e.event_time_ms):
            if event.kind is EventKind.STARTED and newest is not None \
                    and event.event_time_ms > newest:
                occurrences.append({})
            newest = event.event_time_ms if newest is None else max(newest, event.event_time_ms)
            occurrences[-1].setdefault(event.seq, event)
        for n, by_seq in enumerate(occurrences):
            found[(station, connector, tx, n)] = [by_seq[q] for q in sorted(by_seq)]
    return found


def keyed(sessions: Iterable[tuple[str, int, str, int, Counted]]) -> dict[Key, Counted]:
    """Stored sessions `(station, connector, transaction id, start ms, counted)` by the keys
    of `session_readings`: a reused id's sessions numbered in order of their start."""
    out: dict[Key, Counted] = {}
    seen: dict[tuple[str, int, str], int] = {}
    for station, connector, tx, _, have in sorted(sessions, key=lambda s: s[:4]):
        n = seen[(station, connector, tx)] = seen.get((station, connector, tx), -1) + 1
        out[(station, connector, tx, n)] = have
    return out


def counted(readings: list[MeterEvent], rules: StitchRules = DEFAULT_RULES,
            rated_w: float | None = None) -> Counted:
    """Energy by the documented rules; `readings` in order, the first one the session's
    start (`rated_w`: the registry's rating of the connector, None when it has none)."""
    rows = [_Reading(e.event_time_ms, _wh(e.energy_wh), e.power_w, e.kind is EventKind.ENDED)
            for e in readings if e.energy_wh is not None]
    rows = _in_unit(rows, rules, rated_w)
    first = last = rows[0]
    base, carried = first.wh, Decimal(0)
    for i, row in enumerate(rows[1:], start=1):
        if _plausible(row.wh - last.wh, row, last, rules, rated_w):
            last = row
            continue
        following = rows[i + 1] if i + 1 < len(rows) else None
        if row.stop or following is None:
            continue  # nothing can tell: left out
        if _plausible(following.wh - last.wh, following, last, rules, rated_w):
            continue  # off the trajectory and back: a slip or a spike
        if not _plausible(following.wh - row.wh, following, row, rules, rated_w):
            continue  # no trajectory goes on from it either
        carried += last.wh - base
        reachable = _limit(rules, rated_w) * (row.time_ms - last.time_ms) / _HOUR_MS
        # Down: a reset, counted from zero when a reset could have reached the value in the
        # time since the last reading, else (a rollover) from the value. Up: a jump, not
        # energy, counted on from.
        base = Decimal(0) if row.wh < last.wh and row.wh <= reachable else row.wh
        last = row
    return Counted(float(last.wh - base + carried), float(first.wh), float(last.wh))


def _wh(value: float) -> Decimal:
    return Decimal(repr(value))


def _limit(rules: StitchRules, rated_w: float | None) -> float:
    return (rated_w or rules.max_plausible_power_w) * rules.power_tolerance


def _plausible(delta_wh: Decimal, later: _Reading, earlier: _Reading, rules: StitchRules,
               rated_w: float | None) -> bool:
    """Rising no faster than the rating allows, timed over at least the rounding interval;
    above it on a rated connector only with the charger's own power reading close by (a
    factor of 3) and within the bound for any connector."""
    if delta_wh < 0:
        return False
    span = max(later.time_ms - earlier.time_ms, rules.unit_check_min_ms)
    power = float(delta_wh) * _HOUR_MS / span
    if power <= _limit(rules, rated_w):
        return True
    return rated_w is not None and later.power_w is not None \
        and power <= _limit(rules, None) and later.power_w / 3 <= power <= later.power_w * 3


def _in_unit(rows: list[_Reading], rules: StitchRules,
             rated_w: float | None) -> list[_Reading]:
    """Wh, or every value scaled when the first rise says kWh (x1000: the charger's power
    agrees within a factor of 3) or values 1000 times too large (/1000)."""
    for earlier, later in zip(rows, rows[1:], strict=False):
        if later.wh < earlier.wh:
            return rows
        if later.wh > earlier.wh:
            dt = later.time_ms - earlier.time_ms
            if dt < rules.unit_check_min_ms:
                return rows
            power = float(later.wh - earlier.wh) * _HOUR_MS / dt
            limit = _limit(rules, rated_w)
            if limit < power <= limit * 1000:
                return [_Reading(r.time_ms, r.wh / 1000, r.power_w, r.stop) for r in rows]
            reported = later.power_w
            if reported is not None and reported >= 1000 and power * 1000 <= limit \
                    and reported / 3 <= power * 1000 <= reported * 3:
                return [_Reading(r.time_ms, r.wh * 1000, r.power_w, r.stop) for r in rows]
            return rows
    return rows


def contradictions(stored: dict[Key, Counted], events: Iterable[MeterEvent],
                   rules: StitchRules = DEFAULT_RULES) -> list[tuple[Key, Counted, Counted]]:
    """Every stored session whose energy or first/last counted value differs from what the
    readings sent for its transaction say (to the milliwatt-hour), with both sides."""
    readings = session_readings(events)
    wrong = []
    for key, have in stored.items():
        want = counted(readings[key], rules)
        if any(abs(a - b) > 1e-6 for a, b in zip(
                (have.energy_wh, have.meter_start_wh, have.meter_end_wh),
                (want.energy_wh, want.meter_start_wh, want.meter_end_wh), strict=True)):
            wrong.append((key, have, want))
    return wrong
