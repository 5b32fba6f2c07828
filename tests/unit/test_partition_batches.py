"""Meter-events messages that carry several stations of one partition (issue 18 §1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from charging.pricing import SimpleTariff
from charging.session_ids import IdTemplate
from charging.stitcher import SessionStitcher, StitcherConfig
from processors.batch import BatchProcessor, RawMessage
from schemas.codec import MAX_MESSAGE_BYTES, Codec
from schemas.errors import DecodeError
from schemas.records import ChargingSession, EventKind, MeterEvent

pytestmark = pytest.mark.unit

CODEC = Codec()

OLD_SINGLE = bytes.fromhex(
    "c3013a497ee9bdbb73210465310c43502d4f4c44020e7374617274656480a0abfef962c8a1abfef96202045431"
    "020202065441470002000000000000594000000000000000")
OLD_BATCH = bytes.fromhex(
    "c3010eea22ba505960e0040465310c43502d4f4c44020e7374617274656480a0abfef962c8a1abfef962020454"
    "310202020654414700020000000000005940000000000000000465320c43502d4f4c44020a6d657465728"
    "0a0abfef962c8a1abfef962020454310204020654414700020000000000506f400000000000000000")
"""Written by the codec before messages could carry several stations (commit 2a51fee)."""


def event(event_id: str, station: str, **changes: object) -> MeterEvent:
    base = MeterEvent(event_id=event_id, station_id=station, connector_id=1,
                      kind=EventKind.METER, event_time_ms=1_700_000_000_000,
                      receive_time_ms=1_700_000_000_100, transaction_id="T1", seq=2,
                      energy_wh=250.5)
    return replace(base, **changes)


def test_messages_of_the_old_writer_decode_as_before() -> None:
    started = event("e1", "CP-OLD", kind=EventKind.STARTED, seq=1, id_tag="TAG", energy_wh=100.0)
    assert CODEC.decode_meter_events(OLD_SINGLE) == [started]
    assert CODEC.decode_meter_events(OLD_BATCH) == [started, event("e2", "CP-OLD", id_tag="TAG")]


def test_a_multi_station_message_round_trips_in_order() -> None:
    events = [event("a1", "CP-A", seq=1), event("b1", "CP-B", seq=1), event("a2", "CP-A"),
              event("c1", "CP-C"), event("b2", "CP-B")]
    assert CODEC.decode_meter_events(CODEC.encode_meter_events(events)) == events
    exact = Codec()
    exact._fast_readers = {}
    assert exact.decode_meter_events(CODEC.encode_meter_events(events)) == events


def test_a_bad_event_of_a_batch_costs_only_that_event() -> None:
    events = [event("a1", "CP-A"), event("b1", "CP-B", connector_id=70_000), event("c1", "CP-C")]
    data = CODEC.encode_meter_events(events)
    with pytest.raises(DecodeError, match="connector_id 70000"):
        CODEC.decode_meter_events(data)
    items = CODEC.decode_meter_event_items(data)
    assert items[0] == events[0] and items[2] == events[2]
    assert isinstance(items[1], str) and "connector_id 70000" in items[1]
    with pytest.raises(DecodeError):
        CODEC.decode_meter_event_items(data[:-3])
    with pytest.raises(DecodeError, match="meter-events message of"):
        CODEC.decode_meter_event_items(data + b"\x00" * MAX_MESSAGE_BYTES)
    with pytest.raises(DecodeError, match="expected MeterEventBatch"):
        CODEC.decode_meter_event_items(CODEC.encode_meter_events(events[:1]))


# -- the processor stitches a multi-station message as its stations' own messages -------------

T0 = 1_795_400_000_000
MINUTE = 60_000


def _session_events(station: str) -> list[MeterEvent]:
    def at(kind: EventKind, minute: int, energy: float, seq: int) -> MeterEvent:
        return MeterEvent(event_id=f"{station}:{seq}", station_id=station, connector_id=1,
                          kind=kind, event_time_ms=T0 + minute * MINUTE,
                          receive_time_ms=T0 + minute * MINUTE + 100,
                          transaction_id=f"{station}-T", seq=seq, id_tag="TAG",
                          energy_wh=energy, power_w=11_000.0)
    return [at(EventKind.STARTED, 0, 1_000.0, 0), at(EventKind.METER, 10, 2_500.0, 1),
            at(EventKind.METER, 20, 4_000.0, 2), at(EventKind.ENDED, 30, 5_500.0, 3)]


def _processor() -> BatchProcessor:
    stitcher = SessionStitcher(StitcherConfig(partitions=4, id_template=IdTemplate.parse(
        "EV-{num:09d}"), tariff=SimpleTariff()))
    return BatchProcessor(stitcher, CODEC.decode_meter_events, lambda: T0,
                          decode_items=CODEC.decode_meter_event_items)


def _without_ids(sessions: list[ChargingSession]) -> dict[str, tuple[object, ...]]:
    return {s.station_id: (s.state, s.start_ms, s.end_ms, s.energy_wh, s.cost, s.event_count)
            for s in sessions}


def test_a_multi_station_message_stitches_as_its_stations_own_messages() -> None:
    stations = ["CP-A", "CP-B", "CP-C"]
    per_station = {s: _session_events(s) for s in stations}
    interleaved = [per_station[s][n] for n in range(4) for s in stations]
    alone = [RawMessage("meter-events", 2, offset, s.encode(), CODEC.encode_meter_events(
        per_station[s])) for offset, s in enumerate(stations)]
    together = [RawMessage("meter-events", 2, 0, b"CP-A", CODEC.encode_meter_events(interleaved))]
    expected = _processor().process(alone, {}.get)
    out = _processor().process(together, {}.get)
    assert len(out.completed) == 3 and out.counts.events_used == 12
    assert _without_ids(out.completed) == _without_ids(expected.completed)
    assert len({s.session_id for s in out.completed}) == 3
    assert {station: partition for station, (partition, _) in out.states.items()} == {
        s: 2 for s in stations}


def test_a_bad_event_of_a_multi_station_message_is_its_own_dead_letter() -> None:
    events = [_session_events("CP-A")[0], replace(_session_events("CP-B")[0], connector_id=70_000),
              _session_events("CP-C")[0]]
    message = RawMessage("meter-events", 1, 7, b"CP-A", CODEC.encode_meter_events(events))
    out = _processor().process([message], {}.get)
    counts = out.counts
    assert (counts.events_read, counts.events_used, counts.dead_lettered) == (3, 2, 1)
    [letter] = out.dead_letters
    assert letter.error.startswith("event 1: undecodable:") and "70000" in letter.error
    assert (letter.source_partition, letter.source_offset) == (1, 7)
    assert letter.original == message.value
    assert sorted(out.states) == ["CP-A", "CP-C"]
