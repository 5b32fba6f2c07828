"""The sink loop: sessions-completed, dead-letters (and anomalies) → ClickHouse, effectively once.

Per batch, in this order: record the intent (sinks/batches.py), insert under the intent's
token, publish the batch's dead letters and wait for their delivery, then commit offset
last+1 synchronously. A crash between any two steps leaves Kafka behind ClickHouse, never
ahead; the restarted sink rebuilds the recorded batch, and ClickHouse drops the repeat.
A failed insert or publish pauses consumption and retries the same batch with backoff.

The writes run in a pipeline beside this thread, which keeps reading (bounded): a batch
is sent as soon as it is ready, while others are in flight (at most one per partition).
A prepare thread does each batch's pure-Python part (the sink's `prepare`); a writer
thread records the intents of the batches sent together (one insert), then inserts them
one by one. chDB and the HTTP client release the GIL during an insert, so the next
batches are read and prepared meanwhile. Every Kafka call stays in this thread: each
batch is settled here (dead letters published, offset committed) once its insert ended.
The rebalance callbacks (which run inside this thread's reads) settle every batch in
flight first, so each commit happens before its partition can move and the ClickHouse
client is never used from two threads at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from infra.health import CLICKHOUSE, KAFKA, HealthTracker
from schemas.codec import Codec
from sinks.anomaly_sink import AnomalySink
from sinks.batches import Intent, Skip, Write, group_ranges, group_token, plan
from sinks.dead_letter_sink import DeadLetterSink
from sinks.intents import load_intents, record_intents
from sinks.session_sink import SessionSink
from sinks.session_update_sink import SessionUpdateSink
from sinks.status_sink import StatusSink
from sinks.table_sink import Message, Part, TableSink, Written

log = logging.getLogger("chargewatch.sink")

CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.queue.backoff.ms": 10,
    "session.timeout.ms": 6000,
    "enable.partition.eof": True,
    "log_level": 4,
}
_SHARED_PREFIXES = ("bootstrap.servers", "client.id", "security.", "sasl.", "ssl.", "log_level",
                    "logger")
"""The consumer's keys its dead-letter producer shares: the connection, and the `logger`
(infra/kafka_config.py) that routes librdkafka's log into ours."""
_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
_READ_AHEAD_BATCHES = 2
"""While a batch is written, read on until this many batches' worth of messages wait."""
_READ_AHEAD_CHUNK = 2000
"""Messages per read while batches are in flight: small, so an insert's end is noticed
within a few ms."""

StepHook = Callable[[str, Intent], None]
"""Called with ("intent", i) after the intent is recorded (in the writer thread) and
("inserted", i) after the insert; what it raises propagates from `poll_once`."""


class _HookRaised(Exception):
    """A step hook raised in the writer thread; `poll_once` raises its cause."""


def producer_config(consumer_conf: dict[str, Any]) -> dict[str, Any]:
    """The dead-letter producer's configuration: the consumer's shared keys only."""
    return {k: v for k, v in consumer_conf.items() if k.startswith(_SHARED_PREFIXES)}


@dataclass(frozen=True, slots=True)
class SinkStats:
    rows_written: int
    batches: int
    """Partition batches (offset ranges) written."""
    inserts: int
    """Inserts they took: fewer when a topic's partitions are coalesced."""
    dead_lettered: int
    last_insert_ms: float
    retries: int
    commit_failures: int
    buffered: int
    """Messages read and waiting for their insert (bounded: consumption pauses on failure)."""


@dataclass
class _Partition:
    """One assigned partition: its buffer, last intent and whether its end was reached."""

    topic: str
    partition: int
    intent: Intent | None
    messages: list[Message] = field(default_factory=list)
    oldest: float = 0.0
    end_offset: int | None = None
    retry: Write | None = None
    """A batch whose insert or publish failed: written again, unchanged, before anything else."""
    job: _Job | None = None
    """The insert its batch is in, while in flight."""


Member = tuple[_Partition, Write]
"""One partition's batch in an insert."""


@dataclass(frozen=True, slots=True)
class _Insert:
    """What goes into one insert: one topic's partition batches, under `token`. `split`: a
    range whose coalesced insert may have landed, written again alone (probe first)."""

    token: str
    members: list[Member]
    split: bool = False


@dataclass
class _Job:
    """An insert in the pipeline; `done` once settled (True: committed)."""

    members: list[Member]
    started: float
    prepared: Future[Any]
    insert: Future[Written]
    done: bool | None = None


class SinkRunner:
    """Consumes its topics in one group and writes them with the batch planner's steps.

    `anomalies_topic`, when given, is consumed too (into `anomalies`); so are `status_topic`
    (into `connector_status`) and `updates_topic` (into `session_updates`).
    `coalesce` puts the batches of a topic's partitions that are ready together into one
    insert (sinks/DESIGN.md); off, each partition's batch is an insert of its own.
    """

    def __init__(self, consumer_conf: dict[str, Any], sessions_topic: str,
                 dead_letters_topic: str, client: Client, database: str, codec: Codec,
                 batch_size: int = 5000, batch_ms: int = 500, *,
                 on_step: StepHook | None = None, anomalies_topic: str | None = None,
                 status_topic: str | None = None, updates_topic: str | None = None,
                 coalesce: bool = True, health: HealthTracker | None = None) -> None:
        self.sessions_topic = sessions_topic
        self.dead_letters_topic = dead_letters_topic
        self.client = client
        self.database = database
        self.codec = codec
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.coalesce = coalesce
        self._on_step = on_step
        self.health = health or HealthTracker()
        """Fed here: inserts that fail or work, offsets committed, partition ends seen."""
        self._ends_seen = 0.0
        self._sinks = {sessions_topic: SessionSink(client, database, codec),
                       dead_letters_topic: DeadLetterSink(client, database, codec)}
        if anomalies_topic is not None:
            self._sinks[anomalies_topic] = AnomalySink(client, database, codec)
        if status_topic is not None:
            self._sinks[status_topic] = StatusSink(client, database, codec)
        if updates_topic is not None:
            self._sinks[updates_topic] = SessionUpdateSink(client, database, codec)
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._preparer = ThreadPoolExecutor(1, thread_name_prefix="sink-prepare")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sink-writer")
        self._in_flight: list[_Job] = []
        self._blocked_until = 0.0
        self._failures = 0
        self._rows = self._batches = self._inserts = self._dead = self._retries = 0
        self._commit_failures = 0
        self._last_insert_ms = 0.0
        conf = {**CONSUMER_DEFAULTS, **consumer_conf}
        self._producer = Producer(producer_config(conf))
        self._consumer = Consumer(conf)
        self._consumer.subscribe(list(self._sinks),
                                 on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)

    # -- group membership ----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle_all()
        intents: dict[str, dict[int, Intent]] = {}
        for tp in partitions:
            if tp.topic not in intents:
                intents[tp.topic] = load_intents(self.client, self.database, tp.topic)
            self._parts[(tp.topic, tp.partition)] = _Partition(
                tp.topic, tp.partition, intents[tp.topic].get(tp.partition))
        if self._blocked_until and partitions:
            consumer.pause(partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Drop what revoked partitions buffered: nothing of it is committed, and the next
        owner rebuilds the same batches from the recorded intents. Batches in flight are
        settled first: committed while their partitions are still ours."""
        self._settle_all()
        for tp in partitions:
            self._parts.pop((tp.topic, tp.partition), None)
        self.health.forget((tp.topic, tp.partition) for tp in partitions)
        log.info("revoked %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, poll_timeout: float = 0.1) -> None:
        """Poll and write until `stop` is set, then leave the group."""
        try:
            while not stop.is_set():
                self.poll_once(poll_timeout)
        finally:
            self.close()

    def poll_once(self, timeout: float) -> None:
        """Settle the batches whose insert ended, read what arrives within `timeout` (a few
        ms while batches are in flight), then send every batch that is ready."""
        self._settle_ended()
        now = time.monotonic()
        if self._blocked_until > now:  # paused: keep the group membership alive only
            msg = self._consumer.poll(min(timeout, self._blocked_until - now))
            if msg is not None:
                self._take(msg)
            return
        self._read(timeout)
        self._settle_ended()
        self._send_ready()
        self._observe_ends()

    def _observe_ends(self) -> None:
        """Once a second, tell the health tracker each partition's end as last fetched (no
        broker call): lag whose commits stand still makes the sink unhealthy."""
        now = time.monotonic()
        if now - self._ends_seen < 1.0:
            return
        self._ends_seen = now
        for (topic, partition), part in list(self._parts.items()):
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                           cached=True)
            end = max(high, part.end_offset or 0)
            if end > 0:
                self.health.end((topic, partition), end)

    def _read(self, timeout: float) -> None:
        if not self._in_flight:
            messages = self._consumer.consume(self.batch_size, timeout)
        elif self._buffered() >= _READ_AHEAD_BATCHES * self.batch_size:
            wait([self._in_flight[0].insert], timeout=min(timeout, 0.01))
            return
        else:
            messages = self._consumer.consume(_READ_AHEAD_CHUNK, min(timeout, 0.01))
        for msg in messages:
            self._take(msg)  # a rebalance in here settles what is in flight: _settle_all

    def _take(self, msg: Any) -> None:
        part = self._parts.get((msg.topic(), msg.partition()))
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if part is not None:
                    part.end_offset = msg.offset()
                return
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer: %s", err)
            return
        if part is None:  # already revoked; its next owner reads it again
            return
        if not part.messages:
            part.oldest = time.monotonic()
            self.health.begin((part.topic, part.partition), msg.offset())
        part.messages.append(Message(msg.offset(), msg.value(), msg.key()))
        part.end_offset = None

    def _send_ready(self) -> None:
        """Send every ready batch down the pipeline: the new ranges' intents first, all in
        one insert (one per batch cost a third of the sink's time at a few rows per batch),
        then the inserts, each topic's batches coalesced."""
        writes = self._ready_writes()
        if not writes:
            return
        inserts = self._inserts_of(writes)
        intents = [step.intent for ins in inserts for _, step in ins.members if step.record]
        recorded = self._writer.submit(self._record, intents)
        for ins in inserts:
            for part, step in ins.members:
                if step.record:
                    part.intent = step.intent  # a failed recording retries this same step
            job = self._submit(ins, recorded)
            for part, _ in ins.members:
                part.job = job

    def _inserts_of(self, writes: list[Member]) -> list[_Insert]:
        """Group the ready batches into inserts (sinks/DESIGN.md, "Coalescing"): a topic's
        new ranges into one insert under their group token; a range that was recorded for
        an insert before (a retry, or a rebuild after a restart) into that same insert when
        every range of it is here again, else alone, as a split range."""
        by_topic: dict[str, list[Member]] = {}
        for member in writes:
            by_topic.setdefault(member[0].topic, []).append(member)
        inserts: list[_Insert] = []
        for members in by_topic.values():
            fresh = [m for m in members if m[1].record and not m[1].intent.group]
            if len(fresh) > 1 and self.coalesce:
                token = group_token([step.intent for _, step in fresh])
                inserts.append(_Insert(token, [
                    (part, replace(step, intent=replace(step.intent, group=token)))
                    for part, step in fresh]))
            else:
                inserts += [_Insert(step.intent.token, [(part, step)]) for part, step in fresh]
            carried: dict[str, list[Member]] = {}
            for member in members:
                if not (member[1].record and not member[1].intent.group):
                    carried.setdefault(member[1].intent.insert_token, []).append(member)
            for token, held in carried.items():
                ranges = {(i.partition, i.first, i.last) for i in (s.intent for _, s in held)}
                if ranges == group_ranges(held[0][1].intent):
                    inserts.append(_Insert(token, held))
                else:
                    log.info("%s split from its insert %s: written alone after a probe",
                             [m[1].intent.token for m in held], token)
                    inserts += [_Insert(m[1].intent.token, [m], split=True) for m in held]
        return inserts

    def _record(self, intents: list[Intent]) -> None:
        record_intents(self.client, self.database, intents)
        for intent in intents:
            try:
                self._hook("intent", intent)
            except BaseException as exc:
                raise _HookRaised() from exc

    def _ready_writes(self) -> list[tuple[_Partition, Write]]:
        """The next batch of each partition that has one ready (skipping what is stored).

        Coalescing, a topic is due as a whole: when one of its partitions' batches is due
        (by time or at the partition's end), every partition of it with messages waiting
        sends its batch too, so the topic takes one insert per interval, not one per
        partition at its own moment."""
        now = time.monotonic()
        parts = list(self._parts.values())
        due = {(p.topic, p.partition): (now - p.oldest) * 1000 >= self.batch_ms for p in parts}
        if self.coalesce:
            topics = {p.topic for p in parts if p.job is None and p.messages
                      and (due[(p.topic, p.partition)] or p.end_offset is not None)}
            due = {key: flag or key[0] in topics for key, flag in due.items()}
        writes: list[tuple[_Partition, Write]] = []
        for part in parts:
            while part.job is None:
                step = part.retry or plan(
                    part.topic, part.partition, [m.offset for m in part.messages], part.intent,
                    max_size=self.batch_size, due=due[(part.topic, part.partition)],
                    end_offset=part.end_offset)
                if isinstance(step, Skip):
                    self._commit([(part, part.messages[step.count - 1].offset + 1)])
                    del part.messages[:step.count]
                    continue
                if isinstance(step, Write):
                    writes.append((part, step))
                break
        return writes

    def _submit(self, ins: _Insert, recorded: Future[None]) -> _Job:
        """Send one insert: prepared in one thread, inserted in the writer once its intents
        are recorded."""
        topic = ins.members[0][0].topic
        sink = self._sinks[topic]
        parts = [(part.partition, part.messages[:step.count]) for part, step in ins.members]
        if ins.split:
            prepared = self._preparer.submit(lambda: None)

            def insert() -> Written:
                recorded.result()
                return self._write_split(sink, topic, parts[0], ins.members[0][1].intent)
        else:
            prepared = self._preparer.submit(sink.prepare, topic, parts)

            def insert() -> Written:
                recorded.result()
                return sink.insert(prepared.result(), ins.token)

        job = _Job(ins.members, time.perf_counter(), prepared, self._writer.submit(insert))
        self._in_flight.append(job)
        return job

    @staticmethod
    def _write_split(sink: TableSink, topic: str, part: Part, intent: Intent) -> Written:
        """Write a range split from its coalesced insert: only its offsets the table does
        not hold (the range probe), under a token naming how many those are (a range only
        loses offsets to a landed insert, so each retry writes fewer)."""
        partition, messages = part
        stored = sink.stored_offsets(partition, intent.first, intent.last)
        if stored:
            messages = [m for m in messages if m.offset not in stored]
        return sink.insert(sink.prepare(topic, [(partition, messages)]),
                           f"{intent.token}-rest{len(messages)}")

    def _settle_ended(self) -> None:
        while self._in_flight and self._in_flight[0].insert.done():
            self._settle(self._in_flight[0])

    def _settle_all(self) -> None:
        """Settle every batch in flight, in order (a rebalance callback: the partitions are
        still ours), and let the writer run dry: a recording for batches taken back after
        a failure may still wait there, and the callbacks use the client next."""
        while self._in_flight:
            wait([self._in_flight[0].insert])
            self._settle(self._in_flight[0])
        self._writer.submit(lambda: None).result()

    def _settle(self, job: _Job) -> None:
        """Publish, commit and drop the batch from its buffer, or schedule its retry and
        take back the batches behind it that have not started."""
        self._in_flight.remove(job)
        for part, _ in job.members:
            part.job = None
        job.done = self._after_insert(job)
        self._account(job)
        if not job.done:
            for later in list(self._in_flight):
                if later.insert.cancel():
                    later.prepared.cancel()
                    self._in_flight.remove(later)
                    for part, _ in later.members:
                        part.job = None
                    later.done = False
                    self._account(later)

    def _account(self, job: _Job) -> None:
        for part, step in job.members:
            if self._parts.get((part.topic, part.partition)) is not part:
                continue  # revoked: its next owner rebuilds the batch from the intent
            part.retry = None if job.done else step
            if job.done:
                del part.messages[:step.count]
                part.oldest = time.monotonic()

    def _after_insert(self, job: _Job) -> bool:
        """Publish dead letters and commit once the insert is done (the intents are recorded).

        On a ClickHouse or delivery failure: pause, schedule a retry of these same batches,
        return False.
        """
        token = job.members[0][1].intent.insert_token
        try:
            written = job.insert.result()
        except _HookRaised as exc:
            raise exc.__cause__ from None  # noqa: B904 - the hook's own exception, as it was
        except Exception as exc:  # noqa: BLE001 - any ClickHouse failure: retry the same batch
            self.health.failed(CLICKHOUSE, f"insert failed: {exc}")
            self._retry_later(f"insert {token} failed: {exc}")
            return False
        self.health.reached(CLICKHOUSE)
        for _, step in job.members:
            self._hook("inserted", step.intent)
        try:
            self._publish(written)
        except KafkaException as exc:
            self._retry_later(f"dead letters of {token} not delivered: {exc}")
            return False
        self._last_insert_ms = (time.perf_counter() - job.started) * 1000
        self._rows += written.rows
        self._batches += len(job.members)
        self._inserts += 1
        self._dead += len(written.dead_letters)
        self._commit([(part, step.intent.next_offset) for part, step in job.members])
        if self._failures:
            self._failures = 0
            self._blocked_until = 0.0
            self._consumer.resume(self._consumer.assignment())
        return True

    def _buffered(self) -> int:
        return sum(len(p.messages) for p in list(self._parts.values()))

    def _hook(self, stage: str, intent: Intent) -> None:
        if self._on_step is not None:
            self._on_step(stage, intent)

    def _publish(self, written: Written) -> None:
        if not written.dead_letters:
            return
        failures: list[str] = []

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))
            elif (part := self._parts.get((msg.topic(), msg.partition()))) is not None:
                part.end_offset = None  # our own letter is on its way to us: not caught up

        for letter in written.dead_letters:
            self._producer.produce(self.dead_letters_topic, key=letter.original_key,
                                   value=self.codec.encode_dead_letter(letter,
                                                                       self.dead_letters_topic),
                                   on_delivery=delivered)
            log.warning("dead-lettered %s[%d]@%d: %s", letter.source_topic,
                        letter.source_partition, letter.source_offset, letter.error)
        remaining = self._producer.flush(30)
        if failures or remaining:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT,
                                            "; ".join(failures) or f"{remaining} undelivered"))

    def _commit(self, offsets: list[tuple[_Partition, int]]) -> None:
        """One synchronous commit for every partition of an insert (a coalesced insert has
        several: one round-trip, not one each)."""
        try:
            self._consumer.commit(offsets=[TopicPartition(part.topic, part.partition, offset)
                                           for part, offset in offsets], asynchronous=False)
        except KafkaException as exc:
            self.health.failed(KAFKA, f"commit failed: {exc}")
            # Harmless for correctness: ClickHouse has the rows and the intent; a later commit
            # supersedes this one, or the next owner skips/rebuilds from the intent.
            self._commit_failures += 1
            log.warning("commit of %s failed: %s", ", ".join(
                f"{part.topic}[{part.partition}]@{offset}" for part, offset in offsets), exc)
            return
        for part, offset in offsets:
            self.health.committed((part.topic, part.partition), offset)

    def _retry_later(self, reason: str) -> None:
        delay = _BACKOFF_S[min(self._failures, len(_BACKOFF_S) - 1)]
        self._failures += 1
        self._retries += 1
        self._blocked_until = time.monotonic() + delay
        self._consumer.pause(self._consumer.assignment())
        log.warning("%s; retrying in %.2fs", reason, delay)

    # -- observation ---------------------------------------------------------------------

    @property
    def stats(self) -> SinkStats:
        return SinkStats(self._rows, self._batches, self._inserts, self._dead,
                         self._last_insert_ms,
                         self._retries, self._commit_failures, self._buffered())

    def stats_dict(self) -> dict[str, Any]:
        return {**asdict(self.stats), "caught_up": self.caught_up()}

    def caught_up(self) -> bool:
        """True when every assigned partition reached its end and nothing waits to be written."""
        return (bool(self._parts) and not self._blocked_until and not self._in_flight
                and all(p.end_offset is not None and not p.messages
                        for p in self._parts.values()))

    def close(self) -> None:
        """Leave the group without committing anything more (an unfinished batch is re-read)."""
        for job in self._in_flight:  # let the inserts end, but commit nothing of them
            job.insert.cancel()
        wait([job.insert for job in self._in_flight])
        self._in_flight.clear()
        self._producer.flush(10)
        self._consumer.close()  # its revoke callback still uses the writer (_settle_all)
        self._writer.shutdown()
        self._preparer.shutdown()
