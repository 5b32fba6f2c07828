"""Avro bodies written by code generated for one schema: the writing twin of the reader.

fastavro's `schemaless_writer` walks the parsed schema for every datum; on the worker's
hot path (a running update per touched session per batch) that walk cost about as much
as building the update. The writer generated here is straight-line code per record, and
its bytes are exactly fastavro's (a test holds it to that). Types it does not cover
(enums, fixed, named references, logical types other than decimal on bytes) leave the
schema to fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

FastWriter = Callable[[Any], bytes]
"""`write(datum) -> bytes`: the Avro body of one datum."""

_Emit = Callable[[bytearray, Any], None]
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


class _Unsupported(Exception):
    """The schema uses something not generated here (fastavro writes it)."""


def write_long(out: bytearray, value: int) -> None:
    """Zig-zag varint (Avro int and long); a value outside the long range is refused."""
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"{value} does not fit an Avro long")
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _string(out: bytearray, value: str) -> None:
    raw = value.encode()
    write_long(out, len(raw))
    out += raw


def _bytes(out: bytearray, value: bytes) -> None:
    write_long(out, len(value))
    out += value


def _double(out: bytearray, value: float) -> None:
    out += _pack_double(value)


def _float(out: bytearray, value: float) -> None:
    out += _pack_float(value)


def _boolean(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def _null(out: bytearray, value: None) -> None:
    if value is not None:
        raise TypeError(f"{value!r} is not null")


_PRIMITIVE_EMITTERS: dict[str, _Emit] = {
    "null": _null,
    "boolean": _boolean,
    "int": write_long,
    "long": write_long,
    "float": _float,
    "double": _double,
    "string": _string,
    "bytes": _bytes,
}


def _decimal_emitter(precision: int, scale: int) -> _Emit:
    """As fastavro: the unscaled value as minimal big-endian two's complement bytes."""
    def emit(out: bytearray, value: Decimal) -> None:
        sign, digits, exponent = value.as_tuple()
        if len(digits) > precision:
            raise ValueError("The decimal precision is bigger than allowed by schema")
        assert isinstance(exponent, int), f"{value} is not a finite decimal"
        delta = exponent + scale
        if delta < 0:
            raise ValueError("Scale provided in schema does not match the decimal")
        unscaled = 0
        for digit in digits:
            unscaled = unscaled * 10 + digit
        unscaled *= 10**delta
        size = (unscaled.bit_length() + 8) // 8
        if sign:
            unscaled = -unscaled
        _bytes(out, unscaled.to_bytes(size, byteorder="big", signed=True))

    return emit


def _emitter_for(schema: Any) -> _Emit:
    if (isinstance(schema, dict) and "logicalType" not in schema
            and schema["type"] in _PRIMITIVE_EMITTERS):
        schema = schema["type"]
    if isinstance(schema, str):
        if schema not in _PRIMITIVE_EMITTERS:
            raise _Unsupported(schema)  # a reference to a named type
        return _PRIMITIVE_EMITTERS[schema]
    if isinstance(schema, list):
        return _union_emitter(schema)
    if "logicalType" in schema:
        if schema["logicalType"] == "decimal" and schema["type"] == "bytes":
            return _decimal_emitter(int(schema["precision"]), int(schema.get("scale", 0)))
        raise _Unsupported(schema["logicalType"])
    if schema["type"] == "record":
        return _record_emitter(schema)
    if schema["type"] == "array":
        return _array_emitter(_emitter_for(schema["items"]))
    if schema["type"] == "map":
        return _map_emitter(_emitter_for(schema["values"]))
    raise _Unsupported(schema["type"])


def _union_emitter(branches: list[Any]) -> _Emit:
    """Only ["null", T] and [T, "null"]: other unions need fastavro's type matching."""
    if len(branches) != 2 or "null" not in branches or len(set(map(str, branches))) != 2:
        raise _Unsupported("union")
    null_index = branches.index("null")
    some = _emitter_for(branches[1 - null_index])
    null_byte, some_byte = 2 * null_index, 2 * (1 - null_index)

    def emit(out: bytearray, value: Any) -> None:
        if value is None:
            out.append(null_byte)
        else:
            out.append(some_byte)
            some(out, value)

    return emit


def _array_emitter(item: _Emit) -> _Emit:
    def emit(out: bytearray, values: Any) -> None:
        if len(values):
            write_long(out, len(values))
            for value in values:
                item(out, value)
        out.append(0)

    return emit


def _map_emitter(value_emitter: _Emit) -> _Emit:
    def emit(out: bytearray, values: dict[str, Any]) -> None:
        if values:
            write_long(out, len(values))
            for key, value in values.items():
                _string(out, key)
                value_emitter(out, value)
        out.append(0)

    return emit


def _record_emitter(schema: dict[str, Any]) -> _Emit:
    """Straight-line code for one record: no per-field dispatch on the hot path."""
    env: dict[str, Any] = {"_long": write_long, "_string": _string, "_double": _double}
    direct = {write_long: "_long", _string: "_string", _double: "_double"}
    lines = ["def emit(out, d):"]
    for i, field in enumerate(schema["fields"]):
        name = field["name"]
        value = f"d.get({name!r}, e{i}_default)" if "default" in field else f"d[{name!r}]"
        if "default" in field:
            env[f"e{i}_default"] = field["default"]
        emitter = _emitter_for(field["type"])
        call = direct.get(emitter)
        if call is None:
            env[f"e{i}"] = emitter
            call = f"e{i}"
        lines.append(f"    {call}(out, {value})")
    exec("\n".join(lines), env)  # noqa: S102 - source built above from field names only
    return env["emit"]


def compile_writer(schema: Any) -> FastWriter | None:
    """A writer generated for `schema`, or None where fastavro must write it."""
    try:
        emit = _emitter_for(schema)
    except _Unsupported:
        return None

    def write(datum: Any) -> bytes:
        out = bytearray()
        emit(out, datum)
        return bytes(out)

    return write
