"""The charging_sessions and cdrs rows (declared in sinks/row_mappings.py), read back.

Rows are written with times as epoch ms (DateTime64(3) columns take them); stored rows are
read back with the times converted to epoch ms again, so a stored row compares equal to a
freshly built one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clickhouse_connect.driver.client import Client

from charging.cdr import Cdr, Price
from schemas.records import SessionPeriod
from sinks.clickhouse import check_identifier
from sinks.row_mappings import CDR_ROW, SESSION_ROW

SESSION_COLUMNS = SESSION_ROW.column_names
SESSION_AS_MS = {"start_time": "toUnixTimestamp64Milli(start_time)",
                 "end_time": "toUnixTimestamp64Milli(end_time)"}
"""Stored times read back as epoch ms, the form `session_row` writes."""

CDR_COLUMNS = CDR_ROW.column_names
_CDR_MS = {"start_time": "toUnixTimestamp64Milli(start_time)",
           "end_time": "toUnixTimestamp64Milli(end_time)",
           "last_updated": "toUnixTimestamp64Milli(last_updated)"}


def cdr_from_row(row: dict[str, Any]) -> Cdr:
    """A CDR read back from `cdrs` (CDR_COLUMNS, times as epoch ms)."""

    def price(prefix: str) -> Price | None:
        incl = row[f"{prefix}_incl_vat"]
        return None if incl is None else Price(row[f"{prefix}_excl_vat"], incl)

    total = price("total_cost")
    assert total is not None  # the column is not nullable
    return Cdr(
        cdr_id=row["cdr_id"], session_id=row["session_id"],
        session_version=int(row["session_version"]), issued_version=int(row["issued_version"]),
        credit=bool(row["credit"]), credit_reference_id=row["credit_reference_id"],
        station_id=row["station_id"], connector_id=int(row["connector_id"]),
        id_tag=row["id_tag"], vehicle_id=row["vehicle_id"], start_ms=int(row["start_time"]),
        end_ms=int(row["end_time"]), currency=row["currency"], tariff_id=row["tariff_id"],
        periods=tuple(SessionPeriod(**p) for p in row["periods"]), total_cost=total,
        total_fixed_cost=price("fixed_cost"), total_energy_wh=float(row["total_energy_wh"]),
        total_energy_cost=price("energy_cost"), total_time_ms=int(row["total_time_ms"]),
        total_time_cost=price("time_cost"), total_parking_ms=int(row["total_parking_ms"]),
        total_parking_cost=price("parking_cost"), last_updated_ms=int(row["last_updated"]))


def load_cdrs(client: Client, database: str, session_ids: Iterable[str]) -> dict[str, list[Cdr]]:
    """The issued CDRs of these sessions, each session's in issue order (FINAL: a replayed
    row counts once). A primary-key lookup: `cdrs` is ordered by (session_id, cdr_id)."""
    ids = sorted(set(session_ids))
    if not ids:
        return {}
    columns = ", ".join(_CDR_MS.get(c, c) for c in CDR_COLUMNS)
    result = client.query(
        f"SELECT {columns} FROM {{db:Identifier}}.cdrs FINAL "
        "WHERE session_id IN {ids:Array(String)}",
        parameters={"db": check_identifier(database), "ids": ids})
    found: dict[str, list[Cdr]] = {}
    for values in result.result_rows:
        cdr = cdr_from_row(dict(zip(CDR_COLUMNS, values, strict=True)))
        found.setdefault(cdr.session_id, []).append(cdr)
    for cdrs in found.values():
        cdrs.sort(key=lambda c: c.issue_order)
    return found
