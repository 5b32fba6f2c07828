"""Folding one reading into an open session, with the register rules messy chargers need.

Energy is always measured from the session's own first reading, never from the lifetime
register. The register is trusted only as far as it is plausible: a value going backwards
mid-session is a reset or rollover (energy is counted across it), a stop below the last
reading is ignored, and the first interval with energy decides the unit (Wh, or kWh sent
in the Wh field, or values 1000 times too large) against the connector's rated power.
Readings arrive here in application order; `fold_late` takes one that arrived after later
ones had been applied, touching only order-free aggregates.
"""

from __future__ import annotations

from decimal import Decimal

from charging.rules import (
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


class ReadingFolder:
    """Folds readings into sessions; holds configuration only."""

    def __init__(self, engine: TariffEngine, rules: StitchRules,
                 registry: StationRegistry | None) -> None:
        self._engine = engine
        self._rules = rules
        self._registry = registry
        self._min_ms = rules.unit_check_min_ms
        self._default_limit = rules.max_plausible_power_w * rules.power_tolerance

    def rated_w(self, station_id: str, connector_id: int) -> float:
        rated = self._registry.rated_power_w(station_id, connector_id) \
            if self._registry is not None else None
        return rated if rated is not None else self._rules.max_plausible_power_w

    def absorb(self, session: OpenSession, event: MeterEvent, t: int,
               observations: list[Observation]) -> None:
        """Fold one reading (METER or ENDED, in order) into an open session, in place."""
        energy = event.energy_wh
        delta = _ZERO
        reading = False
        if energy is not None:
            if session.scale != 1.0:
                energy = _scaled(energy, session.scale)
            last = session.meter_last_wh
            if last is None:
                session.meter_start_wh = energy
                reading = True
            elif energy >= last:
                if energy > last:
                    dt = t - session.reading_ms
                    if dt >= self._min_ms and (
                        self._registry is not None
                        or (energy - last) * _MS_PER_HOUR > self._default_limit * dt
                        or (session.scale == 1.0 and last == session.meter_start_wh
                            and session.base_wh is None)  # unit not decided yet
                    ):
                        energy, last = self._plausible(session, event, t, dt, energy, last,
                                                       observations)
                    if dt > 0:
                        session.charging_ms += dt
                # Through repr: a register like 1234.5 is priced as written, not as a float.
                delta = (Decimal(int(energy)) if energy.is_integer()
                         else Decimal(repr(energy))) - (
                    Decimal(int(last)) if last.is_integer() else Decimal(repr(last)))
                reading = True
            else:
                reading, delta = self._backwards(session, event, t, energy, last, observations)
            if reading:
                self._engine.reading(session.meter, event.station_id, t, delta,
                                     event.current_a)
                session.meter_last_wh = energy
                session.reading_ms = t
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

    def _plausible(self, session: OpenSession, event: MeterEvent, t: int, dt: int,
                   energy: float, last: float,
                   observations: list[Observation]) -> tuple[float, float]:
        """Decide the unit on the first interval with energy; observe power above rating."""
        rated = self.rated_w(event.station_id, event.connector_id) \
            if self._registry is not None else self._rules.max_plausible_power_w
        limit = rated * self._rules.power_tolerance
        implied = (energy - last) * _MS_PER_HOUR / dt
        if session.scale == 1.0 and last == session.meter_start_wh and session.base_wh is None:
            scale = _unit_scale(implied, limit, event.power_w)
            if scale != 1.0:
                energy, last = self._rescale(session, scale, energy, last)
                implied *= scale
        if implied > limit:
            observations.append(Observation(
                "power_above_rating", event.connector_id, t, session.session_id,
                (("average_w", f"{implied:.0f}"), ("rated_w", f"{rated:.0f}"))))
        return energy, last

    def _rescale(self, session: OpenSession, scale: float, energy: float,
                 last: float) -> tuple[float, float]:
        session.scale = scale
        session.flags += (UNIT_KWH if scale > 1 else UNIT_MWH,)
        if session.meter_start_wh is not None:
            session.meter_start_wh = _scaled(session.meter_start_wh, scale)
        if session.base_wh is not None:
            session.base_wh = _scaled(session.base_wh, scale)
        return _scaled(energy, scale), _scaled(last, scale)

    def _backwards(self, session: OpenSession, event: MeterEvent, t: int, energy: float,
                   last: float, observations: list[Observation]) -> tuple[bool, Decimal]:
        """The register went down: ignore a stop's value, count across a mid-session reset."""
        observations.append(Observation(
            "energy_backwards", event.connector_id, t, session.session_id,
            (("register_wh", str(energy)), ("previous_wh", str(last)))))
        start = session.meter_start_wh
        if event.kind is EventKind.ENDED:
            flag = STOP_BELOW_START if start is not None and energy < start else STOP_BELOW_LAST
            if flag not in session.flags:
                session.flags += (flag,)
            return False, _ZERO
        if REGISTER_RESET not in session.flags:
            session.flags += (REGISTER_RESET,)
        base = start if session.base_wh is None else session.base_wh
        session.carried_wh += last - base
        dt = max(t - session.reading_ms, 0)
        plausible = self.rated_w(event.station_id, event.connector_id) \
            * self._rules.power_tolerance * dt / _MS_PER_HOUR
        # Reset to zero: what the register shows now was delivered since. Anything else
        # (a swapped meter, a rollover to an arbitrary value) counts from this reading.
        session.base_wh = 0.0 if energy <= plausible else energy
        if energy > session.base_wh and dt > 0:
            session.charging_ms += dt
        return True, decimal_wh(energy) - decimal_wh(session.base_wh)


def _unit_scale(implied_w: float, limit_w: float, power_w: float | None) -> float:
    """1000 when the energy looks like kWh, 0.001 when it is 1000x too large, else 1."""
    if implied_w > limit_w and implied_w / 1000 <= limit_w:
        return 0.001
    if (power_w is not None and power_w >= 1000.0 and implied_w * 1000 <= limit_w
            and power_w / 3 <= implied_w * 1000 <= power_w * 3):
        return 1000.0
    return 1.0
