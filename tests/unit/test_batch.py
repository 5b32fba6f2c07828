"""The engine-free batch path: the books balance, and inactivity closes what never stopped."""

from __future__ import annotations

import pytest

from charging.pricing import SimpleTariff
from charging.session_ids import IdTemplate
from charging.stitcher import SessionStitcher, StitcherConfig
from processors.batch import BatchProcessor, RawMessage
from schemas.codec import Codec
from schemas.records import EventKind, MeterEvent, SessionState

pytestmark = pytest.mark.unit

T0 = 1_795_400_000_000
HOUR = 3_600_000
CODEC = Codec()


def _event(station: str, kind: EventKind, minute: int, energy: float, seq: int,
           event_id: str | None = None) -> MeterEvent:
    time_ms = T0 + minute * 60_000
    return MeterEvent(event_id=event_id or f"{station}:{seq}", station_id=station,
                      connector_id=1, kind=kind, event_time_ms=time_ms,
                      receive_time_ms=time_ms + 200, transaction_id=f"{station}-T1", seq=seq,
                      id_tag="TAG", energy_wh=energy, power_w=11_000.0, soc_pct=50.0)


def _processor(wall: list[int] | None = None) -> BatchProcessor:
    stitcher = SessionStitcher(StitcherConfig(partitions=2, id_template=IdTemplate.parse(
        "EV-{num:09d}"), tariff=SimpleTariff()))
    clock = wall if wall is not None else [T0]
    return BatchProcessor(stitcher, CODEC.decode_meter_events, lambda: clock[0])


def _message(offset: int, events: list[MeterEvent]) -> RawMessage:
    return RawMessage("meter-events", 0, offset, events[0].station_id.encode(),
                      CODEC.encode_meter_events(events, "meter-events"))


def test_books_balance_read_equals_used_plus_duplicates_plus_dead_letters() -> None:
    start = _event("CS-1", EventKind.STARTED, 0, 1_000_000.0, 0)
    meter = _event("CS-1", EventKind.METER, 1, 1_000_180.0, 1)
    resent = _event("CS-1", EventKind.METER, 1, 1_000_180.0, 1, event_id="retry-with-new-id")
    negative = _event("CS-2", EventKind.METER, 5, -5.0, 9)
    messages = [_message(0, [start, meter]), _message(1, [resent]),
                RawMessage("meter-events", 0, 2, b"CS-3", b"\x00not avro at all"),
                _message(3, [negative])]
    states: dict[str, bytes] = {}
    out = _processor().process(messages, states.get)
    counts = out.counts
    assert (counts.events_read, counts.events_used, counts.duplicates,
            counts.dead_lettered) == (5, 2, 1, 2)
    assert counts.events_read == counts.events_used + counts.duplicates + counts.dead_lettered
    assert {letter.source_offset for letter in out.dead_letters} == {2, 3}
    assert [s.state for s in out.updates] == [SessionState.OPEN]


def test_expire_closes_a_session_whose_stop_never_came() -> None:
    processor = _processor()
    states: dict[str, bytes] = {}
    opened = processor.process([_message(0, [_event("CS-1", EventKind.STARTED, 0, 1e6, 0),
                                              _event("CS-1", EventKind.METER, 30, 1e6 + 5000, 1)])],
                               states.get)
    states.update({station: blob for station, (_, blob) in opened.states.items()})
    later = processor.process([_message(1, [_event("CS-2", EventKind.METER, 8 * 60, 5e5, 1)])],
                              states.get)
    states.update({station: blob for station, (_, blob) in later.states.items()})

    out = processor.expire(states.items(), now_wall_ms=T0 + 60_000)  # event time decides

    [closed] = out.completed
    assert closed.station_id == "CS-1"
    assert closed.state == SessionState.INCOMPLETE
    assert "missing_stop" in closed.flags
    assert closed.energy_wh == 5000
    assert set(out.states) >= {"CS-1"}
    assert processor.expire(
        [(s, blob) for s, (_, blob) in out.states.items()], T0 + 60_000).completed == []


def test_a_partition_that_is_merely_behind_keeps_its_sessions_open() -> None:
    processor = _processor()
    states: dict[str, bytes] = {}
    ahead = _message(0, [_event("CS-1", EventKind.METER, 8 * 60, 1e6, 1)])
    behind = RawMessage("meter-events", 1, 0, b"CS-9", CODEC.encode_meter_events(
        [_event("CS-9", EventKind.STARTED, 0, 1e6, 0)], "meter-events"))
    for message in (ahead, behind):
        out = processor.process([message], states.get)
        states.update({station: blob for station, (_, blob) in out.states.items()})

    expired = processor.expire(states.items(), now_wall_ms=T0 + 60_000)

    assert [s.station_id for s in expired.completed] == []


def test_wall_clock_net_counts_worker_time_not_the_age_of_replayed_events() -> None:
    wall = [T0 + 30 * 24 * HOUR]  # replaying a month-old log
    processor = _processor(wall)
    states: dict[str, bytes] = {}
    out = processor.process([_message(0, [_event("CS-1", EventKind.STARTED, 0, 1e6, 0)])],
                            states.get)
    states.update({station: blob for station, (_, blob) in out.states.items()})

    assert processor.expire(states.items(), now_wall_ms=wall[0] + HOUR).completed == []
    [closed] = processor.expire(states.items(), now_wall_ms=wall[0] + 13 * HOUR).completed
    assert closed.state == SessionState.INCOMPLETE


def test_a_state_changed_behind_the_processor_is_read_from_the_store() -> None:
    """The processor reuses the state objects it saved only while the store holds the
    same bytes: here the expiry timer closed the session in between, so the next batch
    must see the closed session (as a fresh processor on the same store does)."""
    processor = _processor()
    states: dict[str, bytes] = {}

    def run(target: BatchProcessor, offset: int, minute: int, energy: float, seq: int):
        message = _message(offset, [_event("CS-1", EventKind.METER, minute, energy, seq)])
        return target.process([message], states.get)

    opened = processor.process([_message(0, [_event("CS-1", EventKind.STARTED, 0, 1e6, 0)])],
                               states.get)
    states.update({station: blob for station, (_, blob) in opened.states.items()})
    unchanged = run(processor, 1, 1, 1e6 + 180, 1)
    assert unchanged.states == run(_processor(), 1, 1, 1e6 + 180, 1).states
    states.update({station: blob for station, (_, blob) in unchanged.states.items()})
    expired = processor.expire(states.items(), now_wall_ms=T0 + 24 * HOUR)
    assert [s.state for s in expired.completed] == [SessionState.INCOMPLETE]
    states.update({station: blob for station, (_, blob) in expired.states.items()})

    late, fresh = run(processor, 2, 2, 1e6 + 360, 2), run(_processor(), 2, 2, 1e6 + 360, 2)

    assert late.states == fresh.states
    assert late.updates == fresh.updates


@pytest.mark.parametrize(("field", "value"), [("receive_time_ms", -1),
                                              ("receive_time_ms", 5_000_000_000_000),
                                              ("event_time_ms", 9_000_000_000_000)])
def test_an_absurd_timestamp_is_dead_lettered_with_its_reason(field: str, value: int) -> None:
    event = _event("CS-1", EventKind.METER, 0, 1e6, 1)
    absurd = MeterEvent(**{**{f: getattr(event, f) for f in event.__slots__}, field: value})
    out = _processor().process([_message(0, [absurd])], {}.get)
    [letter] = out.dead_letters
    assert field in letter.error and "1970..2100" in letter.error
