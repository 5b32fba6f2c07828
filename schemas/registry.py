"""Where writer schemas come from: the versions kept in `schemas/`, or a Confluent registry.

Every message names its writer schema, either by CRC-64-AVRO fingerprint (single-object
encoding) or by registry id (Confluent wire format). Decoding needs that writer schema to
read old messages with today's reader schema, so every version ever written is kept:
`schemas/<stem>.avsc` is the current version, `schemas/versions/<stem>.v<N>.avsc` the
older ones (the current one is numbered one past the highest old version).
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.avro_writer import FastWriter, compile_writer
from schemas.errors import DecodeError, RegistryError, SchemaCatalogError

SCHEMA_DIR = Path(__file__).resolve().parent
_OLD_VERSION = re.compile(r"^(?P<stem>[a-z0-9_]+)\.v(?P<version>[0-9]+)\.avsc$")


@dataclass(frozen=True, slots=True, eq=False)
class SchemaVersion:
    """One parsed writer/reader schema with the identity that goes on the wire."""

    name: str
    """Record name without namespace, e.g. `MeterEvent`."""
    version: int
    """1, 2, ... for versions kept in `schemas/`; 0 for a schema only the registry knows."""
    label: str
    """How error messages name it, e.g. `MeterEvent v2`."""
    text: str
    """The schema JSON as written in its file (what gets registered)."""
    parsed: Any
    """fastavro's parsed form, parsed once."""
    fingerprint: bytes
    """CRC-64-AVRO of the Parsing Canonical Form, little-endian (as single-object encoding)."""
    read: FastReader | None
    """Reads a body written with exactly this schema; None where the schema needs fastavro."""
    write: FastWriter | None
    """Writes a body with this schema; None where the schema needs fastavro."""


def _load(text: str, version: int, label: str | None = None) -> SchemaVersion:
    raw = json.loads(text)
    # A fresh named-type table per version: v1 and v2 of a record share one name.
    parsed = parse_schema(raw, named_schemas={})
    canonical = to_parsing_canonical_form(parsed)
    name = str(raw["name"]).rsplit(".", 1)[-1]
    return SchemaVersion(
        name=name,
        version=version,
        label=label or f"{name} v{version}",
        text=text,
        parsed=parsed,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        read=compile_reader(raw),
        write=compile_writer(raw),
    )


class SchemaCatalog:
    """Every schema version kept in the repository, indexed by record name and fingerprint."""

    def __init__(self, folder: Path = SCHEMA_DIR) -> None:
        old: dict[str, list[tuple[int, str]]] = {}
        for path in sorted((folder / "versions").glob("*.avsc")):
            match = _OLD_VERSION.match(path.name)
            if match is None:
                raise SchemaCatalogError(f"{path}: old versions must be named <stem>.v<N>.avsc")
            old.setdefault(match["stem"], []).append((int(match["version"]), path.read_text()))
        self._current: dict[str, SchemaVersion] = {}
        self._versions: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for path in sorted(folder.glob("*.avsc")):
            history = sorted(old.pop(path.stem, []))
            current = max((v for v, _ in history), default=0) + 1
            versions = [_load(text, v) for v, text in history]
            versions.append(_load(path.read_text(), current))
            self._add(path.stem, versions)
        if old:
            raise SchemaCatalogError(f"old versions without a current schema: {sorted(old)}")

    def _add(self, stem: str, versions: list[SchemaVersion]) -> None:
        name = versions[-1].name
        if any(v.name != name for v in versions) or name in self._current:
            raise SchemaCatalogError(f"{stem}: every version must define record {name} only once")
        for v in versions:
            if v.fingerprint in self._by_fingerprint:
                other = self._by_fingerprint[v.fingerprint].label
                raise SchemaCatalogError(f"{v.label} is identical to {other}: drop the copy")
            self._by_fingerprint[v.fingerprint] = v
        self._current[name] = versions[-1]
        self._versions[name] = versions

    def current(self, name: str) -> SchemaVersion:
        """Today's version of record `name`: what encoders write and decoders read into."""
        return self._current[name]

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """All kept versions of record `name`, oldest first."""
        return tuple(self._versions[name])

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def resolve(self, text: str, label: str) -> SchemaVersion:
        """A schema from elsewhere (the registry): the kept version if known, else a new one."""
        loaded = _load(text, 0, label)
        return self._by_fingerprint.get(loaded.fingerprint, loaded)

    def describe(self) -> str:
        """One line listing what is known, for error messages."""
        return "; ".join(
            f"{name} " + ", ".join(f"v{v.version}" for v in versions)
            for name, versions in sorted(self._versions.items())
        )


@cache
def default_catalog() -> SchemaCatalog:
    """The catalog of this package's `.avsc` files, parsed once per process."""
    return SchemaCatalog()


class ConfluentRegistry:
    """Schema ids from a Confluent Schema Registry, cached both ways (the hot path never waits).

    A registry that cannot be reached is a `RegistryError` (retry later); an id the registry
    does not know is a `DecodeError` (those bytes will never decode).
    """

    def __init__(self, url: str, conf: dict[str, Any] | None, catalog: SchemaCatalog) -> None:
        self._client = SchemaRegistryClient({**(conf or {}), "url": url})
        self._catalog = catalog
        self._ids: dict[tuple[str, bytes], int] = {}
        self._writers: dict[int, SchemaVersion] = {}
        self._lock = threading.Lock()

    def schema_id(self, subject: str, version: SchemaVersion) -> int:
        """Register `version` under `subject` (idempotent in the registry) and return its id."""
        key = (subject, version.fingerprint)
        found = self._ids.get(key)
        if found is not None:
            return found
        with self._lock:
            try:
                schema_id = self._client.register_schema(subject, Schema(version.text, "AVRO"))
            except Exception as exc:  # httpx transport errors as well as SchemaRegistryError
                raise RegistryError(
                    f"cannot register {version.label} under subject {subject!r}: {_one_line(exc)}"
                ) from exc
            self._ids[key] = schema_id
            self._writers.setdefault(schema_id, version)
        return schema_id

    def writer(self, schema_id: int) -> SchemaVersion:
        """The writer schema with registry id `schema_id`."""
        found = self._writers.get(schema_id)
        if found is not None:
            return found
        with self._lock:
            try:
                schema = self._client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise DecodeError(f"unknown schema id {schema_id}: {_one_line(exc)}") from exc
                raise RegistryError(
                    f"cannot fetch schema id {schema_id}: {_one_line(exc)}"
                ) from exc
            except Exception as exc:  # httpx transport errors: the registry may come back
                raise RegistryError(
                    f"cannot fetch schema id {schema_id}: {_one_line(exc)}"
                ) from exc
            if (schema.schema_type or "AVRO") != "AVRO" or schema.schema_str is None:
                raise DecodeError(f"schema id {schema_id} is {schema.schema_type}, not Avro")
            label = f"registry schema id {schema_id}"
            try:
                found = self._catalog.resolve(schema.schema_str, label)
            except Exception as exc:
                raise DecodeError(f"{label} is not a usable Avro record: {_one_line(exc)}") from exc
            self._writers[schema_id] = found
        return found


FastReader = Callable[[bytes, int], tuple[Any, int]]
"""`read(data, pos) -> (datum, end)`: one Avro datum from `data` starting at `pos`."""

_PRIMITIVES = {"null", "int", "long", "float", "double", "string", "bytes"}
_unpack_double = struct.Struct("<d").unpack_from
_unpack_float = struct.Struct("<f").unpack_from


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Zig-zag varint (Avro int and long)."""
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:  # a long takes at most 10 bytes; longer would cost quadratic time
            raise ValueError(f"varint longer than 10 bytes at offset {pos}")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = read_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise EOFError(f"{size} bytes announced at offset {pos}, {len(data) - pos} left")
    return data[pos:end], end


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    raw, end = _bytes(data, pos)
    return raw.decode(), end


def _null(data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _double(data: bytes, pos: int) -> tuple[float, int]:
    return _unpack_double(data, pos)[0], pos + 8


def _float(data: bytes, pos: int) -> tuple[float, int]:
    return _unpack_float(data, pos)[0], pos + 4


_PRIMITIVE_READERS: dict[str, FastReader] = {
    "null": _null,
    "int": read_long,
    "long": read_long,
    "float": _float,
    "double": _double,
    "string": read_string,
    "bytes": _bytes,
}


def _blocks(data: bytes, pos: int) -> tuple[int, int]:
    """Item count of the next array/map block (0 ends it); skips a negative count's size."""
    count, pos = read_long(data, pos)
    if count < 0:
        count = -count
        _, pos = read_long(data, pos)
    return count, pos


class _Unsupported(Exception):
    """The schema uses something the generated reader does not cover (fastavro reads it)."""


Builders = Mapping[str, Callable[..., Any]]
"""Record full name -> a function taking the record's field values in schema order and
returning what the reader yields for it (instead of a dict)."""


def _reader_for(schema: Any, builders: Builders) -> FastReader:
    if isinstance(schema, dict) and "logicalType" not in schema and schema["type"] in _PRIMITIVES:
        schema = schema["type"]
    if isinstance(schema, str):
        if schema not in _PRIMITIVE_READERS:
            raise _Unsupported(schema)  # boolean, or a reference to a named type
        return _PRIMITIVE_READERS[schema]
    if isinstance(schema, list):
        return _union_reader([_reader_for(branch, builders) for branch in schema])
    if "logicalType" in schema:
        if schema["logicalType"] == "decimal" and schema["type"] == "bytes":
            return _decimal_reader(int(schema.get("scale", 0)))
        raise _Unsupported(schema["logicalType"])
    if schema["type"] == "record":
        return _record_reader(schema, builders)
    if schema["type"] in ("array", "map"):
        return _collection_reader(
            schema["type"],
            _reader_for(schema["items" if schema["type"] == "array" else "values"], builders))
    raise _Unsupported(schema["type"])


def _decimal_reader(scale: int) -> FastReader:
    """Avro decimal on bytes: a big-endian two's-complement unscaled integer."""
    def read(data: bytes, pos: int) -> tuple[Decimal, int]:
        raw, pos = _bytes(data, pos)
        return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale), pos

    return read


def _union_reader(branches: list[FastReader]) -> FastReader:
    if len(branches) > 63:  # indices >= 64 take two varint bytes
        raise _Unsupported("union")
    by_byte = {2 * i: branch for i, branch in enumerate(branches)}

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        branch = by_byte.get(data[pos])
        if branch is None:
            raise ValueError(f"union branch byte {data[pos]} out of range at offset {pos}")
        return branch(data, pos + 1)

    return read


def _collection_reader(kind: str, item: FastReader) -> FastReader:
    def read_array(data: bytes, pos: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        count, pos = _blocks(data, pos)
        while count:
            for _ in range(count):
                value, pos = item(data, pos)
                out.append(value)
            count, pos = _blocks(data, pos)
        return out, pos

    def read_map(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        count, pos = _blocks(data, pos)
        while count:
            for _ in range(count):
                key, pos = read_string(data, pos)
                out[key], pos = item(data, pos)
            count, pos = _blocks(data, pos)
        return out, pos

    return read_array if kind == "array" else read_map


def _inline(var: str, ftype: Any, indent: str) -> list[str] | None:
    """Lines reading a long, int, string or double into `var` in place, the usual small
    varint without a call; anything unusual (long varint, negative or overlong length)
    takes the shared function, which also raises its errors. None: not inlined."""
    if isinstance(ftype, dict) and "logicalType" not in ftype:
        ftype = ftype.get("type")
    if ftype in ("long", "int"):
        return [f"{indent}b = data[pos]",
                f"{indent}if b < 128:",
                f"{indent}    {var} = (b >> 1) ^ -(b & 1)",
                f"{indent}    pos += 1",
                f"{indent}else:",
                f"{indent}    {var}, pos = _long(data, pos)"]
    if ftype == "string":
        return [f"{indent}b = data[pos]",
                f"{indent}end = pos + 1 + (b >> 1)",
                f"{indent}if b < 128 and not b & 1 and end <= size:",
                f"{indent}    {var} = data[pos + 1:end].decode()",
                f"{indent}    pos = end",
                f"{indent}else:",
                f"{indent}    {var}, pos = _string(data, pos)"]
    if ftype == "double":
        return [f"{indent}{var} = _unpack_double(data, pos)[0]",
                f"{indent}pos += 8"]
    return None


def _record_reader(schema: dict[str, Any], builders: Builders) -> FastReader:
    """Straight-line code for one record: the hot path pays no per-field dispatch."""
    env: dict[str, Any] = {"_long": read_long, "_string": read_string,
                           "_unpack_double": _unpack_double,
                           "build": builders.get(schema["name"])}
    lines = ["def read(data, pos):", "    size = len(data)"]
    names = []
    for i, field in enumerate(schema["fields"]):
        names.append(field["name"])
        ftype = field["type"]
        if isinstance(ftype, list) and len(ftype) == 2 and "null" in ftype:
            # ["null", T] inline: the common optional field costs one byte compare.
            some = ftype.index("null") ^ 1
            read_some = _inline(f"v{i}", ftype[some], "        ")
            if read_some is None:
                env[f"r{i}"] = _reader_for(ftype[some], builders)
                read_some = [f"        v{i}, pos = r{i}(data, pos)"]
            lines += [
                "    b = data[pos]",
                f"    if b == {2 * (1 - some)}:",
                f"        v{i} = None",
                "        pos += 1",
                f"    elif b == {2 * some}:",
                "        pos += 1",
                *read_some,
                "    else:",
                "        raise ValueError(f'union branch byte {b} out of range at offset {pos}')",
            ]
        else:
            read_value = _inline(f"v{i}", ftype, "    ")
            if read_value is None:
                env[f"r{i}"] = _reader_for(ftype, builders)
                read_value = [f"    v{i}, pos = r{i}(data, pos)"]
            lines += read_value
    if env["build"] is None:
        items = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names))
        lines.append(f"    return {{{items}}}, pos")
    else:
        lines.append(f"    return build({', '.join(f'v{i}' for i in range(len(names)))}), pos")
    exec("\n".join(lines), env)  # noqa: S102 - source built above from field positions only
    return env["read"]


def compile_reader(schema: Any, builders: Builders | None = None) -> FastReader | None:
    """A reader generated for `schema`, several times faster than fastavro's per-field calls.

    Used only where writer and reader schema are the same; anything needing schema
    resolution or a type not covered here (logical types other than decimal on bytes,
    enums, fixed, named references) is read by fastavro. Records named in `builders` are
    built by their function rather than read as dicts.
    """
    try:
        return _reader_for(schema, builders or {})
    except _Unsupported:
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
