"""The stitching state machine: clean sessions, edge cases, and replay/restart properties."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charging.errors import PositionOutOfRange, StateDecodeError
from charging.pricing import SimpleTariff, price_session
from charging.session_ids import IdTemplate
from charging.state import StationState
from charging.stitcher import (
    SessionStitcher,
    StitcherConfig,
    StitchOutcome,
    continue_log,
    stitch_log,
)
from schemas.records import (
    MAX_EVENTS_PER_MESSAGE,
    ChargingSession,
    EventKind,
    EventPosition,
    MeterEvent,
    SessionState,
)
from tests.id_formula import session_id, utc_day

pytestmark = pytest.mark.unit

T0 = 1_632_571_200_000  # 2021-09-25T12:00:00Z
MIN = 60_000
TARIFF = SimpleTariff("EUR", Decimal("0.50"), Decimal("0.05"))
TEMPLATES = ["EV-{num:09d}", "SESSION-{num:012X}", "{station}-{date}-{station_daily:03d}",
             "{station}-{station_seq:04d}"]


def config(template: str = "EV-{num:09d}", partitions: int = 4) -> StitcherConfig:
    return StitcherConfig(partitions, IdTemplate.parse(template), TARIFF)


def ev(kind: EventKind, t: int, *, station: str = "CS-1", connector: int = 2,
       **fields: object) -> MeterEvent:
    return MeterEvent(f"{station}/{connector}/{kind}/{t}", station, connector, kind, t, t,
                      **fields)  # type: ignore[arg-type]


class Runner:
    """Feeds one station's events with increasing offsets on one partition."""

    def __init__(self, template: str = "EV-{num:09d}") -> None:
        self.stitcher = SessionStitcher(config(template))
        self.state: StationState | None = None
        self.offset = 0

    def __call__(self, event: MeterEvent, index: int = 0):  # noqa: ANN204
        result = self.stitcher.apply(self.state, event, EventPosition(1, self.offset, index))
        self.state = result.state
        self.offset += 1
        return result


def test_clean_session_end_to_end() -> None:
    run = Runner()
    started = run(ev(EventKind.STARTED, T0, transaction_id="T9", id_tag="TAG",
                     vehicle_id="VIN1", energy_wh=10_000.0, soc_pct=20.0))
    assert started.updates == (2,) and started.completed == ()
    assert run(ev(EventKind.METER, T0 + MIN, energy_wh=10_500.0, power_w=30_000.0,
                  soc_pct=25.0)).updates == (2,)
    run(ev(EventKind.METER, T0 + 2 * MIN, energy_wh=10_500.0, power_w=0.0, soc_pct=25.0))
    run(ev(EventKind.METER, T0 + 3 * MIN, energy_wh=11_250.0, power_w=45_000.0, soc_pct=40.0))
    assert run.state is not None
    running = run.stitcher.snapshot(run.state, 2)
    assert running is not None and running.state is SessionState.OPEN
    assert running.energy_wh == 1250.0 and running.end_ms == T0 + 3 * MIN
    assert running.cost == Decimal("0.78")  # 1.25 kWh * 0.50 + 3 min * 0.05 = 0.775
    ended = run(ev(EventKind.ENDED, T0 + 4 * MIN, transaction_id="T9", energy_wh=11_250.0,
                   soc_pct=40.0, stop_reason="EVDisconnected"))
    assert ended.updates == () and ended.rejected is None
    assert run.stitcher.snapshot(run.state, 2) is None
    (session,) = ended.completed
    assert (session.cost_excl_vat, session.tariff_id) == (Decimal("0.83"), "SIMPLE")
    assert [(c.dimension, c.incl_vat) for c in session.dimension_costs] == [
        ("ENERGY", Decimal("0.63")), ("PARKING_TIME", Decimal("0.10")),
        ("TIME", Decimal("0.10"))]
    assert [(p.energy_wh, p.charging_ms, p.parking_ms) for p in session.periods] == [
        (1250.0, 2 * MIN, 2 * MIN)]
    session = replace(session, cost_excl_vat=None, tariff_id=None, periods=(),
                      dimension_costs=())
    assert session == ChargingSession(
        session_id="EV-000000001",  # (offset 0 * 1000 + index 0) * 4 partitions + partition 1
        version=1, state=SessionState.COMPLETED, station_id="CS-1", connector_id=2,
        transaction_id="T9", id_tag="TAG", vehicle_id="VIN1", start_ms=T0, end_ms=T0 + 4 * MIN,
        meter_start_wh=10_000.0, meter_end_wh=11_250.0, energy_wh=1250.0,
        soc_start_pct=20.0, soc_end_pct=40.0, max_power_w=45_000.0,
        avg_power_w=37_500.0,  # 1250 Wh over 2 charging minutes
        charging_ms=2 * MIN, plugged_ms=4 * MIN,
        cost=Decimal("0.83"),  # 0.625 + 0.20 = 0.825, half-up
        currency="EUR", event_count=5, stop_reason="EVDisconnected", flags=())
    assert session.idle_ms == 2 * MIN


def test_ids_from_the_opening_position() -> None:
    stitcher = SessionStitcher(config("EV-{num:09d}", partitions=4))
    result = stitcher.apply(None, ev(EventKind.STARTED, T0, energy_wh=0.0),
                            EventPosition(partition=2, offset=5, index=3))
    running = stitcher.snapshot(result.state, 2)
    assert running is not None and running.session_id == f"EV-{(5 * 1000 + 3) * 4 + 2:09d}"


def test_station_daily_ids_count_per_utc_date_across_connectors() -> None:
    run = Runner("{station}-{date}-{station_daily:03d}")
    ids = []
    for t, connector in [(T0, 1), (T0 + MIN, 2), (T0 + 86_400_000, 1)]:
        run(ev(EventKind.STARTED, t, connector=connector, energy_wh=0.0))
        (done,) = run(ev(EventKind.ENDED, t + MIN, connector=connector, energy_wh=5.0)).completed
        ids.append(done.session_id)
    assert ids == ["CS-1-2021-09-25-001", "CS-1-2021-09-25-002", "CS-1-2021-09-26-001"]


def test_overlapping_start_closes_the_open_session_as_incomplete() -> None:
    run = Runner()
    run(ev(EventKind.STARTED, T0, energy_wh=100.0))
    run(ev(EventKind.METER, T0 + MIN, energy_wh=400.0))
    result = run(ev(EventKind.STARTED, T0 + 5 * MIN, energy_wh=450.0, transaction_id="T2"))
    (old,) = result.completed
    assert old.state is SessionState.INCOMPLETE and old.flags == ("overlapped",)
    assert (old.energy_wh, old.end_ms, old.version, old.stop_reason) == (300.0, T0 + MIN, 1, None)
    assert old.cost == price_session(300.0, MIN, TARIFF)
    assert result.updates == (2,)
    assert run.state is not None
    new = run.stitcher.snapshot(run.state, 2)
    assert new is not None and new.session_id != old.session_id
    assert (new.meter_start_wh, new.energy_wh, new.transaction_id) == (450.0, 0.0, "T2")


def test_meter_without_start_opens_a_session_from_that_reading() -> None:
    run = Runner()
    first = run(ev(EventKind.METER, T0, energy_wh=7_000.0, vehicle_id="VIN7"), index=4)
    assert first.updates == (2,) and first.rejected is None
    run(ev(EventKind.METER, T0 + MIN, energy_wh=7_600.0))
    (done,) = run(ev(EventKind.ENDED, T0 + 2 * MIN)).completed
    assert done.session_id == f"EV-{(0 * 1000 + 4) * 4 + 1:09d}"
    assert done.flags == ("missing_start",) and done.state is SessionState.COMPLETED
    assert (done.meter_start_wh, done.meter_end_wh, done.energy_wh) == (7_000.0, 7_600.0, 600.0)
    assert (done.start_ms, done.plugged_ms, done.charging_ms) == (T0, 2 * MIN, MIN)
    assert done.vehicle_id == "VIN7"


def test_stop_without_session_is_rejected_and_changes_nothing() -> None:
    run = Runner()
    result = run(ev(EventKind.ENDED, T0, transaction_id="T9", energy_wh=5.0))
    assert result.rejected == "stop without an open session on CS-1/2 (transaction T9)"
    assert result.completed == () and result.updates == ()
    no_tx = run(ev(EventKind.ENDED, T0 + 1))
    assert no_tx.rejected == "stop without an open session on CS-1/2 (no transaction id)"


@pytest.mark.parametrize(("change", "reason"), [
    ({"station_id": ""}, "empty station_id"),
    ({"connector_id": -1}, "negative connector_id -1"),
    ({"energy_wh": -1.0}, "energy_wh -1.0 on CS-1/2 is negative or not finite"),
    ({"energy_wh": math.nan}, "energy_wh nan on CS-1/2 is negative or not finite"),
    ({"power_w": math.inf}, "power_w inf on CS-1/2 is negative or not finite"),
    ({"soc_pct": -0.5}, "soc_pct -0.5 on CS-1/2 is negative or not finite"),
    ({"soc_pct": 100.5}, "soc_pct 100.5 on CS-1/2 is above 100"),
])
def test_invalid_events_are_rejected_with_a_reason(change: dict[str, object], reason: str) -> None:
    stitcher = SessionStitcher(config())
    event = replace(ev(EventKind.STARTED, T0, energy_wh=10.0, power_w=1.0, soc_pct=50.0),
                    **change)  # type: ignore[arg-type]
    result = stitcher.apply(None, event, EventPosition(0, 7))
    assert result.rejected is not None and reason in result.rejected
    assert result.updates == () and result.completed == ()
    assert result.state.open_sessions() == {} and result.state.seq == 0
    again = stitcher.apply(result.state, event, EventPosition(0, 7))
    assert again.duplicate and again.rejected is None


def test_too_many_events_in_one_message_is_rejected() -> None:
    result = SessionStitcher(config()).apply(
        None, ev(EventKind.STARTED, T0), EventPosition(0, 1, MAX_EVENTS_PER_MESSAGE))
    assert result.rejected is not None and "exceeds the 1000 events" in result.rejected


def test_partition_beyond_the_configured_count_is_a_configuration_error() -> None:
    with pytest.raises(PositionOutOfRange, match="more partitions than configured"):
        SessionStitcher(config(partitions=4)).apply(None, ev(EventKind.STARTED, T0),
                                                    EventPosition(4, 0))


def test_state_of_another_station_is_refused() -> None:
    stitcher = SessionStitcher(config())
    state = stitcher.apply(None, ev(EventKind.STARTED, T0), EventPosition(0, 0)).state
    with pytest.raises(ValueError, match="keyed by station id"):
        stitcher.apply(state, ev(EventKind.METER, T0, station="CS-2"), EventPosition(0, 1))


def test_identification_learned_later_and_status_remembered() -> None:
    run = Runner()
    run(ev(EventKind.STARTED, T0, energy_wh=0.0))
    status = run(ev(EventKind.STATUS, T0 + 1, status="Faulted", error_code="GroundFailure"))
    assert (status.updates, status.completed, status.rejected) == ((), (), None)
    run(ev(EventKind.METER, T0 + MIN, energy_wh=10.0, id_tag="TAG", vehicle_id="VIN",
           transaction_id="T1"))
    run(ev(EventKind.METER, T0 + 2 * MIN, energy_wh=20.0, id_tag="OTHER"))
    (done,) = run(ev(EventKind.ENDED, T0 + 3 * MIN)).completed
    assert (done.id_tag, done.vehicle_id, done.transaction_id) == ("TAG", "VIN", "T1")
    assert run.state is not None
    conn = run.state.connectors[2]
    assert (conn.status, conn.error_code) == ("Faulted", "GroundFailure")


def test_duplicate_position_is_a_no_op() -> None:
    run = Runner()
    run(ev(EventKind.STARTED, T0, energy_wh=0.0))
    meter = ev(EventKind.METER, T0 + MIN, energy_wh=50.0)
    run(meter)
    assert run.state is not None
    before = run.state.to_bytes()
    again = run.stitcher.apply(run.state, meter, EventPosition(1, 1))
    assert again.duplicate and again.updates == () and run.state.to_bytes() == before


def test_a_station_moved_to_another_partition_is_not_mistaken_for_duplicates() -> None:
    stitcher = SessionStitcher(config(partitions=8))
    state = stitcher.apply(None, ev(EventKind.STARTED, T0, energy_wh=0.0),
                           EventPosition(1, 900)).state
    moved = stitcher.apply(state, ev(EventKind.METER, T0 + MIN, energy_wh=9.0),
                           EventPosition(5, 3))
    assert not moved.duplicate and moved.updates == (2,)
    assert stitcher.apply(state, ev(EventKind.METER, T0 + MIN, energy_wh=9.0),
                          EventPosition(5, 3)).duplicate


def test_state_round_trip_is_exact_and_small() -> None:
    run = Runner("{station}-{date}-{station_daily:03d}")
    run(ev(EventKind.STARTED, T0, connector=1, transaction_id="T-0001", id_tag="04A2B3C4D5E6F7",
           vehicle_id="WVWZZZ1JZXW000001", energy_wh=1_234_567.5, soc_pct=12.5, power_w=1.0))
    run(ev(EventKind.METER, T0 + MIN, connector=1, energy_wh=1_235_000.25, soc_pct=14.0,
           power_w=49_876.5))
    run(ev(EventKind.STATUS, T0 + MIN, connector=2, status="Available"))
    assert run.state is not None
    blob = run.state.to_bytes()
    assert StationState.from_bytes(blob) == run.state
    assert StationState.from_bytes(blob).to_bytes() == blob
    without = StationState.from_bytes(blob)
    without.connectors[1].session = None
    per_session = len(blob) - len(without.to_bytes())
    assert per_session < 300, per_session  # target < 1 KB; ~200 B with long identifiers


def test_unreadable_state_says_so() -> None:
    with pytest.raises(StateDecodeError, match="version 99"):
        StationState.from_bytes(b'{"v":99}')
    with pytest.raises(StateDecodeError, match="not readable"):
        StationState.from_bytes(b"{nope")


# --- properties over generated clean logs --------------------------------------------------

@dataclass(frozen=True)
class CleanLog:
    partitions: int
    events: list[tuple[MeterEvent, EventPosition]]
    expected: dict[str, list[ChargingSession]]
    """Expected completed sessions per ID template."""


@st.composite
def clean_logs(draw: st.DrawFn) -> CleanLog:
    """Stations x connectors x sessions with increasing registers and times, positioned as a
    Kafka producer would: station -> partition, offsets increasing per partition, and runs of
    one station's consecutive events batched into one message (index > 0)."""
    partitions = draw(st.integers(1, 3))
    rnd = draw(st.randoms(use_true_random=False))
    streams: dict[str, list[MeterEvent]] = {}
    plans: list[dict[str, object]] = []
    for s in range(draw(st.integers(1, 4))):
        station = f"CS-{s}"
        timeline: list[tuple[int, int, int, MeterEvent]] = []
        for connector in range(1, draw(st.integers(1, 2)) + 1):
            t = T0 + draw(st.integers(0, 2 * 86_400_000))
            register = float(draw(st.integers(0, 10**6)))
            for k in range(draw(st.integers(0, 3))):
                t += draw(st.integers(1, 12 * 3_600_000))
                steps = draw(st.lists(st.tuples(st.integers(1, 900_000), st.integers(0, 3000)),
                                      max_size=4))
                early_vehicle = draw(st.booleans())
                soc = float(draw(st.integers(0, 60)))
                tx, vin = f"T{s}{connector}{k}", f"VIN{s}{connector}{k}"
                base = f"{station}/{connector}/{k}"
                events = [MeterEvent(f"{base}/start", station, connector, EventKind.STARTED, t, t,
                                     transaction_id=tx, id_tag="TAG",
                                     vehicle_id=vin if early_vehicle else None,
                                     energy_wh=register, soc_pct=soc)]
                start, meter_start, soc_start = t, register, soc
                charging, max_power = 0, 0.0
                for j, (dt, de) in enumerate(steps):
                    t += dt
                    register += de
                    soc = min(100.0, soc + de / 100)
                    power = de * 3_600_000 / dt
                    charging += dt if de > 0 else 0
                    max_power = max(max_power, power)
                    events.append(MeterEvent(f"{base}/m{j}", station, connector, EventKind.METER,
                                             t, t, transaction_id=tx, vehicle_id=vin,
                                             energy_wh=register, power_w=power, soc_pct=soc))
                t += 1
                events.append(MeterEvent(f"{base}/end", station, connector, EventKind.ENDED, t, t,
                                         transaction_id=tx, vehicle_id=vin, energy_wh=register,
                                         stop_reason="Local"))
                if draw(st.booleans()):
                    events.append(MeterEvent(f"{base}/status", station, connector,
                                             EventKind.STATUS, t, t, status="Available"))
                timeline += [(e.event_time_ms, connector, i, e) for i, e in enumerate(events)]
                energy = register - meter_start
                plans.append({"start_event": events[0].event_id, "session": ChargingSession(
                    session_id="", version=1, state=SessionState.COMPLETED, station_id=station,
                    connector_id=connector, transaction_id=tx, id_tag="TAG", vehicle_id=vin,
                    start_ms=start, end_ms=t, meter_start_wh=meter_start, meter_end_wh=register,
                    energy_wh=energy, soc_start_pct=soc_start, soc_end_pct=soc,
                    max_power_w=max_power,
                    avg_power_w=energy * 3_600_000 / charging if charging else 0.0,
                    charging_ms=charging, plugged_ms=t - start,
                    cost=price_session(energy, t - start, TARIFF), currency="EUR",
                    event_count=len(steps) + 2, stop_reason="Local")})
        streams[station] = [e for *_, e in sorted(timeline, key=lambda row: row[:3])]

    # Producer side: station -> partition; runs of one station's events per message.
    per_partition: dict[int, list[list[MeterEvent]]] = {p: [] for p in range(partitions)}
    home = {station: draw(st.integers(0, partitions - 1)) for station in streams}
    pending = {station: list(events) for station, events in streams.items() if events}
    while pending:
        station = rnd.choice(sorted(pending))
        size = rnd.choice([1, 1, 2, 3])
        per_partition[home[station]].append(pending[station][:size])
        del pending[station][:size]
        if not pending[station]:
            del pending[station]
    positioned: dict[int, list[tuple[MeterEvent, EventPosition]]] = {}
    for p, messages in per_partition.items():
        offset = rnd.randint(0, 50)
        rows = positioned[p] = []
        for message in messages:
            rows += [(e, EventPosition(p, offset, i)) for i, e in enumerate(message)]
            offset += rnd.choice([1, 1, 2])  # offsets may have gaps (transaction markers)
    log: list[tuple[MeterEvent, EventPosition]] = []
    while any(positioned.values()):  # consumer side: partitions interleave arbitrarily
        p = rnd.choice([q for q, rows in positioned.items() if rows])
        log.append(positioned[p].pop(0))

    position_of = {e.event_id: pos for e, pos in log}
    expected: dict[str, list[ChargingSession]] = {}
    for text in TEMPLATES:
        seq: dict[str, int] = {}
        daily: dict[tuple[str, str], int] = {}
        sessions = []
        for plan in sorted(plans, key=lambda p: position_of[str(p["start_event"])].offset
                           * MAX_EVENTS_PER_MESSAGE + position_of[str(p["start_event"])].index):
            session = plan["session"]
            assert isinstance(session, ChargingSession)
            station, day = session.station_id, utc_day(session.start_ms)
            seq[station] = seq.get(station, 0) + 1
            daily[station, day] = daily.get((station, day), 0) + 1
            opened = position_of[str(plan["start_event"])]
            sid = session_id(text, partition=opened.partition, offset=opened.offset,
                             index=opened.index, partitions=partitions, station=station,
                             connector=session.connector_id, start_ms=session.start_ms,
                             station_seq=seq[station], station_daily=daily[station, day])
            sessions.append(replace(session, session_id=sid))
        expected[text] = sessions
    return CleanLog(partitions, log, expected)


def by_id(sessions: tuple[ChargingSession, ...] | list[ChargingSession]) -> list[ChargingSession]:
    """Sorted, without the tariff breakdown (the plans know the total cost only)."""
    return sorted((replace(s, cost_excl_vat=None, tariff_id=None, periods=(),
                           dimension_costs=()) for s in sessions),
                  key=lambda s: s.session_id)


def check_clean(outcome: StitchOutcome, log: CleanLog, template: str) -> None:
    assert outcome.rejected == ()
    assert outcome.open_sessions == {}
    assert by_id(outcome.completed) == by_id(log.expected[template])
    assert len({s.session_id for s in outcome.completed}) == len(outcome.completed)


@settings(max_examples=150, deadline=None)
@given(clean_logs(), st.sampled_from(TEMPLATES))
def test_clean_logs_stitch_to_the_ground_truth_and_replay_identically(
    log: CleanLog, template: str
) -> None:
    first = stitch_log(log.events, config(template, log.partitions))
    check_clean(first, log, template)
    replay = stitch_log(log.events, config(template, log.partitions))  # fresh state
    assert replay.completed == first.completed
    assert {k: v.to_bytes() for k, v in replay.states.items()} == \
        {k: v.to_bytes() for k, v in first.states.items()}


@settings(max_examples=150, deadline=None)
@given(clean_logs(), st.sampled_from(TEMPLATES), st.data())
def test_duplicate_delivery_changes_nothing(
    log: CleanLog, template: str, data: st.DataObject
) -> None:
    n = len(log.events)
    doubled = [row for row in log.events for _ in range(2)]
    outcome = stitch_log(doubled, config(template, log.partitions))
    check_clean(outcome, log, template)
    assert outcome.duplicates == n
    end = data.draw(st.integers(0, n), label="redelivered up to")
    start = data.draw(st.integers(0, end), label="redelivered from")
    rewound = log.events[:end] + log.events[start:]
    outcome = stitch_log(rewound, config(template, log.partitions))
    check_clean(outcome, log, template)
    assert outcome.duplicates == end - start


@settings(max_examples=150, deadline=None)
@given(clean_logs(), st.sampled_from(TEMPLATES), st.data())
def test_restart_from_serialized_state_at_any_point(
    log: CleanLog, template: str, data: st.DataObject
) -> None:
    n = len(log.events)
    cut = data.draw(st.integers(0, n), label="state saved after")
    committed = data.draw(st.integers(0, cut), label="offsets committed up to")
    before = continue_log(SessionStitcher(config(template, log.partitions)), {},
                          log.events[:cut])
    restored = {k: StationState.from_bytes(v.to_bytes()) for k, v in before.states.items()}
    after = continue_log(SessionStitcher(config(template, log.partitions)), restored,
                         log.events[committed:])
    assert after.duplicates == cut - committed
    assert by_id(before.completed + after.completed) == by_id(log.expected[template])
    clean = stitch_log(log.events, config(template, log.partitions))
    assert before.completed + after.completed == clean.completed
    assert {k: v.to_bytes() for k, v in after.states.items()} == \
        {k: v.to_bytes() for k, v in clean.states.items()}
