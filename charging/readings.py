"""Folding one reading into an open session, with the register rules messy chargers need.

Energy is always measured from the session's own first reading, never from the lifetime
register, and only across readings that are plausible (docs/architecture.md "Messy input"):

- The first interval with energy decides the unit (Wh, kWh sent in the Wh field, or values
  1000 times too large) against the connector's rated power and the reported power.
- A reading is plausible when the energy since the last counted reading implies a power
  (over at least `unit_check_min_ms`, for register rounding) within the connector's rating
  x `power_tolerance`, or `max_plausible_power_w` x it when the station registry does not
  know the connector. On a connector the registry knows, the charger's own power reading
  can back a higher one: it is counted and observed as `power_above_rating`.
- A reading that leaves the trajectory (goes down, or up at an implausible power) is not
  counted yet: at that reading a kWh slip cannot be told from a register reset. It waits
  in the session (`pending_wh`), and the next reading decides. If that one goes on
  plausibly from the last counted reading, the pending value was a slip or a spike and is
  left out (flag `implausible_reading`). Else, if it goes on plausibly from the pending
  value, the register really moved: down is a reset or rollover, counted across (flag
  `register_reset`; from zero when a reset could have reached the pending value since the
  last reading, else from the pending value); up is a jump whose step is left out (flag
  `implausible_reading`) and counted on from. Else the pending value is left out and the
  reading is judged afresh. Running sessions meanwhile carry only counted energy.
- A stop cannot wait for a next reading: one below the last counted reading is ignored
  (`stop_below_start` / `stop_below_last`); one above it at an implausible power is left out.
  A session closed without a stop leaves a pending value out (`settle`).

So a stored session's energy is its counted readings' increments, summed over the register
segments that resets start. Readings arrive here in application order; `fold_late` takes
one that arrived after later ones had been applied, touching only order-free aggregates.
"""

from __future__ import annotations

from decimal import Decimal

from charging.rules import (
    IMPLAUSIBLE_READING,
    REGISTER_RESET,
    STOP_BELOW_LAST,
    STOP_BELOW_START,
    UNIT_KWH,
    UNIT_MWH,
    Observation,
    StitchRules,
)
from charging.state import OpenSession
from charging.stations import StationRegistry
from charging.tariffs import TariffEngine
from schemas.records import EventKind, MeterEvent

_ZERO = Decimal(0)
_MS_PER_HOUR = 3_600_000
_ENDED = EventKind.ENDED
_SCALES = {1000.0: Decimal(1000), 0.001: Decimal("0.001")}
MAX_GAPS = 8
"""Skipped sequence numbers remembered per session (older ones are forgotten)."""


def decimal_wh(value: float) -> Decimal:
    """A register value as written: through `repr`, never the binary float (whole numbers,
    the usual case, take the faster exact path)."""
    return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))


def _scaled(value: float, scale: float) -> float:
    return float(decimal_wh(value) * _SCALES[scale])


def note_seq(session: OpenSession, seq: int | None) -> None:
    """Track the highest sequence number and the gaps below it."""
    if seq is None:
        return
    top = session.seq_max
    if top is None or seq > top:
        if top is not None and seq > top + 1:
            session.gaps = (session.gaps + list(range(max(top + 1, seq - MAX_GAPS), seq)))[
                -MAX_GAPS:]
        session.seq_max = seq
    elif seq in session.gaps:
        session.gaps.remove(seq)


def settle(session: OpenSession) -> None:
    """A session closing without a stop: a reading still pending is left out (flagged), as
    nothing will tell whether it was a reset or a slip."""
    if session.pending_wh is not None:
        session.pending_wh, session.pending_ms = None, 0
        _flag(session, IMPLAUSIBLE_READING)


class ReadingFolder:
    """Folds readings into sessions; holds configuration only."""

    def __init__(self, engine: TariffEngine, rules: StitchRules,
                 registry: StationRegistry | None) -> None:
        self._engine = engine
        self._rules = rules
        self._registry = registry
        self._min_ms = rules.unit_check_min_ms
        self._tolerance = rules.power_tolerance
        self._default_limit = rules.max_plausible_power_w * rules.power_tolerance

    def rated_w(self, station_id: str, connector_id: int) -> float:
        return self._rating(station_id, connector_id)[0]

    def _rating(self, station_id: str, connector_id: int) -> tuple[float, bool]:
        """The connector's rated power, and whether the registry knows it."""
        rated = self._registry.rated_power_w(station_id, connector_id) \
            if self._registry is not None else None
        return (self._rules.max_plausible_power_w, False) if rated is None else (rated, True)

    def absorb(self, session: OpenSession, event: MeterEvent, t: int,
               observations: list[Observation]) -> None:
        """Fold one reading (METER or ENDED, in order) into an open session, in place."""
        energy = event.energy_wh
        delta = _ZERO if energy is None else self._register(session, event, t, energy,
                                                            observations)
        if t > session.end_ms:
            session.end_ms = t
        soc = event.soc_pct
        if soc is not None:
            previous = session.soc_end_pct
            if previous is not None and soc < previous - 1.0 and delta > 0:
                observations.append(Observation(
                    "soc_falling", event.connector_id, t, session.session_id,
                    (("soc_pct", str(soc)), ("previous_pct", str(previous)))))
            session.soc_end_pct = soc
            if session.soc_start_pct is None:
                session.soc_start_pct = soc
        seq = event.seq
        if seq is not None:
            top = session.seq_max
            if top is not None and seq == top + 1:
                session.seq_max = seq
            else:
                note_seq(session, seq)
        power = event.power_w
        if power is not None and power > session.max_power_w:
            session.max_power_w = power
        session.event_count += 1
        if session.id_tag is None or session.vehicle_id is None \
                or session.transaction_id is None:
            self._identify(session, event)

    def fold_late(self, session: OpenSession, event: MeterEvent) -> None:
        """A reading that arrived after later ones were applied: only order-free aggregates."""
        note_seq(session, event.seq)
        self._order_free(session, event)

    @staticmethod
    def _order_free(session: OpenSession, event: MeterEvent) -> None:
        power = event.power_w
        if power is not None and power > session.max_power_w:
            session.max_power_w = power
        session.event_count += 1
        ReadingFolder._identify(session, event)

    @staticmethod
    def _identify(session: OpenSession, event: MeterEvent) -> None:
        """Identification learned later fills what the session does not know yet."""
        if session.id_tag is None and event.id_tag is not None:
            session.id_tag = event.id_tag
        if session.vehicle_id is None and event.vehicle_id is not None:
            session.vehicle_id = event.vehicle_id
        if session.transaction_id is None and event.transaction_id is not None:
            session.transaction_id = event.transaction_id

    # -- the register -------------------------------------------------------------------

    def _register(self, session: OpenSession, event: MeterEvent, t: int, energy: float,
                  observations: list[Observation]) -> Decimal:
        """Apply one register value; the energy it adds (zero when left out or pending)."""
        if session.scale != 1.0:
            energy = _scaled(energy, session.scale)
        last = session.meter_last_wh
        if last is None:
            session.meter_start_wh = energy
            return self._count(session, event, t, energy, energy)
        if session.pending_wh is not None:
            last = self._resolve(session, event, t, energy, last, observations)
        if energy < last:
            return self._below(session, event, t, energy, last, observations)
        if energy > last:
            dt = t - session.reading_ms
            if self._registry is not None \
                    or (energy - last) * _MS_PER_HOUR > self._default_limit * (
                        dt if dt > self._min_ms else self._min_ms) \
                    or (session.scale == 1.0 and last == session.meter_start_wh
                        and session.base_wh is None):  # unit not decided yet
                checked = self._plausible(session, event, t, dt, energy, last, observations)
                if checked is None:
                    return _ZERO
                energy, last = checked
            if dt > 0:
                session.charging_ms += dt
        return self._count(session, event, t, energy, last)

    def _count(self, session: OpenSession, event: MeterEvent, t: int, energy: float,
               last: float) -> Decimal:
        """`energy` is the register's new counted value, `energy - last` delivered since."""
        # Through repr: a register like 1234.5 is priced as written, not as a float
        # (decimal_wh, inlined: this runs for every reading).
        delta = (Decimal(int(energy)) if energy.is_integer() else Decimal(repr(energy))) - (
            Decimal(int(last)) if last.is_integer() else Decimal(repr(last)))
        self._engine.reading(session.meter, event.station_id, t, delta, event.current_a)
        session.meter_last_wh = energy
        session.reading_ms = t
        return delta

    def _plausible(self, session: OpenSession, event: MeterEvent, t: int, dt: int,
                   energy: float, last: float,
                   observations: list[Observation]) -> tuple[float, float] | None:
        """Decide the unit on the first interval with energy, then judge the power: the
        values to count (rescaled if the unit changed), or None when left out or pending."""
        rated, known = self._rating(event.station_id, event.connector_id)
        limit = rated * self._tolerance
        implied = (energy - last) * _MS_PER_HOUR / max(dt, self._min_ms)
        if dt >= self._min_ms and session.scale == 1.0 and last == session.meter_start_wh \
                and session.base_wh is None:
            scale = _unit_scale(implied, limit, event.power_w)
            if scale != 1.0:
                energy, last = self._rescale(session, scale, energy, last)
                implied *= scale
        if implied <= limit:
            return energy, last
        evidence = (("average_w", f"{implied:.0f}"), ("rated_w", f"{rated:.0f}"))
        if known and _backed(implied, event.power_w, self._default_limit):
            observations.append(Observation("power_above_rating", event.connector_id, t,
                                            session.session_id, evidence))
            return energy, last
        if event.kind is _ENDED:
            self._leave_out(session, event, energy, t, last, observations, evidence)
        else:
            session.pending_wh, session.pending_ms = energy, t
        return None

    def _fits(self, event: MeterEvent, delta_wh: float, dt: int) -> bool:
        """Whether `delta_wh` over `dt` is a plausible delivery on the event's connector."""
        implied = delta_wh * _MS_PER_HOUR / max(dt, self._min_ms)
        rated, known = self._rating(event.station_id, event.connector_id)
        return implied <= rated * self._tolerance or (
            known and _backed(implied, event.power_w, self._default_limit))

    def _rescale(self, session: OpenSession, scale: float, energy: float,
                 last: float) -> tuple[float, float]:
        session.scale = scale
        session.flags += (UNIT_KWH if scale > 1 else UNIT_MWH,)
        if session.meter_start_wh is not None:
            session.meter_start_wh = _scaled(session.meter_start_wh, scale)
        if session.base_wh is not None:
            session.base_wh = _scaled(session.base_wh, scale)
        return _scaled(energy, scale), _scaled(last, scale)

    def _below(self, session: OpenSession, event: MeterEvent, t: int, energy: float,
               last: float, observations: list[Observation]) -> Decimal:
        """The register went down: a reading waits for the next one; a stop is ignored."""
        if event.kind is not _ENDED:
            session.pending_wh, session.pending_ms = energy, t
            return _ZERO
        observations.append(Observation(
            "energy_backwards", event.connector_id, t, session.session_id,
            (("register_wh", str(energy)), ("previous_wh", str(last)))))
        start = session.meter_start_wh
        _flag(session, STOP_BELOW_START if start is not None and energy < start
              else STOP_BELOW_LAST)
        return _ZERO

    def _resolve(self, session: OpenSession, event: MeterEvent, t: int, energy: float,
                 last: float, observations: list[Observation]) -> float:
        """The reading after a pending one tells what the pending one was; returns the last
        counted value after the decision."""
        value, at = session.pending_wh, session.pending_ms
        assert value is not None
        session.pending_wh, session.pending_ms = None, 0
        evidence = (("next_wh", str(energy)),)
        if energy >= last and self._fits(event, energy - last, t - session.reading_ms):
            self._leave_out(session, event, value, at, last, observations, evidence)
        elif energy >= value and self._fits(event, energy - value, t - at):
            if value < last:
                self._reset(session, event, value, at, last, observations)
            else:  # a jump the register went on from: the step is not energy
                self._leave_out(session, event, value, at, last, observations, evidence)
                self._new_segment(session, last, value)
                session.meter_last_wh, session.reading_ms = value, at
            return value
        else:
            self._leave_out(session, event, value, at, last, observations, evidence)
        return last

    def _reset(self, session: OpenSession, event: MeterEvent, value: float, at: int,
               last: float, observations: list[Observation]) -> None:
        """Count across a register reset or rollover to `value` (read at `at`)."""
        observations.append(Observation(
            "energy_backwards", event.connector_id, at, session.session_id,
            (("register_wh", str(value)), ("previous_wh", str(last)))))
        _flag(session, REGISTER_RESET)
        dt = max(at - session.reading_ms, 0)
        reachable = self.rated_w(event.station_id, event.connector_id) \
            * self._tolerance * dt / _MS_PER_HOUR
        # Reset to zero: what the register shows now was delivered since. Anything else
        # (a swapped meter, a rollover to an arbitrary value) counts from this reading.
        base = 0.0 if value <= reachable else value
        self._new_segment(session, last, base)
        if value > base and dt > 0:
            session.charging_ms += dt
        self._count(session, event, at, value, base)

    @staticmethod
    def _new_segment(session: OpenSession, last: float, base: float) -> None:
        """Close the register segment at `last`; the next one counts from `base`."""
        start = session.meter_start_wh if session.base_wh is None else session.base_wh
        assert start is not None
        session.carried_wh += last - start
        session.base_wh = base

    @staticmethod
    def _leave_out(session: OpenSession, event: MeterEvent, value: float, at: int,
                   last: float, observations: list[Observation],
                   evidence: tuple[tuple[str, str], ...]) -> None:
        """`value` (read at `at`) is not energy: flag the session, name the value."""
        _flag(session, IMPLAUSIBLE_READING)
        observations.append(Observation(
            IMPLAUSIBLE_READING, event.connector_id, at, session.session_id,
            (("register_wh", str(value)), ("previous_wh", str(last)), *evidence)))


def _flag(session: OpenSession, flag: str) -> None:
    if flag not in session.flags:
        session.flags += (flag,)


def _backed(implied_w: float, power_w: float | None, bound_w: float) -> bool:
    """The charger's own power reading backs an average power above the rating: close to
    it (the unit check's band) and within the bound for any connector."""
    return power_w is not None and implied_w <= bound_w and power_w / 3 <= implied_w <= power_w * 3


def _unit_scale(implied_w: float, limit_w: float, power_w: float | None) -> float:
    """1000 when the energy looks like kWh, 0.001 when it is 1000x too large, else 1."""
    if implied_w > limit_w and implied_w / 1000 <= limit_w:
        return 0.001
    if (power_w is not None and power_w >= 1000.0 and implied_w * 1000 <= limit_w
            and power_w / 3 <= implied_w * 1000 <= power_w * 3):
        return 1000.0
    return 1.0
