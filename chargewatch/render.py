"""Printing reports for people (tables) and machines (CSV, JSON)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table


def plain(value: Any) -> Any:
    """A JSON-friendly value: Decimals as strings (money stays exact), times as ISO-8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**53 else value
    return value


def to_json(data: Any) -> str:
    return orjson.dumps(data, default=plain,
                        option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATETIME).decode()


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table",
               title: str | None = None, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        records = [{c: plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        out.write(to_json(records) + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([plain(v) for v in row])
        out.write(buffer.getvalue())
    else:
        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*[_cell(v) for v in row])
        _console(out).print(table)


def print_record(record: dict[str, Any], fmt: str = "table", title: str | None = None,
                 out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(to_json({k: plain(v) for k, v in record.items()}) + "\n")
        return
    print_rows(["field", "value"], [(k, v) for k, v in record.items()], fmt, title, out)


PIPE_WIDTH = 100_000
"""Piped output is as wide as the table needs: nothing is cut to "…" for a file or `grep`."""


def _console(out: TextIO) -> Console:
    """A terminal's own width (narrow columns fold, never cut), or no limit when piped."""
    is_terminal = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, width=None if is_terminal else PIPE_WIDTH)


def _cell(value: Any) -> str:
    value = plain(value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    if value is None:
        return ""
    return str(value)
