"""Chaos mode for the simulator: messy input injected at set rates, with the expected outcome.

Pure and deterministic for (fleet config, chaos config). Each session gets at most one case,
and the session after an injected one on the same connector stays clean, so every expected
result follows from one rule of the stitcher (charging/rules.py) and no two cases mix.
Injections are shaped so the result does not depend on when the worker's expiry timer runs:

- out_of_order swaps two adjacent readings (60 s apart, inside the 120 s sequence-gap
  window). Across messages, the message is split between the two and the halves are
  published back to back, with the flush time less than 110 s after the first of them,
  so no partition clock can pass the gap window while the earlier reading is on its way;
- late_event delivers a reading after the stop, where a later reading of the session is
  already 120 s newer than the gap, so the gap was given up before: a corrected version 2;
- missing_stop is taken only where the close is certain to be the same: the next start on
  the connector is 30 min away from the 6 h inactivity limit (`overlapped` before it,
  `missing_stop` after it), or without a next start the station's last event is 6.5 h later;
- overlap delays a stop until the next session's start has been applied (a reading of the
  new session at least 120 s after its start went first): INCOMPLETE `overlapped`, then
  version 2 COMPLETED `overlapped` + `late_stop`;
- transaction_id_reused gives a session the transaction id of the (clean, completed)
  session before it on the connector, as a charger whose counter was reset would: it must
  stay a session of its own, unchanged but for the id, and the one before it untouched;
- unit_slip replaces one reading (not the first interval's, where the unit is decided) by
  its value in kWh, spike by its value plus 1 MWh; the next reading goes on from the one
  before at a plausible power (default bound, no registry), so the slip or spike is left
  out: energy and cost as clean, flag `implausible_reading`.

Costs assume the simple tariff, priced by the reference (producers/reference_pricing.py):
expected cost = SimplePrices.cost(energy, end - start).

Each expected session also names the anomalies its case must cause, of the kinds in
`CAUSED_KINDS` (those clean simulated data never raises, with the default rules and no
station registry), by the rules of charging/anomalies.py over the stitcher's observations:
the `missing_stop` flag -> `stuck_session` (an `overlapped` close is not one); a reset
register and a stop below the start -> `energy_backwards` (the register went down);
clock_skew -> `clock_skew`; late_event -> `late_event`; implausible_reading ->
`implausible_reading` (naming the value); and, without a flag, transaction_id_reused ->
`transaction_id_reused`. The other cases cause none of them:
duplicates are dropped, swaps stay inside the gap window, a late stop corrects an
`overlapped` session without an event coming late to an open one, and kWh readings are
rescaled before any power check. `stuck_session` on a session still open is timer-driven:
a session waiting hours for an overlapping stop is quiet and may be reported when a timer
round happens to see it, so runs compared with this truth set `stuck_after_ms` to
`inactivity_ms` (then only the close of a `missing_stop` session raises it).
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

from producers.chaos_cases import (
    CASES,
    INJECTORS,
    ExpectedSession,
    Target,
    register_wh,
)
from producers.errors import SimulationConfigError
from producers.fleet import Station
from producers.reference_pricing import SimplePrices
from producers.simulator import (
    FleetConfig,
    SessionPlan,
    Simulation,
    _Batch,
    batch_station,
    plan_sessions,
    session_events,
)
from schemas.records import EventKind, MeterEvent, SessionState

_SPLIT_WITHIN_MS = 110_000
_STARTED, _ENDED = EventKind.STARTED, EventKind.ENDED
CAUSED_KINDS = frozenset({"stuck_session", "energy_backwards", "clock_skew", "late_event",
                          "power_above_rating", "unusable_event", "transaction_id_reused",
                          "implausible_reading"})
"""Anomaly kinds only injected cases cause: compared exactly with `expected_anomalies`."""
_CAUSES = {"missing_stop": "stuck_session", "register_reset": "energy_backwards",
           "stop_below_start": "energy_backwards", "clock_skew": "clock_skew",
           "late_event": "late_event", "implausible_reading": "implausible_reading"}
"""Session flag -> the anomaly of `CAUSED_KINDS` it comes with."""


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """Per-session probability of each case (all 0: the clean simulation, unchanged)."""

    seed: int = 0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    late_rate: float = 0.0
    missing_stop_rate: float = 0.0
    missing_start_rate: float = 0.0
    reset_rate: float = 0.0
    unit_error_rate: float = 0.0
    skew_rate: float = 0.0
    overlap_rate: float = 0.0
    stop_below_start_rate: float = 0.0
    reuse_rate: float = 0.0
    """transaction_id_reused: a session takes the id of the session before it."""
    unit_slip_rate: float = 0.0
    spike_rate: float = 0.0
    across_messages_share: float = 0.5
    """Share of out_of_order swaps that are split across two messages."""

    def __post_init__(self) -> None:
        rates = self.rates()
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 \
                or not 0.0 <= self.across_messages_share <= 1.0:
            raise SimulationConfigError("chaos rates must be within 0..1 and sum to at most 1")

    @classmethod
    def spread(cls, seed: int, total_rate: float) -> ChaosConfig:
        """Every case at the same rate, `total_rate` of the sessions touched in all."""
        share = total_rate / len(CASES)
        return cls(seed, *(share for _ in CASES))

    def rates(self) -> tuple[float, ...]:
        """Rates in the order of `CASES` (the `*_rate` fields are declared in that order)."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name.endswith("_rate"))

    @property
    def clean(self) -> bool:
        return not any(self.rates())


assert len(ChaosConfig().rates()) == len(CASES), "one `*_rate` field per case, in CASES order"


class ChaosSimulation:
    """The simulation's messages with cases injected, and the expected sessions."""

    def __init__(self, fleet: FleetConfig, chaos: ChaosConfig) -> None:
        if not isinstance(fleet.tariff, SimplePrices):
            raise SimulationConfigError("chaos mode prices with the simple tariff only")
        self.fleet, self.chaos = fleet, chaos
        self.simulation = Simulation(fleet)
        self._expected: list[ExpectedSession] = []
        self._streams: dict[str, list[list[MeterEvent]]] = {}
        self._split_after: set[str] = set()
        self._pairs: dict[str, str] = {}
        """Swapped readings: id of the one sent first -> id of the one it overtook."""
        for station in self.simulation.stations:
            self._streams[station.station_id] = self._station(station)

    def truth(self) -> list[ExpectedSession]:
        return list(self._expected)

    def expected_anomalies(self) -> set[tuple[str, str, int, str]]:
        """`(kind, station_id, connector_id, transaction_id)` of every anomaly of
        `CAUSED_KINDS` the run must cause (one entry however many events raise it)."""
        return {(kind, e.station_id, e.connector_id, e.transaction_id)
                for e in self._expected for kind in e.anomalies}

    def write_truth(self, path: Path) -> int:
        """The expected sessions as JSON Lines (cost as a string); returns how many."""
        with Path(path).open("w") as out:
            for expected in self._expected:
                record = {f.name: getattr(expected, f.name) for f in fields(expected)}
                record.update(cost=str(expected.cost), state=expected.state.value,
                              flags=list(expected.flags), injected=list(expected.injected),
                              anomalies=list(expected.anomalies))
                out.write(json.dumps(record) + "\n")
        return len(self._expected)

    def messages(self) -> Iterator[tuple[str, list[MeterEvent]]]:
        """`(station_id, events)` in publish order; clean config: exactly the simulator's."""
        if self.chaos.clean:
            yield from self.simulation.messages()
            return
        merged: Iterator[_Batch] = heapq.merge(
            *(self._together(list(batch_station(
                self.fleet, s, [iter(x) for x in self._streams[s.station_id]])))
              for s in self.simulation.stations),
            key=lambda batch: (batch[0], batch[1]))
        for flush_ms, _, station_id, events in merged:
            yield from self._split(flush_ms, station_id, events)

    def _together(self, batches: list[_Batch]) -> list[_Batch]:
        """A swapped pair the gateway flushed apart goes into one message (only `_split`
        separates them, where that is safe)."""
        for m in range(len(batches) - 1):
            ids = {e.event_id for e in batches[m][3]}
            wanted = {self._pairs[i] for i in ids if i in self._pairs}
            later = batches[m + 1][3]
            moved = [e for e in later if e.event_id in wanted and e.event_id not in ids]
            if moved:
                batches[m][3].extend(moved)
                batches[m + 1] = batches[m + 1][:3] + ([e for e in later if e not in moved],)
        return [b for b in batches if b[3]]

    def _split(self, flush_ms: int, station_id: str, events: list[MeterEvent]
               ) -> Iterator[tuple[str, list[MeterEvent]]]:
        for i, event in enumerate(events[:-1]):
            if event.event_id in self._split_after \
                    and flush_ms < event.event_time_ms + _SPLIT_WITHIN_MS:
                yield station_id, events[:i + 1]
                yield station_id, events[i + 1:]
                return
        yield station_id, events

    # -- per station and connector --------------------------------------------------------

    def _station(self, station: Station) -> list[list[MeterEvent]]:
        plans = {c.connector_id: list(plan_sessions(self.fleet, station, c))
                 for c in station.connectors}
        last_ms = max((p.leave_ms for ps in plans.values() for p in ps), default=0)
        return [self._connector(plans[c.connector_id], last_ms) for c in station.connectors]

    def _connector(self, plans: list[SessionPlan], station_last_ms: int) -> list[MeterEvent]:
        if not plans:
            return []
        rng = random.Random(f"{self.chaos.seed}/chaos/{plans[0].station_id}/"
                            f"{plans[0].connector.connector_id}")
        rates = self.chaos.rates()
        sessions: list[list[MeterEvent]] = []
        last_receive = 0
        for plan in plans:
            events = list(session_events(plan, self.fleet, last_receive))
            last_receive = events[-1].receive_time_ms
            sessions.append(events)
        previous_injected = False
        for i, plan in enumerate(plans):
            events = sessions[i]
            following = sessions[i + 1] if i + 1 < len(sessions) else None
            case = None
            if not previous_injected and not self.chaos.clean:
                u, low = rng.random(), 0.0
                for name, rate in zip(CASES, rates, strict=True):
                    if low <= u < low + rate:
                        case = name
                    low += rate
            expected = _clean_expected(plan, events, self.fleet.tariff)
            if case is not None:
                done = self._inject(case, rng, events, following, station_last_ms, expected)
                if done is not None:
                    expected = replace(done, injected=(case,), anomalies=done.anomalies + tuple(
                        _CAUSES[f] for f in done.flags if f in _CAUSES))
                else:
                    case = None
            previous_injected = case is not None
            self._expected.append(expected)
        out: list[MeterEvent] = []
        for events in sessions:
            for event in events:
                if out and event.receive_time_ms <= out[-1].receive_time_ms:
                    event = replace(event, receive_time_ms=out[-1].receive_time_ms + 1)
                out.append(event)
        return out

    def _inject(self, case: str, rng: random.Random, ev: list[MeterEvent],
                following: list[MeterEvent] | None, station_last_ms: int,
                exp: ExpectedSession) -> ExpectedSession | None:
        """Tamper with `ev` (and `following`) in place; the expected session, or None when
        this session cannot take the case unambiguously (then it stays clean)."""
        tariff = self.fleet.tariff
        assert isinstance(tariff, SimplePrices)
        return INJECTORS[case](Target(rng, ev, following, station_last_ms, exp, tariff,
                                      self._pairs, self._split_after,
                                      self.chaos.across_messages_share))


def _clean_expected(plan: SessionPlan, events: list[MeterEvent],
                    tariff: object) -> ExpectedSession:
    start, stop = events[1], events[-2]
    assert isinstance(tariff, SimplePrices) and start.kind is _STARTED and stop.kind is _ENDED
    energy = register_wh(stop) - register_wh(start)
    return ExpectedSession(
        station_id=plan.station_id, connector_id=plan.connector.connector_id,
        transaction_id=plan.transaction_id, id_tag=plan.vehicle.id_tag,
        vehicle_id=plan.vehicle.vehicle_id, start_ms=start.event_time_ms,
        end_ms=stop.event_time_ms, state=SessionState.COMPLETED, version=1,
        energy_wh=energy, soc_start_pct=start.soc_pct, soc_end_pct=stop.soc_pct,
        cost=tariff.cost(energy, stop.event_time_ms - start.event_time_ms),
        currency=tariff.currency, flags=(), injected=())
