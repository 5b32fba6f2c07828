"""What the fault tests drive: a keyed sender, and a sink in a child process to kill -9.

Run as a module, it is that child: `python -m tests.e2e.harness sink CONFIG [STAGE N]`
runs the sink and SIGKILLs itself the N-th time the sink reaches STAGE ("intent": the
batch's intent is recorded, its insert not yet done; "inserted": the insert is done, the
offsets not yet committed). `python -m tests.e2e.harness dump CONFIG` prints every session
(FINAL) as JSON lines, for a verifier whose own process cannot open that chDB folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from chargewatch.embedded import free_port
from chargewatch.render import plain
from infra.settings import Settings, load_settings
from schemas.codec import Codec
from schemas.records import MeterEvent
from tests.e2e.verify import NaturalKey, ms


class KeyedSender:
    """Publishes simulator messages keyed by station, as a gateway would (idempotent producer)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                   "partitioner": "murmur2_random", "log_level": 3})
        self._codec = Codec()
        self._topic = topic

    def send(self, messages: list[tuple[str, list[MeterEvent]]], timeout_s: float = 60) -> None:
        for station, events in messages:
            while True:
                try:
                    self._producer.produce(self._topic, key=station.encode(),
                                           value=self._codec.encode_meter_events(events,
                                                                                 self._topic))
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self._producer.poll(0)
        assert self._producer.flush(timeout_s) == 0, "messages not delivered"


class SinkChild:
    """The sink as a child process, stopped by its PID; `kill_at` = (stage, n) or None."""

    def __init__(self, config: Path, log_path: Path, kill_at: tuple[str, int] | None) -> None:
        self.web_port = free_port()
        args = [sys.executable, "-m", "tests.e2e.harness", "sink", str(config),
                str(self.web_port)]
        if kill_at is not None:
            args += [kill_at[0], str(kill_at[1])]
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)

    def exited(self) -> int | None:
        return self._process.poll()

    def sessions(self) -> int | None:
        """Sessions in ClickHouse per the sink's summary report (None: not answering yet)."""
        url = f"http://127.0.0.1:{self.web_port}/reports/summary"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                report = json.load(response)
        except OSError:
            return None
        if not report["rows"]:
            return 0
        column = report["columns"].index("sessions")
        return sum(int(row[column]) for row in report["rows"])

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def dump_sessions(config: Path) -> dict[NaturalKey, dict[str, Any]]:
    """Every session (FINAL) of the chDB folder `config` names, read by a child process."""
    out = subprocess.run([sys.executable, "-m", "tests.e2e.harness", "dump", str(config)],
                         check=True, capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    for row in rows:
        for name in ("start_time", "end_time"):
            row[name] = dt.datetime.fromisoformat(row[name])
    by_key = {(r["station_id"], r["connector_id"], ms(r["start_time"])): r for r in rows}
    assert len(by_key) == len(rows), "two sessions share station, connector and start"
    return by_key


def _run_sink(settings: Settings, web_port: int, stage: str | None, n: int) -> None:
    from chargewatch.sink_service import SinkService

    reached = 0

    def on_step(step: str, _intent: object) -> None:
        nonlocal reached
        if step == stage:
            reached += 1
            if reached == n:
                os.kill(os.getpid(), signal.SIGKILL)

    service = SinkService(settings, settings.kafka.bootstrap_servers or "", web_port=web_port,
                          on_step=on_step).start()
    signal.signal(signal.SIGTERM, lambda *_: service.stop_event.set())
    while not service.stop_event.is_set() and service.running:
        time.sleep(0.1)
    service.stop()


def _dump(settings: Settings) -> None:
    from sinks.clickhouse import connect

    client = connect(settings.clickhouse.url.get_secret_value())
    result = client.query(
        f"SELECT * FROM {settings.clickhouse.database}.charging_sessions FINAL")
    for row in result.result_rows:
        print(json.dumps({k: plain(v) for k, v in zip(result.column_names, row, strict=True)}))


if __name__ == "__main__":
    command, config = sys.argv[1], Path(sys.argv[2])
    loaded = load_settings(config_file=config)
    if command == "sink":
        stage = sys.argv[4] if len(sys.argv) > 4 else None
        _run_sink(loaded, int(sys.argv[3]), stage, int(sys.argv[5]) if stage else 0)
    else:
        _dump(loaded)
