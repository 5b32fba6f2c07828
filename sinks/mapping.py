"""A row mapping declared once, column by column, and the two forms derived from it.

A `Mapping` says, for each column of a target table, how Python computes it from a record
and how ClickHouse computes it from the Avro input table's columns. From that one list
come the Python row builder (`builder`: a plain tuple function compiled once, as fast as a
hand-written one), the column names both paths insert under, and the materialized view
that writes the table from the Avro input (`view_sql`; sinks/derived_views.py keeps it
current). The declarations themselves are in sinks/row_mappings.py.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as Namespace
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    python: str
    """A Python expression over the builder's parameters."""
    sql: str
    """A ClickHouse expression over the input table's columns (and the mapping's helpers)."""


def field(name: str, record: str = "s") -> Column:
    """A column that is the record's attribute and the input's column of the same name."""
    return Column(name, f"{record}.{name}", name)


@dataclass(frozen=True, slots=True)
class Mapping:
    table: str
    view: str
    """The materialized view writing `table` from the Avro input table."""
    params: str
    """The Python row builder's parameters, as written in a `def`."""
    columns: tuple[Column, ...]
    helpers: tuple[tuple[str, str], ...] = ()
    """(name, SQL) pairs computed per input row before the columns, for the view only."""
    where: str | None = None
    """The input rows the view writes (SQL); None: all of them."""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def builder(self, namespace: Namespace[str, Any] | None = None) -> Callable[..., tuple]:
        """The row builder: `def row(<params>): return (<each column's python>,)`, compiled
        once; `namespace` holds the names the expressions call."""
        body = ", ".join(c.python for c in self.columns)
        source = f"def row({self.params}):\n    return ({body},)\n"
        scope = dict(namespace or {})
        exec(compile(source, f"<{self.table} row>", "exec"), scope)  # our own declaration
        return scope["row"]

    def sql_text(self) -> str:
        """Every SQL expression of the mapping, to find the input columns it reads."""
        parts = [c.sql for c in self.columns] + [sql for _, sql in self.helpers]
        return "\n".join([*parts, self.where or ""])

    def view_sql(self, database: str, source: str) -> str:
        """CREATE the materialized view writing `table` from `database.source`."""
        select = ",\n       ".join(c.sql if c.sql == c.name else f"{c.sql} AS {c.name}"
                                   for c in self.columns)
        rows = f"{database}.{source}"
        if self.helpers or self.where:
            helpers = "".join(f", {sql} AS {name}" for name, sql in self.helpers)
            where = f" WHERE {self.where}" if self.where else ""
            rows = f"(SELECT *{helpers} FROM {rows}{where})"
        return (f"CREATE MATERIALIZED VIEW {database}.{self.view} TO {database}.{self.table}\n"
                f"AS SELECT {select}\nFROM {rows}")
