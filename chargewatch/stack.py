"""The local pipeline as one object: broker, processor worker and sink, started and stopped as one.

Used by `chargewatch up`, `chargewatch demo`, the end-to-end tests and the benchmarks, so
all of them run the same stack the same way. Everything it starts, it stops by PID. With
`kept` (up and the demo), the embedded broker's meter events are kept across starts
(chargewatch/kept_events.py).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargewatch.embedded import EmbeddedBroker, free_port
from chargewatch.kept_events import Archiver, KeptEvents
from chargewatch.sink_service import SinkService
from chargewatch.worker import WorkerProcess, write_config
from infra.errors import ConfigError, StackError
from infra.kafka_config import client_config
from infra.settings import Settings, mask_url
from infra.topics import Topics, ensure_topics
from sinks.clickhouse import connect


@dataclass
class LocalStack:
    settings: Settings
    run_dir: Path
    broker: EmbeddedBroker | None = None
    worker: WorkerProcess | None = None
    sink: SinkService | None = None
    bootstrap_servers: str = ""
    client: Any = None
    worker_web_port: int = 0
    with_sink: bool = True
    """False: no sink and no ClickHouse client in this process (the caller runs the sink)."""
    processor_port: int | None = None
    """The processor worker's web port; None: a free one."""
    sink_port: int | None = None
    """The sink's web port; None: a free one."""
    kept: KeptEvents | None = None
    """Keep the embedded broker's meter events across starts (needs the sink here)."""
    archiver: Archiver | None = None
    restored: int = 0
    """Meter-events messages produced back from the kept events at start."""

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.kafka.namespace)

    def start(self) -> LocalStack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        bootstrap = self.settings.kafka.bootstrap_servers
        if not bootstrap:
            self.broker = EmbeddedBroker(log_path=self.run_dir / "broker.log").start()
            bootstrap = self.broker.bootstrap_servers
        self.bootstrap_servers = bootstrap
        if self.with_sink:
            self.client = connect(self.settings.clickhouse.url.get_secret_value())
        kept = self.kept if self.broker is not None else None
        if kept is not None:
            self._begin_kept_run(kept)
        conf = client_config(self.settings.kafka, bootstrap)
        partitions = self.settings.kafka.partitions
        ensure_topics(conf, self.topics, partitions)
        if kept is not None:
            counts = kept.restore(conf, self.topics.meter_events, partitions)
            self.restored = sum(counts)
            self.archiver = kept.archiver(conf, self.topics.meter_events, counts).start()
        if self.with_sink:
            self.sink = SinkService(self.settings, bootstrap,
                                    web_port=self.sink_port or free_port(),
                                    client=self.client).start()
        self.start_worker()

    def _begin_kept_run(self, kept: KeptEvents) -> None:
        """This run's topics; refused when ClickHouse holds sessions the kept events do not
        account for (new sessions would be given their IDs, see kept_events.py)."""
        database = self.settings.clickhouse.database
        if not kept.state() and self.client is not None and self.client.command(
                f"EXISTS TABLE {database}.charging_sessions") and (stored := int(
                    self.client.command(f"SELECT count() FROM {database}.charging_sessions"))):
            raise ConfigError(
                f"ClickHouse database {database} already holds {stored:,} session rows that "
                f"the kept meter events ({kept.folder}) do not account for: new sessions would "
                "be given their IDs. Use another database (CHARGEWATCH_CLICKHOUSE__DATABASE) "
                "or remove the chDB folder")
        namespace = kept.begin_run(self.settings.kafka.namespace, self.settings.kafka.partitions,
                                   mask_url(self.settings.clickhouse.url.get_secret_value()))
        self.settings = self.settings.model_copy(update={"kafka": self.settings.kafka.model_copy(
            update={"namespace": namespace})})

    def start_worker(self, name: str = "worker") -> WorkerProcess:
        """Start a processor worker; `name` other than the default starts an extra one (scale-out)
        with its own web port, data folder and log, which the caller stops."""
        web_port = self.processor_port if name == "worker" and self.processor_port else free_port()
        (self.run_dir / name).mkdir(parents=True, exist_ok=True)
        worker_settings = self.settings.model_copy(update={
            "kafka": self.settings.kafka.model_copy(
                update={"bootstrap_servers": self.bootstrap_servers}),
            "processor": self.settings.processor.model_copy(update={
                "web_port": web_port, "data_dir": self.run_dir / name / "faust"}),
        })
        config = write_config(worker_settings, self.run_dir / f"{name}-config.json")
        worker = WorkerProcess({"CHARGEWATCH_CONFIG": str(config)},
                               self.run_dir / f"{name}.log", web_port).start()
        if name == "worker":
            self.worker, self.worker_web_port = worker, web_port
        return worker

    def check_alive(self) -> None:
        if self.worker:
            self.worker.check_alive()
        if self.sink and not self.sink.running:
            raise StackError("sink stopped; see the log above")
        if self.archiver and self.archiver.error:
            raise StackError(self.archiver.error)

    def wait_for_sessions(self, expected: int, timeout_s: float,
                          on_progress: Any = None) -> float:
        """Block until ClickHouse holds `expected` distinct sessions; returns when that happened."""
        database = self.settings.clickhouse.database
        deadline = time.monotonic() + timeout_s
        landed = 0
        while time.monotonic() < deadline:
            self.check_alive()
            landed = int(self.client.command(
                f"SELECT uniqExact(session_id) FROM {database}.charging_sessions"))
            if on_progress:
                on_progress(landed)
            if landed >= expected:
                return time.monotonic()
            time.sleep(0.25)
        raise StackError(f"only {landed} of {expected} sessions reached ClickHouse within "
                         f"{timeout_s:.0f}s; see {self.run_dir}/worker.log")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.archiver:
                self.archiver.stop()
        with contextlib.suppress(Exception):
            if self.worker:
                self.worker.stop()
        with contextlib.suppress(Exception):
            if self.sink:
                self.sink.stop()
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close()
        if self.broker:
            self.broker.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
