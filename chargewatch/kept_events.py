"""The embedded broker's meter events, kept on disk so a restart continues the same log.

Why: the embedded Tansu broker keeps everything in memory, so every start used to be an
empty cluster whose offsets begin at 0 again. Session IDs are made from the position of a
session's opening event (charging/session_ids.py), and ClickHouse keeps the sessions of
earlier runs: new sessions of a restarted, empty broker would be given the IDs of stored
ones, and the sink, finding those IDs stored, would not write them. So while the embedded
stack runs, an archiver copies every meter-events message into one file per partition
under `.data/broker/`, and the next start produces them back, partition by partition and
in order, into the fresh broker before anything else runs: each message gets its old
offset again, the processor rebuilds its station state (open sessions included) from them,
the sessions it had already completed get the same IDs (the sink finds them stored and
skips them), and new events continue after the kept ones.

Everything else in the broker is derived from meter-events and is not kept: the other
topics, the consumer offsets, the processor's station-state changelog. Each run uses topics
of its own (namespace `<namespace>-r<run>`), because ClickHouse remembers the offsets of
what the sink wrote (its batch intents and insert tokens name topic and offsets) and would
take a new run's offsets 0.. for batches it has already seen.

File format: per partition `meter-events-<p>.log`, a sequence of frames: a 16-byte header
(big-endian int64 timestamp ms, int32 key length or -1, int32 value length or -1), then key
and value. A frame cut short by a crash is dropped when the file is opened again.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from infra.errors import ConfigError, StackError

log = logging.getLogger("chargewatch.kept_events")

_HEADER = struct.Struct(">qii")
STATE_FILE = "state.json"


def _read_frames(src: BinaryIO) -> Iterator[tuple[int, bytes | None, bytes | None, int]]:
    """(timestamp, key, value, end position) of every whole frame, in order."""
    while len(header := src.read(_HEADER.size)) == _HEADER.size:
        timestamp, key_len, value_len = _HEADER.unpack(header)
        key = src.read(key_len) if key_len >= 0 else None
        value = src.read(value_len) if value_len >= 0 else None
        if (key is not None and len(key) < key_len) or \
                (value is not None and len(value) < value_len):
            return
        yield timestamp, key, value, src.tell()


def _frame(timestamp: int, key: bytes | None, value: bytes | None) -> bytes:
    return _HEADER.pack(timestamp, -1 if key is None else len(key),
                        -1 if value is None else len(value)) + (key or b"") + (value or b"")


def run_namespace(namespace: str, run: int) -> str:
    return f"{namespace}-r{run}"


def same_topic_sql(column: str) -> str:
    """A ClickHouse expression of a topic name with the run left out (`cw-r2.anomalies` →
    `cw.anomalies`), for telling a letter repeated by a later run from a new one; replayed
    files (`file:…`) are left as they are."""
    return (f"if(startsWith({column}, 'file:'), {column}, "
            f"replaceRegexpOne({column}, '^(.*)-r[0-9]+[.]', '\\\\1.'))")


@dataclass
class KeptEvents:
    """The kept meter-events of one local data folder (`.data/broker`)."""

    folder: Path
    owner: str
    """Who runs the stack ("up" or "demo"): the demo erases only what demos kept."""

    def _path(self, partition: int) -> Path:
        return self.folder / f"meter-events-{partition}.log"

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.folder / STATE_FILE).read_text()))
        except FileNotFoundError:
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f"{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(self.folder / STATE_FILE)

    def begin_run(self, namespace: str, partitions: int, clickhouse: str) -> str:
        """Count this run and return its topic namespace; refuse a partition count or a
        ClickHouse other than the kept events were written with (their IDs would differ)."""
        state = self.state()
        for key, value, setting in (("partitions", partitions, "CHARGEWATCH_KAFKA__PARTITIONS"),
                                    ("clickhouse", clickhouse, "CLICKHOUSE_URL")):
            if state.get(key, value) != value:
                raise ConfigError(
                    f"the meter events kept in {self.folder} were written with {key} "
                    f"{state[key]}, not {value}: set {setting} to match, or remove "
                    f"{self.folder} and the ClickHouse data it belongs to")
        state.update(partitions=partitions, clickhouse=clickhouse,
                     runs=int(state.get("runs", 0)) + 1,
                     owners=sorted({*state.get("owners", []), self.owner}))
        self._save(state)
        return run_namespace(namespace, state["runs"])

    def counts(self, partitions: int) -> list[int]:
        """Messages kept per partition; a frame cut short by a crash is cut off the file."""
        counts = []
        for partition in range(partitions):
            path, count, end = self._path(partition), 0, 0
            if path.exists():
                with path.open("rb") as src:
                    for frame in _read_frames(src):
                        count, end = count + 1, frame[3]
                if end < path.stat().st_size:
                    with path.open("r+b") as dst:
                        dst.truncate(end)
            counts.append(count)
        return counts

    def restore(self, conf: dict[str, Any], topic: str, partitions: int,
                progress: Callable[[int], None] | None = None) -> list[int]:
        """Produce the kept messages into `topic` (empty), each at its old offset; returns
        the count per partition. Raises StackError if an offset comes out different."""
        from confluent_kafka import Producer

        counts = self.counts(partitions)
        if not sum(counts):
            return counts
        wrong: list[str] = []

        def delivered(error: Any, message: Any, expected: int) -> None:
            if error is not None or message.offset() != expected:
                wrong.append(f"partition {message.partition()}: offset {message.offset()} "
                             f"for kept message {expected} ({error})")

        producer = Producer({**conf, "enable.idempotence": True, "acks": "all",
                             "linger.ms": 20, "log_level": 4})
        sent = 0
        for partition in range(partitions):
            if not counts[partition]:
                continue
            with self._path(partition).open("rb") as src:
                for index, (timestamp, key, value, _) in enumerate(_read_frames(src)):
                    _produce(producer, topic, partition, key, value, timestamp,
                             lambda e, m, i=index: delivered(e, m, i))
                    sent += 1
                    if progress and sent % 5000 == 0:
                        progress(sent)
        if producer.flush(120) or wrong:
            raise StackError(f"restoring the kept meter events into {topic} failed: "
                             f"{wrong[0] if wrong else 'not all were delivered within 120 s'}")
        if progress:
            progress(sent)
        return counts

    def archiver(self, conf: dict[str, Any], topic: str, counts: list[int]) -> Archiver:
        return Archiver(conf, topic, [self._path(p) for p in range(len(counts))], counts)

    def erase(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _produce(producer: Any, topic: str, partition: int, key: bytes | None,
             value: bytes | None, timestamp: int, on_delivery: Callable[..., None]) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition,
                             timestamp=timestamp, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


@dataclass
class Archiver:
    """Copies every new meter-events message to its partition's file, from `counts` on."""

    conf: dict[str, Any]
    topic: str
    paths: list[Path]
    counts: list[int]
    _stop: threading.Event = field(default_factory=threading.Event)
    _drain: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: str | None = None

    def start(self) -> Archiver:
        self._thread = threading.Thread(target=self._run, name="kept-events", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**self.conf, "group.id": f"{self.topic}-archiver",
                             "enable.auto.commit": False, "enable.partition.eof": True,
                             "fetch.queue.backoff.ms": 10, "fetch.wait.max.ms": 100})
        files = [path.open("ab") for path in self.paths]
        try:
            consumer.assign([TopicPartition(self.topic, p, offset)
                             for p, offset in enumerate(self.counts)])
            self._copy(consumer, files)
        except Exception as exc:  # noqa: BLE001 - reported by the stack's liveness check
            self.error = f"keeping meter events failed: {exc}"
            log.error("%s", self.error)
        finally:
            for file in files:
                file.close()
            consumer.close()

    def _copy(self, consumer: Any, files: list[BinaryIO]) -> None:
        from confluent_kafka import KafkaError, TopicPartition

        at_end: set[int] = set()
        draining = False
        while not self._stop.is_set():
            if self._drain.is_set() and not draining:
                # Assigning again resets the fetchers, so each partition reports its end anew
                # (an end reported before new messages arrived would end the drain early).
                draining = True
                at_end.clear()
                consumer.assign([TopicPartition(self.topic, p, offset)
                                 for p, offset in enumerate(self.counts)])
            if draining and len(at_end) == len(files):
                return
            touched = set()
            for message in consumer.consume(1000, 0.2):
                error, partition = message.error(), message.partition()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise StackError(str(error))
                    at_end.add(partition)
                    continue
                if message.offset() != self.counts[partition]:
                    log.warning("%s[%d]: kept %d messages, next offset read is %d",
                                self.topic, partition, self.counts[partition], message.offset())
                files[partition].write(_frame(message.timestamp()[1], message.key(),
                                              message.value()))
                self.counts[partition] = message.offset() + 1
                at_end.discard(partition)
                touched.add(partition)
            for partition in touched:
                files[partition].flush()

    def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Copy what the broker holds up to its end (within the timeout), then stop."""
        if self._thread is None:
            return
        self._drain.set()
        self._thread.join(drain_timeout_s)
        self._stop.set()
        self._thread.join(10)
        self._thread = None
