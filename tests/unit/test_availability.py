"""Station health, pure: the availability/MTBF/MTTR maths, status records, simulated faults."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charging.pricing import SimpleTariff
from charging.session_ids import IdTemplate
from charging.station_health import DAY_MS, HealthFigures, StatusPoint, connector_health
from charging.status import StatusHistory
from charging.stitcher import SessionStitcher, StitcherConfig
from processors.batch import BatchProcessor, RawMessage
from producers.faults import FaultConfig, FaultProfile
from producers.simulator import FleetConfig, plan_connector, simulate
from producers.truth import read_truth, write_truth
from schemas.codec import Codec
from schemas.records import ConnectorStatus, EventKind, EventPosition, MeterEvent

pytestmark = pytest.mark.unit

H = 3_600_000
T0 = 1_795_392_000_000  # a UTC midnight


def _points(*items: tuple[float, str]) -> list[StatusPoint]:
    return [StatusPoint(int(T0 + hours * H), status, f"e{i}")
            for i, (hours, status) in enumerate(items)]


def test_one_repaired_fault() -> None:
    history = _points((0, "Available"), (2, "Faulted"), (3, "Faulted"), (5, "Available"),
                      (6, "Charging"), (8, "Available"))
    figures = connector_health(history, T0, T0 + 24 * H)
    assert figures == HealthFigures(observed_ms=24 * H, down_ms=3 * H, occupied_ms=2 * H,
                                    failures=1, repairs=1, repair_ms=3 * H)
    assert figures.availability_pct == pytest.approx(100 * 21 / 24)
    assert figures.mtbf_ms == 21 * H
    assert figures.mttr_ms == 3 * H


def test_status_before_the_period_carries_in_and_unknown_time_is_not_counted() -> None:
    # Faulted since the day before (its onset is not in the period): down, but no failure.
    carried = connector_health(_points((-5, "Faulted"), (4, "Available")), T0, T0 + 24 * H)
    assert (carried.observed_ms, carried.down_ms, carried.failures, carried.repairs) == \
        (24 * H, 4 * H, 0, 0)
    assert carried.mtbf_ms is None
    late = connector_health(_points((10, "Available")), T0, T0 + 24 * H)
    assert late.observed_ms == 14 * H


def test_unrepaired_fault_is_a_failure_without_a_repair_and_unavailable_is_down() -> None:
    figures = connector_health(_points((0, "Unavailable"), (1, "Available"), (20, "Faulted")),
                               T0, T0 + 24 * H)
    assert (figures.down_ms, figures.failures, figures.repairs, figures.mttr_ms) == \
        (5 * H, 1, 0, None)
    assert figures.mtbf_ms == 19 * H


def test_statuses_after_the_period_do_not_count() -> None:
    figures = connector_health(_points((0, "Available"), (30, "Faulted"), (31, "Available")),
                               T0, T0 + 24 * H)
    assert figures == HealthFigures(observed_ms=24 * H)


histories = st.lists(
    st.tuples(st.integers(-2 * H, 26 * H),
              st.sampled_from(["Available", "Faulted", "Unavailable", "Charging", "Preparing"])),
    max_size=12)


@given(histories, st.integers(0, 12 * H))
def test_properties(items: list[tuple[int, str]], split: int) -> None:
    history = [StatusPoint(T0 + t, s, f"e{i:02d}") for i, (t, s) in enumerate(items)]
    end = T0 + 24 * H
    figures = connector_health(history, T0, end)
    assert 0 <= figures.down_ms + figures.occupied_ms <= figures.observed_ms <= 24 * H
    assert 0 <= figures.repairs <= figures.failures
    # Splitting the period in two adds up: every figure is a sum over time.
    first = connector_health(history, T0, T0 + split)
    second = connector_health(history, T0 + split, end)
    both = first + second
    assert (both.observed_ms, both.down_ms, both.occupied_ms, both.failures) == \
        (figures.observed_ms, figures.down_ms, figures.occupied_ms, figures.failures)
    # Arrival order does not matter, and repeating a status changes nothing.
    assert connector_health(list(reversed(history)), T0, end) == figures
    repeated = history + [StatusPoint(p.time_ms, p.status, p.event_id + "r") for p in history]
    assert connector_health(repeated, T0, end) == figures


def test_status_record_is_dated_by_the_stitchers_judgement_of_the_clock() -> None:
    """One judgement: the status is dated as the stitcher dated the event (a clock read as
    1970 by receive time, an old but honest one by its own time)."""
    stitcher = SessionStitcher(StitcherConfig(partitions=1, id_template=IdTemplate.parse(
        "EV-{num:09d}"), tariff=SimpleTariff()))
    history = StatusHistory()
    event = MeterEvent("e1", "CS-1", 2, EventKind.STATUS, T0, T0 + 300, status="Faulted",
                       error_code="GroundFailure")
    result = stitcher.apply(None, event, EventPosition(0, 0))
    assert history.record(event, result.time_ms) == ConnectorStatus(
        "e1", "CS-1", 2, "Faulted", "GroundFailure", T0, T0, T0 + 300)
    skewed = replace(event, event_id="e2", event_time_ms=3_600_000)  # a clock reset to 1970
    record = history.record(skewed, stitcher.apply(result.state, skewed,
                                                   EventPosition(0, 1)).time_ms)
    assert record is not None and record.time_ms == T0 + 300
    old = replace(event, event_id="e3", event_time_ms=T0 - 20 * DAY_MS)  # uploaded weeks late
    record = history.record(old, stitcher.apply(result.state, old, EventPosition(0, 2)).time_ms)
    assert record is not None and record.time_ms == T0 - 20 * DAY_MS
    assert history.record(replace(event, status=None), T0) is None
    assert history.record(replace(event, kind=EventKind.METER), T0) is None
    assert history.record(event, None) is None  # not applied: nothing to record


def test_connector_status_codec_round_trip() -> None:
    codec = Codec()
    for status in (ConnectorStatus("e1", "CS-1", 2, "Faulted", "GroundFailure", 5, 4, 6),
                   ConnectorStatus("e2", "CS-1", 1, "Available", None, 7, 7, 9)):
        assert codec.decode_connector_status(
            codec.encode_connector_status(status, "connector-status")) == status


def test_batch_publishes_every_applied_status_once() -> None:
    codec = Codec()
    stitcher = SessionStitcher(StitcherConfig(partitions=1, id_template=IdTemplate.parse(
        "EV-{num:09d}"), tariff=SimpleTariff()))
    processor = BatchProcessor(stitcher, codec.decode_meter_events, lambda: T0)
    events = [MeterEvent(f"s{i}", "CS-1", 1, EventKind.STATUS, T0 + i, T0 + i + 100,
                         status=status) for i, status in enumerate(("Faulted", "Available"))]
    message = RawMessage("meter-events", 0, 0, b"CS-1",
                         codec.encode_meter_events(events, "meter-events"))
    out = processor.process([message], lambda _: None)
    assert [(s.event_id, s.status) for s in out.statuses] == [("s0", "Faulted"),
                                                              ("s1", "Available")]
    blob = out.states["CS-1"][1]
    again = processor.process([message], lambda _: blob)  # a redelivery: duplicates only
    assert again.statuses == [] and again.counts.duplicates == 2


FAULTY = FleetConfig(stations=12, seed=5, duration_s=2 * 86_400, faults=FaultConfig(
    profiles=(FaultProfile("M1", "1.0", 0.5), FaultProfile("M1", "2.0", 3.0))))


def test_faults_are_off_by_default_and_deterministic() -> None:
    plain = simulate(replace(FAULTY, faults=None))
    assert list(plain.faults()) == []
    assert all(e.event_id.count("-F") == 0 and not e.event_id.endswith("boot")
               for _, events in plain.messages() for e in events)
    assert "model" not in plain.registry()["stations"]["CS-0001"]  # type: ignore[index]
    one, two = simulate(FAULTY), simulate(FAULTY)
    assert list(one.faults()) == list(two.faults()) and list(one.faults())
    assert list(one.messages()) == list(two.messages())
    assert list(one.truth()) == list(two.truth())


def test_fault_events_match_the_fault_truth_and_block_sessions() -> None:
    simulation = simulate(FAULTY)
    faults = list(simulation.faults())
    events = [e for _, batch in simulation.messages() for e in batch]
    faulted = sorted((e.station_id, e.connector_id, e.event_time_ms, e.error_code)
                     for e in events if e.status == "Faulted")
    assert faulted == sorted((f.station_id, f.connector_id, f.start_ms, f.error_code)
                             for f in faults)
    boots = [e for e in events if e.event_id.endswith("-boot")]
    assert len(boots) == sum(len(s.connectors) for s in simulation.stations)
    assert all(e.event_time_ms == FAULTY.start_ms and e.status == "Available" for e in boots)
    for station in simulation.stations:
        for connector in station.connectors:
            plans = list(plan_connector(FAULTY, station, connector))
            spans = [(getattr(p, "arrive_ms", None) or p.start_ms,  # type: ignore[union-attr]
                      getattr(p, "leave_ms", None) or p.end_ms) for p in plans]
            assert all(a_end < b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:],
                                                                              strict=False))
    registry = simulation.registry()["stations"]  # type: ignore[index]
    per_connector = {"1.0": [0, 0], "2.0": [0, 0]}  # firmware -> [faults, connectors]
    for fault in faults:
        per_connector[registry[fault.station_id]["firmware"]][0] += 1  # type: ignore[index]
    for entry in registry.values():  # type: ignore[union-attr]
        per_connector[entry["firmware"]][1] += len(entry["connectors"])
    low, high = (f / max(c, 1) for f, c in per_connector.values())
    assert high > 2 * low, per_connector


def test_truth_file_keeps_the_faults(tmp_path: object) -> None:
    simulation = simulate(FAULTY)
    for _ in simulation.messages():
        pass
    path = tmp_path / "truth.jsonl"  # type: ignore[operator]
    sessions = list(simulation.truth())
    assert write_truth(path, sessions, simulation.meta(), simulation.faults()) == len(sessions)
    truth = read_truth(path)
    assert truth.sessions == sessions and truth.faults == list(simulation.faults())
