"""Writer schemas from a Confluent Schema Registry, by id (the Confluent wire format)."""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from schemas.catalog import SchemaCatalog, SchemaVersion
from schemas.errors import DecodeError, RegistryError


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


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
