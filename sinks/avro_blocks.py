"""Avro container files built from the bodies of single-record messages, for ClickHouse.

A message in single-object or Confluent encoding is a header and an Avro datum; a
container file (what ClickHouse's `FORMAT Avro` reads) is a header naming the writer
schema followed by blocks of concatenated datums. So a batch of messages written with one
schema becomes a container by joining their bodies, and ClickHouse decodes it in C++:
chDB read ~700,000 session records/s this way on this machine, where decoding them in
Python and inserting rows managed ~15,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from io import BytesIO

from fastavro import writer as container_writer

from schemas.registry import SchemaVersion

_SYNC = b"chargewatch.avro"
"""The 16-byte marker after each block; any constant works, it only has to match."""
_headers: dict[tuple[SchemaVersion, bool], bytes] = {}
SOURCE_FIELDS = ("_topic", "_partition", "_offset")
_SOURCE_SCHEMA = [{"name": "_topic", "type": "string"}, {"name": "_partition", "type": "int"},
                  {"name": "_offset", "type": "long"}]


def _varint(value: int) -> bytes:
    """Avro long (zig-zag varint)."""
    n, out = (value << 1) ^ (value >> 63), bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _header(schema: SchemaVersion, sourced: bool = False) -> bytes:
    """Magic, metadata (the writer schema, no compression) and the sync marker."""
    header = _headers.get((schema, sourced))
    if header is None:
        parsed = schema.parsed
        if sourced:
            parsed = deepcopy(parsed)
            parsed["fields"] = [*parsed["fields"], *_SOURCE_SCHEMA]
        buf = BytesIO()
        container_writer(buf, parsed, [], codec="null", sync_marker=_SYNC)
        header = _headers[(schema, sourced)] = buf.getvalue()
    return header


def _block(header: bytes, count: int, data: bytes) -> bytes:
    return b"".join((header, _varint(count), _varint(len(data)), data, _SYNC))


def container(schema: SchemaVersion, bodies: Sequence[bytes]) -> bytes:
    """One container file holding `bodies` (Avro datums written with `schema`) as one block."""
    return _block(_header(schema), len(bodies), b"".join(bodies))


def sourced_container(schema: SchemaVersion, topic: str, partition: int,
                      bodies: Sequence[tuple[int, bytes]]) -> bytes:
    """One container of `(offset, body)` pairs read from `topic[partition]`, each datum
    extended with SOURCE_FIELDS (module docstring)."""
    encoded = topic.encode()
    source = _varint(len(encoded)) + encoded + _varint(partition)
    data = b"".join(b"".join((body, source, _varint(offset))) for offset, body in bodies)
    return _block(_header(schema, sourced=True), len(bodies), data)


def leading_string_and_int(data: bytes, start: int) -> tuple[str, int]:
    """The first two fields of a datum whose schema begins with a string and an int (a
    ChargingSession's id and version), read without decoding the rest.

    Raises ValueError (or IndexError, UnicodeDecodeError) on bytes that cannot be those.
    """
    first = data[start]
    if first < 0x80:  # one-byte length: ids of up to 63 bytes
        length, pos = first >> 1, start + 1
    else:
        length, pos = _read_long(data, start)
    if length < 0 or pos + length > len(data):
        raise ValueError(f"string of {length} bytes at {start} in {len(data)}")
    text = data[pos:pos + length].decode()
    value, _ = _read_long(data, pos + length)
    return text, value


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro long (zig-zag varint) at `pos`, and the position after it."""
    shift = n = 0
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
