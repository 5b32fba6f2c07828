"""Faults on the embedded stack: after each, ClickHouse (FINAL) equals the truth exactly.

Workers killed (-9) and stopped at random moments, a second worker joining and leaving,
the sink killed -9 before and after an insert, ClickHouse failing for a while, the broker
frozen for a while. The verifier (tests/e2e/verify.py) reads only ClickHouse, the truth
and the published log (for the session IDs a clean run gives), never processor internals.
Random moments come from a seeded generator, so a failure repeats.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from chargewatch.embedded import EmbeddedBroker, free_port
from chargewatch.publishing import fleet_config
from chargewatch.sink_service import SinkService
from chargewatch.stack import LocalStack
from chargewatch.worker import write_config
from infra.settings import Settings, load_settings
from producers.simulator import simulate
from producers.truth import TrueSession
from schemas.records import MeterEvent
from sinks.clickhouse import connect
from tests.e2e.harness import KeyedSender, SinkChild, dump_sessions
from tests.e2e.verify import assert_matches_truth, expected_ids, session_rows

pytestmark = pytest.mark.e2e

EXAMPLE_TARIFFS = Path(__file__).resolve().parents[2] / "tariffs" / "example.yaml"
FLEET = {"stations": 40, "duration_h": 12.0, "seed": 23, "events_per_message": 5}
"""165 sessions, 4,799 messages: a backlog that takes the worker a few seconds."""
Messages = list[tuple[str, list[MeterEvent]]]


def _settings(bootstrap: str | None, chdb_url: str) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap, "namespace": f"f{uuid.uuid4().hex[:8]}",
               "partitions": 3},
        clickhouse={"url": chdb_url, "database": f"f_{uuid.uuid4().hex[:8]}"},
        simulator=FLEET,
        processor={"tariff_file": str(EXAMPLE_TARIFFS), "expire_every_s": 0.2},
        sink={"batch_size": 200, "batch_ms": 200},
    )


def _fleet(settings: Settings, parts: int) -> tuple[list[TrueSession], list[Messages]]:
    simulation = simulate(fleet_config(settings))
    messages = list(simulation.messages())
    step = -(-len(messages) // parts)
    return list(simulation.truth()), [messages[i:i + step] for i in range(0, len(messages), step)]


def _check(stack: LocalStack, truth: list[TrueSession]) -> None:
    stack.wait_for_sessions(len(truth), timeout_s=240)
    rows = session_rows(stack.client, stack.settings.clickhouse.database)
    assert_matches_truth(truth, rows)
    ids = expected_ids(stack.settings, stack.bootstrap_servers)
    assert {k: r["session_id"] for k, r in rows.items()} == ids


def test_worker_killed_and_stopped_at_random_moments(broker: EmbeddedBroker, chdb_url: str,
                                                     tmp_path: Path) -> None:
    settings = _settings(broker.bootstrap_servers, chdb_url)
    truth, slices = _fleet(settings, 5)
    rng = random.Random(20261124)
    with LocalStack(settings, tmp_path) as stack:
        sender = KeyedSender(stack.bootstrap_servers, stack.topics.meter_events)
        for number, part in enumerate(slices):
            sender.send(part)
            if number == len(slices) - 1:
                break
            time.sleep(rng.uniform(0.05, 1.0))  # somewhere in the middle of the backlog
            assert stack.worker is not None
            if number == 2:
                stack.worker.stop()  # SIGTERM: a batch in flight must finish, not be skipped
            else:
                stack.worker.kill()
            stack.start_worker()
        _check(stack, truth)


def _processed(web_port: int | None) -> float:
    """Meter-events messages a worker has processed, from its Prometheus endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("chargewatch_processor_messages_total"))


def test_a_second_worker_joins_and_leaves(broker: EmbeddedBroker, chdb_url: str,
                                          tmp_path: Path) -> None:
    """Scale-out: partitions and their station states move to a joining worker (its own web
    port) and back when it leaves; sessions open across both rebalances come out exact.

    The first worker holds every partition and has applied the first slice before the
    second joins, so a partition really leaves and comes back; the expiry timer (every
    0.2 s here) then runs inside each rebalance, where it once reloaded a partition being
    taken away and kept that stale copy when the partition came back."""
    settings = _settings(broker.bootstrap_servers, chdb_url)
    truth, slices = _fleet(settings, 3)
    with LocalStack(settings, tmp_path) as stack:
        sender = KeyedSender(stack.bootstrap_servers, stack.topics.meter_events)
        sender.send(slices[0])
        deadline = time.monotonic() + 90
        while _processed(stack.worker_web_port) < len(slices[0]):
            assert time.monotonic() < deadline, "the first worker did not apply the first slice"
            time.sleep(0.2)
        second = stack.start_worker("worker-2")
        assert second.web_port != stack.worker_web_port
        try:
            # A trickle while the second worker starts and joins, then the rest at once.
            trickle = slices[1]
            while trickle and _processed(second.web_port) == 0:
                sender.send(trickle[:10])
                trickle = trickle[10:]
                second.check_alive()
                time.sleep(0.25)
            assert _processed(second.web_port) > 0, "the second worker was given no partition"
            sender.send(trickle)
        finally:
            second.stop()  # leaves: its partitions go back to the first worker
        sender.send(slices[2])
        _check(stack, truth)


def test_sink_killed_before_and_after_an_insert(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """The sink runs in a child process (its own chDB folder) and SIGKILLs itself once after
    recording a batch's intent (insert not done), once after an insert (offsets not
    committed); a third run finishes. Replayed batches carry the same token: no duplicates."""
    settings = _settings(broker.bootstrap_servers, f"chdb://{tmp_path / 'chdb'}")
    truth, slices = _fleet(settings, 1)
    config = write_config(settings, tmp_path / "sink-config.json")
    log = tmp_path / "sink.log"
    with LocalStack(settings, tmp_path, with_sink=False) as stack:
        KeyedSender(stack.bootstrap_servers, stack.topics.meter_events).send(slices[0])
        for kill_at in (("intent", 3), ("inserted", 2)):
            sink = SinkChild(config, log, kill_at)
            deadline = time.monotonic() + 120
            while sink.exited() is None:
                assert time.monotonic() < deadline, f"the sink never reached {kill_at}"
                time.sleep(0.2)
            assert sink.exited() == -signal.SIGKILL, log.read_text()[-2000:]
        sink = SinkChild(config, log, None)
        try:
            deadline = time.monotonic() + 240
            while (sink.sessions() or 0) < len(truth):
                assert time.monotonic() < deadline, "sessions did not land after the kills"
                assert sink.exited() is None, log.read_text()[-2000:]
                time.sleep(0.5)
        finally:
            sink.stop()
        ids = expected_ids(settings, stack.bootstrap_servers)
    rows = dump_sessions(config)
    assert_matches_truth(truth, rows)
    assert {k: r["session_id"] for k, r in rows.items()} == ids


class _FailingClickHouse:
    """The real client, except that every call fails while `down` is set (a server outage
    cannot be staged with the in-process engine)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.down = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set():
                raise ConnectionError(f"ClickHouse unavailable (fault injected into {name})")
            return attr(*args, **kwargs)
        return call


def test_clickhouse_unavailable_for_a_while(broker: EmbeddedBroker, chdb_url: str,
                                            tmp_path: Path) -> None:
    settings = _settings(broker.bootstrap_servers, chdb_url)
    truth, slices = _fleet(settings, 2)
    with LocalStack(settings, tmp_path, with_sink=False) as stack:
        stack.client = connect(chdb_url)
        failing = _FailingClickHouse(stack.client)
        sink = SinkService(settings, stack.bootstrap_servers, web_port=free_port(),
                           client=failing)
        stack.sink = sink.start()
        sender = KeyedSender(stack.bootstrap_servers, stack.topics.meter_events)
        sender.send(slices[0])
        deadline = time.monotonic() + 120
        while sink.runner.stats.batches == 0:
            assert time.monotonic() < deadline, "nothing was inserted before the outage"
            time.sleep(0.2)
        failing.down.set()
        sender.send(slices[1])
        buffered = 0
        outage_ends = time.monotonic() + 8
        while time.monotonic() < outage_ends:
            buffered = max(buffered, sink.runner.stats.buffered)
            time.sleep(0.1)
        failing.down.clear()
        _check(stack, truth)
        stats = sink.runner.stats
    assert stats.retries >= 2, "the sink should have retried, backing off"
    assert buffered <= 3 * 2 * settings.sink.batch_size, \
        f"{buffered} messages held during the outage: consumption should pause"


def test_broker_unreachable_for_a_while(tmp_path: Path, chdb_url: str) -> None:
    """The stack's own broker is frozen (SIGSTOP) while the fleet keeps publishing: the
    producer buffers, the worker and the sink stall, and all resume when it answers."""
    settings = _settings(None, chdb_url)
    truth, slices = _fleet(settings, 3)
    with LocalStack(settings, tmp_path) as stack:
        assert stack.broker is not None and stack.broker.pid is not None
        sender = KeyedSender(stack.bootstrap_servers, stack.topics.meter_events)
        sender.send(slices[0])
        time.sleep(1.0)
        os.kill(stack.broker.pid, signal.SIGSTOP)
        failures: list[BaseException] = []

        def publish() -> None:
            try:
                sender.send(slices[1], 120)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                failures.append(exc)

        try:
            publishing = threading.Thread(target=publish)
            publishing.start()
            time.sleep(8.0)
        finally:
            os.kill(stack.broker.pid, signal.SIGCONT)
        publishing.join(150)
        assert not publishing.is_alive() and not failures, failures
        sender.send(slices[2])
        _check(stack, truth)
