"""Meter-events messages that carry several stations of one partition (issue 18 §1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.records import EventKind, MeterEvent

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
    with pytest.raises(DecodeError, match="expected MeterEventBatch"):
        CODEC.decode_meter_event_items(CODEC.encode_meter_events(events[:1]))
