"""Operational reports: station health, utilization and bottlenecks, charging patterns,
efficiency, anomalies. Same rules as sinks/reports.py (bound parameters, rollups first,
latest versions only); the definitions each report uses are in its docstring. Queries on
charging_sessions sum `sign` instead of reading FINAL: a superseded version's +1 and -1
rows cancel, so the sum is the latest versions' figure, at a fraction of FINAL's cost.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.reports import (
    OBSERVED_HOURS,
    SESSIONS,
    Report,
    as_tz,
    filters,
    run,
    utilization_sql,
    where,
)

QUEUE_GAP_MIN = 10
"""A session that starts within this many minutes after the previous one on the same
connector ended was queued behind it (back-to-back)."""
BLOCKING_IDLE_MIN = 15
"""A session idle (plugged in, not charging) at least this long, followed by a queued one,
blocked the connector."""
NEAR_FULL = 0.9
"""An hour is near full occupancy when on average this share of connectors was in use."""
LENGTH_BUCKETS_MIN = (15, 30, 60, 120, 240, 480)
ENERGY_BUCKETS_KWH = (5, 10, 20, 40, 60)


def station_health(client: Client, database: str, **filter_args: Any) -> Report:
    """Per day: sessions, failed ones (incomplete or ended by a charger fault) and their
    rate, zero-energy sessions, faults reported as anomalies (kinds containing "fault")
    and the stations they hit. Filters: date range, station.
    """
    return run(client, f"""
        SELECT day, sessions_, failed_, round(100 * failed_ / sessions_, 2) AS failure_rate_pct,
               zero_energy_, round(100 * zero_energy_ / sessions_, 2) AS zero_energy_pct,
               incomplete_, faults, stations_with_faults
        FROM (SELECT day, sum(sessions) AS sessions_, sum(failed) AS failed_,
                     sum(zero_energy) AS zero_energy_, sum(incomplete) AS incomplete_
              FROM {{db:Identifier}}.station_daily
              WHERE {where("day", "station_id")}
              GROUP BY day HAVING sessions_ != 0) AS s
        LEFT JOIN (SELECT toDate(detected_at, 'UTC') AS day, count() AS faults,
                          uniqExact(station_id) AS stations_with_faults
                   FROM {{db:Identifier}}.anomalies FINAL
                   WHERE positionCaseInsensitive(kind, 'fault') > 0
                     AND {where("toDate(detected_at, 'UTC')", "station_id")}
                   GROUP BY day) AS f USING day
        ORDER BY day""", database, **filters(**filter_args)).renamed(
        {"sessions_": "sessions", "failed_": "failed", "zero_energy_": "zero_energy",
         "incomplete_": "incomplete"})


# Per station: sessions that started within QUEUE_GAP_MIN of the previous one on the same
# connector ending (queued back-to-back), and the idle hours of vehicles that blocked them.
_QUEUE = f"""
            SELECT station_id,
                   sum(arrayCount((s, e) -> s - e <= {QUEUE_GAP_MIN} * 60000,
                                  arrayPopFront(st), arrayPopBack(en))) AS queued,
                   round(sum(arraySum((s, e, i) -> if(s - e <= {QUEUE_GAP_MIN} * 60000
                                                      AND i >= {BLOCKING_IDLE_MIN} * 60000, i, 0),
                                      arrayPopFront(st), arrayPopBack(en), arrayPopBack(idle)))
                         / 3600000, 2) AS blocking_idle_h
            FROM (SELECT station_id, arrayMap(x -> x.1, live) AS st,
                         arrayMap(x -> x.2, live) AS en, arrayMap(x -> x.3, live) AS idle
                  -- per connector, sorted by start; a version cancelled by its -1 row is
                  -- dropped (version is in the tuple, so equal values of two versions differ)
                  FROM (SELECT station_id, arraySort(arrayFilter(x -> NOT has(minus, x), plus))
                                                AS live
                        FROM (SELECT station_id, groupArrayIf(t, sign > 0) AS plus,
                                     groupArrayIf(t, sign < 0) AS minus
                              FROM (SELECT station_id, connector_id, sign,
                                           (toUnixTimestamp64Milli(start_time),
                                            toUnixTimestamp64Milli(end_time),
                                            toInt64(plugged_ms) - toInt64(charging_ms),
                                            version) AS t
                                    FROM {{db:Identifier}}.charging_sessions
                                    WHERE {where("toDate(start_time, 'UTC')", "station_id")})
                              GROUP BY station_id, connector_id)))
            GROUP BY station_id"""


def utilization(client: Client, database: str, limit: int | str = 50,
                **filter_args: Any) -> Report:
    """Per station, busiest first: connectors seen, plugged-in hours, utilization %
    (`sinks.reports.utilization_sql`, the same figure as station-daily's over one day),
    peak hourly occupancy %, hours near full occupancy, sessions queued back-to-back and
    idle hours of vehicles blocking a queue. Occupancy per hour comes from the hourly_load
    rollup (plugged time overlapping each hour).
    """
    params = filters(**filter_args)
    ctes = OBSERVED_HOURS.format(where=where("toDate(hour)", "station_id"),
                                 span_where=where("toDate(hour)"),
                                 conn_where=where("day", "station_id"))
    return run(client, f"""
        WITH {ctes},
        occupancy AS (
            SELECT station_id, any(c.n) AS connectors, sum(h.plugged_ms) AS plugged_ms,
                   max(h.plugged_ms) / 3600000 AS peak,
                   countIf(h.plugged_ms / 3600000 >= {NEAR_FULL} * c.n) AS near_full
            FROM hours AS h JOIN conn AS c USING station_id
            GROUP BY station_id),
        queue AS ({_QUEUE})
        SELECT o.station_id AS station_id, o.connectors AS connectors,
               round(o.plugged_ms / 3600000, 2) AS plugged_h,
               {utilization_sql("o.plugged_ms", "o.connectors", "s.p1 - s.p0")}
                   AS utilization_pct,
               round(100 * o.peak / o.connectors, 2) AS peak_occupancy_pct,
               o.near_full AS hours_near_full,
               q.queued AS queued_sessions, q.blocking_idle_h AS blocking_idle_h
        FROM occupancy AS o CROSS JOIN span AS s
        LEFT JOIN queue AS q USING station_id
        ORDER BY utilization_pct DESC, station_id
        LIMIT {{limit:UInt32}}""", database, limit=int(limit), **params)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def heatmap(client: Client, database: str, tz: str | None = None,
            **filter_args: Any) -> Report:
    """Sessions started per weekday (rows) and hour of day (columns h00..h23), in `tz`
    (default UTC; days of the date filter too). UTC reads the hourly_load rollup; another
    zone reads the sessions' start times, exact also for zones off UTC by half hours."""
    tz = as_tz(tz)
    if tz == "UTC":
        raw = run(client, f"""
            SELECT toDayOfWeek(hour) AS weekday, toHour(hour) AS hour_of_day,
                   sum(started) AS sessions
            FROM {{db:Identifier}}.hourly_load
            WHERE {where("toDate(hour)", "station_id")}
            GROUP BY weekday, hour_of_day""", database, **filters(**filter_args))
    else:
        raw = run(client, f"""
            SELECT toDayOfWeek(local) AS weekday, toHour(local) AS hour_of_day,
                   count() AS sessions
            FROM (SELECT toTimeZone(start_time, {{tz:String}}) AS local, station_id
                  FROM {SESSIONS})
            WHERE {where("toDate(local)", "station_id")}
            GROUP BY weekday, hour_of_day""", database, tz=tz, **filters(**filter_args))
    grid = [[0] * 24 for _ in range(7)]
    for weekday, hour_of_day, sessions in raw.rows:
        grid[weekday - 1][hour_of_day] = int(sessions)
    return Report(["weekday", *(f"h{h:02d}" for h in range(24))],
                  [(name, *row) for name, row in zip(_WEEKDAYS, grid, strict=True)])


def _distribution(client: Client, database: str, value: str, bounds: tuple[int, ...],
                  unit: str, filter_args: dict[str, Any]) -> Report:
    labels = [f"< {bounds[0]} {unit}"] + [
        f"{low}-{high} {unit}" for low, high in zip(bounds, bounds[1:], strict=False)
    ] + [f">= {bounds[-1]} {unit}"]
    raw = run(client, f"""
        SELECT arrayFirstIndex(b -> v < b, {{bounds:Array(Float64)}}) AS bucket, sum(sign) AS n
        FROM (SELECT {value} AS v, sign FROM {{db:Identifier}}.charging_sessions
              WHERE {where("toDate(start_time, 'UTC')", "station_id", "vehicle_id")})
        GROUP BY bucket""", database, bounds=[float(b) for b in bounds],
        **filters(**filter_args))
    counts = [0] * (len(bounds) + 1)
    for bucket, n in raw.rows:
        counts[bucket - 1 if bucket else len(bounds)] = int(n)
    total = sum(counts) or 1
    return Report(["bucket", "sessions", "share_pct"],
                  [(label, n, round(100 * n / total, 2))
                   for label, n in zip(labels, counts, strict=True)])


def length_distribution(client: Client, database: str, **filter_args: Any) -> Report:
    """Sessions by plugged-in time (start to stop), in minute buckets."""
    return _distribution(client, database, "plugged_ms / 60000", LENGTH_BUCKETS_MIN, "min",
                         filter_args)


def energy_distribution(client: Client, database: str, **filter_args: Any) -> Report:
    """Sessions by energy delivered, in kWh buckets."""
    return _distribution(client, database, "energy_wh / 1000", ENERGY_BUCKETS_KWH, "kWh",
                         filter_args)


def efficiency(client: Client, database: str, limit: int | str = 50,
               **filter_args: Any) -> Report:
    """Per station, least efficient first: energy, charging hours, average power while
    charging vs the highest power the station delivered (chargers do not report their
    rating, so the peak seen stands in for it), and energy per plugged-in minute.
    """
    return run(client, f"""
        SELECT station_id, round(sum(energy_wh) / 1000, 3) AS energy_kwh,
               round(sum(charging_ms) / 3600000, 2) AS charging_h,
               round(if(sum(charging_ms) > 0,
                        sum(energy_wh) / (sum(charging_ms) / 3600000) / 1000, 0), 2)
                   AS avg_power_kw,
               round(max(max_power_w) / 1000, 2) AS peak_power_kw,
               round(if(peak_power_kw > 0, 100 * avg_power_kw / peak_power_kw, 0), 1)
                   AS avg_of_peak_pct,
               round(if(sum(plugged_ms) > 0, sum(energy_wh) / (sum(plugged_ms) / 60000), 0), 1)
                   AS wh_per_plugged_min
        FROM {{db:Identifier}}.station_daily
        WHERE {where("day", "station_id")}
        GROUP BY station_id
        HAVING sum(sessions) != 0
        ORDER BY avg_of_peak_pct, station_id
        LIMIT {{limit:UInt32}}""", database, limit=int(limit), **filters(**filter_args))


def top_anomalies(client: Client, database: str, limit: int | str = 20,
                  **filter_args: Any) -> Report:
    """Anomalies by kind and station, most severe and most frequent first."""
    return run(client, f"""
        SELECT kind, station_id, anomalies, ['info', 'warning', 'critical'][rank] AS worst_severity,
               last_seen, last_message
        FROM (SELECT kind, station_id, count() AS anomalies,
                     max(multiIf(severity = 'critical', 3, severity = 'warning', 2, 1)) AS rank,
                     max(detected_at) AS last_seen, argMax(message, detected_at) AS last_message
              FROM {{db:Identifier}}.anomalies FINAL
              WHERE {where("toDate(detected_at, 'UTC')", "station_id")}
              GROUP BY kind, station_id)
        ORDER BY rank DESC, anomalies DESC, last_seen DESC, kind, station_id
        LIMIT {{limit:UInt32}}""", database, limit=int(limit), **filters(**filter_args))
