"""`chargewatch report NAME`: named reports with filters, as a table, CSV or JSON."""

from __future__ import annotations

import argparse

from chargewatch.settings import Settings


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="summary, top-stations, station-daily, cost-per-vehicle")
    parser.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="date_to", help="last day, YYYY-MM-DD")
    parser.add_argument("--station")
    parser.add_argument("--month", help="YYYY-MM")
    parser.add_argument("--limit", type=int)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print JSON")
    group.add_argument("--csv", action="store_true", help="print CSV")


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.lookup import open_source
    from chargewatch.render import print_rows

    params = {k: v for k, v in {"date_from": args.date_from, "date_to": args.date_to,
                                "station": args.station, "month": args.month,
                                "limit": args.limit}.items() if v is not None}
    report = open_source(settings).report(args.name, **params)
    fmt = "json" if args.json else "csv" if args.csv else "table"
    print_rows(report.columns, report.rows, fmt, title=args.name)
    return 0
