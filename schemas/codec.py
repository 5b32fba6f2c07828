"""Bytes <-> records for every topic, in the two Avro wire formats the pipeline accepts.

Single-object encoding (0xC3 0x01 + 8-byte CRC-64-AVRO fingerprint) needs no registry:
the fingerprint is resolved against the versions kept in `schemas/`. The Confluent wire
format (0x00 + 4-byte schema id) is written when a Schema Registry is configured. Both are
always accepted on decode, so a topic can move from one to the other without a cut-over.

This is the hot path: schemas are parsed once, bodies written with today's schema are read by
a reader generated for that schema (fastavro's per-field calls cost about 2x; fastavro reads
everything that needs schema resolution), and records are built straight from the dicts.
Decoders raise only `DecodeError` (dead-letter the bytes) or `RegistryError` (retry later).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from io import BytesIO
from operator import attrgetter
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from schemas.avro_reader import compile_reader
from schemas.catalog import SchemaCatalog, SchemaVersion, default_catalog
from schemas.errors import DecodeError, EncodeError
from schemas.records import (
    MAX_EVENTS_PER_MESSAGE,
    Anomaly,
    ChargingSession,
    ConnectorStatus,
    DeadLetter,
    DimensionCost,
    EventKind,
    MeterEvent,
    SessionPeriod,
    SessionState,
    Severity,
)
from schemas.registry_client import ConfluentRegistry

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SINGLE_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = len(CONFLUENT_MAGIC) + 4

_COST_QUANTUM = Decimal("0.0001")
"""Scale 4 of the `cost` decimal: fastavro requires the exponent to match the scale."""
_COST_DIGITS = 18

MAX_MESSAGE_BYTES = 1 << 20
"""Longest meter-events message decoded at all (Kafka's default message size limit): a bigger
one is dead-lettered unread, so no input can make the decoder work or allocate without bound."""
MAX_TEXT_CHARS = 256
"""Longest id or text field of a meter event; OCPP's longest such field is 255 characters."""
MAX_CONNECTOR_ID = 65_535
"""Connector ids are UInt16 in ClickHouse; a larger one could never be stored."""
_EVENT_TEXTS = ("event_id", "station_id", "kind", "transaction_id", "id_tag", "vehicle_id",
                "status", "error_code", "stop_reason")

_KINDS = {k.value: k for k in EventKind}
_STATES = {s.value: s for s in SessionState}
_SEVERITIES = {s.value: s for s in Severity}

_EVENT_FIELDS = MeterEvent.__slots__
_EVENT_VALUES = attrgetter(*_EVENT_FIELDS)
_EVENT_FLOATS = ("energy_wh", "power_w", "soc_pct", "current_a", "voltage_v")
_SESSION_FIELDS = ChargingSession.__slots__
_SESSION_VALUES = attrgetter(*_SESSION_FIELDS)
_SESSION_FLOATS = (
    "meter_start_wh",
    "meter_end_wh",
    "energy_wh",
    "soc_start_pct",
    "soc_end_pct",
    "max_power_w",
    "avg_power_w",
)
_PERIOD_FIELDS = SessionPeriod.__slots__
_PERIOD_VALUES = attrgetter(*_PERIOD_FIELDS)
_ANOMALY_FIELDS = Anomaly.__slots__
_DEAD_LETTER_FIELDS = DeadLetter.__slots__
_STATUS_FIELDS = ConnectorStatus.__slots__


def _non_finite(record: dict[str, Any], names: Sequence[str]) -> str | None:
    """The first field among `names` holding NaN or an infinity (never meaningful here)."""
    for name in names:
        value = record[name]
        if value is not None and not math.isfinite(value):
            return name
    return None


class _Recheck(Exception):
    """The fast event check doubts a value: the exact path reads the message again."""


def _checked_event_builder(fields: Sequence[str]) -> Callable[..., MeterEvent]:
    """A function taking a MeterEvent's field values in `fields` (schema) order that makes
    `_meter_event`'s checks in straight-line code and builds the event, or raises _Recheck
    (then `_meter_event` says what is wrong). The texts are checked joined: short and
    printable together means each is; `x - x` is 0.0 only for a finite float. The event is
    built through its slots: a frozen dataclass's __init__ costs twice as much."""
    texts = " + ".join(name if name in ("event_id", "station_id", "kind") else f"({name} or '')"
                       for name in fields if name in _EVENT_TEXTS)
    floats = " or ".join(f"{name} is not None and {name} - {name}"
                         for name in fields if name in _EVENT_FLOATS)
    lines = [f"def build({', '.join(fields)}):",
             "    member = KINDS.get(kind)",
             f"    text = {texts}",
             "    if (member is None or not 0 <= connector_id <= MAX_CONNECTOR_ID",
             "            or len(text) > MAX_TEXT_CHARS or not text.isprintable()",
             f"            or {floats}):",
             "        raise Recheck",
             "    event = new(MeterEvent)",
             *(f"    set_{name}(event, {'member' if name == 'kind' else name})"
               for name in _EVENT_FIELDS),
             "    return event"]
    env: dict[str, Any] = {
        "KINDS": _KINDS, "MAX_CONNECTOR_ID": MAX_CONNECTOR_ID, "MAX_TEXT_CHARS": MAX_TEXT_CHARS,
        "Recheck": _Recheck, "new": object.__new__, "MeterEvent": MeterEvent,
        **{f"set_{name}": getattr(MeterEvent, name).__set__ for name in _EVENT_FIELDS}}
    exec("\n".join(lines), env)  # noqa: S102 - source built from the schema's field names
    return env["build"]


class Codec:
    """Encodes and decodes every record type of the pipeline; safe to share between threads."""

    def __init__(
        self, registry_url: str | None = None, registry_conf: dict[str, Any] | None = None
    ) -> None:
        """Without `registry_url`, writes single-object encoding and needs no service.

        `registry_conf` goes to confluent-kafka's SchemaRegistryClient as is (e.g.
        `basic.auth.user.info`, `ssl.ca.location`, `max.retries`).
        """
        self._catalog: SchemaCatalog = default_catalog()
        self._registry = (
            ConfluentRegistry(registry_url, registry_conf, self._catalog) if registry_url else None
        )
        current = self._catalog.current
        self._event = current("MeterEvent")
        self._batch = current("MeterEventBatch")
        self._session = current("ChargingSession")
        self._anomaly = current("Anomaly")
        self._dead_letter = current("DeadLetter")
        self._status = current("ConnectorStatus")
        event_fields = [f["name"] for f in self._event.parsed["fields"]]
        builders = {self._event.parsed["name"]: _checked_event_builder(event_fields)}
        self._fast_readers = {
            SINGLE_OBJECT_MAGIC + schema.fingerprint: (schema is self._batch, reader)
            for schema in (self._event, self._batch)
            if (reader := compile_reader(schema.parsed, builders)) is not None}

    # -- framing -------------------------------------------------------------------------

    def _write(self, schema: SchemaVersion, datum: dict[str, Any], subject: str) -> bytes:
        if self._registry is None:
            header = SINGLE_OBJECT_MAGIC + schema.fingerprint
        else:
            header = CONFLUENT_MAGIC + self._registry.schema_id(subject, schema).to_bytes(4, "big")
        try:
            if schema.write is not None:
                return header + schema.write(datum)
            buf = BytesIO(header)
            buf.seek(len(header))
            schemaless_writer(buf, schema.parsed, datum)
        except Exception as exc:  # fastavro raises TypeError/ValueError/AttributeError alike
            raise EncodeError(f"cannot encode {schema.label}: {type(exc).__name__}: {exc}") from exc
        return buf.getvalue()

    def writer_of(self, data: bytes) -> tuple[SchemaVersion, int]:
        """The writer schema named by the header, and where the Avro body starts."""
        if not data:
            raise DecodeError("empty message")
        if SINGLE_OBJECT_MAGIC.startswith(data[:2]):
            if len(data) < _SINGLE_HEADER:
                raise DecodeError(f"truncated single-object header: {len(data)} bytes")
            fp = bytes(data[2:_SINGLE_HEADER])
            writer = self._catalog.by_fingerprint(fp)
            if writer is None:
                raise DecodeError(
                    f"unknown schema fingerprint 0x{fp.hex()}; known: {self._catalog.describe()}"
                )
            return writer, _SINGLE_HEADER
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < _CONFLUENT_HEADER:
                raise DecodeError(f"truncated Confluent header: {len(data)} bytes")
            schema_id = int.from_bytes(data[1:_CONFLUENT_HEADER], "big")
            if self._registry is None:
                raise DecodeError(
                    f"Confluent wire format (schema id {schema_id}) but no schema registry "
                    "is configured"
                )
            return self._registry.writer(schema_id), _CONFLUENT_HEADER
        raise DecodeError(
            f"unknown wire format: leading bytes 0x{bytes(data[:2]).hex()} (expected 0xc301 "
            "for Avro single-object encoding or 0x00 for Confluent)"
        )

    def _read(self, data: bytes, names: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
        """Record name and datum of `data`, read into today's schema of that record."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        writer, start = self.writer_of(data)
        if writer.name not in names:
            raise DecodeError(f"expected {' or '.join(names)}, got {writer.label}")
        reader = self._catalog.current(writer.name)
        try:
            if writer is reader and writer.read is not None:
                datum, end = writer.read(data if type(data) is bytes else bytes(data), start)
            else:
                buf = BytesIO(data)
                buf.seek(start)
                datum = schemaless_reader(buf, writer.parsed, reader.parsed)
                end = buf.tell()
        except Exception as exc:  # IndexError, EOFError, struct.error, UnicodeDecodeError...
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise DecodeError(f"corrupt or truncated {writer.label} body: {detail}") from exc
        if end != len(data):
            raise DecodeError(f"{len(data) - end} trailing bytes after the {writer.label} record")
        return writer.name, datum

    # -- meter events --------------------------------------------------------------------

    def encode_meter_events(
        self, events: Sequence[MeterEvent], topic: str = "meter-events"
    ) -> bytes:
        """One event as a MeterEvent, more as a MeterEventBatch: the events of one or more
        stations of one partition, each station's in order (the publisher groups them)."""
        if not events:
            raise EncodeError("no events to encode")
        if len(events) > MAX_EVENTS_PER_MESSAGE:
            raise EncodeError(
                f"{len(events)} events in one message; at most {MAX_EVENTS_PER_MESSAGE}"
            )
        datums = []
        for event in events:
            datum = dict(zip(_EVENT_FIELDS, _EVENT_VALUES(event), strict=True))
            if datum["kind"] not in _KINDS:
                raise EncodeError(f"event {event.event_id!r}: kind {event.kind!r} is no EventKind")
            bad = _non_finite(datum, _EVENT_FLOATS)
            if bad is not None:
                raise EncodeError(f"event {event.event_id!r}: {bad} is {datum[bad]}")
            datums.append(datum)
        if len(datums) == 1:
            return self._write(self._event, datums[0], f"{topic}-value")
        # A registry subject holds one record type; a batch is another record than a single
        # event, so batches use the TopicRecordNameStrategy subject instead of <topic>-value.
        return self._write(self._batch, {"events": datums}, f"{topic}-chargewatch.MeterEventBatch")

    def decode_meter_events(self, data: bytes) -> list[MeterEvent]:
        """The events of one message, single or batched (of one or more stations), in message
        order."""
        _check_size(data)
        if type(data) is bytes and (events := self._fast_events(data)) is not None:
            return events
        name, datum = self._read(data, ("MeterEvent", "MeterEventBatch"))
        if name == "MeterEvent":
            return [_meter_event(datum)]
        return [_meter_event(item) for item in _batch_items(datum)]

    def decode_meter_event_items(self, data: bytes) -> list[MeterEvent | str]:
        """For a batch `decode_meter_events` refused: each event, or why it cannot be used, so
        one bad event of a multi-station message costs that event, not its neighbours'.
        Raises `DecodeError` when the message itself cannot be read event by event."""
        _check_size(data)
        _, datum = self._read(data, ("MeterEventBatch",))
        found: list[MeterEvent | str] = []
        for item in _batch_items(datum):
            try:
                found.append(_meter_event(item))
            except DecodeError as exc:
                found.append(str(exc))
        return found

    def _fast_events(self, data: bytes) -> list[MeterEvent] | None:
        """The events of a single-object message in today's schema when every fast check
        passes; None sends the message the exact way, which names what is wrong."""
        found = self._fast_readers.get(data[:_SINGLE_HEADER])
        if found is None:
            return None
        batched, read = found
        try:
            datum, end = read(data, _SINGLE_HEADER)
        except Exception:  # noqa: BLE001 - _Recheck, or corrupt bytes: the exact path says which
            return None
        if end != len(data):
            return None
        if not batched:
            return [datum]
        events = datum["events"]
        if not events or len(events) > MAX_EVENTS_PER_MESSAGE:
            return None
        return events

    # -- sessions ------------------------------------------------------------------------

    def encode_session(self, session: ChargingSession, topic: str) -> bytes:
        """For `session-updates` and `sessions-completed` alike."""
        datum = dict(zip(_SESSION_FIELDS, _SESSION_VALUES(session), strict=True))
        if datum["state"] not in _STATES:
            raise EncodeError(f"session {session.session_id!r}: state {session.state!r} unknown")
        bad = _non_finite(datum, _SESSION_FLOATS)
        if bad is not None:
            raise EncodeError(f"session {session.session_id!r}: {bad} is {datum[bad]}")
        datum["cost"] = _quantize_cost(session, session.cost, "cost")
        datum["flags"] = list(session.flags)
        if session.cost_excl_vat is not None:
            datum["cost_excl_vat"] = _quantize_cost(session, session.cost_excl_vat,
                                                    "cost_excl_vat")
        datum["periods"] = [dict(zip(_PERIOD_FIELDS, _PERIOD_VALUES(p), strict=True))
                            for p in session.periods]
        for p in datum["periods"]:
            if not math.isfinite(p["energy_wh"]):
                raise EncodeError(f"session {session.session_id!r}: a period's energy_wh is "
                                  f"{p['energy_wh']}")
        datum["dimension_costs"] = [
            {"dimension": c.dimension,
             "excl_vat": _quantize_cost(session, c.excl_vat, f"{c.dimension} excl_vat"),
             "incl_vat": _quantize_cost(session, c.incl_vat, f"{c.dimension} incl_vat")}
            for c in session.dimension_costs]
        return self._write(self._session, datum, f"{topic}-value")

    def decode_session(self, data: bytes) -> ChargingSession:
        _, datum = self._read(data, ("ChargingSession",))
        state = _member(_STATES, datum["state"], f"session {datum['session_id']!r}", "state")
        bad = _non_finite(datum, _SESSION_FLOATS)
        if bad is not None:
            raise DecodeError(f"session {datum['session_id']!r}: {bad} is {datum[bad]}")
        periods = datum["periods"]
        for p in periods:
            if not math.isfinite(p["energy_wh"]):
                raise DecodeError(f"session {datum['session_id']!r}: a period's energy_wh is "
                                  f"{p['energy_wh']}")
        datum["state"] = state
        datum["flags"] = tuple(datum["flags"])
        datum["periods"] = tuple(SessionPeriod(**p) for p in periods)
        datum["dimension_costs"] = tuple(DimensionCost(**c) for c in datum["dimension_costs"])
        return ChargingSession(**datum)

    # -- anomalies and dead letters ------------------------------------------------------

    def encode_anomaly(self, anomaly: Anomaly, topic: str) -> bytes:
        datum = {name: getattr(anomaly, name) for name in _ANOMALY_FIELDS}
        if datum["severity"] not in _SEVERITIES:
            raise EncodeError(f"anomaly {anomaly.anomaly_id!r}: severity {anomaly.severity!r}")
        return self._write(self._anomaly, datum, f"{topic}-value")

    def decode_anomaly(self, data: bytes) -> Anomaly:
        _, datum = self._read(data, ("Anomaly",))
        datum["severity"] = _member(_SEVERITIES, datum["severity"],
                                    f"anomaly {datum['anomaly_id']!r}", "severity")
        return Anomaly(**datum)

    def encode_dead_letter(self, letter: DeadLetter, topic: str) -> bytes:
        datum = {name: getattr(letter, name) for name in _DEAD_LETTER_FIELDS}
        return self._write(self._dead_letter, datum, f"{topic}-value")

    def decode_dead_letter(self, data: bytes) -> DeadLetter:
        _, datum = self._read(data, ("DeadLetter",))
        return DeadLetter(**datum)

    # -- connector status history ---------------------------------------------------------

    def encode_connector_status(self, status: ConnectorStatus, topic: str) -> bytes:
        datum = {name: getattr(status, name) for name in _STATUS_FIELDS}
        return self._write(self._status, datum, f"{topic}-value")

    def decode_connector_status(self, data: bytes) -> ConnectorStatus:
        _, datum = self._read(data, ("ConnectorStatus",))
        return ConnectorStatus(**datum)


def _member(members: dict[str, Any], value: str, owner: str, field: str) -> Any:
    """The enum member a decoded string names, or a DecodeError that lists the known ones."""
    member = members.get(value)
    if member is None:
        raise DecodeError(f"{owner}: unknown {field} {value!r}; "
                          f"expected one of {', '.join(members)}")
    return member


def _check_size(data: bytes) -> None:
    if isinstance(data, bytes | bytearray | memoryview) and len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"meter-events message of {len(data)} bytes; at most "
                          f"{MAX_MESSAGE_BYTES}")


def _batch_items(datum: dict[str, Any]) -> list[Any]:
    """A MeterEventBatch's events, refused when there are none or too many."""
    items = datum["events"]
    if not items:
        raise DecodeError("MeterEventBatch with no events")
    if len(items) > MAX_EVENTS_PER_MESSAGE:
        raise DecodeError(
            f"MeterEventBatch with {len(items)} events; at most {MAX_EVENTS_PER_MESSAGE}")
    return items


def _meter_event(datum: dict[str, Any]) -> MeterEvent:
    problem = text_problem(datum, _EVENT_TEXTS)
    if problem is not None:
        raise DecodeError(f"event {_shown(datum['event_id'])}: {problem}")
    kind = _member(_KINDS, datum["kind"], f"event {datum['event_id']!r}", "kind")
    bad = _non_finite(datum, _EVENT_FLOATS)
    if bad is not None:
        raise DecodeError(f"event {datum['event_id']!r}: {bad} is {datum[bad]}")
    if not 0 <= datum["connector_id"] <= MAX_CONNECTOR_ID:
        raise DecodeError(f"event {datum['event_id']!r}: connector_id {datum['connector_id']} "
                          f"outside 0..{MAX_CONNECTOR_ID}")
    datum["kind"] = kind
    return MeterEvent(**datum)


def text_problem(record: dict[str, Any], names: Sequence[str]) -> str | None:
    """What is wrong with the first bad text field among `names`, or None if all are fine.

    Too long, or a character that is not printable (control characters, line and paragraph
    separators, zero-width and bidi overrides): such ids would forge log lines, CSV rows and
    what an operator reads in a report.
    """
    for name in names:
        value = record.get(name)
        if value is None or (len(value) <= MAX_TEXT_CHARS and value.isprintable()):
            continue
        if len(value) > MAX_TEXT_CHARS:
            return f"{name} of {len(value)} characters; at most {MAX_TEXT_CHARS}"
        at = next(i for i, char in enumerate(value) if not char.isprintable())
        return f"{name} {_shown(value)} holds non-printable character U+{ord(value[at]):04X}"
    return None


def _shown(value: str) -> str:
    """A possibly hostile string, cut and escaped so it is safe in an error message."""
    return ascii(value[:40] + ("..." if len(value) > 40 else ""))


def _quantize_cost(session: ChargingSession, cost: Decimal, name: str) -> Decimal:
    """An amount of `session` at the schema's scale 4, or an EncodeError naming it."""
    try:
        quantized = cost.quantize(_COST_QUANTUM, rounding=ROUND_HALF_UP)
    except (InvalidOperation, AttributeError, TypeError) as exc:
        raise EncodeError(f"session {session.session_id!r}: {name} {cost!r} is no amount") from exc
    if not quantized.is_finite() or len(quantized.as_tuple().digits) > _COST_DIGITS:
        raise EncodeError(f"session {session.session_id!r}: {name} {cost} does not fit "
                          "decimal(18,4)")
    return quantized
