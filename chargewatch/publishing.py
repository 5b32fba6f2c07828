"""`chargewatch simulate` and `chargewatch replay`: producers wired to settings, with progress."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from infra.errors import ConfigError
from infra.kafka_config import client_config
from infra.settings import Settings
from infra.topics import Topics, ensure_topics
from producers.chaos import ChaosConfig, ChaosSimulation
from producers.errors import SimulationConfigError
from producers.faults import FaultConfig
from producers.jsonl import event_to_json
from producers.partitioning import PartitionWindow
from producers.publisher import EventPublisher, PublishStats
from producers.reference_pricing import SimplePrices, TruthPricing
from producers.reference_tariffs import TariffFile
from producers.replay import ReplayStats, replay_file
from producers.simulator import FleetConfig, Simulation, simulate
from producers.truth import write_truth
from schemas.codec import Codec

console = Console(stderr=True)


def fleet_config(settings: Settings) -> FleetConfig:
    sim = settings.simulator
    try:
        start = dt.datetime.fromisoformat(sim.start.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"simulator.start {sim.start!r} is not an ISO-8601 time") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return FleetConfig(
        seed=sim.seed, stations=sim.stations, start_ms=int(start.timestamp() * 1000),
        duration_s=int(sim.duration_h * 3600), meter_interval_s=sim.meter_interval_s,
        events_per_message=sim.events_per_message,
        tariff=truth_pricing(settings),
        faults=FaultConfig() if sim.faults else None,
    )


def truth_pricing(settings: Settings) -> TruthPricing:
    """The processors' tariff as the truth's reference pricer reads it: the same file, read
    by the reference itself (after the product's loader has accepted it, so a bad file is
    refused with its one-line message), or the same simple prices."""
    settings.pricing()
    path = settings.processor.tariff_file
    if path is not None:
        return TariffFile.load(path)
    tariff = settings.processor.tariff
    return SimplePrices(tariff.currency, tariff.per_kwh, tariff.per_minute)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def publish_simulation(simulation: Simulation | ChaosSimulation, publisher: EventPublisher | None,
                       events_path: Path | None, progress: Progress) -> PublishStats | None:
    """Publish (and/or write) every message of a simulation, advancing a progress bar."""
    task = progress.add_task("publishing meter events", total=None)
    events_file = events_path.open("w") if events_path else None
    try:
        for station_id, events in simulation.messages():
            if publisher:
                publisher.publish(station_id, events)
            if events_file:
                events_file.writelines(event_to_json(e) + "\n" for e in events)
            progress.advance(task, len(events))
    finally:
        if events_file:
            events_file.close()
    return publisher.flush(timeout=120) if publisher else None


def meter_publisher(settings: Settings, bootstrap: str,
                    create_topics: bool = True) -> tuple[EventPublisher, Codec, Topics]:
    """A publisher of meter events encoded for these settings (topics created if missing)."""
    topics = Topics(settings.kafka.namespace)
    if create_topics:
        ensure_topics(client_config(settings.kafka, bootstrap), topics, settings.kafka.partitions)
    codec = Codec(settings.kafka.schema_registry_url)
    publisher = EventPublisher(client_config(settings.kafka, bootstrap), topics.meter_events,
                               lambda events: codec.encode_meter_events(
                                   events, topics.meter_events),
                               publish_window(settings, timed=False))
    return publisher, codec, topics


def publish_window(settings: Settings, *, timed: bool) -> PartitionWindow | None:
    """The per-partition window of the settings (None: `window_ms` 0, one message per call).

    Only a live source (`timed`: the gateway) cuts windows by time; simulate and replay cut
    them by size, so the same file always gives the same messages (producers/partitioning.py).
    """
    window = settings.publisher
    if not window.window_ms:
        return None
    return PartitionWindow(window.window_ms / 1000 if timed else None, window.window_max_events)


def simulate_to(settings: Settings, bootstrap: str | None, truth_path: Path,
                events_path: Path | None, chaos: float = 0.0,
                registry_path: Path | None = None) -> None:
    if registry_path is not None:  # the same fleet, whether or not chaos is injected
        registry_path.write_text(json.dumps(simulate(fleet_config(settings)).registry()))
    if chaos > 0:
        simulate_chaos(settings, bootstrap, truth_path, events_path, chaos)
        return
    simulation = simulate(fleet_config(settings))
    publisher = meter_publisher(settings, bootstrap)[0] if bootstrap else None
    with progress_bar() as progress:
        publish_simulation(simulation, publisher, events_path, progress)
    sessions = write_truth(truth_path, simulation.truth(), simulation.meta(),
                           simulation.faults())
    meta = simulation.meta()
    console.print(f"{meta.events:,} events in {meta.messages:,} messages; "
                  f"{sessions:,} true sessions written to {truth_path}")


def simulate_chaos(settings: Settings, bootstrap: str | None, truth_path: Path,
                   events_path: Path | None, rate: float) -> None:
    """Every messy case injected into `rate` of the sessions; truth = the expected outcome."""
    try:
        simulation = ChaosSimulation(fleet_config(settings),
                                     ChaosConfig.spread(settings.simulator.seed, rate))
    except SimulationConfigError as exc:
        raise ConfigError(f"--chaos: {exc}") from None
    publisher = meter_publisher(settings, bootstrap)[0] if bootstrap else None
    with progress_bar() as progress:
        publish_simulation(simulation, publisher, events_path, progress)
    sessions = simulation.write_truth(truth_path)
    console.print(f"{sessions:,} expected sessions (with injected cases and the anomalies they "
                  f"cause) written to {truth_path}")


def replay(settings: Settings, bootstrap: str, path: Path) -> ReplayStats:
    if not path.is_file():
        raise ConfigError(f"replay file {path} does not exist")
    publisher, codec, topics = meter_publisher(settings, bootstrap)
    with progress_bar() as progress:
        task = progress.add_task(f"replaying {path.name}", total=None)
        stats = replay_file(path, publisher, topics.dead_letters,
                            lambda letter: codec.encode_dead_letter(letter, topics.dead_letters),
                            progress=lambda lines: progress.update(task, completed=lines))
        publisher.flush(timeout=120)
    console.print(f"{stats.lines:,} lines: {stats.events:,} events published, "
                  f"{stats.dead_lettered:,} dead-lettered to {topics.dead_letters}")
    return stats

