"""`chargewatch report NAME` and `chargewatch session ID`: reports with filters, as a table,
CSV, JSON or a chart; one session by any ID, completed or still open."""

from __future__ import annotations

import argparse
import time
from typing import Any

from infra.settings import Settings

REPORT_NAMES = ("summary", "station-daily", "station-health", "station-availability",
                "model-availability", "utilization", "heatmap",
                "session-lengths", "session-energy", "efficiency", "cost-per-vehicle",
                "cost-per-station", "top-stations", "top-anomalies")
"""The names of chargewatch.lookup.REPORTS, here so building the parser imports no driver."""


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=REPORT_NAMES, metavar="NAME",
                        help=f"one of: {', '.join(REPORT_NAMES)}")
    parser.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="date_to", help="last day, YYYY-MM-DD")
    parser.add_argument("--station", help="only this station")
    parser.add_argument("--vehicle", help="only this vehicle")
    parser.add_argument("--month", help="YYYY-MM (cost-per-vehicle)")
    parser.add_argument("--tz", help="time zone of days and hours (station-daily, heatmap; "
                                     "default UTC)")
    parser.add_argument("--limit", type=int, help="most rows (ranked reports)")
    parser.add_argument("--chart", metavar="FILE.png", help="also draw the report into FILE")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print JSON")
    group.add_argument("--csv", action="store_true", help="print CSV")


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.lookup import open_source
    from chargewatch.render import print_rows
    from sinks.reports import as_month, as_tz, day_range

    day_range(args.date_from, args.date_to)  # bad values fail here, before any connection
    as_month(args.month)
    if args.tz is not None:
        as_tz(args.tz)
    params = {k: v for k, v in {"date_from": args.date_from, "date_to": args.date_to,
                                "station": args.station, "vehicle": args.vehicle,
                                "month": args.month, "tz": args.tz,
                                "limit": args.limit}.items() if v is not None}
    report = open_source(settings).report(args.name, **params)
    fmt = "json" if args.json else "csv" if args.csv else "table"
    print_rows(report.columns, report.rows, fmt, title=args.name)
    if args.chart:
        from rich.console import Console

        from chargewatch.charts import save_chart

        written = save_chart(args.name, report, args.chart, args.tz or "UTC")
        Console(stderr=True).print(f"chart written to {written}")
    return 0


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", metavar="ID",
                        help="a session ID in any configured shape, or with --station the "
                             "charger's own transaction id")
    parser.add_argument("--station", help="the station whose transaction id ID is")
    parser.add_argument("--json", action="store_true", help="print JSON")


def cmd_session(settings: Settings, args: argparse.Namespace) -> int:
    """Completed sessions from ClickHouse, open ones from the processor worker's live state.

    With `--station` every session the transaction id names is shown, newest first:
    chargers reuse transaction ids.
    """
    from rich.console import Console

    from chargewatch.lookup import ProcessorWebSource, find_session, find_transaction, open_source
    from charging.session_ids import IdTemplate

    err = Console(stderr=True)
    key = args.session_id.strip()
    source = open_source(settings)
    live = ProcessorWebSource(f"http://127.0.0.1:{settings.processor.web_port}")
    started = time.perf_counter()
    if args.station:
        found = find_transaction(source, live, args.station, key)
        what = f"transaction {key!r} of station {args.station!r}"
    else:
        one = find_session(source, live, key, IdTemplate.parse(settings.processor.id_template))
        found, what = ([one] if one else []), repr(key)
    took_ms = (time.perf_counter() - started) * 1000
    if not found:
        err.print(f"no session {what} (not in ClickHouse, not open on a processor worker)")
        return 1
    _print_found(found, args.json, bool(args.station))
    err.print(f"found {len(found)} in {took_ms:.0f} ms" if args.station
              else f"found in {took_ms:.0f} ms")
    return 0


def _print_found(found: list[Any], as_json: bool, as_list: bool) -> None:
    """One session as a record; a transaction's sessions as a JSON list or one table each."""
    from chargewatch.render import print_record, to_json

    if as_json and as_list:
        print(to_json([f.record for f in found]))
        return
    for f in found:
        state = "completed, from ClickHouse" if f.where == "clickhouse" else \
            "open, from the processor's live state"
        print_record(f.record, "json" if as_json else "table",
                     title=f"session {f.record['session_id']} ({state})")
