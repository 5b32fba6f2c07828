"""Avro bodies read by code generated for one schema: the reading twin of avro_writer.py.

`compile_reader` turns a record schema into straight-line Python that reads one body,
where the schema's types allow it; other schemas return None and are read by fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

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
