"""Confluent wire format through the real SchemaRegistryClient.

No Schema Registry runs here (no Docker), so the test serves the two REST endpoints the
client calls (POST /subjects/{s}/versions, GET /schemas/ids/{id}) from a small stdlib HTTP
server on 127.0.0.1, with the registry's rules that matter to the codec: one id per
distinct schema, 404/40403 for an unknown id, and a subject that refuses a different
record type (what the default BACKWARD compatibility check does).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from urllib.parse import unquote, urlparse

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from fastavro import parse_schema, schemaless_writer

from schemas.catalog import SCHEMA_DIR
from schemas.codec import Codec
from schemas.errors import DecodeError, RegistryError
from schemas.records import (
    Anomaly,
    ChargingSession,
    DeadLetter,
    EventKind,
    MeterEvent,
    SessionState,
    Severity,
)

pytestmark = pytest.mark.integration


@dataclass
class RegistryState:
    schemas: list[str] = field(default_factory=list)
    subjects: dict[str, str] = field(default_factory=dict)
    """Subject -> the record name it holds."""
    requests: Counter[str] = field(default_factory=Counter)


def _handler(state: RegistryState) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            """Quiet: the test asserts on requests instead."""

        def _reply(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            parts = urlparse(self.path).path.strip("/").split("/")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                self._reply(404, {"error_code": 404, "message": f"no route {self.path}"})
                return
            subject = unquote(parts[1])
            state.requests[f"POST {subject}"] += 1
            name = json.loads(body["schema"])["name"]
            with lock:
                if state.subjects.setdefault(subject, name) != name:
                    self._reply(409, {"error_code": 409, "message": "incompatible record type"})
                    return
                if body["schema"] not in state.schemas:
                    state.schemas.append(body["schema"])
                schema_id = state.schemas.index(body["schema"]) + 1
            self._reply(200, {"id": schema_id})

        def do_GET(self) -> None:
            parts = urlparse(self.path).path.strip("/").split("/")
            if len(parts) != 3 or parts[:2] != ["schemas", "ids"]:
                self._reply(404, {"error_code": 404, "message": f"no route {self.path}"})
                return
            state.requests[f"GET {parts[2]}"] += 1
            schema_id = int(parts[2])
            if not 1 <= schema_id <= len(state.schemas):
                self._reply(404, {"error_code": 40403, "message": f"Schema {schema_id} not found"})
                return
            self._reply(200, {"schema": state.schemas[schema_id - 1]})

    return Handler


@pytest.fixture
def registry() -> Iterator[tuple[str, RegistryState]]:
    state = RegistryState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def event(event_id: str = "ev-1", **changes: object) -> MeterEvent:
    return MeterEvent(
        event_id=event_id,
        station_id="CP-1",
        connector_id=2,
        kind=EventKind.STARTED,
        event_time_ms=1_700_000_000_000,
        receive_time_ms=1_700_000_000_100,
        transaction_id="tx-9",
        seq=1,
        energy_wh=500.0,
        **changes,  # type: ignore[arg-type]
    )


SESSION = ChargingSession(
    session_id="EV-000000001", version=2, state=SessionState.INCOMPLETE, station_id="CP-1",
    connector_id=2, transaction_id="tx-9", id_tag=None, vehicle_id="VIN1", start_ms=1, end_ms=2,
    meter_start_wh=500.0, meter_end_wh=900.0, energy_wh=400.0, soc_start_pct=None,
    soc_end_pct=None, max_power_w=3.0, avg_power_w=2.0, charging_ms=1, plugged_ms=1,
    cost=Decimal("0.12"), currency="EUR", event_count=2, flags=("no_stop",),
)  # fmt: skip
ANOMALY = Anomaly("an-1", "stuck_meter", Severity.CRITICAL, "CP-1", 2, None, 5, "m", {"a": "b"})
LETTER = DeadLetter(b"\x01garbage", "meter-events", 0, 7, "processor", "bad bytes", 9, None)


def test_confluent_round_trip_of_every_record(registry: tuple[str, RegistryState]) -> None:
    url, state = registry
    writer = Codec(registry_url=url)
    single = writer.encode_meter_events([event()])
    batch = writer.encode_meter_events([event(), event("ev-2")])
    messages = [
        single,
        batch,
        writer.encode_session(SESSION, "session-updates"),
        writer.encode_session(SESSION, "sessions-completed"),
        writer.encode_anomaly(ANOMALY, "anomalies"),
        writer.encode_dead_letter(LETTER, "dead-letters"),
    ]
    assert all(m[:1] == b"\x00" for m in messages)
    ids = [int.from_bytes(m[1:5], "big") for m in messages]
    assert ids == [1, 2, 3, 3, 4, 5]  # both session topics share the one ChargingSession id
    assert state.subjects == {
        "meter-events-value": "MeterEvent",
        "meter-events-chargewatch.MeterEventBatch": "MeterEventBatch",
        "session-updates-value": "ChargingSession",
        "sessions-completed-value": "ChargingSession",
        "anomalies-value": "Anomaly",
        "dead-letters-value": "DeadLetter",
    }

    reader = Codec(registry_url=url)  # a fresh process: nothing cached
    assert reader.decode_meter_events(single) == [event()]
    assert reader.decode_meter_events(batch) == [event(), event("ev-2")]
    assert reader.decode_session(messages[2]) == SESSION
    assert reader.decode_session(messages[3]) == SESSION
    assert reader.decode_anomaly(messages[4]) == ANOMALY
    assert reader.decode_dead_letter(messages[5]) == LETTER
    # Both formats decode in both directions: a topic can switch without a cut-over.
    assert reader.decode_meter_events(Codec().encode_meter_events([event()])) == [event()]
    with pytest.raises(DecodeError, match=r"Confluent wire format \(schema id 1\) but no schema"):
        Codec().decode_meter_events(single)


def test_ids_are_registered_and_fetched_once(registry: tuple[str, RegistryState]) -> None:
    url, state = registry
    writer, reader = Codec(registry_url=url), Codec(registry_url=url)
    for i in range(50):
        data = writer.encode_meter_events([event(f"ev-{i}")])
        assert reader.decode_meter_events(data)[0].event_id == f"ev-{i}"
    assert state.requests == Counter({"POST meter-events-value": 1, "GET 1": 1})


def test_old_and_registry_only_writer_schemas_resolve(registry: tuple[str, RegistryState]) -> None:
    url, _ = registry
    client = SchemaRegistryClient({"url": url})
    v1_text = (SCHEMA_DIR / "versions" / "meter_event.v1.avsc").read_text()
    newer = json.loads((SCHEMA_DIR / "meter_event.avsc").read_text())
    newer["fields"].append({"name": "firmware", "type": ["null", "string"], "default": None})
    datum = {
        "event_id": "ev-old", "station_id": "CP-7", "connector_id": 1, "kind": "ended",
        "event_time_ms": 10, "receive_time_ms": 11, "transaction_id": None, "id_tag": "T",
        "vehicle_id": None, "energy_wh": 1.5, "power_w": None, "soc_pct": 90.0,
        "status": None, "error_code": None,
    }  # fmt: skip
    for text, extra in ((v1_text, {}), (json.dumps(newer), {"firmware": "1.2", "seq": 4})):
        schema_id = client.register_schema(f"other-{len(extra)}-value", Schema(text, "AVRO"))
        buf = BytesIO()
        buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
        schemaless_writer(buf, parse_schema(json.loads(text)), {**datum, **extra})
        [decoded] = Codec(registry_url=url).decode_meter_events(buf.getvalue())
        assert decoded.event_id == "ev-old" and decoded.kind is EventKind.ENDED
        assert decoded.seq == extra.get("seq") and decoded.current_a is None


def test_unknown_id_and_wrong_record_are_decode_errors(registry: tuple[str, RegistryState]) -> None:
    url, _ = registry
    codec = Codec(registry_url=url)
    with pytest.raises(DecodeError, match="unknown schema id 999: .*Schema 999 not found"):
        codec.decode_meter_events(b"\x00\x00\x00\x03\xe7\x02")
    session = codec.encode_session(SESSION, "session-updates")
    with pytest.raises(DecodeError, match="expected MeterEvent or MeterEventBatch, got Charging"):
        codec.decode_meter_events(session)


def test_unreachable_registry_is_a_registry_error(registry: tuple[str, RegistryState]) -> None:
    url, _ = registry
    data = Codec(registry_url=url).encode_anomaly(ANOMALY, "anomalies")
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    down = Codec(registry_url="http://127.0.0.1:9", registry_conf={"max.retries": 0})
    with pytest.raises(RegistryError, match="cannot register Anomaly v2 under subject 'anom"):
        down.encode_anomaly(ANOMALY, "anomalies")
    with pytest.raises(RegistryError, match="cannot fetch schema id 1: ConnectError"):
        down.decode_anomaly(data)
    assert not isinstance(RegistryError("x"), DecodeError)  # retried, never dead-lettered
