"""Where lookups and reports read from: ClickHouse directly, or the sink that holds chDB;
and where open sessions are: the processor worker's live state.

An embedded chDB folder can be open in one process at a time. While a sink worker holds it,
commands such as `chargewatch session ID` ask that worker over its web endpoint instead.
A session still running is not in ClickHouse at all: `find_session` then asks the
processor worker's `/open-sessions/` view (processors/web.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chargewatch.session_view import session_record
from charging.session_ids import IdTemplate
from infra.errors import StackError, UsageError
from infra.settings import Settings
from sinks import analytics, health_reports, reports
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.reports import Report

ReportFn = Callable[..., Report]

DATES, STATION, VEHICLE, MONTH, LIMIT, TZ = ("date_from", "date_to"), ("station",), \
    ("vehicle",), ("month",), ("limit",), ("tz",)


@dataclass(frozen=True, slots=True)
class ReportSpec:
    fn: ReportFn
    params: tuple[str, ...]
    """The filters and options this report takes; any other is refused by name."""
    help: str


REPORTS: dict[str, ReportSpec] = {
    "summary": ReportSpec(reports.summary, DATES + STATION + VEHICLE,
                          "network totals per currency"),
    "station-daily": ReportSpec(reports.station_daily, DATES + STATION + VEHICLE + TZ,
                                "per station per day: sessions, energy, revenue, utilization"),
    "station-health": ReportSpec(analytics.station_health, DATES + STATION,
                                 "per day: failure rate, zero-energy sessions, faults"),
    "station-availability": ReportSpec(
        health_reports.station_availability, DATES + STATION,
        "per station: availability, occupancy, failures, MTBF, MTTR, model, firmware"),
    "model-availability": ReportSpec(
        health_reports.model_availability, DATES + STATION,
        "per charger model and firmware: availability, failures, MTBF, MTTR"),
    "utilization": ReportSpec(analytics.utilization, DATES + STATION + LIMIT,
                              "busiest stations: occupancy, queues, blocking idle time"),
    "heatmap": ReportSpec(analytics.heatmap, DATES + STATION + TZ,
                          "sessions started per weekday x hour (UTC, or --tz)"),
    "session-lengths": ReportSpec(analytics.length_distribution, DATES + STATION + VEHICLE,
                                  "distribution of plugged-in time"),
    "session-energy": ReportSpec(analytics.energy_distribution, DATES + STATION + VEHICLE,
                                 "distribution of energy per session"),
    "efficiency": ReportSpec(analytics.efficiency, DATES + STATION + LIMIT,
                             "average vs peak power, energy per plugged-in minute"),
    "cost-per-vehicle": ReportSpec(reports.cost_per_vehicle, MONTH + VEHICLE,
                                   "sessions, energy and cost per vehicle"),
    "cost-per-station": ReportSpec(reports.cost_per_station, DATES + STATION,
                                   "sessions, energy, revenue and price per station"),
    "top-stations": ReportSpec(reports.top_stations, DATES + STATION + LIMIT,
                               "stations by revenue"),
    "top-anomalies": ReportSpec(analytics.top_anomalies, DATES + STATION + LIMIT,
                                "anomalies by kind and station, worst first"),
}


def _option(param: str) -> str:
    """The command-line option of a report parameter: date_from -> --from."""
    return "--" + param.removeprefix("date_")


def run_report(client: Any, database: str, name: str, **params: Any) -> Report:
    """Run a named report; unknown names and filters the report does not take are refused."""
    spec = REPORTS.get(name)
    if spec is None:
        raise UsageError(f"unknown report {name!r}; known: {', '.join(REPORTS)}")
    given = {k: v for k, v in params.items() if v is not None}
    refused = sorted(set(given) - set(spec.params))
    if refused:
        takes = ", ".join(_option(p) for p in spec.params) or "no filters"
        raise UsageError(f"report {name!r} does not take "
                         f"{', '.join(_option(p) for p in refused)} (it takes {takes})")
    if "limit" in given:
        try:
            given["limit"] = int(given["limit"])
        except ValueError:
            raise UsageError(f"--limit must be a whole number, not {given['limit']!r}") from None
    return spec.fn(client, database, **given)


class ReportSource(Protocol):
    def session(self, session_id: str) -> dict[str, Any] | None: ...

    def transaction(self, station: str, transaction_id: str) -> list[dict[str, Any]]: ...

    def report(self, name: str, **params: Any) -> Report: ...


class ClickHouseSource:
    """Reads ClickHouse (server or chDB) through clickhouse-connect."""

    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.database = database

    def session(self, session_id: str) -> dict[str, Any] | None:
        """A completed session by ID."""
        return reports.session_by_id(self.client, self.database, session_id)

    def transaction(self, station: str, transaction_id: str) -> list[dict[str, Any]]:
        """The completed sessions a charger's transaction id names, newest first."""
        return reports.sessions_by_transaction(self.client, self.database, station,
                                               transaction_id)

    def report(self, name: str, **params: Any) -> Report:
        return run_report(self.client, self.database, name, **params)


def _get_json(base_url: str, path: str, params: dict[str, Any] | None = None,
              timeout_s: float = 10.0) -> Any:
    """GET a JSON document; None on 404, StackError naming the server on other errors."""
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    url = f"{base_url}{path}" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code == 400:  # the worker refused a parameter: its message names the option
            raise UsageError(json.load(exc).get("error", "bad request")) from None
        raise StackError(f"worker at {base_url} answered {exc.code}: "
                         f"{exc.read().decode(errors='replace')}") from None


class SinkWebSource:
    """Asks a running sink worker, which holds the chDB folder, over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def session(self, session_id: str) -> dict[str, Any] | None:
        return _get_json(self.base_url, f"/sessions/{urllib.parse.quote(session_id, safe='')}")

    def transaction(self, station: str, transaction_id: str) -> list[dict[str, Any]]:
        path = (f"/stations/{urllib.parse.quote(station, safe='')}/transactions/"
                f"{urllib.parse.quote(transaction_id, safe='')}")
        return _get_json(self.base_url, path) or []

    def report(self, name: str, **params: Any) -> Report:
        data = _get_json(self.base_url, f"/reports/{urllib.parse.quote(name)}", params)
        if data is None:
            raise StackError(f"unknown report {name!r}")
        return Report(columns=data["columns"], rows=[tuple(r) for r in data["rows"]])

    def answers(self) -> bool:
        """Whether a sink worker listens here. `/health` says 503 while Kafka is down, yet the
        worker still answers lookups from ClickHouse, so any HTTP answer counts."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=10.0):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False


class ProcessorWebSource:
    """Asks a processor worker for a session that is still open (its live station state)."""

    def __init__(self, base_url: str, timeout_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def open_session(self, key: str, station: str | None = None) -> dict[str, Any] | None:
        """The running session, or None if no worker answers or none is open under `key`."""
        path = f"/open-sessions/{urllib.parse.quote(key, safe='')}/"
        try:
            return _get_json(self.base_url, path, {"station": station}, self.timeout_s)
        except OSError:
            return None


def open_source(settings: Settings) -> ReportSource:
    """ClickHouse if it can be opened here, else the sink worker that holds the chDB folder.

    A chDB folder another process holds is never opened (chDB would print its lock error):
    the running `chargewatch up` stack's sink answers for it, or a sink on `sink.web_port`.
    """
    from chargewatch.discovery import chdb_folder, chdb_holder, running_stack

    url = settings.clickhouse.url.get_secret_value()
    folder = chdb_folder(url)
    holder = chdb_holder(folder) if folder else None
    if holder is not None:
        stack = running_stack(quiet=True)
        port = stack.sink_port if stack and stack.pid == holder else settings.sink.web_port
        remote = SinkWebSource(f"http://127.0.0.1:{port}")
        if remote.answers():
            return remote
        raise StackError(f"the chDB folder {folder} is in use by process {holder} and no sink "
                         f"worker answers on port {port}: stop that process, or start the "
                         "stack with `chargewatch up`")
    client = connect(url)
    migrate(client, settings.clickhouse.database, cluster=settings.clickhouse.cluster)
    return ClickHouseSource(client, settings.clickhouse.database)


@dataclass(frozen=True, slots=True)
class Found:
    record: dict[str, Any]
    """The session in one shape whether open or completed (`session_record`)."""
    where: str
    """"clickhouse" (completed) or "processor" (still open)."""


def find_session(source: ReportSource, live: ProcessorWebSource | None, key: str,
                 template: IdTemplate | None = None) -> Found | None:
    """A session by ID, in any letter case the ID template allows: completed ones from
    ClickHouse, open ones from the processor worker's live state."""
    key = template.canonical(key) if template else key
    record = source.session(key)
    if record is not None:
        return Found(session_record(record), "clickhouse")
    record = live.open_session(key) if live is not None else None
    return Found(session_record(record), "processor") if record is not None else None


def find_transaction(source: ReportSource, live: ProcessorWebSource | None, station: str,
                     transaction_id: str) -> list[Found]:
    """Every session a charger's transaction id names on `station`, newest first: the
    completed ones and the one still open, if any (chargers reuse transaction ids)."""
    found = [Found(session_record(r), "clickhouse")
             for r in source.transaction(station, transaction_id)]
    record = live.open_session(transaction_id, station) if live is not None else None
    if record is not None and all(f.record["session_id"] != record["session_id"]
                                  for f in found):
        found.append(Found(session_record(record), "processor"))
    return sorted(found, key=lambda f: f.record["start_time"], reverse=True)
