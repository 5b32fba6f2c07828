"""Running the Faust processor: in this process (`chargewatch worker`) or as a child process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from chargewatch.embedded import child_options, stop_child
from chargewatch.logs import logging_config
from infra.errors import StackError
from infra.settings import Settings


def run_worker(settings: Settings, bootstrap_servers: str) -> None:
    """Run the processor worker until it is told to stop (SIGTERM or Ctrl-C)."""
    from faust.worker import Worker

    from infra.kafka_config import client_config
    from infra.topics import Topics, ensure_topics
    from processors.app import create_app

    # The outputs go through librdkafka (processors/outbox.py), which creates no topics.
    ensure_topics(client_config(settings.kafka, bootstrap_servers),
                  Topics(settings.kafka.namespace), settings.kafka.partitions)
    app = create_app(settings, bootstrap_servers)
    worker = Worker(app, loglevel=logging.getLevelName(settings.log_level), quiet=True,
                    redirect_stdouts=False,
                    logging_config=logging_config(settings.log_level, settings.log_format))
    worker.execute_from_commandline()


class WorkerProcess:
    """A `chargewatch worker` child process, stopped by its PID."""

    def __init__(self, env: dict[str, str], log_path: Path, web_port: int | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.web_port = web_port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process writes to it
        self._process = subprocess.Popen(
            [sys.executable, "-m", "chargewatch", "worker"],
            env={**os.environ, **self.env}, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            **child_options(),
        )
        log.close()
        return self

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise StackError(f"processor worker exited with code {self._process.returncode}; "
                             f"see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed (fault tests)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        if self._process is not None:
            stop_child(self._process, timeout_s)


def write_config(settings: Settings, path: Path) -> Path:
    """Write the full effective settings (secrets included, mode 0600) for a child process."""
    data = settings.model_dump(mode="json")
    data["clickhouse"]["url"] = settings.clickhouse.url.get_secret_value()
    data["kafka"].update(settings.kafka.secret_values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return path
