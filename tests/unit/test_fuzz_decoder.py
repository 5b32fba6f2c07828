"""Fuzzing the meter-event decoder: any bytes either decode into valid events or raise DecodeError.

No other exception, no hang, and memory bounded by the input. CI runs a fixed budget per
test; `CHARGEWATCH_FUZZ_EXAMPLES=N` runs N examples per fuzz test instead.
"""

from __future__ import annotations

import math
import re
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import MAX_CONNECTOR_ID, MAX_MESSAGE_BYTES, MAX_TEXT_CHARS
from schemas.errors import DecodeError
from schemas.records import MAX_EVENTS_PER_MESSAGE, EventKind, MeterEvent
from tests.hostile import CODEC, FUZZ_EXAMPLES, HOSTILE, datum, event, write

_BUDGET_S = 20 * max(1, (FUZZ_EXAMPLES or 0) // 300)
"""The unit timeout, scaled with CHARGEWATCH_FUZZ_EXAMPLES."""
pytestmark = [pytest.mark.unit, pytest.mark.timeout(_BUDGET_S)]

_SLOWEST_S = 5.0
"""Longest one input may take: generous for a loaded 2-core machine (the real cost is
microseconds); what it catches is a pathological input (a loop over a forged length)."""
_FUZZ = settings(max_examples=FUZZ_EXAMPLES or 300, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _decode_or_reject(data: bytes) -> list[MeterEvent] | None:
    """The decoder's whole contract on one input, with its time and memory measured."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        events = CODEC.decode_meter_events(data)
    except DecodeError as exc:
        assert str(exc), "a rejection must say why"
        events = None
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < _SLOWEST_S, f"{elapsed:.3f}s for {len(data)} bytes"
    assert peak < 8 * len(data) + 2_000_000, f"peak {peak} bytes for a {len(data)}-byte input"
    if events is not None:
        _assert_valid(events)
    return events


def _assert_valid(events: list[MeterEvent]) -> None:
    assert 1 <= len(events) <= MAX_EVENTS_PER_MESSAGE  # of one or several stations (a window)
    for e in events:
        assert isinstance(e.kind, EventKind)
        assert 0 <= e.connector_id <= MAX_CONNECTOR_ID
        for text in (e.event_id, e.station_id, e.transaction_id, e.id_tag, e.vehicle_id,
                     e.status, e.error_code, e.stop_reason):
            assert text is None or (len(text) <= MAX_TEXT_CHARS and text.isprintable())
        for number in (e.energy_wh, e.power_w, e.soc_pct, e.current_a, e.voltage_v):
            assert number is None or math.isfinite(number)
        assert isinstance(e.event_time_ms, int) and isinstance(e.receive_time_ms, int)


_texts = st.text(max_size=300)
_datums = st.builds(
    datum, event_id=_texts, station_id=st.sampled_from(["CS-1", "CS-2"]),
    transaction_id=st.none() | _texts, id_tag=st.none() | _texts,
    connector_id=st.integers(-(2**31), 2**31 - 1), kind=st.sampled_from(["meter", "ended", "x"]),
    event_time_ms=st.integers(-(2**63), 2**63 - 1), seq=st.none() | st.integers(0, 2**63 - 1),
    energy_wh=st.none() | st.floats(), power_w=st.none() | st.floats())
_valid = st.lists(_datums, min_size=0, max_size=5).map(
    lambda items: write("MeterEvent", 2, items[0]) if len(items) == 1
    else write("MeterEventBatch", 2, {"events": items}))
_old = st.builds(lambda eid, tag: write("MeterEvent", 1, datum(1, event_id=eid, id_tag=tag)),
                 _texts, st.none() | _texts)
_messages = _valid | _old


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid message with bit flips, a cut, a splice of lying length bytes, or a repeat."""
    data = bytearray(draw(_messages))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "cut", "lie", "insert", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
        elif how == "lie":  # a zig-zag varint announcing a huge (or negative) length
            data[at:at] = draw(st.sampled_from(
                [b"\x80\x80\x80\x80\x10", b"\xfe\xff\xff\xff\x0f", b"\x01", b"\xff" * 12,
                 b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"]))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at:] = bytes(data[at:]) * draw(st.integers(2, 50))
    return bytes(data)


@_FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _decode_or_reject(data)


@_FUZZ
@given(st.binary(max_size=2048))
def test_random_bodies_behind_a_known_header(body: bytes) -> None:
    for header in (CODEC.encode_meter_events([event()])[:10],
                   CODEC.encode_meter_events([event(), event()])[:10],
                   write("MeterEvent", 1, datum(1))[:10]):
        _decode_or_reject(header + body)


@_FUZZ
@given(_mutated())
def test_mutated_valid_messages(data: bytes) -> None:
    _decode_or_reject(data)


@_FUZZ
@given(_messages)
def test_valid_messages_of_any_content(data: bytes) -> None:
    """Well-formed Avro with hostile values: decoded only if every value is in contract."""
    _decode_or_reject(data)


@pytest.mark.parametrize(("name", "data", "phrase"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_each_hostile_message(name: str, data: bytes, phrase: str) -> None:
    events = _decode_or_reject(data)
    if events is None:
        with pytest.raises(DecodeError, match=re.escape(phrase)):
            CODEC.decode_meter_events(data)
    else:  # well-formed, in contract for the decoder; the stitcher rejects its times
        assert "1970..2100" in phrase


def test_decoding_an_oversized_message_costs_nothing() -> None:
    """Refused by its length before any decoding: no allocation near its size (memory is
    counted, not timed)."""
    data = CODEC.encode_meter_events([event()]) + b"\x00" * MAX_MESSAGE_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=f"at most {MAX_MESSAGE_BYTES}"):
            CODEC.decode_meter_events(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"peak {peak} bytes to refuse a {len(data)}-byte message"
