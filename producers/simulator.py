"""Fleet simulator: deterministic meter-event messages for a charging network, with ground truth.

Pure (no Kafka import) and deterministic: the same `FleetConfig` gives the same messages and
the same truth on every run (no global random, no clock). Each connector draws from its own
`random.Random` seeded by (seed, station, connector), so the sessions of one connector do not
depend on how the others are consumed, and the truth can be recomputed without the events.
Simulated time runs as fast as the machine allows: nothing sleeps or reads the clock.

Memory stays bounded: every connector is a generator of its own sessions, stations merge
their connectors by receive time and batch like a gateway, and `Simulation.messages()` merges
the stations by flush time, so only one buffer per station is held at a time.

Ground truth: `Simulation.truth()` yields every session (recomputed from the same session
plans, independent of `messages()`); `Simulation.meta()` gives the counts once `messages()`
has been consumed to the end. Its costs come from the reference pricer written from the OCPI
text (producers/reference_pricing.py), never from the product's tariff engine, so the
end-to-end cost checks can catch a pricing bug.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from producers.errors import ProducerError, SimulationConfigError
from producers.faults import (
    FaultClock,
    FaultConfig,
    FaultPlan,
    fault_events,
    station_profile,
    status_event,
)
from producers.fleet import (
    ChargingCurve,
    Connector,
    Station,
    Vehicle,
    next_arrival,
    random_station,
    random_vehicle,
)
from producers.reference_pricing import (
    DEFAULT_SIMPLE_PRICES,
    Reading,
    Session,
    TruthPricing,
    reference_cost,
)
from producers.truth import TrueFault, TrueSession, TruthMeta
from schemas.records import MAX_EVENTS_PER_MESSAGE, EventKind, MeterEvent

DEFAULT_START_MS = 1_795_392_000_000
"""2026-11-23T00:00:00Z."""
_AC_VOLTS = 230.0


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything that shapes a simulation; the same config always gives the same output."""

    seed: int = 7
    stations: int = 200
    start_ms: int = DEFAULT_START_MS
    duration_s: int = 86_400
    meter_interval_s: int = 60
    events_per_message: int = 20
    """A station's gateway flushes when it holds this many events..."""
    flush_interval_s: int = 300
    """...or when its oldest buffered event is this old (simulated time), whichever first."""
    tariff: TruthPricing = DEFAULT_SIMPLE_PRICES
    """The simple tariff or a tariff file, as the reference pricer reads them: the truth's
    costs are the reference's over the true readings, and must match the pipeline's."""
    connectors_per_station: tuple[int, int] = (1, 4)
    dc_share: float = 0.3
    """Share of stations with DC (50/150 kW) rather than AC (11/22 kW) connectors."""
    vehicles_per_connector: int = 4
    """Each connector has its own regulars, so one vehicle never charges in two places at once."""
    ac_peak_arrivals_per_hour: float = 0.35
    dc_peak_arrivals_per_hour: float = 0.9
    utc_offset_h: int = 1
    """Local time of the fleet, for the daily arrival profile."""
    max_idle_s: int = 5_400
    """After the target SoC the car stays plugged in (0 W) for up to this long."""
    max_latency_ms: int = 500
    """Gateway receive time is the event time plus 50..this many ms (deterministic per event)."""
    faults: FaultConfig | None = None
    """Station models/firmware and connector faults (producers/faults.py); None: no faults."""

    def __post_init__(self) -> None:
        low, high = self.connectors_per_station
        problems = [
            (self.stations < 1, "stations must be at least 1"),
            (self.duration_s < 1200, "duration_s must be at least 1200 (20 minutes)"),
            (self.meter_interval_s < 1, "meter_interval_s must be at least 1"),
            (not 1 <= self.events_per_message <= MAX_EVENTS_PER_MESSAGE,
             f"events_per_message must be 1..{MAX_EVENTS_PER_MESSAGE}"),
            (self.flush_interval_s < 0, "flush_interval_s must not be negative"),
            (not 1 <= low <= high,
             "connectors_per_station must be (low, high) with 1 <= low <= high"),
            (not 0.0 <= self.dc_share <= 1.0, "dc_share must be within 0..1"),
            (self.vehicles_per_connector < 1, "vehicles_per_connector must be at least 1"),
            (self.ac_peak_arrivals_per_hour <= 0 or self.dc_peak_arrivals_per_hour <= 0,
             "peak arrival rates must be positive"),
            (self.max_idle_s < 0, "max_idle_s must not be negative"),
            (not 50 <= self.max_latency_ms < 1000, "max_latency_ms must be within 50..999"),
        ]
        wrong = [text for bad, text in problems if bad]
        if wrong:
            raise SimulationConfigError("invalid fleet config: " + "; ".join(wrong))

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_s * 1000


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One vehicle's visit to one connector, decided up front; events and truth both read it."""

    station_id: str
    connector: Connector
    number: int
    vehicle: Vehicle
    curve: ChargingCurve
    arrive_ms: int
    start_ms: int
    full_ms: int
    """Target reached (or the period cut); 0 W from here on."""
    stop_ms: int
    leave_ms: int
    soc_target: float
    stop_reason: str
    transaction_id: str

    def soc_at(self, time_ms: int) -> float:
        elapsed_s = (min(time_ms, self.full_ms) - self.start_ms) / 1000.0
        return min(self.curve.soc_at(elapsed_s), self.soc_target)

    def power_at(self, time_ms: int, soc: float) -> float:
        """Power at `time_ms`, given `soc = soc_at(time_ms)`."""
        return 0.0 if time_ms >= self.full_ms else self.curve.power_at_soc(soc)

    def register_at(self, time_ms: int, soc: float | None = None) -> int:
        """The lifetime register in whole Wh: start register plus the energy delivered so far.

        Rounded down from the exact integral, so deltas between readings never drift.
        """
        soc = self.soc_at(time_ms) if soc is None else soc
        delivered = self.curve.capacity_wh * (soc - self.curve.soc_start)
        return self.connector.register_start_wh + math.floor(delivered + 1e-9)

    @property
    def end_register_wh(self) -> int:
        return self.register_at(self.stop_ms)


def _soc_pct(soc: float) -> float:
    return round(soc * 100.0, 1)


def plan_sessions(config: FleetConfig, station: Station,
                  connector: Connector) -> Iterator[SessionPlan]:
    """The connector's sessions in time order; the register carries over from one to the next."""
    return (p for p in plan_connector(config, station, connector) if isinstance(p, SessionPlan))


def plan_connector(config: FleetConfig, station: Station,
                   connector: Connector) -> Iterator[SessionPlan | FaultPlan]:
    """The connector's sessions and faults in time order (faults only with `config.faults`)."""
    faults = None if config.faults is None else FaultClock(
        config.seed, station.station_id, connector.connector_id,
        station_profile(config.seed, station.station_id, config.faults), config.faults,
        config.start_ms, config.end_ms)
    rng = random.Random(f"{config.seed}/{station.station_id}/{connector.connector_id}")
    pool = [random_vehicle(rng) for _ in range(config.vehicles_per_connector)]
    peak = config.dc_peak_arrivals_per_hour if connector.dc else config.ac_peak_arrivals_per_hour
    end_ms = config.end_ms
    cut_ms = end_ms - 2000
    last_arrival_ms = end_ms - 600_000
    free_ms = config.start_ms
    number = 0
    while True:
        arrive = next_arrival(rng, free_ms, last_arrival_ms, config.utc_offset_h, peak)
        fault = faults.take(last_arrival_ms if arrive is None else arrive) if faults else None
        if fault is not None:  # the connector fails first; that arrival finds it faulted
            yield fault
            free_ms = fault.end_ms + 1000
            continue
        if arrive is None:
            return
        number += 1
        vehicle = rng.choice(pool)
        curve = ChargingCurve(
            capacity_wh=vehicle.capacity_wh,
            max_w=min(connector.rated_w, vehicle.max_power_w(connector.dc)),
            soc_start=rng.randint(100, 600) / 1000,
        )
        soc_target = rng.randint(800, 1000) / 1000
        start = arrive + rng.randint(5_000, 40_000)
        full = start + math.ceil(curve.seconds_to(soc_target) * 1000)
        stop = full + rng.randint(0, config.max_idle_s * 1000)
        reason = "EVDisconnected" if rng.random() < 0.8 else "Local"
        leave = stop + rng.randint(2_000, 30_000)
        if leave >= end_ms - 1000:
            if stop > cut_ms:
                stop, reason = cut_ms, "Local"
            leave = min(leave, end_ms - 1000)
        plan = SessionPlan(
            station_id=station.station_id, connector=connector, number=number,
            vehicle=vehicle, curve=curve, arrive_ms=arrive, start_ms=start,
            full_ms=min(full, stop), stop_ms=stop, leave_ms=leave, soc_target=soc_target,
            stop_reason=reason,
            transaction_id=f"{station.station_id}-{connector.connector_id}-{number}",
        )
        yield plan
        connector = Connector(connector.connector_id, connector.rated_w, connector.dc,
                              plan.end_register_wh)
        free_ms = leave + 1000
        if faults is not None:
            faults.idle_from(free_ms)


def reading_times(plan: SessionPlan, meter_interval_s: int) -> range:
    """Times of the METER readings between STARTED and ENDED."""
    step_ms = meter_interval_s * 1000
    return range(plan.start_ms + step_ms, plan.stop_ms, step_ms)


def _electrics(plan: SessionPlan, time_ms: int) -> tuple[float, float, float, float]:
    """(soc, power W, current A, voltage V) of a reading, as its METER event carries them."""
    soc = plan.soc_at(time_ms)
    power = plan.power_at(time_ms, soc)
    dc = plan.connector.dc
    volts = 360.0 + 60.0 * soc if dc else _AC_VOLTS
    amps = power / volts if dc else power / (3 * _AC_VOLTS)
    return soc, round(power, 1), round(amps, 1), round(volts, 1)


def true_cost(plan: SessionPlan, tariff: TruthPricing, meter_interval_s: int
              ) -> tuple[Decimal, str]:
    """Cost incl. VAT and currency of the true readings (STARTED, each METER with the
    current it reports, ENDED), by the reference pricer."""
    readings = []
    last = plan.connector.register_start_wh
    for time_ms in reading_times(plan, meter_interval_s):
        register = plan.register_at(time_ms)
        readings.append(Reading(time_ms, register - last, _electrics(plan, time_ms)[2]))
        last = register
    readings.append(Reading(plan.stop_ms, plan.end_register_wh - last))
    cost = reference_cost(tariff, Session(plan.station_id, plan.connector.connector_id,
                                          plan.vehicle.id_tag, plan.start_ms, tuple(readings),
                                          plan.stop_ms))
    return cost.incl_vat, cost.currency


def true_session(plan: SessionPlan, tariff: TruthPricing, meter_interval_s: int
                 ) -> TrueSession:
    """The truth exactly as the plan's STARTED and ENDED events carry it."""
    energy = plan.end_register_wh - plan.connector.register_start_wh
    cost, currency = true_cost(plan, tariff, meter_interval_s)
    return TrueSession(
        station_id=plan.station_id, connector_id=plan.connector.connector_id,
        transaction_id=plan.transaction_id, id_tag=plan.vehicle.id_tag,
        vehicle_id=plan.vehicle.vehicle_id, start_ms=plan.start_ms, end_ms=plan.stop_ms,
        energy_wh=energy, soc_start_pct=_soc_pct(plan.soc_at(plan.start_ms)),
        soc_end_pct=_soc_pct(plan.soc_at(plan.stop_ms)),
        cost=cost, currency=currency,
    )


class _EventWriter:
    """Turns plans into MeterEvents, keeping one connector's receive times strictly increasing."""

    def __init__(self, plan: SessionPlan, max_latency_ms: int, last_receive_ms: int) -> None:
        self.plan = plan
        self.max_latency_ms = max_latency_ms
        self.last_receive_ms = last_receive_ms
        self.index = 0

    def _stamp(self, time_ms: int) -> tuple[str, int]:
        """The next event id and its receive time (event time plus a deterministic latency)."""
        event_id = f"{self.plan.transaction_id}:{self.index}"
        self.index += 1
        latency = 50 + zlib.crc32(event_id.encode()) % (self.max_latency_ms - 49)
        receive = max(time_ms + latency, self.last_receive_ms + 1)
        self.last_receive_ms = receive
        return event_id, receive

    def event(self, kind: EventKind, time_ms: int, **values: object) -> MeterEvent:
        plan = self.plan
        event_id, receive = self._stamp(time_ms)
        return MeterEvent(event_id=event_id, station_id=plan.station_id,
                          connector_id=plan.connector.connector_id, kind=kind,
                          event_time_ms=time_ms, receive_time_ms=receive,
                          **values)  # type: ignore[arg-type]

    def reading(self, time_ms: int, seq: int) -> MeterEvent:
        plan = self.plan
        soc, power, amps, volts = _electrics(plan, time_ms)
        event_id, receive = self._stamp(time_ms)
        return MeterEvent(event_id, plan.station_id, plan.connector.connector_id,
                          EventKind.METER, time_ms, receive, plan.transaction_id, seq,
                          energy_wh=float(plan.register_at(time_ms, soc)),
                          power_w=power, soc_pct=_soc_pct(soc),
                          current_a=amps, voltage_v=volts)


def session_events(plan: SessionPlan, config: FleetConfig,
                   last_receive_ms: int = 0) -> Iterator[MeterEvent]:
    """Preparing, STARTED, a reading every interval, ENDED, Available."""
    out = _EventWriter(plan, config.max_latency_ms, last_receive_ms)
    tx = plan.transaction_id
    who = {"id_tag": plan.vehicle.id_tag, "vehicle_id": plan.vehicle.vehicle_id}
    yield out.event(EventKind.STATUS, plan.arrive_ms, status="Preparing")
    yield out.event(EventKind.STARTED, plan.start_ms, transaction_id=tx, seq=0, **who,
                    energy_wh=float(plan.connector.register_start_wh), power_w=0.0,
                    soc_pct=_soc_pct(plan.soc_at(plan.start_ms)))
    seq = 0
    for time_ms in reading_times(plan, config.meter_interval_s):
        seq += 1
        yield out.reading(time_ms, seq)
    yield out.event(EventKind.ENDED, plan.stop_ms, transaction_id=tx, seq=seq + 1, **who,
                    energy_wh=float(plan.end_register_wh), power_w=0.0,
                    soc_pct=_soc_pct(plan.soc_at(plan.stop_ms)), stop_reason=plan.stop_reason)
    yield out.event(EventKind.STATUS, plan.leave_ms, status="Available")


def connector_events(config: FleetConfig, station: Station,
                     connector: Connector) -> Iterator[MeterEvent]:
    last_receive_ms = 0
    if config.faults is not None:  # the charger's boot notification: status known from the start
        boot = status_event(station.station_id, connector.connector_id,
                            f"{station.station_id}-{connector.connector_id}-boot",
                            config.start_ms, "Available", 0, config.max_latency_ms)
        last_receive_ms = boot.receive_time_ms
        yield boot
    for plan in plan_connector(config, station, connector):
        events = fault_events(plan, last_receive_ms, config.max_latency_ms) \
            if isinstance(plan, FaultPlan) else session_events(plan, config, last_receive_ms)
        for event in events:
            last_receive_ms = event.receive_time_ms
            yield event


_Batch = tuple[int, int, str, list[MeterEvent]]
"""(flush time, station index, station id, events): the sort key comes first."""


def station_messages(config: FleetConfig, station: Station) -> Iterator[_Batch]:
    """The station's gateway: flush at `events_per_message` events or when the oldest is
    `flush_interval_s` old, whichever comes first; flush the rest at the end."""
    return batch_station(config, station,
                         [connector_events(config, station, c) for c in station.connectors])


def batch_station(config: FleetConfig, station: Station,
                  streams: list[Iterator[MeterEvent]]) -> Iterator[_Batch]:
    """Batch the station's connector streams (each in receive order) as its gateway does;
    `producers.chaos` passes streams it has tampered with."""
    merged = heapq.merge(*streams, key=lambda e: (e.receive_time_ms, e.connector_id))
    limit = config.events_per_message
    max_age_ms = config.flush_interval_s * 1000
    buffer: list[MeterEvent] = []
    for event in merged:
        if buffer and event.receive_time_ms >= buffer[0].receive_time_ms + max_age_ms:
            yield buffer[0].receive_time_ms + max_age_ms, station.index, station.station_id, buffer
            buffer = []
        buffer.append(event)
        if len(buffer) >= limit:
            yield event.receive_time_ms, station.index, station.station_id, buffer
            buffer = []
    if buffer:
        yield buffer[0].receive_time_ms + max_age_ms, station.index, station.station_id, buffer


@dataclass
class SimulationCounts:
    events: int = 0
    messages: int = 0
    sessions: int = 0
    finished: bool = False


class Simulation:
    """A simulated fleet: its messages (lazily, in global flush order) and its ground truth."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        rng = random.Random(f"{config.seed}/fleet")
        self.stations = [
            random_station(rng, i, config.connectors_per_station, config.dc_share)
            for i in range(1, config.stations + 1)
        ]
        self.counts = SimulationCounts()

    def messages(self) -> Iterator[tuple[str, list[MeterEvent]]]:
        """`(station_id, events)` per gateway flush, merged across stations by flush time.

        Counts (`self.counts`) grow as messages are taken; `finished` is set at the end.
        """
        self.counts = counts = SimulationCounts()
        merged = heapq.merge(*(station_messages(self.config, s) for s in self.stations),
                             key=lambda batch: (batch[0], batch[1]))
        for _, _, station_id, events in merged:
            counts.messages += 1
            counts.events += len(events)
            counts.sessions += sum(1 for e in events if e.kind is EventKind.ENDED)
            yield station_id, events
        counts.finished = True

    def plans(self) -> Iterator[SessionPlan]:
        for station in self.stations:
            for connector in station.connectors:
                yield from plan_sessions(self.config, station, connector)

    def faults(self) -> Iterator[TrueFault]:
        """Every connector fault, by station, connector and time (none without faults)."""
        if self.config.faults is None:
            return
        for station in self.stations:
            for connector in station.connectors:
                for plan in plan_connector(self.config, station, connector):
                    if isinstance(plan, FaultPlan):
                        yield TrueFault(plan.station_id, plan.connector_id, plan.start_ms,
                                        plan.end_ms, plan.error_code)

    def registry(self) -> dict[str, object]:
        """The fleet as a station registry document (charging/stations.py): rated power
        and OCPI type per connector, a made-up address on a grid around Bonn (what an OCPI
        CDR needs), and model and firmware when faults give stations a profile."""
        stations: dict[str, object] = {}
        for station in self.stations:
            row, column = divmod(station.index, 20)
            entry: dict[str, object] = {
                "address": f"Simulated Street {station.index + 1}", "city": "Bonn",
                "country": "DEU", "coordinates": {"latitude": 50.70 + row * 0.002,
                                                  "longitude": 7.05 + column * 0.003},
                "connectors": {c.connector_id: {
                    "power_w": c.rated_w, "power_type": "DC" if c.dc else "AC_3_PHASE",
                    "standard": "IEC_62196_T2_COMBO" if c.dc else "IEC_62196_T2",
                    "format": "CABLE" if c.dc else "SOCKET"} for c in station.connectors}}
            if self.config.faults is not None:
                profile = station_profile(self.config.seed, station.station_id,
                                          self.config.faults)
                entry.update(model=profile.model, firmware=profile.firmware)
            stations[station.station_id] = entry
        return {"stations": stations}

    def truth(self) -> Iterator[TrueSession]:
        """Every session, by station, connector and start time; needs no call to `messages()`."""
        for plan in self.plans():
            yield true_session(plan, self.config.tariff, self.config.meter_interval_s)

    def meta(self) -> TruthMeta:
        """Counts for the truth file; only valid once `messages()` ran to the end."""
        if not self.counts.finished:
            raise ProducerError("Simulation.meta() needs messages() consumed to the end first")
        return TruthMeta(
            seed=self.config.seed, stations=len(self.stations),
            connectors=sum(len(s.connectors) for s in self.stations),
            start_ms=self.config.start_ms, end_ms=self.config.end_ms,
            events=self.counts.events, messages=self.counts.messages,
            sessions=self.counts.sessions,
        )


def simulate(config: FleetConfig | None = None) -> Simulation:
    """Build the fleet for `config` (default: 200 stations over 2026-11-23, UTC)."""
    return Simulation(config or FleetConfig())
