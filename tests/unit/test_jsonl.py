"""The JSON Lines replay format: round trip, accepted spellings, and every rejection."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.errors import ReplayFormatError
from producers.jsonl import event_to_json, parse_event_line
from schemas.records import EventKind, MeterEvent

pytestmark = pytest.mark.unit

_printable = st.text(st.characters(categories=["L", "M", "N", "P", "S"], include_characters=" "),
                     max_size=50)
"""Ids and texts: non-printable characters are refused (tests/unit/test_fuzz_replay.py)."""
_text = _printable.filter(lambda text: 0 < len(text) <= 20 and text.strip())
_ms = st.integers(10**11, 4 * 10**12)


def _maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


def _floats(**bounds: float) -> st.SearchStrategy[float]:
    return st.floats(allow_nan=False, allow_infinity=False, **bounds)


events = st.builds(
    MeterEvent,
    event_id=_text, station_id=_text, connector_id=st.integers(1, 10_000),
    kind=st.sampled_from(list(EventKind)), event_time_ms=_ms, receive_time_ms=_ms,
    transaction_id=_maybe(_text), seq=_maybe(st.integers(0, 2**40)), id_tag=_maybe(_text),
    vehicle_id=_maybe(_text), energy_wh=_maybe(_floats(min_value=0)),
    power_w=_maybe(_floats()), soc_pct=_maybe(_floats(min_value=0, max_value=100)),
    current_a=_maybe(_floats()), voltage_v=_maybe(_floats()), status=_maybe(_printable),
    error_code=_maybe(_printable), stop_reason=_maybe(_printable),
)


@given(events)
def test_round_trip(event: MeterEvent) -> None:
    line = event_to_json(event)
    assert "\n" not in line
    assert parse_event_line(line, 1) == event


BASE = {"event_id": "e1", "station_id": "CS-0001", "connector_id": 1, "kind": "meter",
        "event_time_ms": 1_795_414_825_842}


def line_with(**changes: object) -> str:
    row = {**BASE, **changes}
    return json.dumps({k: v for k, v in row.items() if v is not ...})


@pytest.mark.parametrize(("name", "kind"), [
    ("StartTransaction", EventKind.STARTED), ("Started", EventKind.STARTED),
    ("MeterValues", EventKind.METER), ("Updated", EventKind.METER),
    ("StopTransaction", EventKind.ENDED), ("ENDED", EventKind.ENDED),
    ("StatusNotification", EventKind.STATUS), ("status", EventKind.STATUS),
])
def test_ocpp_kind_names(name: str, kind: EventKind) -> None:
    assert parse_event_line(line_with(kind=name), 1).kind is kind


def test_iso_times_integer_transaction_ids_and_defaults() -> None:
    event = parse_event_line(line_with(event_time_ms="2026-11-23T08:15:00.250Z",
                                       receive_time_ms="2026-11-23T09:15:01+01:00",
                                       transaction_id=4711, energy_wh=12, status=None), 3)
    assert event.event_time_ms == 1_795_392_000_000 + (8 * 3600 + 15 * 60) * 1000 + 250
    assert event.receive_time_ms == event.event_time_ms + 750
    assert event.transaction_id == "4711"
    assert event.energy_wh == 12.0 and isinstance(event.energy_wh, float)
    assert event.status is None
    plain = parse_event_line(line_with(), 1)
    assert plain.receive_time_ms == plain.event_time_ms


@pytest.mark.parametrize(("line", "field", "problem"), [
    ("{not json", None, "bad JSON"),
    ("[1, 2]", None, "expected a JSON object"),
    (line_with(station_id=...), "station_id", "missing"),
    (line_with(station_id=""), "station_id", "must not be empty"),
    (line_with(station_id=17), "station_id", "must be a string"),
    (line_with(event_id=None), "event_id", "missing"),
    (line_with(connector_id=0), "connector_id", "positive integer"),
    (line_with(connector_id="1"), "connector_id", "positive integer"),
    (line_with(connector_id=1.5), "connector_id", "positive integer"),
    (line_with(connector_id=True), "connector_id", "positive integer"),
    (line_with(kind="Heartbeat"), "kind", "unknown kind"),
    (line_with(kind=3), "kind", "unknown kind"),
    (line_with(kind=...), "kind", "missing"),
    (line_with(energy_wh=-1), "energy_wh", "negative"),
    (line_with(energy_wh=float("nan")), "energy_wh", "finite"),
    (line_with(power_w=float("inf")), "power_w", "finite"),
    (line_with(energy_wh="12"), "energy_wh", "must be a number"),
    (line_with(soc_pct=101), "soc_pct", "0..100"),
    (line_with(seq=-1), "seq", "integer >= 0"),
    (line_with(transaction_id=""), "transaction_id", "non-empty"),
    (line_with(energy_kwh=12.0), "energy_kwh", "unknown field"),
    (line_with(event_time_ms=...), "event_time_ms", "missing"),
    (line_with(event_time_ms=1_795_414_825), "event_time_ms", "epoch seconds"),
    (line_with(event_time_ms="2026-11-23T08:15:00"), "event_time_ms", "UTC offset"),
    (line_with(event_time_ms="yesterday"), "event_time_ms", "ISO-8601"),
    (line_with(receive_time_ms=[1]), "receive_time_ms", "epoch milliseconds"),
])
def test_malformed_lines_name_line_field_and_problem(line: str, field: str | None,
                                                     problem: str) -> None:
    with pytest.raises(ReplayFormatError) as caught:
        parse_event_line(line, 42)
    error = caught.value
    assert (error.line_no, error.field) == (42, field)
    assert problem in error.problem
    assert str(error).startswith("line 42")
    if field:
        assert f"'{field}'" in str(error)


def test_a_json_error_is_kept_in_full() -> None:
    """json's own message says where the line broke; replay used to cut it at 60 characters
    ("Expecting property name … line 1 co...")."""
    with pytest.raises(ReplayFormatError) as caught:
        parse_event_line("{'event_id': 'E1'}", 3)
    assert str(caught.value) == ("line 3: bad JSON: Expecting property name enclosed in double "
                                 "quotes: line 1 column 2 (char 1)")
