"""Stitching in a process of its own, so that Faust's work per message and ours use both cores.

A Faust agent runs on one thread, and Faust's own cost per message (~78 µs on this
machine) is of the same order as decoding, stitching, pricing and encoding it: done one
after the other, the two halved the rate. So the worker only reads, batches, saves states
and acks, and a child process does the rest: decode, stitch, detect anomalies, encode
and publish the outputs, then wait until Kafka has them. While the child works on one
batch, the agent reads the next.

The child keeps a mirror of the station states the worker holds: the worker forwards what
it reads from the changelog and what a rebalance takes away. The child publishes a
batch's outputs, waits until Kafka has them, then writes the changed states to the
changelog (each to its station's partition) and waits again, and answers with those
states, which the worker puts in its table. Both sides hold the same bytes, and a state
is never in the changelog before the outputs of the events it has applied.

The child serves one request at a time, in order; when the worker goes (even by SIGKILL)
its end of the pipe closes and the child exits. A failure in the child comes back as an
error and fails the batch, which is then not acked.
The child is spawned, not forked: forking a process that runs threads is unsafe.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from charging.anomalies import AnomalyDetector
from charging.session_ids import IdTemplate
from charging.status import StatusHistory
from charging.stitcher import SessionStitcher, StitcherConfig
from infra.clock import now_ms
from infra.kafka_config import client_config
from infra.settings import Settings
from infra.topics import Topics
from processors.batch import BatchCounts, BatchOutput, BatchProcessor, RawMessage
from processors.errors import StitchingFailed
from processors.outbox import Outbox
from schemas.codec import Codec


class MessageFields(Protocol):
    """What a batch needs of a consumed message (Faust's `Message`, or a `RawMessage`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """What a batch (or an expiry round) did, for the worker to save, count and ack."""

    counts: BatchCounts
    states: dict[str, tuple[int, bytes]]
    """Changed station states: station id -> (its partition, encoded state)."""
    published: dict[str, int] = field(default_factory=dict)
    """Records published per topic (acknowledged by Kafka)."""
    completed: int = 0
    anomalies: dict[tuple[str, str], int] = field(default_factory=dict)
    """Anomalies published per (severity, station), for the on-call metrics."""


@dataclass(frozen=True, slots=True)
class _Failure:
    text: str


def stitcher_config(settings: Settings) -> StitcherConfig:
    return StitcherConfig(
        partitions=settings.kafka.partitions,
        id_template=IdTemplate.parse(settings.processor.id_template),
        tariff=settings.pricing(),
        rules=settings.stitch_rules(),
        registry=settings.station_registry(),
    )


def build_stitcher(settings: Settings) -> SessionStitcher:
    return SessionStitcher(stitcher_config(settings))


class StitchingProcess:
    """The worker's handle on its stitching child process."""

    def __init__(self, settings: Settings, bootstrap_servers: str, changelog: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_end, settings, bootstrap_servers, changelog),
            name="chargewatch-stitcher", daemon=True)
        self._process.start()
        child_end.close()
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="stitcher-pipe")

    @property
    def pid(self) -> int | None:
        return self._process.pid

    async def load(self, records: dict[bytes, tuple[int, bytes | None]]) -> None:
        """States read from the changelog (None: deleted), as StationStore loaded them."""
        if records:
            await self._call("load", records)

    async def forget(self, partitions: Iterable[int]) -> None:
        await self._call("forget", sorted(set(partitions)))

    async def process(self, messages: Sequence[MessageFields]) -> Done:
        # As plain tuples: pickling 2,000 dataclass instances cost ~3 ms each way.
        return await self._call("process", [
            (m.topic, m.partition, m.offset, m.key, m.value) for m in messages])

    async def expire(self, now_ms: int, dead_letters: int, window_ms: int) -> Done:
        return await self._call("expire", now_ms, dead_letters, window_ms)

    async def _call(self, *request: Any) -> Any:
        reply = await asyncio.get_running_loop().run_in_executor(
            self._calls, self._round_trip, request)
        if isinstance(reply, _Failure):
            raise StitchingFailed(f"the stitching process failed {request[0]!r}:\n{reply.text}")
        return reply

    def _round_trip(self, request: tuple[Any, ...]) -> Any:
        try:
            self._conn.send(request)
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            raise StitchingFailed(f"the stitching process is gone (exit code "
                                  f"{self._process.exitcode}): {exc}") from exc


class StitchingPool:
    """Several stitching processes side by side, partition p going to process p % n.

    A station lives on one partition, so each process keeps the states, clocks and
    anomaly memory of its own stations, as one process would for all: splitting a batch
    by partition changes no output. The pool answers when every process has answered (so
    a batch is acked only when all of it is in Kafka); one failure fails the batch. The
    dead-letter spike check goes to the first process only, so one anomaly is raised.
    """

    def __init__(self, settings: Settings, bootstrap_servers: str, changelog: str,
                 processes: int) -> None:
        self._processes = [StitchingProcess(settings, bootstrap_servers, changelog)
                           for _ in range(processes)]

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self._processes]

    async def load(self, records: dict[bytes, tuple[int, bytes | None]]) -> None:
        parts = self._split(records.items(), lambda item: item[1][0])
        await asyncio.gather(*(p.load(dict(items)) for p, items in parts))

    async def forget(self, partitions: Iterable[int]) -> None:
        parts = self._split(set(partitions), lambda partition: partition, every=True)
        await asyncio.gather(*(p.forget(some) for p, some in parts))

    async def process(self, messages: Sequence[MessageFields]) -> Done:
        parts = self._split(messages, lambda m: m.partition)
        return _merged(await asyncio.gather(*(p.process(some) for p, some in parts)))

    async def expire(self, now_ms: int, dead_letters: int, window_ms: int) -> Done:
        return _merged(await asyncio.gather(*(
            p.expire(now_ms, dead_letters if n == 0 else 0, window_ms)
            for n, p in enumerate(self._processes))))

    def _split(self, items: Iterable[Any], partition_of: Any,
               every: bool = False) -> list[tuple[StitchingProcess, list[Any]]]:
        """Each process with the items of its partitions (those with none left out, unless
        `every`)."""
        groups: list[list[Any]] = [[] for _ in self._processes]
        for item in items:
            groups[partition_of(item) % len(groups)].append(item)
        return [(p, g) for p, g in zip(self._processes, groups, strict=True) if g or every]


def _merged(done: Sequence[Done]) -> Done:
    """One Done for the parts of a batch that the processes of a pool did."""
    if len(done) == 1:
        return done[0]
    counts = BatchCounts(*(sum(getattr(d.counts, f) for d in done)
                           for f in BatchCounts.__dataclass_fields__))
    published: dict[str, int] = {}
    anomalies: dict[tuple[str, str], int] = {}
    for d in done:
        for topic, n in d.published.items():
            published[topic] = published.get(topic, 0) + n
        for key, n in d.anomalies.items():
            anomalies[key] = anomalies.get(key, 0) + n
    return Done(counts, {k: v for d in done for k, v in d.states.items()}, published,
                sum(d.completed for d in done), anomalies)


class _Child:
    """The child's side: the batch processor, the station-state mirror and the outbox."""

    def __init__(self, settings: Settings, bootstrap_servers: str, changelog: str) -> None:
        self.topics = Topics(settings.kafka.namespace)
        self.changelog = changelog
        self.codec = Codec(settings.kafka.schema_registry_url)
        self.processor = BatchProcessor(
            build_stitcher(settings), self.codec.decode_meter_events,
            now_ms,
            AnomalyDetector(settings.anomaly_rules(), registry=settings.station_registry()),
            StatusHistory(), self.codec.decode_meter_event_items)
        self.outbox = Outbox(client_config(settings.kafka, bootstrap_servers))
        self.states: dict[str, tuple[int, bytes]] = {}

    def load(self, records: dict[bytes, tuple[int, bytes | None]]) -> None:
        for key, (partition, value) in records.items():
            if value is None:
                self.states.pop(key.decode(), None)
            else:
                self.states[key.decode()] = (partition, value)

    def forget(self, partitions: list[int]) -> None:
        gone = set(partitions)
        self.states = {s: v for s, v in self.states.items() if v[0] not in gone}

    def process(self, messages: list[tuple[str, int, int, bytes | None, bytes]]) -> Done:
        states = self.states
        out = self.processor.process([RawMessage(*m) for m in messages],
                                     lambda s: (states.get(s) or (0, None))[1])
        return self._finish(out)

    def expire(self, now_ms: int, dead_letters: int, window_ms: int) -> Done:
        out = self.processor.expire([(s, blob) for s, (_, blob) in self.states.items()], now_ms)
        spike = self.processor.dead_letter_spike(dead_letters, window_ms, now_ms)
        if spike is not None:
            out.anomalies.append(spike)
        return self._finish(out)

    def _finish(self, out: BatchOutput) -> Done:
        published = self._publish(out)
        for station, (partition, blob) in out.states.items():
            self.outbox.send(self.changelog, station.encode(), blob, partition)
        self.outbox.flush()
        self.states.update(out.states)
        anomalies: dict[tuple[str, str], int] = {}
        for a in out.anomalies:
            key = (str(a.severity), a.station_id)
            anomalies[key] = anomalies.get(key, 0) + 1
        return Done(out.counts, out.states, published, len(out.completed), anomalies)

    def _publish(self, out: BatchOutput) -> dict[str, int]:
        """Every output of `out`, acknowledged by Kafka when this returns."""
        topics, codec, send = self.topics, self.codec, self.outbox.send
        for s in out.completed:
            send(topics.sessions_completed, s.session_id.encode(),
                 codec.encode_session(s, topics.sessions_completed))
        for s in out.updates:
            send(topics.session_updates, s.session_id.encode(),
                 codec.encode_session(s, topics.session_updates))
        for d in out.dead_letters:
            send(topics.dead_letters, d.original_key,
                 codec.encode_dead_letter(d, topics.dead_letters))
        for a in out.anomalies:
            send(topics.anomalies, a.station_id.encode(),
                 codec.encode_anomaly(a, topics.anomalies))
        for c in out.statuses:
            send(topics.connector_status, c.station_id.encode(),
                 codec.encode_connector_status(c, topics.connector_status))
        self.outbox.flush()
        return {topics.sessions_completed: len(out.completed),
                topics.session_updates: len(out.updates),
                topics.dead_letters: len(out.dead_letters),
                topics.anomalies: len(out.anomalies),
                topics.connector_status: len(out.statuses)}


def _serve(conn: Connection, settings: Settings, bootstrap_servers: str,
           changelog: str) -> None:
    """The child process: answer requests in order until the worker's end closes."""
    child = _Child(settings, bootstrap_servers, changelog)
    while True:
        try:
            name, *args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = getattr(child, name)(*args)
        except Exception:  # noqa: BLE001 - reported to the worker, which fails the batch
            reply = _Failure(traceback.format_exc())
        conn.send(reply)
