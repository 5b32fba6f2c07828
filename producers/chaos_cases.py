"""The chaos simulator's cases: how each one tampers with a session's events, and what the
stitcher must make of it (producers/chaos.py says which rule of charging/rules.py each
case exercises and how they are kept from mixing)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from charging.rules import HOUR_MS, StitchRules
from producers.reference_pricing import SimplePrices
from schemas.records import EventKind, MeterEvent, SessionState

CASES = ("duplicate", "out_of_order", "late_event", "missing_stop", "missing_start",
         "register_reset", "unit_error", "clock_skew", "overlap", "stop_below_start",
         "transaction_id_reused", "unit_slip", "spike")
RULES = StitchRules()
_MARGIN_MS = 30 * 60_000
_GAP_MS = RULES.seq_gap_ms
_LIMIT_W = RULES.max_plausible_power_w * RULES.power_tolerance
_SPIKE_WH = 1_000_000.0
"""A spike's height above the trajectory: 1 MWh within minutes is no charge."""
_METER, _STARTED, _ENDED = EventKind.METER, EventKind.STARTED, EventKind.ENDED


@dataclass(frozen=True, slots=True)
class ExpectedSession:
    """What the stitcher must publish (latest version) for one true session."""

    station_id: str
    connector_id: int
    transaction_id: str
    id_tag: str
    vehicle_id: str
    start_ms: int
    end_ms: int
    state: SessionState
    version: int
    energy_wh: int
    soc_start_pct: float | None
    soc_end_pct: float | None
    cost: Decimal
    currency: str
    flags: tuple[str, ...]
    injected: tuple[str, ...]
    """Cases injected into this session."""
    anomalies: tuple[str, ...] = ()
    """Kinds of `CAUSED_KINDS` the detector must report for this session (and no others)."""


@dataclass(slots=True)
class Target:
    """One session a case is injected into, and what an injector needs around it."""

    rng: random.Random
    ev: list[MeterEvent]
    """The session's events (Available, start, readings, stop, Available), tampered in place."""
    following: list[MeterEvent] | None
    """The next session's events on the connector, if any."""
    station_last_ms: int
    exp: ExpectedSession
    """The clean session's expected outcome."""
    tariff: SimplePrices
    pairs: dict[str, str]
    """Swapped readings: id of the one sent first -> id of the one it overtook."""
    split_after: set[str]
    """Events after which a message is split in two."""
    across_messages_share: float

    @property
    def meters(self) -> list[int]:
        return [j for j, e in enumerate(self.ev) if e.kind is _METER]

    @property
    def start(self) -> MeterEvent:
        return self.ev[1]

    @property
    def stop(self) -> MeterEvent:
        return self.ev[-2]

    def priced(self, e: ExpectedSession) -> ExpectedSession:
        return replace(e, cost=self.tariff.cost(e.energy_wh, e.end_ms - e.start_ms))


def _duplicate(t: Target) -> ExpectedSession | None:
    ev, rng = t.ev, t.rng
    j = rng.randint(1, len(ev) - 2)
    copy = ev[j] if rng.random() < 0.5 else replace(ev[j], event_id=ev[j].event_id + "~r")
    ev.insert(min(j + 1 + rng.randint(0, 2), len(ev) - 1), copy)
    return t.exp


def _out_of_order(t: Target) -> ExpectedSession | None:
    ev = t.ev
    pairs = [j for j in t.meters[:-1] if ev[j + 1].kind is _METER]
    if not pairs:
        return None
    j = t.rng.choice(pairs)
    ev[j], ev[j + 1] = ev[j + 1], ev[j]
    t.pairs[ev[j].event_id] = ev[j + 1].event_id
    if t.rng.random() < t.across_messages_share:
        t.split_after.add(ev[j].event_id)
    return t.exp


def _late_event(t: Target) -> ExpectedSession | None:
    ev, stop = t.ev, t.stop
    ok = [j for j in t.meters if ev[j + 1].kind is _METER
          and stop.event_time_ms >= ev[j + 1].event_time_ms + _GAP_MS]
    if not ok:
        return None
    late = ev.pop(t.rng.choice(ok))
    ev.insert(len(ev) - 1, late)  # after the stop, before Available
    return replace(t.exp, version=2, flags=("late_event",))


def _missing_stop(t: Target) -> ExpectedSession | None:
    meters = t.meters
    if not meters:
        return None
    last = t.ev[meters[-1]]
    if t.following is not None:
        gap = t.following[1].event_time_ms - last.event_time_ms
    else:
        gap = t.station_last_ms - last.event_time_ms
        if gap <= RULES.inactivity_ms + _MARGIN_MS:
            return None
    if abs(gap - RULES.inactivity_ms) <= _MARGIN_MS:
        return None
    flag = "missing_stop" if gap > RULES.inactivity_ms else "overlapped"
    start = t.start
    del t.ev[-2]
    return t.priced(replace(
        t.exp, state=SessionState.INCOMPLETE, end_ms=last.event_time_ms,
        energy_wh=register_wh(last) - register_wh(start), soc_end_pct=last.soc_pct, flags=(flag,)))


def _missing_start(t: Target) -> ExpectedSession | None:
    if len(t.meters) < 2:
        return None
    stop = t.stop
    first = t.ev.pop(1)
    assert first.kind is _STARTED
    m1 = t.ev[1]
    return t.priced(replace(t.exp, start_ms=m1.event_time_ms, soc_start_pct=m1.soc_pct,
                            energy_wh=register_wh(stop) - register_wh(m1),
                            flags=("missing_start",)))


def _register_reset(t: Target) -> ExpectedSession | None:
    meters, ev = t.meters, t.ev
    if len(meters) < 3:
        return None
    j = t.rng.choice(meters[1:])
    base = ev[j - 1].energy_wh
    assert base is not None
    for k in range(j, len(ev) - 1):
        energy = ev[k].energy_wh
        if energy is not None:
            ev[k] = replace(ev[k], energy_wh=energy - base)
    return replace(t.exp, flags=("register_reset",))


def _unit_error(t: Target) -> ExpectedSession | None:
    meters, ev, start = t.meters, t.ev, t.start
    if not meters:
        return None
    m1 = ev[meters[0]]
    delta = register_wh(m1) - register_wh(start)
    implied = delta * HOUR_MS / (m1.event_time_ms - start.event_time_ms)
    power = m1.power_w or 0.0
    if not (delta > 0 and power >= 1000 and power / 2 <= implied <= power * 2
            and implied * 1.0 <= _LIMIT_W):
        return None
    for k in range(1, len(ev) - 1):
        energy = ev[k].energy_wh
        assert energy is not None
        ev[k] = replace(ev[k], energy_wh=energy / 1000)
    return replace(t.exp, flags=("unit_corrected_kwh",))


def _clock_skew(t: Target) -> ExpectedSession | None:
    ev, exp, start, stop = t.ev, t.exp, t.start, t.stop
    epoch = t.rng.random() < 0.5
    for k in range(1, len(ev) - 1):
        at = ev[k].event_time_ms
        ev[k] = replace(ev[k], event_time_ms=(at - exp.start_ms + 3_600_000) if epoch
                        else at + 3 * HOUR_MS)
    return t.priced(replace(exp, start_ms=start.receive_time_ms, end_ms=stop.receive_time_ms,
                            flags=("clock_skew",)))


def _overlap(t: Target) -> ExpectedSession | None:
    meters, following = t.meters, t.following
    if following is None or not meters or (following[1].event_time_ms
                                           - t.ev[meters[-1]].event_time_ms
                                           >= RULES.inactivity_ms - _MARGIN_MS):
        return None
    after = [j for j in range(2, len(following) - 2)
             if following[j].event_time_ms >= following[1].event_time_ms + _GAP_MS]
    if not after:
        return None
    moved = t.ev.pop(-2)
    following.insert(after[0] + 1, moved)
    return replace(t.exp, version=2, flags=("overlapped", "late_stop"))


def _stop_below_start(t: Target) -> ExpectedSession | None:
    meters, start, stop = t.meters, t.start, t.stop
    last = t.ev[meters[-1]] if meters else start
    t.ev[-2] = replace(stop, energy_wh=float(register_wh(start) // 2))
    return t.priced(replace(t.exp, energy_wh=register_wh(last) - register_wh(start),
                            flags=("stop_below_start",)))


def _transaction_id_reused(t: Target) -> ExpectedSession | None:
    """The charger's transaction counter went back (a firmware update, a factory reset):
    the session takes the id of the session before it on the connector, which the
    simulator numbers `{station}-{connector}-{n - 1}` and which ended before it began.
    Outcome: its own session as if the id were new, and one `transaction_id_reused`."""
    head, _, number = t.exp.transaction_id.rpartition("-")
    if not number.isdigit() or int(number) < 2:
        return None
    reused = f"{head}-{int(number) - 1}"
    for k, event in enumerate(t.ev):
        if event.transaction_id is not None:
            t.ev[k] = replace(event, transaction_id=reused)
    return replace(t.exp, transaction_id=reused, anomalies=("transaction_id_reused",))


def _implausible(t: Target, value_of: Callable[[float], float]) -> ExpectedSession | None:
    """One reading (not the first, where the unit is decided) replaced by `value_of(it)`;
    the next reading goes on from the one before at a plausible power and cannot go on
    from the replaced value, so the rules leave it out: energy and cost as if it never
    came, flag `implausible_reading`."""
    ev = t.ev
    ok = []
    for j in t.meters[1:]:
        before, after = ev[j - 1], ev[j + 1]
        value = value_of(register_wh(ev[j]))
        if _fits(register_wh(after) - register_wh(before), after, before) \
                and not _fits(register_wh(after) - value, after, ev[j]) \
                and not _fits(value - register_wh(before), ev[j], before):
            ok.append((j, value))
    if not ok:
        return None
    j, value = t.rng.choice(ok)
    ev[j] = replace(ev[j], energy_wh=value)
    return replace(t.exp, flags=("implausible_reading",))


def _fits(delta_wh: float, later: MeterEvent, earlier: MeterEvent) -> bool:
    """Whether `delta_wh` between two readings is a plausible delivery (no registry: the
    default bound, over at least the rounding interval)."""
    dt = max(later.event_time_ms - earlier.event_time_ms, RULES.unit_check_min_ms)
    return delta_wh >= 0 and delta_wh * HOUR_MS / dt <= _LIMIT_W


def _unit_slip(t: Target) -> ExpectedSession | None:
    return _implausible(t, lambda wh: wh / 1000)


def _spike(t: Target) -> ExpectedSession | None:
    return _implausible(t, lambda wh: wh + _SPIKE_WH)


INJECTORS = {"duplicate": _duplicate, "out_of_order": _out_of_order,
              "late_event": _late_event, "missing_stop": _missing_stop,
              "missing_start": _missing_start, "register_reset": _register_reset,
              "unit_error": _unit_error, "clock_skew": _clock_skew, "overlap": _overlap,
              "stop_below_start": _stop_below_start,
              "transaction_id_reused": _transaction_id_reused, "unit_slip": _unit_slip,
              "spike": _spike}
"""Case name -> its injector: tampers with the target's events in place and returns the
expected session, or None when this session cannot take the case unambiguously."""
assert tuple(INJECTORS) == CASES


def register_wh(event: MeterEvent) -> int:
    assert event.energy_wh is not None
    return int(event.energy_wh)
