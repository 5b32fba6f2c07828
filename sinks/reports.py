"""Named report queries over ClickHouse, each returning a printable/exportable Report.

Where a rollup answers (migration 0008: station_daily, hourly_load, vehicle_monthly) a
report reads it, so a report costs the same at 10 thousand or 10 million sessions; what
no rollup holds reads `charging_sessions FINAL`, where a session counts once at its latest
version. Rollups follow corrections (they sum `sign * x`), so both give the same numbers.
Rollup days are UTC days of the session's start; a report asked for another time zone
reads the sessions table instead.

Parameters are bound server-side (`{name:Type}`), the database name as an Identifier: no
user input is ever formatted into SQL. Money stays Decimal and is grouped per currency,
never summed across currencies. Filters: `date_from`/`date_to` (inclusive days),
`station`, `vehicle`, where the report's grain allows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver.client import Client

from infra.errors import UsageError
from sinks.clickhouse import check_identifier

SESSIONS = "{db:Identifier}.charging_sessions FINAL"
FAULT_STOP_REASONS = ("EmergencyStop", "PowerLoss", "HardReset", "SoftReset", "Reboot",
                      "ImmediateReset", "GroundFault", "OvercurrentFault", "PowerQuality",
                      "Timeout")
"""OCPP stop reasons that mean the charger (not the driver) ended the session; with the
incomplete sessions these are the "failed" ones (the same list is in 0008_rollups.sql)."""


def utilization_sql(plugged_ms: str, connectors: str, observed_ms: str) -> str:
    """Utilization %, the one definition every report uses (docs/bi.md): time plugged in
    during the period over (connectors seen at the station x observed time of the period).

    The observed time is the part of the period the data covers: from the start of the first
    hour anyone in the network was plugged in to the end of the last such hour (within the
    date range; a station filter does not shrink it, so a station busy for one hour of a
    day is not 100 % utilized), never padded to whole days: a 6-hour run is judged on its
    6 hours.
    """
    return f"round(100 * ({plugged_ms}) / (({connectors}) * ({observed_ms})), 2)"


OBSERVED_HOURS = """
        hours AS (
            SELECT station_id, hour, plugged_ms
            FROM {{db:Identifier}}.hourly_load FINAL
            WHERE {where} AND plugged_ms > 0),
        span AS (
            SELECT toInt64(toUnixTimestamp(min(hour))) * 1000 AS p0,
                   (toInt64(toUnixTimestamp(max(hour))) + 3600) * 1000 AS p1
            FROM {{db:Identifier}}.hourly_load FINAL
            WHERE {span_where} AND plugged_ms > 0),
        conn AS (
            SELECT station_id, length(groupUniqArrayArray(connectors)) AS n
            FROM {{db:Identifier}}.station_daily WHERE {conn_where}
            GROUP BY station_id)"""
"""CTEs of the utilization definition: plugged time per station and hour (the hourly_load
rollup: plugged time overlapping each hour), the observed span [p0, p1) in epoch ms, and
the connectors each station was seen with in the period."""


@dataclass(frozen=True, slots=True)
class Report:
    columns: list[str]
    rows: list[tuple]

    def renamed(self, names: dict[str, str]) -> Report:
        """The same report with some columns renamed (SQL aliases must not shadow columns)."""
        return Report([names.get(c, c) for c in self.columns], self.rows)


def run(client: Client, sql: str, database: str, **params: Any) -> Report:
    """Run one report query with bound parameters; the database is bound as `db`."""
    result = client.query(sql, parameters={"db": check_identifier(database), **params})
    return Report(list(result.column_names), [tuple(row) for row in result.result_rows])


def as_date(value: date | str | None, option: str) -> date | None:
    """A day filter; UsageError naming the command-line `option` (e.g. "--from") if bad."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} must be a date like 2024-05-31, not {value!r}") from None


def as_month(value: date | str | None) -> date | None:
    if isinstance(value, str) and len(value) == 7:
        value = f"{value}-01"
    try:
        day = as_date(value, "--month")
    except UsageError:
        raise UsageError(f"--month must be a month like 2024-05, not {value!r}") from None
    return day.replace(day=1) if day else None


def as_tz(value: str | None) -> str:
    """A time zone name ClickHouse and Python both know; UTC when none is given."""
    if value is None:
        return "UTC"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz must be a time zone like Europe/Berlin or UTC, "
                         f"not {value!r}") from None
    return value


def day_range(date_from: date | str | None, date_to: date | str | None,
              ) -> tuple[date | None, date | None]:
    """The checked inclusive `--from`/`--to` days; `--from` after `--to` is refused."""
    first, last = as_date(date_from, "--from"), as_date(date_to, "--to")
    if first is not None and last is not None and first > last:
        raise UsageError(f"--from {first} is after --to {last}")
    return first, last


def where(day: str | None = None, station: str | None = None,
          vehicle: str | None = None) -> str:
    """The filter conditions for these columns, bound to date_from/date_to/station/vehicle."""
    parts = ["1"]
    if day:
        parts += [f"({{date_from:Nullable(Date)}} IS NULL OR {day} >= "
                  "{date_from:Nullable(Date)})",
                  f"({{date_to:Nullable(Date)}} IS NULL OR {day} <= {{date_to:Nullable(Date)}})"]
    if station:
        parts.append(f"({{station:Nullable(String)}} IS NULL OR {station} = "
                     "{station:Nullable(String)})")
    if vehicle:
        parts.append(f"({{vehicle:Nullable(String)}} IS NULL OR {vehicle} = "
                     "{vehicle:Nullable(String)})")
    return " AND ".join(parts)


def filters(date_from: date | str | None = None, date_to: date | str | None = None,
            station: str | None = None, vehicle: str | None = None) -> dict[str, Any]:
    """Checked filter parameters for `where`."""
    first, last = day_range(date_from, date_to)
    return {"date_from": first, "date_to": last, "station": station, "vehicle": vehicle}


_SUMMARY_FILTERED = f"""
        SELECT currency, count() AS sessions, countIf(state = 'completed') AS completed,
               countIf(state = 'incomplete') AS incomplete,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh, sum(cost) AS revenue,
               if(energy_kwh > 0,
                  round(toDecimal128(revenue, 6) / toDecimal128(energy_kwh, 6), 4),
                  NULL) AS avg_price_per_kwh,
               uniqExact(station_id) AS stations,
               uniqExactIf(vehicle_id, ifNull(vehicle_id, '') != '') AS vehicles
        FROM {SESSIONS}
        WHERE {where("toDate(start_time, 'UTC')", "station_id", "vehicle_id")}
        GROUP BY currency
        ORDER BY currency"""
"""`summary` with filters: the sessions themselves (the rollups hold no vehicle per day)."""


def summary(client: Client, database: str, date_from: date | str | None = None,
            date_to: date | str | None = None, station: str | None = None,
            vehicle: str | None = None) -> Report:
    """Sessions, completed vs incomplete, energy, revenue and price per kWh, stations and
    vehicles, per currency; filters: UTC start days, station, vehicle."""
    params = filters(date_from, date_to, station, vehicle)
    if any(v is not None for v in params.values()):
        return run(client, _SUMMARY_FILTERED, database, **params)
    return run(client, """
        SELECT currency, sum(d.sessions) AS sessions, sum(d.completed) AS completed,
               sum(d.incomplete) AS incomplete,
               round(sum(d.energy_wh) / 1000, 3) AS energy_kwh,
               sum(d.revenue) AS revenue,
               if(energy_kwh > 0,
                  round(toDecimal128(revenue, 6) / toDecimal128(energy_kwh, 6), 4),
                  NULL) AS avg_price_per_kwh,
               uniqExactIf(station_id, d.sessions != 0) AS stations,
               any(v.vehicles) AS vehicles
        FROM {db:Identifier}.station_daily AS d
        LEFT JOIN (SELECT currency, countIf(n != 0 AND vehicle_id != '') AS vehicles
                   FROM (SELECT currency, vehicle_id, sum(sessions) AS n
                         FROM {db:Identifier}.vehicle_monthly GROUP BY currency, vehicle_id)
                   GROUP BY currency) AS v USING currency
        GROUP BY currency
        HAVING sessions != 0
        ORDER BY currency""", database)


def top_stations(client: Client, database: str, limit: int | str = 10, **filter_args: Any,
                 ) -> Report:
    """Stations by revenue, with their sessions and energy."""
    return run(client, f"""
        SELECT station_id, currency, sum(sessions) AS sessions_,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh, sum(revenue) AS revenue_
        FROM {{db:Identifier}}.station_daily
        WHERE {where("day", "station_id")}
        GROUP BY station_id, currency
        HAVING sessions_ != 0
        ORDER BY revenue_ DESC, station_id
        LIMIT {{limit:UInt32}}""", database, limit=int(limit), **filters(**filter_args)
    ).renamed({"sessions_": "sessions", "revenue_": "revenue"})


def session_by_id(client: Client, database: str, session_id: str) -> dict[str, Any] | None:
    """Every column of one session at its latest version, or None: the support-call lookup.

    A primary-key point query (charging_sessions is ordered by session_id). It reads the
    session's few rows without FINAL (FINAL costs ~10x here) and keeps the highest version
    whose signs do not cancel out.
    """
    report = run(client, """
        SELECT * FROM {db:Identifier}.charging_sessions
        WHERE session_id = {session_id:String}""", database, session_id=session_id)
    rows = [dict(zip(report.columns, row, strict=True)) for row in report.rows]
    live = latest_live(rows)
    if live is None:
        return None
    del live["sign"]
    return live


def latest_live(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of one session's rows, the highest version whose +1 was not cancelled by a -1."""
    net: dict[int, int] = {}
    for row in rows:
        net[row["version"]] = net.get(row["version"], 0) + row["sign"]
    live = [v for v, n in net.items() if n > 0]
    if not live:
        return None
    top = max(live)
    return next(dict(row) for row in rows if row["version"] == top and row["sign"] > 0)


def sessions_by_transaction(client: Client, database: str, station: str,
                            transaction_id: str) -> list[dict[str, Any]]:
    """Every session a charger's own transaction id names on this station, newest first.

    Chargers reuse transaction ids (counter resets, recycled 2.0.1 ids), and the stitcher
    then opens a new session: one id can name several sessions, and a support call must
    see them all.
    """
    found = run(client, """
        SELECT session_id, max(start_time) AS started FROM {db:Identifier}.session_keys
        WHERE station_id = {station:String} AND transaction_id = {tx:String}
        GROUP BY session_id
        ORDER BY started DESC, session_id DESC""", database, station=station, tx=transaction_id)
    sessions = (session_by_id(client, database, row[0]) for row in found.rows)
    return [s for s in sessions if s is not None]


def session_by_transaction(client: Client, database: str, station: str,
                           transaction_id: str) -> dict[str, Any] | None:
    """The newest session a charger's own transaction id names on this station, or None."""
    found = sessions_by_transaction(client, database, station, transaction_id)
    return found[0] if found else None


_DAILY_MEASURES = """
       sum(sessions) AS sessions_, sum(completed) AS completed_, sum(incomplete) AS incomplete_,
       sum(failed) AS failed_, sum(zero_energy) AS zero_energy_,
       round(sum(energy_wh) / 1000, 3) AS energy_kwh, sum(revenue) AS revenue_,
       round(sum(plugged_ms) / 60000, 1) AS plugged_min,
       round(sum(charging_ms) / 60000, 1) AS charging_min"""
_DAILY_NAMES = {"sessions_": "sessions", "completed_": "completed", "incomplete_": "incomplete",
                "failed_": "failed", "zero_energy_": "zero_energy", "revenue_": "revenue"}


_DAILY_UTILIZATION = f"""
        util AS (
            SELECT toDate(h.hour, {{tz:String}}) AS day, station_id,
                   {utilization_sql(
                       "sum(h.plugged_ms)", "any(c.n)",
                       "greatest(0, least(toInt64(toUnixTimestamp(toDateTime(day + 1, "
                       "{tz:String}))) * 1000, any(s.p1)) - greatest(toInt64(toUnixTimestamp("
                       "toDateTime(day, {tz:String}))) * 1000, any(s.p0)))")} AS pct
            FROM hours AS h JOIN conn AS c USING station_id CROSS JOIN span AS s
            GROUP BY day, station_id)"""
"""Utilization of each station on each day (in `tz`): `utilization_sql` over the part of
that day inside the observed span."""


def station_daily(client: Client, database: str, date_from: date | str | None = None,
                  date_to: date | str | None = None, station: str | None = None,
                  vehicle: str | None = None, tz: str | None = None) -> Report:
    """Per day and station: sessions, failed and zero-energy ones, energy, revenue, plugged
    and charging minutes, utilization % (`utilization_sql`: plugged time that day over
    connectors seen x the day's observed hours; empty with a vehicle filter, since a
    connector's occupancy is not one vehicle's).

    Sessions count on the day they started, in `tz`; `date_from`/`date_to` are inclusive.
    UTC without a vehicle filter reads the station_daily rollup.
    """
    params, tz = filters(date_from, date_to, station, vehicle), as_tz(tz)
    ctes = "WITH " + OBSERVED_HOURS.format(
        where=where("toDate(hour, {tz:String})", "station_id"),
        span_where=where("toDate(hour, {tz:String})"),
        conn_where=where("day", "station_id")) + "," + _DAILY_UTILIZATION
    if tz == "UTC" and vehicle is None:
        return run(client, f"""{ctes}
            SELECT day, station_id, currency, {_DAILY_MEASURES}, any(u.pct) AS utilization_pct
            FROM {{db:Identifier}}.station_daily AS d
            LEFT JOIN util AS u USING (day, station_id)
            WHERE {where("day", "station_id")}
            GROUP BY day, station_id, currency
            HAVING sessions_ != 0
            ORDER BY day, station_id, currency""", database, tz=tz, **params
                   ).renamed(_DAILY_NAMES)
    return run(client, f"""{ctes}
        SELECT day, station_id, currency, {_DAILY_MEASURES},
               if({{vehicle:Nullable(String)}} IS NULL, any(u.pct), NULL) AS utilization_pct
        FROM (SELECT *, toDate(start_time, {{tz:String}}) AS day, state = 'incomplete'
                        OR ifNull(stop_reason, '') IN {{faults:Array(String)}} AS failed,
                     energy_wh <= 0 AS zero_energy, state = 'completed' AS completed,
                     state = 'incomplete' AS incomplete, 1 AS sessions, cost AS revenue
              FROM {SESSIONS}
              WHERE {where(None, "station_id", "vehicle_id")}) AS d
        LEFT JOIN util AS u USING (day, station_id)
        WHERE {where("day")}
        GROUP BY day, station_id, currency
        ORDER BY day, station_id, currency""", database, tz=tz,
        faults=list(FAULT_STOP_REASONS), **params).renamed(_DAILY_NAMES)


def cost_per_vehicle(client: Client, database: str, month: date | str | None = None,
                     vehicle: str | None = None) -> Report:
    """Per vehicle (NULL: not identified): sessions, energy, total and average cost.

    `month` is `YYYY-MM` (or any date in it): the UTC month of the session's start.
    """
    return run(client, """
        SELECT nullIf(vehicle_id, '') AS vehicle, currency, sum(sessions) AS sessions_,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh,
               sum(cost) AS total_cost,
               round(total_cost / sessions_, 2) AS avg_cost
        FROM {db:Identifier}.vehicle_monthly
        WHERE ({month:Nullable(Date)} IS NULL OR month = {month:Nullable(Date)})
          AND ({vehicle:Nullable(String)} IS NULL OR vehicle_id = {vehicle:Nullable(String)})
        GROUP BY vehicle_id, currency
        HAVING sessions_ != 0
        ORDER BY total_cost DESC, vehicle_id DESC""", database, month=as_month(month),
        vehicle=vehicle).renamed({"vehicle": "vehicle_id", "sessions_": "sessions"})


def cost_per_station(client: Client, database: str, **filter_args: Any) -> Report:
    """Per station: sessions, energy, revenue, average cost and price per kWh."""
    return run(client, f"""
        SELECT station_id, currency, sum(sessions) AS sessions_,
               round(sum(energy_wh) / 1000, 3) AS energy_kwh, sum(revenue) AS revenue_,
               round(revenue_ / sessions_, 2) AS avg_cost,
               if(energy_kwh > 0, round(toDecimal128(revenue_, 6)
                                        / toDecimal128(energy_kwh, 6), 4), NULL)
                   AS avg_price_per_kwh
        FROM {{db:Identifier}}.station_daily
        WHERE {where("day", "station_id")}
        GROUP BY station_id, currency
        HAVING sessions_ != 0
        ORDER BY revenue_ DESC, station_id""", database, **filters(**filter_args)
    ).renamed({"sessions_": "sessions", "revenue_": "revenue"})
