"""The schema versions kept in `schemas/`: every version ever written, by name and fingerprint.

Every message names its writer schema, either by CRC-64-AVRO fingerprint (single-object
encoding) or by registry id (Confluent wire format). Decoding needs that writer schema to
read old messages with today's reader schema, so every version ever written is kept:
`schemas/<stem>.avsc` is the current version, `schemas/versions/<stem>.v<N>.avsc` the
older ones (the current one is numbered one past the highest old version).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.avro_reader import FastReader, compile_reader
from schemas.avro_writer import FastWriter, compile_writer
from schemas.errors import SchemaCatalogError

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
