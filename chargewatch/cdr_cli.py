"""`chargewatch cdr SESSION_ID`: a session's charge detail records, credits included.

Reads `cdrs` like `chargewatch session` reads sessions (chargewatch/lookup.py): straight
from ClickHouse, or, while a sink worker holds the embedded chDB folder, over that
worker's `/cdrs/ID` endpoint. Prints OCPI 2.2.1 CDR objects (`--json`, amounts as exact
JSON numbers, the tariff in full as configured now, the CPO's codes from settings `ocpi`,
the location and connector from the stations file) or a table, in issue order, with the
session's net total. A CDR lacking a field OCPI requires is still printed, and stderr gets
one line for it naming the fields and where they come from.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson

from charging.cdr import Cdr, Party, Price, iso, missing, money, to_ocpi
from charging.tariffs.model import Tariff
from infra.errors import StackError
from infra.settings import Settings

_AMOUNT_SUFFIXES = ("_excl_vat", "_incl_vat")


def add_cdr_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", metavar="SESSION_ID", help="the session's ID")
    parser.add_argument("--json", action="store_true", help="print OCPI 2.2.1 CDR JSON")


def cmd_cdr(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console

    key = args.session_id.strip()
    cdrs = find_cdrs(settings, key)
    if not cdrs:
        Console(stderr=True).print(
            f"no CDRs for session {key!r}: it is unknown, still open, or not written to "
            "ClickHouse yet (CDRs are issued when the sink stores a closed session)")
        return 1
    if args.json:
        docs = ocpi_cdrs(settings, cdrs)
        print(ocpi_json([doc for doc, _ in docs]), flush=True)
        for line in (lacking for _, lacking in docs if lacking):
            print(line, file=sys.stderr)
    else:
        print_cdrs(cdrs)
    return 0


def ocpi_cdrs(settings: Settings, cdrs: Sequence[Cdr]) -> list[tuple[dict[str, Any], str]]:
    """Each CDR as an OCPI object, with the one line saying what it lacks ('' if nothing)."""
    tariffs = configured_tariffs(settings)
    party = Party(settings.ocpi.country_code, settings.ocpi.party_id)
    registry = settings.station_registry()
    stations = registry.stations if registry is not None else {}
    out = []
    for c in cdrs:
        doc = to_ocpi(c, tariffs.get(c.tariff_id or ""), party, stations.get(c.station_id))
        out.append((doc, _lacking(settings, doc, c.station_id, c.station_id in stations)))
    return out


def _lacking(settings: Settings, doc: dict[str, Any], station_id: str, known: bool) -> str:
    """One line: which required fields a CDR lacks, and where each comes from."""
    fields = missing(doc)
    if not fields:
        return ""
    hints = []
    if any(f.endswith(("country_code", "party_id")) for f in fields):
        hints.append("set CHARGEWATCH_OCPI__COUNTRY_CODE and CHARGEWATCH_OCPI__PARTY_ID")
    if any(f.startswith("cdr_location.") for f in fields):
        path = settings.processor.stations_file
        if path is None:
            hints.append("no stations file: set CHARGEWATCH_PROCESSOR__STATIONS_FILE")
        elif not known:
            hints.append(f"station {station_id} is not in the stations file {path}")
        else:
            hints.append(f"complete station {station_id} in the stations file {path}")
    if any(f.startswith("tariffs[].") for f in fields):
        hints.append("its tariff is not in today's tariff configuration")
    return (f"CDR {doc['id']}: lacks what OCPI 2.2.1 requires: {', '.join(fields)} "
            f"({'; '.join(hints) or 'see docs/tariffs.md'})")


def configured_tariffs(settings: Settings) -> dict[str, Tariff]:
    """The tariffs of today's configuration by id: a CDR shows its tariff as configured now
    (a tariff file changed since the session would show the changed tariff)."""
    from charging.pricing import SimpleTariff, simple_book

    pricing = settings.pricing()
    book = simple_book(pricing) if isinstance(pricing, SimpleTariff) else pricing
    return dict(book.tariffs)


def find_cdrs(settings: Settings, session_id: str) -> list[Cdr]:
    """The session's CDRs in issue order, from ClickHouse or the sink worker holding chDB."""
    from chargewatch.lookup import ClickHouseSource, SinkWebSource, open_source
    from sinks.session_rows import load_cdrs

    source = open_source(settings)
    if isinstance(source, ClickHouseSource):
        return load_cdrs(source.client, source.database, [session_id]).get(session_id, [])
    if isinstance(source, SinkWebSource):
        return [cdr_from_web(row) for row in _get_rows(source.base_url, session_id)]
    raise StackError(f"cannot read CDRs from {type(source).__name__}")


def cdr_records(client: Any, database: str, session_id: str) -> list[dict[str, Any]]:
    """The session's stored CDR rows (what the sink worker's `/cdrs/ID` answers)."""
    from sinks.row_mappings import cdr_row
    from sinks.session_rows import CDR_COLUMNS, load_cdrs

    return [dict(zip(CDR_COLUMNS, cdr_row(c), strict=True))
            for c in load_cdrs(client, database, [session_id]).get(session_id, [])]


def cdr_from_web(row: dict[str, Any]) -> Cdr:
    """A CDR from the endpoint's JSON, where amounts travel as exact decimal strings."""
    from sinks.session_rows import cdr_from_row

    return cdr_from_row({k: Decimal(v) if k.endswith(_AMOUNT_SUFFIXES) and v is not None
                         else v for k, v in row.items()})


def _get_rows(base_url: str, session_id: str) -> list[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}/cdrs/{urllib.parse.quote(session_id, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=10.0) as response:
            rows: list[dict[str, Any]] = json.load(response)
    except urllib.error.HTTPError as exc:
        raise StackError(f"sink worker at {base_url} answered {exc.code}: "
                         f"{exc.read().decode(errors='replace')}") from None
    return rows


def ocpi_json(data: Any) -> str:
    """Indented JSON with Decimal amounts written as the exact numbers they are."""
    return orjson.dumps(data, default=_decimal, option=orjson.OPT_INDENT_2).decode()


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def print_cdrs(cdrs: Sequence[Cdr]) -> None:
    """One column per CDR, in issue order, and the session's net total (what it is billed
    after corrections). Amounts incl. VAT except where the row says otherwise."""
    from chargewatch.render import print_rows

    def amount(price: Price | None) -> str:
        return "" if price is None else str(money(price.incl_vat))

    docs = [to_ocpi(c) for c in cdrs]
    fields: list[tuple[str, list[Any]]] = [
        ("credit of", [c.credit_reference_id or "" for c in cdrs]),
        ("start", [iso(c.start_ms) for c in cdrs]),
        ("end", [iso(c.end_ms) for c in cdrs]),
        ("tariff", [c.tariff_id or "" for c in cdrs]),
        ("energy kWh", [d["total_energy"] for d in docs]),
        ("time h", [d["total_time"] for d in docs]),
        ("parking h", [d["total_parking_time"] for d in docs]),
        ("energy cost", [amount(c.total_energy_cost) for c in cdrs]),
        ("time cost", [amount(c.total_time_cost) for c in cdrs]),
        ("parking cost", [amount(c.total_parking_cost) for c in cdrs]),
        ("fixed cost", [amount(c.total_fixed_cost) for c in cdrs]),
        ("total excl. VAT", ["" if c.total_cost.excl_vat is None
                             else str(money(c.total_cost.excl_vat)) for c in cdrs]),
        ("total incl. VAT", [amount(c.total_cost) for c in cdrs]),
        ("last updated", [iso(c.last_updated_ms) for c in cdrs]),
    ]
    net = money(sum((c.total_cost.incl_vat for c in cdrs), Decimal(0)))
    print_rows(["cdr", *(c.cdr_id for c in cdrs)],
               [(name, *values) for name, values in fields], "table",
               title=f"session {cdrs[0].session_id}: net {net} {cdrs[0].currency} incl. VAT")
