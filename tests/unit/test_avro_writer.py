"""The generated Avro writer writes exactly fastavro's bytes, for every type it covers and
for every record the pipeline publishes."""

from __future__ import annotations

from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from schemas.avro_writer import compile_writer
from schemas.catalog import default_catalog
from schemas.codec import Codec
from tests.unit.test_codec import batches, sessions

pytestmark = pytest.mark.unit

SCHEMA = {
    "type": "record", "name": "Everything", "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "value", "type": "double"},
        {"name": "text", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "later", "type": ["long", "null"], "default": 0},
        {"name": "money", "type": {"type": "bytes", "logicalType": "decimal",
                                   "precision": 18, "scale": 4}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "extra", "type": {"type": "map", "values": "double"}},
        {"name": "parts", "type": {"type": "array", "items": {
            "type": "record", "name": "Part", "fields": [
                {"name": "at", "type": "long"}, {"name": "note", "type": ["null", "string"]}]}}},
    ]}
FINITE = st.floats(allow_nan=False, allow_infinity=False)
DATUMS = st.fixed_dictionaries({
    "flag": st.booleans(),
    "small": st.integers(-(2**31), 2**31 - 1),
    "big": st.integers(-(2**63), 2**63 - 1),
    "ratio": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "value": FINITE,
    "text": st.text(),
    "raw": st.binary(),
    "maybe": st.none() | st.text(),
    "later": st.none() | st.integers(-(2**63), 2**63 - 1),
    "money": st.decimals(min_value=Decimal("-99999999999999.9999"),
                         max_value=Decimal("99999999999999.9999"), places=4),
    "tags": st.lists(st.text(), max_size=3),
    "extra": st.dictionaries(st.text(), FINITE, max_size=3),
    "parts": st.lists(st.fixed_dictionaries({"at": st.integers(0, 2**40),
                                             "note": st.none() | st.text()}), max_size=3),
})
WRITE = compile_writer(SCHEMA)
PARSED = parse_schema(SCHEMA)
CATALOG = default_catalog()
CODEC = Codec()


def _fastavro(parsed: Any, datum: Any) -> bytes:
    buf = BytesIO()
    schemaless_writer(buf, parsed, datum)
    return buf.getvalue()


@given(DATUMS)
def test_every_covered_type_is_written_as_fastavro_writes_it(datum: dict[str, Any]) -> None:
    assert WRITE is not None
    assert WRITE(datum) == _fastavro(PARSED, datum)


def test_every_pipeline_schema_gets_a_generated_writer() -> None:
    catalog = CATALOG
    names = ("MeterEvent", "MeterEventBatch", "ChargingSession", "Anomaly", "DeadLetter",
             "ConnectorStatus")
    assert [name for name in names if catalog.current(name).write is None] == []


def canonical(data: bytes) -> bytes:
    """What fastavro writes for the datum it reads from `data` (single-object encoding)."""
    writer = CATALOG.by_fingerprint(data[2:10])
    assert writer is not None
    parsed = writer.parsed
    return data[:10] + _fastavro(parsed, schemaless_reader(BytesIO(data[10:]), parsed, parsed))


@given(sessions)
def test_published_sessions_are_fastavros_bytes(session: Any) -> None:
    data = CODEC.encode_session(session, "sessions-completed")
    assert data == canonical(data)


@given(batches)
def test_published_meter_events_are_fastavros_bytes(events: Any) -> None:
    data = CODEC.encode_meter_events(events, "meter-events")
    assert data == canonical(data)


def test_a_value_of_the_wrong_type_is_refused() -> None:
    assert WRITE is not None
    with pytest.raises(AttributeError):
        WRITE({"flag": True, "small": 1, "big": 2, "ratio": 0.5, "value": 1.0, "text": 5})
