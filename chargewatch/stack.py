"""The local pipeline as one object: broker, processor worker and sink, started and stopped as one.

Used by `chargewatch demo`, the end-to-end tests and the benchmarks, so all three run the
same stack the same way. Everything it starts, it stops by PID.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargewatch.embedded import EmbeddedBroker, free_port
from chargewatch.sink_service import SinkService
from chargewatch.worker import WorkerProcess, write_config
from infra.errors import StackError
from infra.kafka_config import client_config
from infra.settings import Settings
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
        ensure_topics(client_config(self.settings.kafka, bootstrap), self.topics,
                      self.settings.kafka.partitions)
        if self.with_sink:
            self.client = connect(self.settings.clickhouse.url.get_secret_value())
            self.sink = SinkService(self.settings, bootstrap, web_port=free_port(),
                                    client=self.client).start()
        self.start_worker()

    def start_worker(self, name: str = "worker") -> WorkerProcess:
        """Start a processor worker; `name` other than the default starts an extra one (scale-out)
        with its own web port, data folder and log, which the caller stops."""
        web_port = free_port()
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
