"""The Avro input tables and their views, generated from the row mappings and kept current.

The sink hands ClickHouse raw Avro bodies (sinks/avro_blocks.py) into Null tables whose
materialized views write the target tables (first created by migrations 0012-0014). Their
definitions are derived here: an input table's columns are the ChargingSession fields its
views read, typed from the Avro schema (plus the message's source for `sessions_in`); its
constraints refuse what the Python decoder refuses (a text that is not UTF-8, a float that
is not finite, an unknown state), so such a batch goes through Python, which dead-letters
the bad message; the views are the mappings' `view_sql`.

`migrate()` calls `apply_derived` after the SQL migrations: an input whose generated
definition (hashed, recorded in `derived_objects`) differs from the recorded one gets its
views and table dropped and created again. A Null table holds no rows, so nothing is lost;
an insert racing the swap fails and that batch goes through Python.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.catalog import default_catalog
from schemas.records import SessionState
from sinks.avro_blocks import SOURCE_SCHEMA
from sinks.errors import MigrationError
from sinks.mapping import Mapping
from sinks.row_mappings import CDR_ROW, SESSION_ROW, UPDATE_ROW

_PRIMITIVES = {"string": "String", "int": "Int32", "long": "Int64", "double": "Float64",
               "float": "Float32", "boolean": "Bool"}
_ZERO = {"string": "''", "double": "0", "float": "0"}


def clickhouse_type(avro: Any) -> str:
    """The ClickHouse column type ClickHouse's Avro input reads an Avro type into."""
    if isinstance(avro, list):
        (inner,) = [t for t in avro if t != "null"]
        return f"Nullable({clickhouse_type(inner)})"
    if isinstance(avro, str):
        return _PRIMITIVES[avro]
    if avro.get("logicalType") == "decimal":
        return f"Decimal({avro['precision']}, {avro['scale']})"
    if avro["type"] == "array":
        return f"Array({clickhouse_type(avro['items'])})"
    if avro["type"] == "record":
        return "Tuple(" + ", ".join(f"{f['name']} {clickhouse_type(f['type'])}"
                                    for f in avro["fields"]) + ")"
    return clickhouse_type(avro["type"])


def checks(expr: str, avro: Any) -> list[tuple[str, str]]:
    """(kind, SQL) of what the Python decoder refuses in a value of this type: text that
    is not UTF-8 ("utf8"), a float that is not finite ("finite")."""
    if isinstance(avro, list):
        (inner,) = [t for t in avro if t != "null"]
        zero = _ZERO.get(inner) if isinstance(inner, str) else None
        return checks(f"ifNull({expr}, {zero})", inner) if zero else []
    if avro in ("string", "double", "float"):
        return [("utf8", f"isValidUTF8({expr})") if avro == "string"
                else ("finite", f"isFinite({expr})")]
    if not isinstance(avro, dict):
        return []
    if avro["type"] == "array":
        return [(kind, f"arrayAll(x -> {sql}, {expr})") for kind, sql in checks("x", avro["items"])]
    if avro["type"] == "record":
        return [found for n, f in enumerate(avro["fields"], 1)
                for found in checks(f"{expr}.{n}", f["type"])]
    return []


@dataclass(frozen=True, slots=True)
class AvroInput:
    """A Null table taking ChargingSession bodies, and the views it feeds."""

    table: str
    mappings: tuple[Mapping, ...]
    sourced: bool = False
    """With the message's source after the fields (avro_blocks.sourced_container)."""
    checked: bool = False
    """With constraints refusing what the Python decoder refuses (module docstring)."""

    @property
    def fields(self) -> list[dict[str, Any]]:
        """The Avro fields the views read, in schema order (then the source, if sourced)."""
        text = "\n".join(m.sql_text() for m in self.mappings)
        read = [f for f in default_catalog().current("ChargingSession").parsed["fields"]
                if re.search(rf"\b{f['name']}\b", text)]
        return read + SOURCE_SCHEMA if self.sourced else read

    @property
    def columns(self) -> list[str]:
        """The columns an Avro insert names, in table order."""
        return [f["name"] for f in self.fields]

    def statements(self, database: str) -> list[str]:
        """Drop the views and the table, create them again (module docstring)."""
        views = [m.view for m in self.mappings]
        return [*(f"DROP VIEW IF EXISTS {database}.{v}" for v in views),
                f"DROP TABLE IF EXISTS {database}.{self.table}", self._create(database),
                *(m.view_sql(database, self.table) for m in self.mappings)]

    def _create(self, database: str) -> str:
        lines = [f"{f['name']} {clickhouse_type(f['type'])}" for f in self.fields]
        if self.checked:
            lines += self._constraints()
        body = ",\n    ".join(lines)
        return f"CREATE TABLE {database}.{self.table}\n(\n    {body}\n)\nENGINE = Null"

    def _constraints(self) -> list[str]:
        found = [c for f in self.fields for c in checks(f["name"], f["type"])]
        states = ", ".join(f"'{s.value}'" for s in SessionState)
        return [f"CONSTRAINT known_state CHECK state IN ({states})",
                *(f"CONSTRAINT {kind} CHECK " + " AND ".join(sql for k, sql in found if k == kind)
                  for kind in ("finite", "utf8") if any(k == kind for k, _ in found))]

    def checksum(self) -> str:
        return hashlib.sha256("\n".join(self.statements("{database}")).encode()).hexdigest()


SESSIONS_IN = AvroInput("sessions_in", (SESSION_ROW, CDR_ROW), sourced=True, checked=True)
"""First versions of completed sessions (sinks/session_sink.py)."""
UPDATES_IN = AvroInput("session_updates_in", (UPDATE_ROW,))
"""Running updates (sinks/session_update_sink.py)."""
INPUTS = (UPDATES_IN, SESSIONS_IN)

DERIVED_TABLE = ("CREATE TABLE IF NOT EXISTS {database}.derived_objects (name String, "
                 "checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
                 "ENGINE = MergeTree ORDER BY name")
"""What `apply_derived` recorded: the checksum of each input's definition, newest wins."""


def apply_derived(client: Client, database: str, run: Callable[[str], Any],
                  inputs: tuple[AvroInput, ...] = INPUTS) -> list[str]:
    """(Re)create each input whose definition changed since it was recorded; their names.

    `run` sends one DDL statement (`migrate` rewrites it for a cluster); `database` is
    checked by the caller. Raises MigrationError naming the input when a statement fails.
    """
    run(DERIVED_TABLE.format(database=database))
    recorded = dict(client.query(
        "SELECT name, argMax(checksum, applied_at) FROM {db:Identifier}.derived_objects "
        "GROUP BY name", parameters={"db": database}).result_rows)
    done: list[str] = []
    for avro_input in inputs:
        checksum = avro_input.checksum()
        if recorded.get(avro_input.table) == checksum:
            continue
        try:
            for statement in avro_input.statements(database):
                run(statement)
        except Exception as exc:  # noqa: BLE001 - report the input, keep the cause
            raise MigrationError(f"derived views of {avro_input.table} failed: {exc}") from exc
        client.insert(f"{database}.derived_objects", [(avro_input.table, checksum)],
                      column_names=["name", "checksum"])
        done.append(avro_input.table)
    return done
