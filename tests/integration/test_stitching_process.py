"""The stitching child process: a batch's outputs and states reach Kafka before it answers,
its death fails the batch, and it does not outlive the worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.worker import write_config
from infra.settings import Settings, load_settings
from infra.topics import Topics, ensure_topics, read_to_end
from processors.batch import RawMessage
from processors.errors import StitchingFailed
from processors.stitching_process import StitchingPool, StitchingProcess
from schemas.codec import Codec
from schemas.records import EventKind, MeterEvent

pytestmark = pytest.mark.integration

T0 = 1_795_400_000_000
CHANGELOG = "stitching-test-changelog"


def _settings(broker: EmbeddedBroker, namespace: str) -> Settings:
    settings = load_settings(kafka={"bootstrap_servers": broker.bootstrap_servers,
                                    "namespace": namespace, "partitions": 1})
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, 1)
    return settings


def _start_message(station: str) -> RawMessage:
    event = MeterEvent(event_id="e1", station_id=station, connector_id=1,
                       kind=EventKind.STARTED, event_time_ms=T0, receive_time_ms=T0,
                       transaction_id="T1", seq=0, energy_wh=1_000.0)
    return RawMessage("meter-events", 0, 0, station.encode(),
                      Codec().encode_meter_events([event]))


def _gone(pid: int, within_s: float) -> bool:
    """The process has exited (a zombie waiting for whoever adopted it counts as exited)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def test_a_batch_answers_after_its_outputs_and_states_are_in_kafka(
        broker: EmbeddedBroker, namespace: str) -> None:
    settings = _settings(broker, namespace)
    changelog = f"{namespace}-{CHANGELOG}"
    conf = {"bootstrap.servers": broker.bootstrap_servers}

    async def run() -> object:
        stitching = StitchingProcess(settings, broker.bootstrap_servers, changelog)
        return await stitching.process([_start_message("CS-1")])

    done = asyncio.run(run())

    assert done.counts.events_used == 1
    assert set(done.states) == {"CS-1"}
    stored = read_to_end(conf, changelog, [0])
    assert stored == {b"CS-1": (0, done.states["CS-1"][1])}
    updates = read_to_end(conf, Topics(namespace).session_updates, [0])
    assert len(updates) == 1 and done.published[Topics(namespace).session_updates] == 1


def test_a_pool_splits_a_batch_by_partition_and_answers_as_one_process(
        broker: EmbeddedBroker, namespace: str) -> None:
    settings = load_settings(kafka={"bootstrap_servers": broker.bootstrap_servers,
                                    "namespace": namespace, "partitions": 4})
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, Topics(namespace), 4)
    codec = Codec()
    messages = []
    for n in range(12):
        station = f"CS-{n}"
        events = [MeterEvent(event_id=f"{station}-{i}", station_id=station, connector_id=1,
                             kind=EventKind.STARTED if i == 0 else EventKind.METER,
                             event_time_ms=T0 + i * 60_000, receive_time_ms=T0 + i * 60_000,
                             transaction_id="T1", seq=i, energy_wh=1_000.0 + i * 500)
                  for i in range(3)]
        messages.append(RawMessage("meter-events", n % 4, n // 4, station.encode(),
                                   codec.encode_meter_events(events)))

    async def run(processes: int) -> object:
        pool = StitchingPool(settings, broker.bootstrap_servers,
                             f"{namespace}-{processes}-{CHANGELOG}", processes)
        assert len(set(pool.pids)) == processes
        return await pool.process(messages)

    one, two = asyncio.run(run(1)), asyncio.run(run(2))
    assert one.counts.events_used == 36 and len(one.states) == 12
    assert two == one


def test_a_dead_stitching_process_fails_the_batch(broker: EmbeddedBroker,
                                                  namespace: str) -> None:
    settings = _settings(broker, namespace)

    async def run() -> None:
        stitching = StitchingProcess(settings, broker.bootstrap_servers,
                                     f"{namespace}-{CHANGELOG}")
        await stitching.forget([])  # started and answering
        assert stitching.pid is not None
        os.kill(stitching.pid, signal.SIGKILL)
        await stitching.process([_start_message("CS-1")])

    with pytest.raises(StitchingFailed, match="stitching process is gone"):
        asyncio.run(run())


_WORKER = """
import asyncio, sys, time
from infra.settings import load_settings
from processors.stitching_process import StitchingPool, StitchingProcess

async def main():
    stitching = StitchingProcess(load_settings(sys.argv[1]), sys.argv[2], "unused")
    await stitching.forget([])
    print(stitching.pid, flush=True)
    time.sleep(600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_stitching_process_ends_with_its_worker(broker: EmbeddedBroker, namespace: str,
                                                    tmp_path: Path) -> None:
    """SIGKILL of the worker leaves no orphan: the child sees its pipe close and exits."""
    config = write_config(_settings(broker, namespace), tmp_path / "config.json")
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    worker = subprocess.Popen([sys.executable, str(script), str(config),
                               broker.bootstrap_servers], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        worker.kill()
        worker.wait()
        assert _gone(child, within_s=10), f"stitching process {child} outlived its worker"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
