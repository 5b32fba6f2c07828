"""`chargewatch demo`: the whole pipeline on the embedded stack, then a report.

Simulated fleet → embedded broker → Faust processor → sink → chDB; waits until every true
session has landed, prints what a charging network would look at first, and stops all it
started. On the default chDB folder it starts from an empty `.data/` and leaves its data
there, kept as `chargewatch up` keeps it, so `chargewatch session ID`, `report` and `cdr`
find it afterwards and `chargewatch up` carries on from it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rich.console import Console

from chargewatch.discovery import DATA_DIR, chdb_folder, check_chdb_free
from chargewatch.kept_events import KeptEvents
from chargewatch.publishing import (
    console,
    fleet_config,
    meter_publisher,
    progress_bar,
    publish_simulation,
)
from chargewatch.render import print_record, print_rows
from chargewatch.stack import LocalStack
from infra.errors import ConfigError
from infra.settings import Settings
from producers.simulator import simulate
from sinks import health_reports, reports

out = Console()


def run_demo(settings: Settings, run_dir: Path, timeout_s: float = 600.0,
             data_dir: Path = DATA_DIR) -> dict[str, float]:
    """Run the demo; returns the figures it printed (for tests and benchmarks)."""
    kept = _start_afresh(settings, data_dir)
    # Faults on, and the fleet's registry (model/firmware) for the station-health reports.
    settings = settings.model_copy(update={"simulator": settings.simulator.model_copy(
        update={"faults": True})})
    simulation = simulate(fleet_config(settings))
    if settings.processor.stations_file is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        registry = run_dir / "stations.json"
        registry.write_text(json.dumps(simulation.registry()))
        settings = settings.model_copy(update={"processor": settings.processor.model_copy(
            update={"stations_file": registry})})
    expected = sum(1 for _ in simulation.truth())
    console.print(f"[bold]ChargeWatch demo[/bold]: {settings.simulator.stations} stations, "
                  f"{settings.simulator.duration_h:g} simulated hours, {expected:,} sessions; "
                  f"logs in {run_dir}")
    with LocalStack(settings, run_dir, kept=kept) as stack:
        broker = stack.broker.bootstrap_servers if stack.broker else stack.bootstrap_servers
        console.print(f"broker {broker} · processor pid {stack.worker.pid if stack.worker else '-'}"
                      f" · ClickHouse {settings.clickhouse.url.get_secret_value()}")
        publisher = meter_publisher(stack.settings, stack.bootstrap_servers,
                                    create_topics=False)[0]
        started = time.monotonic()
        with progress_bar() as progress:
            publish_simulation(simulation, publisher, None, progress)
            del publisher  # flushed; its client would otherwise outlive the broker
            published = time.monotonic()
            task = progress.add_task("sessions landed in ClickHouse", total=expected)
            landed_at = stack.wait_for_sessions(
                expected, timeout_s, lambda n: progress.update(task, completed=n))
        events = simulation.meta().events
        wall = landed_at - started
        figures = {"events": events, "sessions": expected, "wall_s": wall,
                   "events_per_s": events / wall, "publish_s": published - started}
        session_id = _print_summary(stack, figures)
    if kept is not None:
        console.print(f"The demo's data stays in {data_dir}/: try `chargewatch session "
                      f"{session_id}`, `chargewatch cdr {session_id}`, `chargewatch report "
                      "summary`; `chargewatch up` carries on from it.", soft_wrap=True)
    return figures


def _start_afresh(settings: Settings, data_dir: Path) -> KeptEvents | None:
    """On the default chDB folder and the embedded broker: erase what an earlier demo left
    in `data_dir` and keep this run's meter events; refuse to erase what `up` kept."""
    folder = chdb_folder(settings.clickhouse.url.get_secret_value())
    if settings.kafka.bootstrap_servers or folder != (data_dir / "chdb").absolute():
        return None
    kept = KeptEvents(data_dir / "broker", "demo")
    owners = kept.state().get("owners", [])
    if set(owners) - {"demo"} or (not owners and folder.exists()):
        who = "`chargewatch up`" if "up" in owners else "an earlier run"
        raise ConfigError(f"{data_dir}/ holds data kept by {who} ({folder}, {kept.folder}): "
                          "the demo starts from an empty stack and would erase it; remove "
                          f"both first (`make clean` removes {data_dir}/)")
    check_chdb_free(settings)
    shutil.rmtree(folder, ignore_errors=True)
    kept.erase()
    return kept


def _print_summary(stack: LocalStack, figures: dict[str, float]) -> str:
    """Print the first reports; returns the ID of the session it looked up."""
    client, database = stack.client, stack.settings.clickhouse.database
    summary = reports.summary(client, database)
    for row in summary.rows:  # one per currency: a record reads better than a wide table
        print_record(dict(zip(summary.columns, row, strict=True)), title="Network summary")
    top = reports.top_stations(client, database, limit=10)
    print_rows(top.columns, top.rows, title="Top stations by revenue")
    health = health_reports.model_availability(client, database)
    shown = [c for c in ("model", "firmware", "connectors", "availability_pct", "failures",
                         "mtbf_h", "mttr_min") if c in health.columns]
    picks = [health.columns.index(c) for c in shown]
    print_rows(shown, [[row[i] for i in picks] for row in health.rows],
               title="Availability by charger model and firmware")
    session_id = client.command(
        f"SELECT session_id FROM {database}.charging_sessions FINAL "
        f"ORDER BY energy_wh DESC, session_id LIMIT 1")
    looked_up = time.perf_counter()
    record = reports.session_by_id(client, database, str(session_id))
    lookup_ms = (time.perf_counter() - looked_up) * 1000
    if record:
        print_record(record, title=f"Session {session_id} (looked up by ID in {lookup_ms:.0f} ms)")
    out.print(f"[bold]{figures['events']:,.0f} events → {figures['sessions']:,.0f} sessions "
              f"in {figures['wall_s']:.1f} s end to end: {figures['events_per_s']:,.0f} events/s"
              f"[/bold] (publishing took {figures['publish_s']:.1f} s)")
    return str(session_id)
