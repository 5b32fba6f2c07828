"""The Faust app: topics, the station-state table and the stitching agent.

A thin adapter: everything the agent decides comes from `BatchProcessor`, which runs in
child processes (processors/stitching_process.py, split by partition) so that they work on
one batch while the agent reads the next; this module only moves bytes between Kafka, the
changelog-backed table and those processes.

Order per batch, which is what makes a crash at any instant safe: (1) publish the batch's
outputs and wait until Kafka has them, (2) write each changed station state to the
changelog, to the station's own partition, and wait again, (3) keep the states in the
table and ack the batch's events, whose offsets Faust commits later. A crash before (2)
replays the batch and republishes the same records (same IDs, same versions: the sink and
ClickHouse deduplicate them); a crash after (2) finds every event already applied,
because the state remembers its last applied position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import faust
from faust.types import TP, EventT, Message

from infra import clock
from infra.health import HealthTracker, KafkaProbe
from infra.kafka_config import client_config, faust_credentials
from infra.metrics import ProcessorMetrics
from infra.settings import Settings
from infra.topics import Topics
from processors.agents import StationStore
from processors.batch import BatchCounts
from processors.faust_transport import TunedApp
from processors.health import WorkerHealth, register_health
from processors.intake import Intake
from processors.stitching_process import Done, StitchingPool, build_stitcher
from processors.web import register_views
from schemas.records import Severity

log = logging.getLogger("chargewatch.processor")


BatchHook = Callable[[BatchCounts, float], None]


def create_app(settings: Settings, bootstrap_servers: str,
               on_batch: BatchHook | None = None) -> faust.App:
    """A Faust app for these settings, with the stitching agent registered.

    `on_batch(counts, started)` is called after each batch (benchmarks time with it).
    """
    topics = Topics(settings.kafka.namespace)
    app = _faust_app(settings, bootstrap_servers)
    meter_events = app.topic(topics.meter_events, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    stations = app.Table("station-state", partitions=settings.kafka.partitions,
                         key_type=bytes, value_type=bytes)
    worker = StitchWorker(app, settings, bootstrap_servers, topics, stations, on_batch)
    register_views(app, worker.store, build_stitcher(settings), topics)
    register_health(app, worker.metrics, worker.health)
    app.on_partitions_revoked.connect(worker.on_revoked)
    app.on_partitions_assigned.connect(worker.on_assigned)
    app.agent(meter_events, concurrency=1, name="stitch")(worker.stitch)
    app.timer(interval=settings.processor.expire_every_s)(worker.expire_inactive)
    # A thread, not a Faust timer: timers start only once the worker has joined its group and
    # recovered its table, and a broker lost before that must show in /health too.
    worker.probe.start(threading.Event(), settings.health.probe_every_s)

    @app.task
    async def quiet_root_logger() -> None:
        # Faust's worker leaves the root logger at DEBUG: every debug call then builds a record.
        logging.getLogger().setLevel(settings.log_level)

    return app


def _faust_app(settings: Settings, bootstrap_servers: str) -> faust.App:
    return TunedApp(
        f"{settings.kafka.namespace}-processor",
        broker=f"kafka://{bootstrap_servers}",
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        datadir=str(settings.processor.data_dir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=1.0,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=4 * 1024 * 1024,
        broker_max_poll_records=2000,
        stream_buffer_maxsize=8192,
        producer_linger=0.005,
        web_port=settings.processor.web_port,
        web_bind=settings.processor.web_host,
        web_host=settings.processor.web_host,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
    )


class StitchWorker:
    """The agent, the expiry timer and the rebalance handlers of one worker, over the
    station-state table and the stitching processes."""

    def __init__(self, app: faust.App, settings: Settings, bootstrap_servers: str,
                 topics: Topics, stations: Any, on_batch: BatchHook | None) -> None:
        self.app = app
        self.settings = settings
        self.topics = topics
        self.stations = stations
        self.on_batch = on_batch
        self.store = StationStore(stations, client_config(settings.kafka, bootstrap_servers))
        self.stitching = StitchingPool(settings, bootstrap_servers, self.store.changelog,
                                       settings.processor.stitching_processes)
        self.metrics = ProcessorMetrics()
        tracker = HealthTracker(settings.health.unreachable_s, settings.processor.stall_s)
        self.health = WorkerHealth(tracker)
        self.probe = KafkaProbe(client_config(settings.kafka, bootstrap_servers), tracker,
                                settings.health.probe_timeout_s)
        self.owned: set[int] = set()
        """Partitions between their assignment and revocation signals. Not the consumer's
        assignment: that still lists revoked partitions until the rebalance ends, and the
        expiry timer once reloaded a partition being taken away there, then kept that stale
        copy when the partition came back."""
        self.preloads: set[asyncio.Task[None]] = set()
        self.dead_letters = _Tally()
        self.state_lock = asyncio.Lock()
        """The agent and the expiry timer both read, publish and save station states: one
        at a time."""

    async def on_revoked(self, sender: object, revoked: set[TP], **_: object) -> None:
        partitions = [tp.partition for tp in revoked if tp.topic == self.topics.meter_events]
        self.owned.difference_update(partitions)
        self.health.on_revoked((self.topics.meter_events, p) for p in partitions)
        self.store.forget(partitions)
        async with self.state_lock:
            await self.stitching.forget(partitions)

    async def on_assigned(self, sender: object, assigned_tps: set[TP], **_: object) -> None:
        """Read the new partitions' changelog now, in the background: their first batch
        waited ~0.5 s for it (it still waits, for the lock, while the read is on)."""
        partitions = {tp.partition for tp in assigned_tps
                      if tp.topic == self.topics.meter_events}
        self.owned.update(partitions)
        if partitions:
            task = asyncio.ensure_future(self._preload(partitions))
            self.preloads.add(task)
            task.add_done_callback(self.preloads.discard)

    async def _preload(self, partitions: set[int]) -> None:
        async with self.state_lock:  # a revocation in between leaves its partitions out
            await self._load_states(partitions & set(self.owned))

    async def _load_states(self, partitions: set[int]) -> None:
        """Read what the changelog holds for partitions not yet read, and hand it to the
        stitching process too."""
        await self.stitching.load(await self.store.ensure_loaded(partitions))

    def _save(self, done: Done) -> None:
        for station_id, (partition, blob) in done.states.items():
            self.store.put(station_id, partition, blob)
        for topic, records in done.published.items():
            self.metrics.published.labels(topic).inc(records)
        for (severity, station), count in done.anomalies.items():
            self.metrics.anomalies.labels(severity).inc(count)
            if severity == Severity.CRITICAL:
                self.metrics.critical.labels(station).inc(count)

    async def stitch(self, stream: faust.StreamT[bytes]) -> None:
        """The agent: reads events into batches while the previous batch is processed."""
        intake: Intake[EventT] = Intake(self.settings.processor.batch_max,
                                        self.settings.processor.batch_within_s)
        stream.enable_acks = False  # an event is acked once its batch's states are saved
        processing = asyncio.ensure_future(self._process_batches(stream, intake))
        try:
            async for event in stream.events():
                if not intake.offer(event):
                    await intake.put(event)
        finally:
            processing.cancel()  # it finishes the batch in hand; the rest is not acked
            with contextlib.suppress(asyncio.CancelledError):
                await processing

    async def _process_batches(self, stream: faust.StreamT[bytes],
                               intake: Intake[EventT]) -> None:
        while True:
            events = await intake.take()
            await _complete(asyncio.ensure_future(self._handle(events)))
            for event in events:
                await stream.ack(event)

    async def _handle(self, events: list[EventT]) -> None:
        started = time.perf_counter()
        messages = [event.message for event in events]
        async with self.state_lock:
            # Every assigned partition at once: one changelog read, not one per partition.
            await self._load_states(set(self.owned) | {m.partition for m in messages})
            done = await self.stitching.process(messages)
            self._save(done)
        counts, metrics = done.counts, self.metrics
        metrics.messages.inc(counts.messages)
        metrics.events.labels("used").inc(counts.events_used)
        metrics.events.labels("duplicate").inc(counts.duplicates)
        metrics.events.labels("dead_lettered").inc(counts.dead_lettered)
        self.dead_letters.add(counts.dead_lettered)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        metrics.stations.set(len(self.stations.data))
        _observe_lag(self.app, messages, metrics, self.health)
        self.health.on_batch()
        if self.on_batch is not None:
            self.on_batch(counts, started)
        log.info("batch: %d messages, %d events read, %d used, %d duplicate, "
                 "%d dead-lettered", counts.messages, counts.events_read,
                 counts.events_used, counts.duplicates, counts.dead_lettered)

    async def expire_inactive(self) -> None:
        """Close sessions whose stop never came (inactivity, DESIGN.md's missing stop)."""
        now_ms = clock.now_ms()
        every_ms = int(self.settings.processor.expire_every_s * 1000)
        async with self.state_lock:
            await self._load_states(set(self.owned))
            done = await self.stitching.expire(now_ms, self.dead_letters.take(), every_ms)
            self._save(done)
        self.metrics.expired.inc(done.completed)
        if done.completed:
            log.info("expired %d inactive sessions", done.completed)


async def _complete(batch: asyncio.Future[None]) -> None:
    """Run a batch to its end even when the worker stops meanwhile.

    A batch abandoned half-way (outputs published, states not saved) must not be acked,
    or Faust commits its offsets as it shuts down and it is never replayed; nor left
    hanging. So a cancellation waits for the batch, then goes on. A batch that fails ends
    the process before anything acks it: it is replayed on restart.
    """
    cancelled = False
    while not batch.done():
        try:
            await asyncio.shield(batch)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            log.critical("batch failed; exiting so that it is replayed, not committed",
                         exc_info=True)
            logging.shutdown()
            os._exit(70)
    if cancelled or batch.cancelled():
        raise asyncio.CancelledError


def _observe_lag(app: faust.App, messages: list[Message], metrics: ProcessorMetrics,
                 health: WorkerHealth) -> None:
    """Each partition of this batch: processed up to where, and how far behind its end."""
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        last[(message.topic, message.partition)] = message.offset
    for (topic, partition), offset in last.items():
        try:
            end: int | None = app.consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: BLE001 - no highwater yet: unknown, not an error
            end = None
        if end is not None:
            metrics.lag.labels(str(partition)).set(max(0, end - offset - 1))
        health.on_partition(topic, partition, offset + 1, end)


class _Tally:
    """Dead letters since the last check (for the dead-letter spike anomaly)."""

    def __init__(self) -> None:
        self._count = 0

    def add(self, count: int) -> None:
        self._count += count

    def take(self) -> int:
        count, self._count = self._count, 0
        return count
