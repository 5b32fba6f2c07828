"""The charging_sessions row and the cdrs row: the one Python definition of each mapping.

Times are epoch ms (DateTime64(3) columns take them); stored rows are read back with the
times converted to epoch ms again, so a stored row compares equal to a freshly built one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from charging.cdr import Cdr, Price
from schemas.records import ChargingSession, SessionPeriod
from sinks.clickhouse import check_identifier

SESSION_COLUMNS = [
    "session_id", "version", "sign", "state", "station_id", "connector_id", "transaction_id",
    "id_tag", "vehicle_id", "start_time", "end_time", "meter_start_wh", "meter_end_wh", "energy_wh",
    "soc_start_pct", "soc_end_pct", "max_power_w", "avg_power_w", "charging_ms", "plugged_ms",
    "cost", "currency", "event_count", "stop_reason", "flags", "_topic", "_partition", "_offset",
]
SESSION_AS_MS = {"start_time": "toUnixTimestamp64Milli(start_time)",
                 "end_time": "toUnixTimestamp64Milli(end_time)"}
"""Stored times read back as epoch ms, the form `session_row` writes."""

CDR_COLUMNS = [
    "cdr_id", "session_id", "session_version", "issued_version", "credit",
    "credit_reference_id", "station_id", "connector_id", "id_tag", "vehicle_id", "start_time",
    "end_time", "currency", "tariff_id", "total_cost_excl_vat", "total_cost_incl_vat",
    "fixed_cost_excl_vat", "fixed_cost_incl_vat", "total_energy_wh", "energy_cost_excl_vat",
    "energy_cost_incl_vat", "total_time_ms", "time_cost_excl_vat", "time_cost_incl_vat",
    "total_parking_ms", "parking_cost_excl_vat", "parking_cost_incl_vat", "periods",
    "last_updated",
]
_CDR_MS = {"start_time": "toUnixTimestamp64Milli(start_time)",
           "end_time": "toUnixTimestamp64Milli(end_time)",
           "last_updated": "toUnixTimestamp64Milli(last_updated)"}


def session_row(session: ChargingSession, topic: str, partition: int, offset: int,
                sign: int = 1) -> tuple:
    """The charging_sessions row of one session; times stay epoch ms (DateTime64(3) takes them).

    `sign` -1 makes the cancel row of a stored version (sinks/session_sink.py).
    """
    s = session
    return (s.session_id, s.version, sign, str(s.state), s.station_id, s.connector_id,
            s.transaction_id, s.id_tag, s.vehicle_id, s.start_ms, s.end_ms, s.meter_start_wh,
            s.meter_end_wh, s.energy_wh, s.soc_start_pct, s.soc_end_pct, s.max_power_w,
            s.avg_power_w, s.charging_ms, s.plugged_ms, s.cost, s.currency, s.event_count,
            s.stop_reason, list(s.flags), topic, partition, offset)


def cdr_row(cdr: Cdr) -> tuple:
    """The cdrs row of one CDR (times as epoch ms, each period as a dict of its fields, the
    form ClickHouse reads and returns a named tuple in; migration 0014)."""
    c = cdr
    return (c.cdr_id, c.session_id, c.session_version, c.issued_version, c.credit,
            c.credit_reference_id, c.station_id, c.connector_id, c.id_tag, c.vehicle_id,
            c.start_ms, c.end_ms, c.currency, c.tariff_id, *_amounts(c.total_cost),
            *_amounts(c.total_fixed_cost), c.total_energy_wh, *_amounts(c.total_energy_cost),
            c.total_time_ms, *_amounts(c.total_time_cost), c.total_parking_ms,
            *_amounts(c.total_parking_cost), [asdict(p) for p in c.periods], c.last_updated_ms)


def _amounts(price: Price | None) -> tuple[Decimal | None, Decimal | None]:
    return (None, None) if price is None else (price.excl_vat, price.incl_vat)


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
