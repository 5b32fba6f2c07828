"""The Avro contract: round trips, schema evolution, wire headers and every way bytes go bad."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import fields, replace
from decimal import Decimal
from io import BytesIO

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalog import SCHEMA_DIR, default_catalog
from schemas.codec import Codec
from schemas.errors import DecodeError, EncodeError
from schemas.records import (
    MAX_EVENTS_PER_MESSAGE,
    Anomaly,
    ChargingSession,
    DeadLetter,
    EventKind,
    MeterEvent,
    SessionState,
    Severity,
)

pytestmark = pytest.mark.unit

CODEC = Codec()
CATALOG = default_catalog()
INT32 = st.integers(-(2**31), 2**31 - 1)
LONG = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=12)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
ID_TEXT = st.text(st.characters(categories=["L", "M", "N", "P", "S"], include_characters=" "),
                  max_size=12)
"""Meter-event ids and texts: the decoder refuses non-printable characters (test_fuzz_decoder)."""
CONNECTOR = st.integers(0, 65_535)


def _opt(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


def meter_events(station_id: st.SearchStrategy[str] = ID_TEXT) -> st.SearchStrategy[MeterEvent]:
    return st.builds(
        MeterEvent,
        event_id=ID_TEXT,
        station_id=station_id,
        connector_id=CONNECTOR,
        kind=st.sampled_from(EventKind),
        event_time_ms=LONG,
        receive_time_ms=LONG,
        transaction_id=_opt(ID_TEXT),
        seq=_opt(LONG),
        id_tag=_opt(ID_TEXT),
        vehicle_id=_opt(ID_TEXT),
        energy_wh=_opt(FINITE),
        power_w=_opt(FINITE),
        soc_pct=_opt(FINITE),
        current_a=_opt(FINITE),
        voltage_v=_opt(FINITE),
        status=_opt(ID_TEXT),
        error_code=_opt(ID_TEXT),
        stop_reason=_opt(ID_TEXT),
    )


batches = ID_TEXT.flatmap(
    lambda station: st.lists(meter_events(st.just(station)), min_size=1, max_size=25)
)

sessions = st.builds(
    ChargingSession,
    session_id=TEXT,
    version=INT32,
    state=st.sampled_from(SessionState),
    station_id=TEXT,
    connector_id=INT32,
    transaction_id=_opt(TEXT),
    id_tag=_opt(TEXT),
    vehicle_id=_opt(TEXT),
    start_ms=LONG,
    end_ms=LONG,
    meter_start_wh=FINITE,
    meter_end_wh=FINITE,
    energy_wh=FINITE,
    soc_start_pct=_opt(FINITE),
    soc_end_pct=_opt(FINITE),
    max_power_w=FINITE,
    avg_power_w=FINITE,
    charging_ms=LONG,
    plugged_ms=LONG,
    cost=st.decimals(
        min_value=Decimal("-99999999999999.9999"),
        max_value=Decimal("99999999999999.9999"),
        places=4,
    ),
    currency=st.sampled_from(["EUR", "USD", "NOK"]),
    event_count=INT32,
    stop_reason=_opt(TEXT),
    flags=st.lists(TEXT, max_size=4).map(tuple),
)


def event(**changes: object) -> MeterEvent:
    base = MeterEvent(
        event_id="ev-1",
        station_id="CP-1",
        connector_id=1,
        kind=EventKind.METER,
        event_time_ms=1_700_000_000_000,
        receive_time_ms=1_700_000_000_250,
        transaction_id="tx-1",
        seq=3,
        energy_wh=12_345.5,
        power_w=7_200.0,
        current_a=32.0,
        voltage_v=230.0,
        stop_reason=None,
    )
    return replace(base, **changes)


def session(**changes: object) -> ChargingSession:
    base = ChargingSession(
        session_id="LS-2024-01-01-001",
        version=1,
        state=SessionState.COMPLETED,
        station_id="CP-1",
        connector_id=1,
        transaction_id="tx-1",
        id_tag="TAG",
        vehicle_id=None,
        start_ms=1_700_000_000_000,
        end_ms=1_700_003_600_000,
        meter_start_wh=1000.0,
        meter_end_wh=21000.0,
        energy_wh=20000.0,
        soc_start_pct=20.0,
        soc_end_pct=80.0,
        max_power_w=11000.0,
        avg_power_w=10000.0,
        charging_ms=3_000_000,
        plugged_ms=3_600_000,
        cost=Decimal("7.35"),
        currency="EUR",
        event_count=14,
        stop_reason="EVDisconnected",
        flags=("clock_skew",),
    )
    return replace(base, **changes)


def crc64_avro(data: bytes) -> int:
    """The reference fingerprint algorithm from the Avro specification, written out here."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def write_with(path: str, datum: dict) -> bytes:
    """A single-object message written with the schema file at `path`, independently of Codec."""
    schema = json.loads((SCHEMA_DIR / path).read_text())
    canonical = to_parsing_canonical_form(schema)
    buf = BytesIO()
    buf.write(b"\xc3\x01" + struct.pack("<Q", crc64_avro(canonical.encode())))
    schemaless_writer(buf, schema, datum)
    return buf.getvalue()


def event_datum(**changes: object) -> dict:
    """A MeterEvent as a dict of today's fields, with string kind."""
    datum = {f.name: getattr(event(), f.name) for f in fields(MeterEvent)}
    datum["kind"] = "meter"
    datum.update(changes)
    return datum


# -- the contract matches the dataclasses ---------------------------------------------------


@pytest.mark.parametrize(
    ("record", "cls"),
    [
        ("MeterEvent", MeterEvent),
        ("ChargingSession", ChargingSession),
        ("Anomaly", Anomaly),
        ("DeadLetter", DeadLetter),
    ],
)
def test_current_schema_fields_mirror_the_dataclass(record: str, cls: type) -> None:
    schema = json.loads(CATALOG.current(record).text)
    assert schema["namespace"] == "chargewatch"
    assert [f["name"] for f in schema["fields"]] == [f.name for f in fields(cls)]


def test_every_optional_field_is_a_null_union_defaulting_to_null() -> None:
    for record in ("MeterEvent", "ChargingSession", "Anomaly", "DeadLetter"):
        for field in json.loads(CATALOG.current(record).text)["fields"]:
            if isinstance(field["type"], list):
                assert field["type"][0] == "null" and field["default"] is None, field


def test_batch_schema_embeds_the_current_meter_event_of_its_own_version() -> None:
    for event_version, batch_version in zip(
        CATALOG.versions("MeterEvent"), CATALOG.versions("MeterEventBatch"), strict=True
    ):
        items = json.loads(batch_version.text)["fields"][0]["type"]["items"]
        assert items == json.loads(event_version.text)


def test_kept_versions_and_fingerprints() -> None:
    assert [v.version for v in CATALOG.versions("MeterEvent")] == [1, 2]
    for record in ("MeterEvent", "MeterEventBatch", "ChargingSession", "Anomaly", "DeadLetter"):
        for version in CATALOG.versions(record):
            canonical = to_parsing_canonical_form(json.loads(version.text))
            assert version.fingerprint == struct.pack("<Q", crc64_avro(canonical.encode()))
    assert "MeterEvent v1, v2" in CATALOG.describe()


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(meter_events())
def test_single_event_round_trip(ev: MeterEvent) -> None:
    data = CODEC.encode_meter_events([ev])
    writer = CATALOG.current("MeterEvent")
    assert data[:10] == b"\xc3\x01" + writer.fingerprint
    assert CODEC.decode_meter_events(data) == [ev]


@settings(max_examples=60, deadline=None)
@given(batches)
def test_batch_round_trip_equals_singles(events: list[MeterEvent]) -> None:
    data = CODEC.encode_meter_events(events)
    expected = "MeterEvent" if len(events) == 1 else "MeterEventBatch"
    assert data[2:10] == CATALOG.current(expected).fingerprint
    decoded = CODEC.decode_meter_events(data)
    assert decoded == events
    assert all(type(e.kind) is EventKind for e in decoded)
    singles = [CODEC.decode_meter_events(CODEC.encode_meter_events([e]))[0] for e in events]
    assert singles == decoded


@settings(max_examples=60, deadline=None)
@given(batches)
def test_generated_reader_agrees_with_fastavro(events: list[MeterEvent]) -> None:
    data = CODEC.encode_meter_events(events)
    writer = CATALOG.by_fingerprint(data[2:10])
    assert writer is not None and writer.read is not None
    fast, end = writer.read(data, 10)
    buf = BytesIO(data[10:])
    assert fast == schemaless_reader(buf, writer.parsed, None)
    assert end - 10 == buf.tell() == len(data) - 10


@settings(max_examples=100, deadline=None)
@given(sessions)
def test_session_round_trip(s: ChargingSession) -> None:
    for topic in ("session-updates", "sessions-completed"):
        decoded = CODEC.decode_session(CODEC.encode_session(s, topic))
        assert decoded == s  # Decimal compares numerically: 7.35 == 7.3500
        assert type(decoded.state) is SessionState and isinstance(decoded.cost, Decimal)
        assert decoded.cost.as_tuple().exponent == -4


@settings(max_examples=60, deadline=None)
@given(sessions)
def test_generated_session_reader_agrees_with_fastavro(s: ChargingSession) -> None:
    """Decimals included: same values and the same exponents (scale) as fastavro's."""
    data = CODEC.encode_session(s, "sessions-completed")
    writer = CATALOG.by_fingerprint(data[2:10])
    assert writer is not None and writer.read is not None
    fast, end = writer.read(data, 10)
    buf = BytesIO(data[10:])
    slow = schemaless_reader(buf, writer.parsed, None)
    assert fast == slow and repr(fast) == repr(slow)
    assert end - 10 == buf.tell() == len(data) - 10


def test_cost_is_rounded_half_up_to_scale_four() -> None:
    decoded = CODEC.decode_session(CODEC.encode_session(session(cost=Decimal("1.23445")), "t"))
    assert decoded.cost == Decimal("1.2345")


def test_anomaly_and_dead_letter_round_trip() -> None:
    anomaly = Anomaly(
        anomaly_id="an-1",
        kind="register_reset",
        severity=Severity.WARNING,
        station_id="CP-1",
        connector_id=None,
        session_id="LS-1",
        detected_ms=1_700_000_000_000,
        message="meter register went backwards",
        evidence={"before_wh": "1000", "after_wh": "3"},
    )
    decoded = CODEC.decode_anomaly(CODEC.encode_anomaly(anomaly, "anomalies"))
    assert decoded == anomaly and type(decoded.severity) is Severity
    for key in (None, b"CP-1"):
        letter = DeadLetter(b"\x00\xff", "meter-events", 3, 42, "processor", "bad", 17, key)
        assert CODEC.decode_dead_letter(CODEC.encode_dead_letter(letter, "dead-letters")) == letter


# -- schema evolution -------------------------------------------------------------------------


def test_v1_message_decodes_with_todays_reader() -> None:
    v1 = {k: v for k, v in event_datum().items() if k not in ("seq", "current_a", "voltage_v")}
    del v1["stop_reason"]
    data = write_with("versions/meter_event.v1.avsc", v1)
    assert data[2:10] == CATALOG.versions("MeterEvent")[0].fingerprint
    [decoded] = CODEC.decode_meter_events(data)
    assert decoded == event(seq=None, current_a=None, voltage_v=None, stop_reason=None)


def test_v1_batch_decodes_with_todays_reader() -> None:
    v1 = {k: v for k, v in event_datum().items() if k not in ("seq", "current_a", "voltage_v")}
    del v1["stop_reason"]
    items = [dict(v1, event_id=f"ev-{i}") for i in range(3)]
    data = write_with("versions/meter_event_batch.v1.avsc", {"events": items})
    decoded = CODEC.decode_meter_events(data)
    assert [e.event_id for e in decoded] == ["ev-0", "ev-1", "ev-2"]
    assert all(e.seq is None and e.voltage_v is None and e.energy_wh == 12_345.5 for e in decoded)


# -- errors -----------------------------------------------------------------------------------

VALID = CODEC.encode_meter_events([event()])
VALID_BATCH = CODEC.encode_meter_events([event(), event(event_id="ev-2")])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty message"),
        (b"\x4f\x62\x6a\x01", "unknown wire format: leading bytes 0x4f62"),
        (b"\xc3\x01\x01\x02", "truncated single-object header"),
        (b"\xc3\x01" + b"\x11" * 8 + VALID[10:], "unknown schema fingerprint 0x1111111111111111"),
        (b"\xc3\x01" + b"\x11" * 8, "known: Anomaly v1, v2; ChargingSession v1, v2;"),
        (VALID[:-3], "corrupt or truncated MeterEvent v2 body"),
        (VALID_BATCH[:40], "corrupt or truncated MeterEventBatch v2 body"),
        (VALID + b"\x00\x01", "2 trailing bytes after the MeterEvent v2 record"),
        (b"\x00\x00\x00", "truncated Confluent header"),
        (b"\x00\x00\x00\x00\x07" + VALID[10:], "(schema id 7) but no schema registry"),
        (
            CODEC.encode_session(session(), "t"),
            "expected MeterEvent or MeterEventBatch, got Chargi",
        ),
        (write_with("meter_event.avsc", event_datum(kind="paused")), "unknown kind 'paused'"),
        (write_with("meter_event.avsc", event_datum(energy_wh=math.nan)), "energy_wh is nan"),
        (write_with("meter_event.avsc", event_datum(voltage_v=-math.inf)), "voltage_v is -inf"),
        (write_with("meter_event_batch.avsc", {"events": []}), "MeterEventBatch with no events"),
        (
            write_with(
                "meter_event_batch.avsc", {"events": [event_datum()] * (MAX_EVENTS_PER_MESSAGE + 1)}
            ),
            "1001 events; at most 1000",
        ),
    ],
)
def test_decode_errors_say_what_was_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        CODEC.decode_meter_events(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "sample",
    [VALID, VALID_BATCH, CODEC.encode_meter_events([event(stop_reason="EVDisconnected")])],
)
def test_every_proper_prefix_of_a_message_is_a_decode_error(sample: bytes) -> None:
    for cut in range(len(sample)):
        with pytest.raises(DecodeError, match="truncated|empty message"):
            CODEC.decode_meter_events(sample[:cut])


def test_invalid_utf8_is_a_decode_error() -> None:
    data = bytearray(VALID)
    data[11:14] = b"\xff\xfe\xfd"  # inside event_id "ev-1"
    with pytest.raises(DecodeError, match="UnicodeDecodeError"):
        CODEC.decode_meter_events(bytes(data))


def test_unknown_state_and_severity_are_decode_errors() -> None:
    datum = {f.name: getattr(session(), f.name) for f in fields(ChargingSession)}
    datum.update(state="paused", flags=[], cost=Decimal("1.0000"))
    with pytest.raises(DecodeError, match="unknown state 'paused'"):
        CODEC.decode_session(write_with("charging_session.avsc", datum))
    datum.update(state="open", energy_wh=math.inf)
    with pytest.raises(DecodeError, match="energy_wh is inf"):
        CODEC.decode_session(write_with("charging_session.avsc", datum))
    anomaly = {
        "anomaly_id": "a", "kind": "k", "severity": "fatal", "station_id": "s",
        "connector_id": None, "session_id": None, "detected_ms": 1, "message": "m",
        "evidence": {},
    }  # fmt: skip
    with pytest.raises(DecodeError, match="unknown severity 'fatal'"):
        CODEC.decode_anomaly(write_with("anomaly.avsc", anomaly))


def test_each_decoder_refuses_other_records() -> None:
    with pytest.raises(DecodeError, match="expected ChargingSession, got MeterEvent v2"):
        CODEC.decode_session(VALID)
    with pytest.raises(DecodeError, match="expected Anomaly, got MeterEventBatch v2"):
        CODEC.decode_anomaly(VALID_BATCH)
    with pytest.raises(DecodeError, match="expected DeadLetter, got MeterEvent v2"):
        CODEC.decode_dead_letter(VALID)


def test_encode_refuses_out_of_contract_records() -> None:
    too_many = [event()] * (MAX_EVENTS_PER_MESSAGE + 1)
    with pytest.raises(ValueError, match="1001 events in one message; at most 1000"):
        CODEC.encode_meter_events(too_many)
    assert len(CODEC.decode_meter_events(CODEC.encode_meter_events(too_many[:-1]))) == 1000
    with pytest.raises(EncodeError, match="no events"):
        CODEC.encode_meter_events([])
    with pytest.raises(EncodeError, match="power_w is nan"):
        CODEC.encode_meter_events([event(power_w=math.nan)])
    with pytest.raises(EncodeError, match="does not fit decimal"):
        CODEC.encode_session(session(cost=Decimal("1e15")), "t")
    with pytest.raises(EncodeError, match="is no amount"):
        CODEC.encode_session(session(cost=Decimal("Infinity")), "t")
    with pytest.raises(EncodeError, match="cannot encode MeterEvent v2"):
        CODEC.encode_meter_events([event(connector_id="one")])


# -- nothing but DecodeError, whatever the bytes ----------------------------------------------

DECODERS = (
    CODEC.decode_meter_events,
    CODEC.decode_session,
    CODEC.decode_anomaly,
    CODEC.decode_dead_letter,
)
HEADERS = [b"", b"\x00", b"\xc3\x01"] + [
    b"\xc3\x01" + v.fingerprint
    for name in ("MeterEvent", "MeterEventBatch", "ChargingSession", "Anomaly", "DeadLetter")
    for v in CATALOG.versions(name)
]
SAMPLES = [
    VALID,
    VALID_BATCH,
    CODEC.encode_session(session(), "t"),
    CODEC.encode_dead_letter(DeadLetter(b"x", "t", 0, 1, "sink", "e", 2, b"k"), "t"),
]


def _only_decode_errors(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except DecodeError as exc:
            assert str(exc) and "\n" not in str(exc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HEADERS), st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(header: bytes, body: bytes) -> None:
    _only_decode_errors(header + body)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_messages_raise_only_decode_error(sample: bytes, data: st.DataObject) -> None:
    mutated = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    _only_decode_errors(bytes(mutated[:cut]))
    _only_decode_errors(bytes(mutated))


# -- the fast event path agrees with the exact one --------------------------------------------

EXACT = Codec()
EXACT._fast_readers = {}  # only the exact path: generic reader, then _meter_event's checks
TEXT_FIELDS = ("event_id", "station_id", "transaction_id", "id_tag", "vehicle_id", "status",
               "error_code", "stop_reason")
FLOAT_FIELDS = ("energy_wh", "power_w", "soc_pct", "current_a", "voltage_v")
DEFECTS = {
    "control": lambda d, t, f: {t: (d[t] or "") + "\x07"},
    "zero width": lambda d, t, f: {t: "\u200b" + (d[t] or "")},
    "long": lambda d, t, f: {t: "x" * 257},
    "nan": lambda d, t, f: {f: math.nan},
    "inf": lambda d, t, f: {f: -math.inf},
    "kind": lambda d, t, f: {"kind": "bogus"},
    "connector": lambda d, t, f: {"connector_id": 65_536},
    "station": lambda d, t, f: {"station_id": d["station_id"] + "-other"},
}


def outcome(codec: Codec, data: bytes) -> list[MeterEvent] | str:
    try:
        return codec.decode_meter_events(data)
    except DecodeError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.lists(st.tuples(st.integers(0, 24), st.sampled_from(sorted(DEFECTS)),
                                   st.sampled_from(TEXT_FIELDS), st.sampled_from(FLOAT_FIELDS)),
                         max_size=2))
def test_fast_and_exact_event_paths_agree(events: list[MeterEvent],
                                          defects: list[tuple[int, str, str, str]]) -> None:
    """Valid events, or with a defect or two of those the decoder refuses."""
    datums = [{**{f.name: getattr(e, f.name) for f in fields(MeterEvent)}, "kind": e.kind.value}
              for e in events]
    for at, defect, text, number in defects:
        datum = datums[at % len(datums)]
        datum.update(DEFECTS[defect](datum, text, number))
    data = (write_with("meter_event.avsc", datums[0]) if len(datums) == 1
            else write_with("meter_event_batch.avsc", {"events": datums}))
    assert outcome(CODEC, data) == outcome(EXACT, data)


@settings(max_examples=50, deadline=None)
@given(batches)
def test_valid_events_take_the_fast_path(events: list[MeterEvent]) -> None:
    data = CODEC.encode_meter_events(events)
    assert CODEC._fast_events(data) == events
