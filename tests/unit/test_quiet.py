"""A quiet station's open session (issue 15 §3): `stuck_session` when it goes quiet, the close
as incomplete after inactivity in event time or in the worker's wall time, whichever first.

Clocks are injected: the worker's wall clock is a list the test moves; event times are the
charger's. Thresholds are the documented defaults (docs/settings.md), written out here.
"""

from __future__ import annotations

import pytest

from charging.anomalies import AnomalyDetector
from charging.pricing import SimpleTariff
from charging.rules import StitchRules
from charging.session_ids import IdTemplate
from charging.state import StationState
from charging.stitcher import SessionStitcher, StitcherConfig
from processors.batch import BatchOutput, BatchProcessor, RawMessage
from schemas.codec import Codec
from schemas.records import EventKind, EventPosition, MeterEvent, SessionState

pytestmark = pytest.mark.unit

T0 = 1_795_400_000_000
MIN = 60_000
HOUR = 60 * MIN
STUCK_MS = 15 * MIN
CLOSE_MS = 6 * HOUR
CODEC = Codec()
STITCHER = SessionStitcher(StitcherConfig(1, IdTemplate.parse("EV-{num:09d}"), SimpleTariff()))


def _event(station: str, kind: EventKind, at_ms: int, seq: int) -> MeterEvent:
    return MeterEvent(event_id=f"{station}:{seq}", station_id=station, connector_id=1,
                      kind=kind, event_time_ms=at_ms, receive_time_ms=at_ms + 200,
                      transaction_id=f"{station}-T1", seq=seq, id_tag="TAG",
                      energy_wh=1e6 + 100 * seq, power_w=6_000.0)


def _charging(station: str = "CS-1", readings: int = 3, every_ms: int = MIN,
              start: int = T0) -> StationState:
    """A start and `readings` readings `every_ms` apart; the last one at the session's end."""
    state = None
    for seq in range(readings + 1):
        kind = EventKind.STARTED if seq == 0 else EventKind.METER
        state = STITCHER.apply(state, _event(station, kind, start + seq * every_ms, seq),
                               EventPosition(0, seq)).state
    assert state is not None
    return state


def test_a_session_quiet_in_event_time_is_stuck_after_the_floor() -> None:
    state = _charging()
    last = T0 + 3 * MIN
    assert STITCHER.stuck(state, last + STUCK_MS, 0) == []
    (found,) = STITCHER.stuck(state, last + STUCK_MS + 1, 0)
    assert (found.kind, found.connector_id, found.time_ms) == ("stuck_session", 1, last)
    session = state.connectors[1].session
    assert session is not None and found.session_id == session.session_id
    assert dict(found.values) == {"quiet_ms": str(STUCK_MS + 1),
                                  "stuck_after_ms": str(STUCK_MS), "clock": "event"}


def test_a_station_alone_on_its_partition_is_stuck_by_wall_time_since_it_was_heard() -> None:
    state = _charging()
    heard = 7 * 24 * HOUR  # the worker's clock: unrelated to the charger's
    last = T0 + 3 * MIN  # and the partition's event clock never moves past the last event
    assert STITCHER.stuck(state, last, heard + STUCK_MS, heard) == []
    (found,) = STITCHER.stuck(state, last, heard + STUCK_MS + 1, heard)
    assert dict(found.values)["clock"] == "wall"


def test_the_stuck_time_follows_the_stations_own_reporting_interval() -> None:
    state = _charging(readings=4, every_ms=15 * MIN)  # a reading every 15 min: 75 min
    last = T0 + 60 * MIN
    assert STITCHER.stuck(state, last + 75 * MIN, 0) == []
    (found,) = STITCHER.stuck(state, last + 75 * MIN + 1, 0)
    assert dict(found.values)["stuck_after_ms"] == str(75 * MIN)


def test_the_stuck_time_is_a_setting() -> None:
    stitcher = SessionStitcher(StitcherConfig(
        1, IdTemplate.parse("EV-{num:09d}"), SimpleTariff(),
        StitchRules(stuck_after_ms=2 * HOUR, stuck_intervals=1.0)))
    state = _charging()
    assert stitcher.stuck(state, T0 + 3 * MIN + 2 * HOUR, 0) == []
    assert len(stitcher.stuck(state, T0 + 3 * MIN + 2 * HOUR + 1, 0)) == 1


def test_a_session_past_inactivity_is_closed_not_reported_stuck() -> None:
    state = _charging()
    last = T0 + 3 * MIN
    assert STITCHER.stuck(state, last + CLOSE_MS + 1, 0) == []
    assert STITCHER.stuck(state, last, CLOSE_MS + 1, 0) == []
    (closed,) = STITCHER.expire(state, last, CLOSE_MS + 1, 0)
    assert closed.state is SessionState.INCOMPLETE and closed.flags == ("missing_stop",)


# -- through the batch processor: the worker's own clock -----------------------------------

def _processor(wall: list[int]) -> BatchProcessor:
    return BatchProcessor(STITCHER, CODEC.decode_meter_events, lambda: wall[0])


def _feed(processor: BatchProcessor, states: dict[str, bytes], events: list[MeterEvent],
          offset: int) -> None:
    out = processor.process([RawMessage("meter-events", 0, offset, b"CS-1",
                                        CODEC.encode_meter_events(events, "meter-events"))],
                            states.get)
    states.update({station: blob for station, (_, blob) in out.states.items()})


def _expire(processor: BatchProcessor, states: dict[str, bytes], now: int) -> BatchOutput:
    out = processor.expire(list(states.items()), now)
    states.update({station: blob for station, (_, blob) in out.states.items()})
    return out


def _kinds(out: BatchOutput) -> list[str]:
    """Kinds of the session anomalies (`station_silent` is the station's, not asserted)."""
    return [a.kind for a in out.anomalies if a.kind != "station_silent"]


def test_the_worker_reports_a_quiet_session_once_then_closes_it_under_the_same_id() -> None:
    wall = [T0 + 30 * 24 * HOUR]  # a month after the charger's times: a replay, say
    heard = wall[0]
    processor = _processor(wall)
    states: dict[str, bytes] = {}
    _feed(processor, states, [_event("CS-1", EventKind.STARTED, T0, 0),
                              _event("CS-1", EventKind.METER, T0 + MIN, 1)], 0)
    assert _kinds(_expire(processor, states, heard + STUCK_MS)) == []
    stuck = _expire(processor, states, heard + STUCK_MS + 1)
    (anomaly,) = stuck.anomalies
    assert (anomaly.kind, anomaly.detected_ms, stuck.completed) == ("stuck_session",
                                                                    T0 + MIN, [])
    assert _kinds(_expire(processor, states, heard + 2 * STUCK_MS)) == []  # once
    assert _expire(processor, states, heard + CLOSE_MS).completed == []
    closed = _expire(processor, states, heard + CLOSE_MS + 1)
    (session,) = closed.completed
    assert session.state is SessionState.INCOMPLETE and session.flags == ("missing_stop",)
    assert session.end_ms == T0 + MIN  # the last event, whatever the wall clock says
    assert [a.anomaly_id for a in closed.anomalies if a.kind == "stuck_session"] == \
        [anomaly.anomaly_id]


def test_events_reset_the_quiet_time() -> None:
    wall = [T0]
    processor = _processor(wall)
    states: dict[str, bytes] = {}
    _feed(processor, states, [_event("CS-1", EventKind.STARTED, T0, 0)], 0)
    wall[0] = T0 + 10 * MIN
    _feed(processor, states, [_event("CS-1", EventKind.METER, T0 + MIN, 1)], 1)
    assert _kinds(_expire(processor, states, T0 + 10 * MIN + STUCK_MS)) == []
    assert _kinds(_expire(processor, states, T0 + 10 * MIN + STUCK_MS + 1)) == [
        "stuck_session"]


def test_after_a_restart_the_wall_clock_starts_when_the_worker_first_sees_the_station() -> None:
    wall = [T0]
    states: dict[str, bytes] = {}
    _feed(_processor(wall), states, [_event("CS-1", EventKind.STARTED, T0, 0)], 0)
    restarted = _processor(wall)
    first_seen = T0 + 10 * HOUR  # long after the last event, but unknown to this worker
    out = _expire(restarted, states, first_seen)
    assert (out.completed, _kinds(out)) == ([], [])
    assert _kinds(_expire(restarted, states, first_seen + STUCK_MS + 1)) == ["stuck_session"]
    (closed,) = _expire(restarted, states, first_seen + CLOSE_MS + 1).completed
    assert closed.state is SessionState.INCOMPLETE


def test_the_stuck_anomaly_of_an_open_session_and_of_its_close_are_one() -> None:
    state = _charging()
    (observation,) = STITCHER.stuck(state, T0 + 3 * MIN + STUCK_MS + 1, 0)
    (closed,) = STITCHER.expire(state, T0 + 3 * MIN + CLOSE_MS + 1, 0)
    detector = AnomalyDetector()
    open_one = detector.from_observation("CS-1", observation)
    (close_one,) = [a for a in detector.from_completed(closed) if a.kind == "stuck_session"]
    assert open_one is not None
    assert (open_one.anomaly_id, open_one.detected_ms) == (close_one.anomaly_id,
                                                           close_one.detected_ms)
