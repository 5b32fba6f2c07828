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

from schemas.avro_reader import read_long, read_string
from schemas.avro_writer import write_long
from schemas.catalog import SchemaVersion

_SYNC = b"chargewatch.avro"
"""The 16-byte marker after each block; any constant works, it only has to match."""
_headers: dict[tuple[SchemaVersion, bool], bytes] = {}
SOURCE_SCHEMA = [{"name": "_topic", "type": "string"}, {"name": "_partition", "type": "int"},
                 {"name": "_offset", "type": "long"}]
"""The Avro fields `sourced_container` appends to each datum."""


def _varint(value: int) -> bytes:
    out = bytearray()
    write_long(out, value)
    return bytes(out)


def _header(schema: SchemaVersion, sourced: bool = False) -> bytes:
    """Magic, metadata (the writer schema, no compression) and the sync marker."""
    header = _headers.get((schema, sourced))
    if header is None:
        parsed = schema.parsed
        if sourced:
            parsed = deepcopy(parsed)
            parsed["fields"] = [*parsed["fields"], *SOURCE_SCHEMA]
        buf = BytesIO()
        container_writer(buf, parsed, [], codec="null", sync_marker=_SYNC)
        header = _headers[(schema, sourced)] = buf.getvalue()
    return header


def _block(header: bytes, count: int, data: bytes) -> bytes:
    return b"".join((header, _varint(count), _varint(len(data)), data, _SYNC))


def container(schema: SchemaVersion, bodies: Sequence[bytes]) -> bytes:
    """One container file holding `bodies` (Avro datums written with `schema`) as one block."""
    return _block(_header(schema), len(bodies), b"".join(bodies))


def sourced_container(schema: SchemaVersion, topic: str,
                      bodies: Sequence[tuple[int, int, bytes]]) -> bytes:
    """One container of `(partition, offset, body)` triples read from `topic`, each datum
    extended with the SOURCE_SCHEMA fields (module docstring)."""
    encoded = topic.encode()
    name = _varint(len(encoded)) + encoded
    data = b"".join(b"".join((body, name, _varint(partition), _varint(offset)))
                    for partition, offset, body in bodies)
    return _block(_header(schema, sourced=True), len(bodies), data)


def leading_string_and_int(data: bytes, start: int) -> tuple[str, int]:
    """The first two fields of a datum whose schema begins with a string and an int (a
    ChargingSession's id and version), read without decoding the rest.

    Raises ValueError, EOFError, IndexError or UnicodeDecodeError on bytes that cannot be
    those.
    """
    text, pos = read_string(data, start)
    value, _ = read_long(data, pos)
    return text, value
