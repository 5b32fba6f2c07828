"""Named report queries over ClickHouse, each returning a printable/exportable Report.

Every query reads `charging_sessions` with FINAL, so a session counts once at its latest
version even before parts merge. Parameters are bound server-side (`{name:Type}`), the
database name as an Identifier: no user input is ever formatted into SQL. Money stays
Decimal and is grouped per currency, never summed across currencies. "Day" is taken in
`tz` (a station's local zone is configuration; UTC by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.clickhouse import check_identifier

SESSIONS = "{db:Identifier}.charging_sessions FINAL"


@dataclass(frozen=True, slots=True)
class Report:
    columns: list[str]
    rows: list[tuple]


def _run(client: Client, sql: str, database: str, **params: Any) -> Report:
    result = client.query(sql, parameters={"db": check_identifier(database), **params})
    return Report(list(result.column_names), [tuple(row) for row in result.result_rows])


def _date(value: date | str | None, name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date like 2024-05-31, not {value!r}") from None


def _month(value: date | str | None) -> date | None:
    if isinstance(value, str) and len(value) == 7:
        value = f"{value}-01"
    day = _date(value, "month")
    return day.replace(day=1) if day else None


def summary(client: Client, database: str) -> Report:
    """Sessions, completed vs incomplete, energy, revenue and price per kWh, per currency."""
    return _run(client, f"""
        SELECT currency,
               count() AS sessions,
               countIf(state = 'completed') AS completed,
               countIf(state = 'incomplete') AS incomplete,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh,
               sum(cost) AS revenue,
               if(sum(energy_wh) > 0,
                  round(toDecimal128(sum(cost), 6) / toDecimal128(sum(energy_wh) / 1000, 6), 4),
                  NULL) AS avg_price_per_kwh,
               uniqExact(station_id) AS stations,
               uniqExact(vehicle_id) AS vehicles
        FROM {SESSIONS}
        GROUP BY currency
        ORDER BY currency""", database)


def top_stations(client: Client, database: str, limit: int | str = 10) -> Report:
    """Stations by revenue, with their sessions and energy."""
    return _run(client, f"""
        SELECT station_id, currency,
               count() AS sessions,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh,
               sum(cost) AS revenue
        FROM {SESSIONS}
        GROUP BY station_id, currency
        ORDER BY revenue DESC, station_id
        LIMIT {{limit:UInt32}}""", database, limit=int(limit))


def session_by_id(client: Client, database: str, session_id: str) -> dict[str, Any] | None:
    """Every column of one session at its latest version, or None: the support-call lookup."""
    report = _run(client, f"""
        SELECT * FROM {SESSIONS}
        WHERE session_id = {{session_id:String}}
        ORDER BY version DESC
        LIMIT 1""", database, session_id=session_id)
    return dict(zip(report.columns, report.rows[0], strict=True)) if report.rows else None


def station_daily(client: Client, database: str, date_from: date | str | None = None,
                  date_to: date | str | None = None, station: str | None = None,
                  tz: str = "UTC") -> Report:
    """Per day and station: sessions, completed/incomplete, energy, revenue, plugged time.

    `date_from` and `date_to` are inclusive; days are counted in `tz`.
    """
    return _run(client, f"""
        SELECT toDate(start_time, {{tz:String}}) AS day, station_id, currency,
               count() AS sessions,
               countIf(state = 'completed') AS completed,
               countIf(state = 'incomplete') AS incomplete,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh,
               sum(cost) AS revenue,
               round(avg(plugged_ms) / 60000, 1) AS avg_plugged_min
        FROM {SESSIONS}
        WHERE ({{date_from:Nullable(Date)}} IS NULL OR day >= {{date_from:Nullable(Date)}})
          AND ({{date_to:Nullable(Date)}} IS NULL OR day <= {{date_to:Nullable(Date)}})
          AND ({{station:Nullable(String)}} IS NULL OR station_id = {{station:Nullable(String)}})
        GROUP BY day, station_id, currency
        ORDER BY day, station_id, currency""", database,
        date_from=_date(date_from, "date_from"), date_to=_date(date_to, "date_to"),
        station=station, tz=tz)


def cost_per_vehicle(client: Client, database: str, month: date | str | None = None) -> Report:
    """Per vehicle (NULL: not identified): sessions, energy, total and average cost.

    `month` is `YYYY-MM` (or any date in it); the month of the session's start, in UTC.
    """
    return _run(client, f"""
        SELECT vehicle_id, currency,
               count() AS sessions,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh,
               sum(cost) AS total_cost,
               round(total_cost / count(), 2) AS avg_cost
        FROM {SESSIONS}
        WHERE ({{month:Nullable(Date)}} IS NULL
               OR toStartOfMonth(start_time) = {{month:Nullable(Date)}})
        GROUP BY vehicle_id, currency
        ORDER BY total_cost DESC, vehicle_id""", database, month=_month(month))
