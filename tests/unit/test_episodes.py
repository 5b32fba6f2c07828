"""On-call gets episodes, not floods (issue 15 §5): one anomaly per (kind, station,
connector, session), opened by its first occurrence, updated at a bounded rate, closed when
its session closes or it goes quiet; messages in human units.

Through the batch processor, as the worker runs it; times relative to the product clock.
"""

from __future__ import annotations

import pytest

from charging.anomalies import AnomalyDetector, AnomalyRules
from charging.pricing import SimpleTariff
from charging.rules import Observation
from charging.session_ids import IdTemplate
from charging.state import StationState
from charging.stitcher import SessionStitcher, StitcherConfig
from charging.units import duration, energy, power
from infra.clock import now_ms
from processors.batch import BatchOutput, BatchProcessor, RawMessage
from schemas.codec import Codec
from schemas.records import Anomaly, EventKind, MeterEvent

pytestmark = pytest.mark.unit

MIN = 60_000
HOUR = 60 * MIN
SKEW = 3 * 24 * HOUR + 4 * HOUR  # the charger's clock runs 3 d 4 h ahead
T0 = now_ms() - 2 * 24 * HOUR
CODEC = Codec()
STITCHER = SessionStitcher(StitcherConfig(1, IdTemplate.parse("EV-{num:09d}"), SimpleTariff()))


def _event(seq: int, kind: EventKind, received: int, skew: int = SKEW) -> MeterEvent:
    return MeterEvent(event_id=f"e{seq}", station_id="CS-1", connector_id=1, kind=kind,
                      event_time_ms=received + skew, receive_time_ms=received,
                      transaction_id="T1", seq=seq, id_tag="TAG",
                      energy_wh=10_000.0 + 100 * seq, power_w=6_000.0)


def _skewed_session(minutes: int = 120) -> list[MeterEvent]:
    """A start, a reading a minute, a stop: `minutes + 1` events, every one skewed."""
    return [_event(seq, EventKind.STARTED if seq == 0 else
                   EventKind.ENDED if seq == minutes else EventKind.METER, T0 + seq * MIN)
            for seq in range(minutes + 1)]


def _run(events: list[MeterEvent], states: dict[str, bytes] | None = None,
         processor: BatchProcessor | None = None, first_offset: int = 0) -> list[Anomaly]:
    processor = processor or BatchProcessor(STITCHER, CODEC.decode_meter_events, now_ms)
    states = {} if states is None else states
    found: list[Anomaly] = []
    for offset, event in enumerate(events, first_offset):  # one event a message, as OCPP
        out: BatchOutput = processor.process(
            [RawMessage("meter-events", 0, offset, b"CS-1",
                        CODEC.encode_meter_events([event], "meter-events"))], states.get)
        states.update({station: blob for station, (_, blob) in out.states.items()})
        found += out.anomalies
    return found


def test_a_skewed_charger_over_two_hours_is_one_episode_opened_and_closed() -> None:
    events = _skewed_session()
    assert len(events) == 121
    skew = [a for a in _run(events) if a.kind == "clock_skew"]
    assert len({a.anomaly_id for a in skew}) == 1
    assert [a.status for a in skew] == ["open", "update", "update", "closed"]
    opened, closed = skew[0], skew[-1]
    assert (opened.occurrences, closed.occurrences) == (1, 121)
    assert closed.first_ms == opened.first_ms == T0
    assert closed.last_ms == T0 + 120 * MIN
    assert [a.detected_ms for a in skew] == sorted(a.detected_ms for a in skew)
    assert closed.session_id is not None and closed.session_id == opened.session_id
    assert closed.message == ("CS-1/1: charger clock 3 d 4 h ahead (121 times over 2 h)")


def test_a_replay_of_the_same_log_publishes_the_same_records() -> None:
    events = _skewed_session(30)
    assert _run(events) == _run(events)


def test_the_episode_survives_a_restart_in_the_station_state() -> None:
    """Episodes live in the changelog-backed station state: a new processor (a restart)
    goes on counting the same episode instead of opening another."""
    events, states = _skewed_session(), {}
    first = _run(events[:60], states)
    restarted = BatchProcessor(STITCHER, CODEC.decode_meter_events, now_ms)
    rest = _run(events[60:], states, restarted, first_offset=60)
    skew = [a for a in first + rest if a.kind == "clock_skew"]
    assert len({a.anomaly_id for a in skew}) == 1
    assert skew[-1].status == "closed" and skew[-1].occurrences == 121


def test_a_sessionless_episode_closes_after_a_quiet_spell() -> None:
    """Status notifications from a skewed charger with no session: closed once the
    station's events show `episode_quiet_ms` without a skewed one; the next skew is a new
    episode."""
    rules = AnomalyRules(episode_quiet_ms=30 * MIN)
    processor = BatchProcessor(STITCHER, CODEC.decode_meter_events, now_ms,
                               AnomalyDetector(rules))

    def status(seq: int, at: int, skew: int) -> MeterEvent:
        return MeterEvent(event_id=f"s{seq}", station_id="CS-1", connector_id=1,
                          kind=EventKind.STATUS, event_time_ms=at + skew, receive_time_ms=at,
                          status="Available")

    events = [status(i, T0 + i * MIN, SKEW) for i in range(5)]
    events += [status(5, T0 + 40 * MIN, 0), status(6, T0 + 50 * MIN, SKEW)]
    skew = [a for a in _run(events, processor=processor) if a.kind == "clock_skew"]
    assert [(a.status, a.occurrences) for a in skew] == [("open", 1), ("closed", 5),
                                                         ("open", 1)]
    assert skew[1].detected_ms == T0 + 4 * MIN + 30 * MIN
    assert skew[0].anomaly_id == skew[1].anomaly_id != skew[2].anomaly_id


def test_the_state_round_trips_its_episodes() -> None:
    states: dict[str, bytes] = {}
    _run(_skewed_session()[:10], states)
    state = StationState.from_bytes(states["CS-1"])
    assert len(state.episodes) == 1
    assert StationState.from_bytes(state.to_bytes()) == state


def test_messages_are_in_human_units() -> None:
    detector = AnomalyDetector()
    slip = Observation("implausible_reading", 1, T0, "S-1", (
        ("register_wh", "61.83"), ("previous_wh", "60000.0"), ("average_w", "3660000"),
        ("rated_w", "11000")))
    found = detector.from_observation("CS-1", slip)
    assert found is not None
    assert found.message == ("CS-1/1: register reading 61.83 Wh after 60 kWh left out of "
                             "energy: 3.7 MW on an 11 kW connector")
    epoch = Observation("clock_skew", 1, T0, None, (
        ("event_time_ms", "0"), ("receive_time_ms", str(T0)), ("rule", "before_epoch")))
    text = detector.from_observation("CS-1", epoch).message  # type: ignore[union-attr]
    assert "reads 1970-01-01, before 2010" in text and " y " in text
    assert str(T0) not in text


@pytest.mark.parametrize(("value", "text"), [
    (0, "0 s"), (40_000, "40 s"), (12 * MIN, "12 min"), (2 * HOUR, "2 h"),
    (2 * HOUR + 5 * MIN, "2 h 5 min"), (SKEW, "3 d 4 h"), (-SKEW, "3 d 4 h"),
    (400 * 24 * HOUR, "1 y 35 d")])
def test_durations(value: int, text: str) -> None:
    assert duration(value) == text


def test_power_and_energy() -> None:
    assert [power(w) for w in (500, 11_000, 7_400, 150_000, 3_660_000)] == \
        ["500 W", "11 kW", "7.4 kW", "150 kW", "3.7 MW"]
    assert [energy(wh) for wh in (61.83, 60_090, 1_250_000)] == \
        ["61.83 Wh", "60.09 kWh", "1.25 MWh"]
