"""`chargewatch bench reports`: report and lookup latency over millions of sessions in chDB.

Sessions are generated inside ClickHouse (`INSERT ... SELECT FROM numbers()`), a million per
insert, through the real migrations, so the rollup views fill exactly as they do behind the
sink. Each report then runs `--repeat` times with the filters a person would use (printed
next to it), and the ID lookups run against random existing sessions. The data spread:
`--stations` stations with 1-4 connectors each, starts spread over 365 days of 2026,
2 % incomplete, 1 % ended by a power loss, 2 % zero-energy, 2 % without a vehicle id.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

DATABASE = "bench"
CHUNK = 1_000_000
_YEAR_START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z."""

_LOAD = """
INSERT INTO {db:Identifier}.charging_sessions (session_id, version, sign, state, station_id,
  connector_id, transaction_id, id_tag, vehicle_id, start_time, end_time, meter_start_wh,
  meter_end_wh, energy_wh, soc_start_pct, soc_end_pct, max_power_w, avg_power_w, charging_ms,
  plugged_ms, cost, currency, event_count, stop_reason, flags, _topic, _partition, _offset)
SELECT concat('EV-', leftPad(toString(n), 9, '0')), 1, 1,
  if(r % 100 < 2, 'incomplete', 'completed'),
  concat('ST-', leftPad(toString(st), 5, '0')), con, concat('T', toString(n)),
  concat('TAG-', toString(n % 200000)),
  if(r % 50 = 0, NULL, concat('VIN-', leftPad(toString(n % 200000), 6, '0'))),
  fromUnixTimestamp64Milli(toInt64(s), 'UTC'), fromUnixTimestamp64Milli(toInt64(s + pl), 'UTC'),
  1e6, 1e6 + wh, wh, 20, 80, kw * 1000, if(ch > 0, wh * 3600000 / ch, 0), ch, pl,
  toDecimal64(wh / 1000 * 0.39 + pl / 60000 * 0.02, 4), 'EUR', 10,
  if(r % 100 = 3, 'PowerLoss', 'EVDisconnected'), [], 'bench', 0, n
FROM (
  SELECT number AS n, cityHash64(number) AS r, 1 + r % {stations:UInt32} AS st,
         1 + bitShiftRight(r, 12) % 4 AS con,
         {start:Int64} + bitShiftRight(r, 20) % (365 * 86400000) AS s,
         600000 + bitShiftRight(r, 7) % 14400000 AS pl,
         toUInt64(pl * (bitShiftRight(r, 9) % 100) / 100) AS ch,
         if(bitShiftRight(r, 3) % 50 = 0, 0., (bitShiftRight(r, 14) % 80000)::Float64) AS wh,
         [11, 22, 50, 150][1 + bitShiftRight(r, 5) % 4] AS kw
  FROM numbers({lo:UInt64}, {count:UInt64}))
"""

MONTH = {"date_from": "2026-03-01", "date_to": "2026-03-31"}
BENCH_PARAMS: dict[str, dict[str, Any]] = {
    "summary": {},
    "station-daily": MONTH,
    "station-health": {},
    "utilization": MONTH,
    "heatmap": {},
    "session-lengths": {},
    "session-energy": {},
    "efficiency": {},
    "cost-per-vehicle": {"month": "2026-03"},
    "cost-per-station": {},
    "top-stations": {},
    "top-anomalies": {},
}
"""What each report is asked in the bench: everything, or the month a person would ask for
where the answer is one row per station and day/hour."""


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=10_000_000)
    parser.add_argument("--stations", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20, help="runs per report")
    parser.add_argument("--lookups", type=int, default=200, help="ID lookups of each kind")
    parser.add_argument("--dir", help="chDB folder (default: a new temporary folder)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Load, measure, print one row per report/lookup with p50 and p95 in milliseconds."""
    from rich.console import Console

    from chargewatch.render import print_rows
    from sinks.clickhouse import connect

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="cw-bench-"))
    client = connect(f"chdb://{folder.resolve()}")
    console = Console(stderr=True)
    load(client, args.sessions, args.stations, console)
    rows = measure(client, args.sessions, args.repeat, args.lookups)
    print_rows(["query", "params", "runs", "p50_ms", "p95_ms", "rows"], rows,
               "json" if args.json else "table",
               title=f"{args.sessions:,} sessions, {args.stations:,} stations ({folder})")
    return 0


def load(client: Any, sessions: int, stations: int, console: Console) -> None:
    from rich.progress import Progress

    from sinks.migrate import migrate

    migrate(client, DATABASE)
    have = int(client.command(f"SELECT count() FROM {DATABASE}.charging_sessions"))
    if have == sessions:
        console.print(f"reusing {have:,} sessions already loaded")
        return
    if have:
        raise SystemExit(f"the bench folder holds {have:,} sessions, not {sessions:,}: "
                         "use another --dir")
    started = time.monotonic()
    with Progress(console=console) as progress:
        task = progress.add_task("loading sessions", total=sessions)
        for lo in range(0, sessions, CHUNK):
            count = min(CHUNK, sessions - lo)
            client.command(_LOAD, parameters={"db": DATABASE, "stations": stations,
                                              "start": _YEAR_START_MS, "lo": lo,
                                              "count": count})
            progress.advance(task, count)
    console.print(f"loaded {sessions:,} sessions in {time.monotonic() - started:.0f}s")


def _timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return times, result


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank: p95 of 20 runs is the 19th fastest."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


def measure(client: Any, sessions: int, repeat: int, lookups: int) -> list[tuple]:
    from chargewatch.lookup import run_report
    from sinks import reports

    out: list[tuple] = []
    for name, params in BENCH_PARAMS.items():
        times, report = _timed(lambda n=name, p=params: run_report(client, DATABASE, n, **p),
                               repeat)
        out.append((name, _describe(params), repeat, round(statistics.median(times), 1),
                    round(percentile(times, 0.95), 1), len(report.rows)))
    rng = random.Random(7)
    numbers = [rng.randrange(sessions) for _ in range(lookups)]
    times = []
    for n in numbers:
        ms, found = _timed(lambda n=n: reports.session_by_id(client, DATABASE,
                                                             f"EV-{n:09d}"), 1)
        if found is None:
            raise RuntimeError(f"session EV-{n:09d} not found")
        times += ms
    out.append(("session by ID", "EV-#########", len(times), round(statistics.median(times), 1),
                round(percentile(times, 0.95), 1), 1))
    stations = dict(client.query(
        f"SELECT transaction_id, station_id FROM {DATABASE}.session_keys "
        "WHERE transaction_id IN {txs:Array(String)}",
        parameters={"txs": [f"T{n}" for n in numbers]}).result_rows)
    times = []
    for n in numbers:
        ms, found = _timed(lambda n=n: reports.session_by_transaction(
            client, DATABASE, stations[f"T{n}"], f"T{n}"), 1)
        if found is None:
            raise RuntimeError(f"transaction T{n} not found")
        times += ms
    out.append(("session by transaction id", "station + T#", len(times),
                round(statistics.median(times), 1), round(percentile(times, 0.95), 1), 1))
    return out


def _describe(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "all"
