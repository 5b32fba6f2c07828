"""Where lookups and reports read from: ClickHouse directly, or the sink that holds chDB.

An embedded chDB folder can be open in one process at a time. While a sink worker holds it,
commands such as `chargewatch session ID` ask that worker over its web endpoint instead.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from chargewatch.errors import StackError
from chargewatch.settings import Settings
from sinks import reports
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.reports import Report

ReportFn = Callable[..., Report]

REPORTS: dict[str, ReportFn] = {
    "summary": reports.summary,
    "top-stations": reports.top_stations,
    "station-daily": reports.station_daily,
    "cost-per-vehicle": reports.cost_per_vehicle,
}


class ReportSource(Protocol):
    def session(self, session_id: str) -> dict[str, Any] | None: ...

    def report(self, name: str, **params: Any) -> Report: ...


class ClickHouseSource:
    """Reads ClickHouse (server or chDB) through clickhouse-connect."""

    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.database = database

    def session(self, session_id: str) -> dict[str, Any] | None:
        return reports.session_by_id(self.client, self.database, session_id)

    def report(self, name: str, **params: Any) -> Report:
        if name not in REPORTS:
            raise StackError(f"unknown report {name!r}; known: {', '.join(REPORTS)}")
        return REPORTS[name](self.client, self.database, **params)


class SinkWebSource:
    """Asks a running sink worker, which holds the chDB folder, over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise StackError(f"sink worker at {self.base_url} answered {exc.code}: "
                             f"{exc.read().decode(errors='replace')}") from None

    def session(self, session_id: str) -> dict[str, Any] | None:
        return self._get(f"/sessions/{urllib.parse.quote(session_id, safe='')}")

    def report(self, name: str, **params: Any) -> Report:
        data = self._get(f"/reports/{urllib.parse.quote(name)}", params)
        if data is None:
            raise StackError(f"unknown report {name!r}")
        return Report(columns=data["columns"], rows=[tuple(r) for r in data["rows"]])

    def healthy(self) -> bool:
        try:
            return bool(self._get("/health"))
        except (StackError, OSError):
            return False


def open_source(settings: Settings) -> ReportSource:
    """ClickHouse if it can be opened here, else the sink worker that holds the chDB folder."""
    url = settings.clickhouse.url.get_secret_value()
    try:
        client = connect(url)
    except Exception as exc:
        if not url.startswith("chdb:"):
            raise
        remote = SinkWebSource(f"http://127.0.0.1:{settings.sink.web_port}")
        if remote.healthy():
            return remote
        raise StackError(f"cannot open {url} ({exc}) and no sink worker answers on port "
                         f"{settings.sink.web_port}") from None
    migrate(client, settings.clickhouse.database)
    return ClickHouseSource(client, settings.clickhouse.database)
