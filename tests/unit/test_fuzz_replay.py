"""Fuzzing the replay parser: every line is a valid, publishable event or a ReplayFormatError.

No other exception (RecursionError, OverflowError, ...), no hang, bounded memory, and an
accepted event always encodes and decodes (so replay never publishes what the processor
must dead-letter for its shape). `CHARGEWATCH_FUZZ_EXAMPLES=N` runs N examples per test.
"""

from __future__ import annotations

import io
import json
import re
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.errors import ReplayFormatError
from producers.jsonl import MAX_LINE_BYTES, event_to_json, parse_event_line
from producers.replay import _read_line
from schemas.records import MeterEvent
from tests.hostile import CODEC, FUZZ_EXAMPLES, event

_BUDGET_S = 20 * max(1, (FUZZ_EXAMPLES or 0) // 300)
"""The unit timeout, scaled with CHARGEWATCH_FUZZ_EXAMPLES."""
pytestmark = [pytest.mark.unit, pytest.mark.timeout(_BUDGET_S)]

_FUZZ = settings(max_examples=FUZZ_EXAMPLES or 300, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_LINE = 42
_SLOWEST_S = 5.0
"""Longest one line may take: generous for a loaded 2-core machine (the real cost is
microseconds); what it catches is a pathological line (deep nesting, a huge number)."""


def _parse_or_reject(line: str) -> MeterEvent | None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        parsed = parse_event_line(line, _LINE)
    except ReplayFormatError as exc:
        assert exc.line_no == _LINE and str(exc).startswith(f"line {_LINE}")
        assert len(str(exc)) < 1000, "an error message must stay readable"
        parsed = None
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < _SLOWEST_S, f"{elapsed:.3f}s for a {len(line)}-character line"
    assert peak < 30 * len(line) + 2_000_000, f"peak {peak} for a {len(line)}-character line"
    if parsed is not None:
        assert CODEC.decode_meter_events(CODEC.encode_meter_events([parsed])) == [parsed]
    return parsed


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
_FIELDS = ["event_id", "station_id", "connector_id", "kind", "event_time_ms", "receive_time_ms",
           "transaction_id", "seq", "id_tag", "energy_wh", "power_w", "soc_pct", "status"]
_hostile_values = (
    _json | st.integers(-(10**30), 10**30) | st.sampled_from(
        [float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 2**63, 2**64, -(2**63) - 1,
         "9999-12-31T23:59:59.999+00:00", "0001-01-01T00:00:00Z", "\x00", "a\u202e", "x" * 300]))


@st.composite
def _rows(draw: st.DrawFn) -> dict[str, Any]:
    """A valid row with some fields replaced by hostile values (or removed)."""
    row: dict[str, Any] = json.loads(event_to_json(event()))
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=3, unique=True)):
        if draw(st.booleans()):
            row[name] = draw(_hostile_values)
        else:
            row.pop(name, None)
    return row


@_FUZZ
@given(st.text(max_size=2000))
def test_random_text(line: str) -> None:
    _parse_or_reject(line)


@_FUZZ
@given(_json)
def test_random_json(value: Any) -> None:
    _parse_or_reject(json.dumps(value))


@_FUZZ
@given(_rows())
def test_valid_rows_with_hostile_fields(row: dict[str, Any]) -> None:
    _parse_or_reject(json.dumps(row))


@_FUZZ
@given(_rows(), st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_mutated_lines(row: dict[str, Any], at: int, noise: bytes) -> None:
    line = json.dumps(row)
    _parse_or_reject(line[:at] + noise.decode("latin-1") + line[at + 1:])


@pytest.mark.parametrize(("line", "phrase"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    ("9" * 5000, "bad JSON"),
    ('{"event_id":"e","station_id":"s","connector_id":1,"kind":"meter",'
     '"event_time_ms":100000000000,"energy_wh":' + "9" * 4000 + "}", "energy_wh"),
    (event_to_json(event()).replace('"energy_wh":1000.0', '"energy_wh":NaN'), "finite"),
    (event_to_json(event()).replace('"power_w":11000.0', '"power_w":-Infinity'), "finite"),
    (event_to_json(event()).replace('"seq":1', '"seq":' + str(2**63)), "seq"),
    (event_to_json(event()).replace(str(event().event_time_ms), str(2**64)), "out of range"),
    (event_to_json(event()).replace('"connector_id":1', '"connector_id":70000'), "at most 65535"),
    (event_to_json(event(station_id="CS\u00071")), "U+0007"),
    (event_to_json(event(id_tag="t" * 257)), "at most 256"),
    ('"just a string"', "expected a JSON object"),
    ("x" * (MAX_LINE_BYTES + 1), "at most"),
])
def test_each_hostile_line(line: str, phrase: str) -> None:
    assert _parse_or_reject(line) is None
    with pytest.raises(ReplayFormatError, match=re.escape(phrase)):
        parse_event_line(line, _LINE)


def test_a_huge_line_is_read_with_bounded_memory() -> None:
    """replay reads line by line with a cap: an 8 MB line costs about the cap, not 8 MB."""
    src = io.BytesIO(b"{" * (8 << 20) + b"\n" + event_to_json(event()).encode() + b"\n")
    tracemalloc.start()
    first = _read_line(src)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert first is not None and first[1] == 8 << 20 and len(first[0]) == MAX_LINE_BYTES
    assert peak < 3 * MAX_LINE_BYTES
    second = _read_line(src)
    assert second is not None and parse_event_line(second[0].decode(), 2) == event()
