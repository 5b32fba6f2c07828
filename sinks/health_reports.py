"""Station health reports: availability, failures, MTBF and MTTR per station and per charger
model and firmware, from the connector status history (migration 0010).

The formulas are charging/station_health.py's, computed here in SQL over `connector_status FINAL`:
window functions give each status its end (the next status's time) and each fault onset
its repair (the first later status that is not Faulted); per connector the interval
lengths are clipped to the period and summed; stations and model/firmware groups sum the
connectors, then divide. Model and firmware come from the `stations` table (the station
registry); stations it does not know show NULL.

The period is the observed one, never padded to whole days: from the first status stored
to the last moment the network was heard from (its latest status or session end), the same
for every station asked for; `date_from`..`date_to` (inclusive UTC days) cut it further.
A 6-hour run is judged on its 6 hours: availability, MTBF and MTTR over what was seen.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from charging.station_health import DAY_MS, DOWN, FAULTED, OCCUPIED
from sinks.clickhouse import check_identifier
from sinks.reports import Report, day_range, run, where

_EPOCH_DAY = 719_163
"""date(1970, 1, 1).toordinal()."""

_PER_CONNECTOR = f"""
    SELECT station_id, connector_id,
           sum(len) AS observed_ms, sumIf(len, status IN {{down:Array(String)}}) AS down_ms,
           sumIf(len, status IN {{occupied:Array(String)}}) AS occupied_ms,
           countIf(onset) AS failures, countIf(onset AND repaired_at IS NOT NULL) AS repairs,
           sumIf(repaired_at - t, onset AND repaired_at IS NOT NULL) AS repair_ms
    FROM (
        SELECT station_id, connector_id, t, status,
               greatest(0, least(t_next, {{p1:Int64}}) - greatest(t, {{p0:Int64}})) AS len,
               status = '{FAULTED}' AND previous != '{FAULTED}' AND t >= {{p0:Int64}}
                   AND t < {{p1:Int64}} AS onset,
               repaired_at
        FROM (
            SELECT station_id, connector_id, t, status,
                   leadInFrame(t, 1, {{p1:Int64}}) OVER whole AS t_next,
                   lagInFrame(status, 1, '') OVER whole AS previous,
                   minIf(toNullable(t), status != '{FAULTED}') OVER later AS repaired_at
            FROM (SELECT station_id, connector_id, toUnixTimestamp64Milli(time) AS t,
                         event_id, status
                  FROM {{db:Identifier}}.connector_status FINAL
                  -- a repair at the very end of the period still ends its fault
                  WHERE time <= fromUnixTimestamp64Milli({{p1:Int64}}, 'UTC')
                    AND {where(None, "station_id")})
            WINDOW whole AS (PARTITION BY station_id, connector_id ORDER BY t, event_id
                             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING),
                   later AS (PARTITION BY station_id, connector_id ORDER BY t, event_id
                             ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)))
    GROUP BY station_id, connector_id"""

_MEASURES = """
       count() AS connectors_,
       round(sum(c.observed_ms) / 3600000, 3) AS observed_h,
       round(100 * (sum(c.observed_ms) - sum(c.down_ms)) / sum(c.observed_ms), 3)
           AS availability_pct,
       round(sum(c.down_ms) / 60000, 3) AS down_min,
       round(100 * sum(c.occupied_ms) / sum(c.observed_ms), 3) AS occupancy_pct,
       sum(c.failures) AS failures_,
       if(failures_ > 0,
          round((sum(c.observed_ms) - sum(c.down_ms)) / failures_ / 3600000, 3), NULL) AS mtbf_h,
       if(sum(c.repairs) > 0, round(sum(c.repair_ms) / sum(c.repairs) / 60000, 3), NULL)
           AS mttr_min"""
_NAMES = {"connectors_": "connectors", "failures_": "failures"}
_REGISTRY = """
    LEFT JOIN (SELECT station_id, model AS m, firmware AS f
               FROM {db:Identifier}.stations FINAL) AS s USING station_id"""


def station_availability(client: Client, database: str, **filter_args: Any) -> Report:
    """Per station, least available first: model, firmware, connectors, observed hours,
    availability %, down minutes, occupancy %, failures, MTBF (h) and MTTR (min).
    Filters: date range, station."""
    params = _params(client, database, **filter_args)
    if params is None:
        return Report(["station_id", "model", "firmware", "connectors", "observed_h",
                       "availability_pct", "down_min", "occupancy_pct", "failures", "mtbf_h",
                       "mttr_min"], [])
    return run(client, f"""
        SELECT station_id, nullIf(any(s.m), '') AS model, nullIf(any(s.f), '') AS firmware,
               {_MEASURES}
        FROM ({_PER_CONNECTOR}) AS c {_REGISTRY}
        GROUP BY station_id
        HAVING sum(c.observed_ms) > 0
        ORDER BY availability_pct, station_id""", database, **params).renamed(_NAMES)


def model_availability(client: Client, database: str, **filter_args: Any) -> Report:
    """Per charger model and firmware, least available first: stations, connectors, observed
    hours, availability %, down minutes, occupancy %, failures, MTBF (h) and MTTR (min).
    Filters: date range, station."""
    params = _params(client, database, **filter_args)
    if params is None:
        return Report(["model", "firmware", "stations", "connectors", "observed_h",
                       "availability_pct", "down_min", "occupancy_pct", "failures", "mtbf_h",
                       "mttr_min"], [])
    return run(client, f"""
        SELECT nullIf(s.m, '') AS model, nullIf(s.f, '') AS firmware,
               uniqExact(station_id) AS stations, {_MEASURES}
        FROM ({_PER_CONNECTOR}) AS c {_REGISTRY}
        GROUP BY s.m, s.f
        HAVING sum(c.observed_ms) > 0
        ORDER BY availability_pct, model, firmware""", database, **params).renamed(_NAMES)


def period(client: Client, database: str, date_from: Any = None,
           date_to: Any = None) -> tuple[int, int] | None:
    """The report period [start, end) in epoch ms (module docstring); None: no history."""
    first, last = day_range(date_from, date_to)
    low, high, rows = client.query(
        "SELECT toUnixTimestamp64Milli(min(time)), greatest(toUnixTimestamp64Milli(max(time)), "
        "  (SELECT ifNull(toUnixTimestamp64Milli(max(end_time)), 0) "
        "   FROM {db:Identifier}.charging_sessions WHERE sign > 0)), count() "
        "FROM {db:Identifier}.connector_status",
        parameters={"db": check_identifier(database)}).result_rows[0]
    if not rows:
        return None
    start = int(low) if first is None else max(int(low), _day_ms(first))
    end = int(high) if last is None else min(int(high), _day_ms(last + timedelta(days=1)))
    return (start, end) if end > start else None


def _day_ms(day: date) -> int:
    return (day.toordinal() - _EPOCH_DAY) * DAY_MS


def _params(client: Client, database: str, date_from: Any = None, date_to: Any = None,
            station: str | None = None) -> dict[str, Any] | None:
    bounds = period(client, database, date_from, date_to)
    if bounds is None:
        return None
    return {"p0": bounds[0], "p1": bounds[1], "station": station, "down": list(DOWN),
            "occupied": list(OCCUPIED)}
