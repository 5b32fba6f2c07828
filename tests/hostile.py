"""Hostile meter-events messages, built byte by byte, shared by the fuzz and batch tests.

Each entry: a name, the bytes, and a phrase the dead letter's reason must contain.
"""

from __future__ import annotations

import math
import os
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer

from schemas.catalog import default_catalog
from schemas.codec import (
    CONFLUENT_MAGIC,
    MAX_CONNECTOR_ID,
    MAX_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    SINGLE_OBJECT_MAGIC,
    Codec,
)
from schemas.records import EventKind, MeterEvent

CODEC = Codec()
CATALOG = default_catalog()
T0 = 1_795_400_000_000
FUZZ_EXAMPLES = int(os.environ.get("CHARGEWATCH_FUZZ_EXAMPLES", "0")) or None
"""A longer fuzz budget (examples per fuzz test); unset = each test's CI budget."""


def event(**changes: Any) -> MeterEvent:
    values: dict[str, Any] = dict(
        event_id="CS-1:1", station_id="CS-1", connector_id=1, kind=EventKind.METER,
        event_time_ms=T0, receive_time_ms=T0 + 200, transaction_id="T1", seq=1,
        id_tag="TAG", energy_wh=1_000.0, power_w=11_000.0, soc_pct=50.0)
    values.update(changes)
    return MeterEvent(**values)


def write(name: str, version: int, datum: dict[str, Any]) -> bytes:
    """A single-object message written with any kept schema version, no checks applied."""
    schema = CATALOG.versions(name)[version - 1]
    buf = BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + schema.fingerprint)
    schemaless_writer(buf, schema.parsed, datum)
    return buf.getvalue()


def datum(version: int = 2, **changes: Any) -> dict[str, Any]:
    """An event as the datum of MeterEvent v`version`, with raw (unchecked) changes."""
    fields = {f["name"] for f in CATALOG.versions("MeterEvent")[version - 1].parsed["fields"]}
    base = {name: getattr(event(), name) for name in fields}
    base["kind"] = str(base["kind"])
    return {**base, **changes}


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _lying_string() -> bytes:
    """event_id announces 2^31 bytes and carries 3."""
    header = SINGLE_OBJECT_MAGIC + CATALOG.current("MeterEvent").fingerprint
    return header + _zigzag(2**31) + b"abc"


def _lying_array() -> bytes:
    """A batch announcing 2^31 events and carrying one."""
    one = CODEC.encode_meter_events([event()])[10:]
    header = SINGLE_OBJECT_MAGIC + CATALOG.current("MeterEventBatch").fingerprint
    return header + _zigzag(2**31) + one + b"\x00"


def _lying_v1() -> bytes:
    """The same lie in an old-version message: fastavro reads it, not the generated reader."""
    header = SINGLE_OBJECT_MAGIC + CATALOG.versions("MeterEvent")[0].fingerprint
    return header + _zigzag(2**31 - 1) + b"abc"


HOSTILE: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty message"),
    ("oversized", CODEC.encode_meter_events([event(id_tag="x" * 200)]).ljust(
        MAX_MESSAGE_BYTES + 1, b"\x00"), "at most"),
    ("lying string length", _lying_string(), "corrupt or truncated"),
    ("lying array count", _lying_array(), "corrupt or truncated"),
    ("lying length, old schema", _lying_v1(), "corrupt or truncated"),
    ("endless varint", SINGLE_OBJECT_MAGIC + CATALOG.current("MeterEvent").fingerprint
     + b"\x02a" * 2 + b"\xff" * (MAX_MESSAGE_BYTES - 20), "varint longer than 10 bytes"),
    ("wrong fingerprint", SINGLE_OBJECT_MAGIC + b"\x01" * 8 + b"\x00",
     "unknown schema fingerprint"),
    ("Confluent id without registry", CONFLUENT_MAGIC + (77).to_bytes(4, "big") + b"\x00",
     "schema id 77"),
    ("unknown wire format", b"{\"event_id\": 1}", "unknown wire format"),
    ("truncated", CODEC.encode_meter_events([event()])[:-5], "corrupt or truncated"),
    ("truncated header", SINGLE_OBJECT_MAGIC + b"\x01\x02", "truncated single-object header"),
    ("trailing bytes", CODEC.encode_meter_events([event()]) + b"\x00", "trailing bytes"),
    ("NaN energy", write("MeterEvent", 2, datum(energy_wh=math.nan)), "energy_wh is nan"),
    ("infinite power", write("MeterEvent", 2, datum(power_w=-math.inf)), "power_w is -inf"),
    ("control character in station id",
     write("MeterEvent", 2, datum(station_id="CS-1\r\nINFO forged")), "U+000D"),
    ("bidi override in id tag", write("MeterEvent", 2, datum(id_tag="\u202eGAT")), "U+202E"),
    ("NUL in transaction id", write("MeterEvent", 1, datum(1, transaction_id="T\x001")),
     "U+0000"),
    ("absurdly long event id", write("MeterEvent", 2, datum(event_id="e" * 100_000)),
     f"at most {MAX_TEXT_CHARS}"),
    ("connector id out of range",
     write("MeterEvent", 2, datum(connector_id=MAX_CONNECTOR_ID + 1)), "outside 0..65535"),
    ("unknown kind", write("MeterEvent", 2, datum(kind="teleport")), "unknown kind"),
    ("empty batch", write("MeterEventBatch", 2, {"events": []}), "no events"),
    ("negative timestamp", CODEC.encode_meter_events([event(event_time_ms=-1)]),
     "outside 1970..2100"),
    ("year 9999", CODEC.encode_meter_events([event(event_time_ms=253_402_300_799_999)]),
     "outside 1970..2100"),
    ("int64 max", CODEC.encode_meter_events([event(receive_time_ms=2**63 - 1)]),
     "outside 1970..2100"),
]
"""The last three decode (they are well-formed Avro) and the stitcher rejects them."""
