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
import time
from collections.abc import Callable

import faust
from faust.types import TP, EventT, Message

from infra import clock
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

log = logging.getLogger("chargewatch.processor")


BatchHook = Callable[[BatchCounts, float], None]


def create_app(settings: Settings, bootstrap_servers: str,
               on_batch: BatchHook | None = None) -> faust.App:
    """A Faust app for these settings, with the stitching agent registered.

    `on_batch(counts, started)` is called after each batch (benchmarks time with it).
    """
    topics = Topics(settings.kafka.namespace)
    app = TunedApp(
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
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
    )
    meter_events = app.topic(topics.meter_events, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    stations = app.Table("station-state", partitions=settings.kafka.partitions,
                         key_type=bytes, value_type=bytes)
    stitcher = build_stitcher(settings)
    store = StationStore(stations, client_config(settings.kafka, bootstrap_servers))
    stitching = StitchingPool(settings, bootstrap_servers, store.changelog,
                              settings.processor.stitching_processes)
    register_views(app, store, stitcher, topics)
    metrics = ProcessorMetrics()
    health = WorkerHealth(stall_s=settings.processor.stall_s)
    register_health(app, metrics, health)

    owned: set[int] = set()
    """Partitions between their assignment and revocation signals. Not the consumer's
    assignment: that still lists revoked partitions until the rebalance ends, and the
    expiry timer once reloaded a partition being taken away there, then kept that stale
    copy when the partition came back."""

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: object, revoked: set[TP], **_: object) -> None:
        partitions = [tp.partition for tp in revoked if tp.topic == topics.meter_events]
        owned.difference_update(partitions)
        store.forget(partitions)
        async with state_lock:
            await stitching.forget(partitions)

    preloads: set[asyncio.Task[None]] = set()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: object, assigned_tps: set[TP], **_: object) -> None:
        """Read the new partitions' changelog now, in the background: their first batch
        waited ~0.5 s for it (it still waits, for the lock, while the read is on)."""
        partitions = {tp.partition for tp in assigned_tps if tp.topic == topics.meter_events}
        owned.update(partitions)
        if partitions:
            task = asyncio.ensure_future(preload(partitions))
            preloads.add(task)
            task.add_done_callback(preloads.discard)

    async def preload(partitions: set[int]) -> None:
        async with state_lock:  # a revocation in between leaves its partitions out
            await load_states(partitions & assigned())

    def count_published(done: Done) -> None:
        for topic, records in done.published.items():
            metrics.published.labels(topic).inc(records)

    async def load_states(partitions: set[int]) -> None:
        """Read what the changelog holds for partitions not yet read, and hand it to the
        stitching process too."""
        await stitching.load(await store.ensure_loaded(partitions))

    def assigned() -> set[int]:
        return set(owned)

    def save_states(done: Done) -> None:
        for station_id, (partition, blob) in done.states.items():
            store.put(station_id, partition, blob)

    dead_letters = _Tally()
    # The agent and the expiry timer both read, publish and save station states: one at a time.
    state_lock = asyncio.Lock()

    @app.agent(meter_events, concurrency=1, name="stitch")
    async def stitch(stream: faust.StreamT[bytes]) -> None:
        intake: Intake[EventT] = Intake(settings.processor.batch_max,
                                        settings.processor.batch_within_s)
        stream.enable_acks = False  # an event is acked once its batch's states are saved
        processing = asyncio.ensure_future(process_batches(stream, intake))
        try:
            async for event in stream.events():
                if not intake.offer(event):
                    await intake.put(event)
        finally:
            processing.cancel()  # it finishes the batch in hand; the rest is not acked
            with contextlib.suppress(asyncio.CancelledError):
                await processing

    async def process_batches(stream: faust.StreamT[bytes], intake: Intake[EventT]) -> None:
        while True:
            events = await intake.take()
            await _complete(asyncio.ensure_future(handle(events)))
            for event in events:
                await stream.ack(event)

    async def handle(events: list[EventT]) -> None:
        started = time.perf_counter()
        messages = [event.message for event in events]
        async with state_lock:
            # Every assigned partition at once: one changelog read, not one per partition.
            await load_states(assigned() | {message.partition for message in messages})
            done = await stitching.process(messages)
            save_states(done)
        count_published(done)
        counts = done.counts
        metrics.messages.inc(counts.messages)
        metrics.events.labels("used").inc(counts.events_used)
        metrics.events.labels("duplicate").inc(counts.duplicates)
        metrics.events.labels("dead_lettered").inc(counts.dead_lettered)
        dead_letters.add(counts.dead_lettered)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        metrics.stations.set(len(stations.data))
        health.on_batch(_lag(app, messages, metrics))
        if on_batch is not None:
            on_batch(counts, started)
        log.info("batch: %d messages, %d events read, %d used, %d duplicate, "
                 "%d dead-lettered", counts.messages, counts.events_read,
                 counts.events_used, counts.duplicates, counts.dead_lettered)

    @app.timer(interval=settings.processor.expire_every_s)
    async def expire_inactive() -> None:
        """Close sessions whose stop never came (inactivity, DESIGN.md's missing stop)."""
        now_ms = clock.now_ms()
        async with state_lock:
            await load_states(assigned())
            done = await stitching.expire(now_ms, dead_letters.take(),
                                          int(settings.processor.expire_every_s * 1000))
            save_states(done)
        count_published(done)
        metrics.expired.inc(done.completed)
        if done.completed:
            log.info("expired %d inactive sessions", done.completed)

    @app.task
    async def quiet_root_logger() -> None:
        # Faust's worker leaves the root logger at DEBUG: every debug call then builds a record.
        logging.getLogger().setLevel(settings.log_level)

    return app


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


def _lag(app: faust.App, messages: list[Message], metrics: ProcessorMetrics) -> int:
    """Messages behind the end of the partitions this batch came from (0 when unknown)."""
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        last[(message.topic, message.partition)] = message.offset
    total = 0
    for (topic, partition), offset in last.items():
        try:
            behind = max(0, app.consumer.highwater(TP(topic, partition)) - offset - 1)
        except Exception:  # noqa: BLE001 - no highwater yet: unknown, not an error
            continue
        metrics.lag.labels(str(partition)).set(behind)
        total += behind
    return total


class _Tally:
    """Dead letters since the last check (for the dead-letter spike anomaly)."""

    def __init__(self) -> None:
        self._count = 0

    def add(self, count: int) -> None:
        self._count += count

    def take(self) -> int:
        count, self._count = self._count, 0
        return count
