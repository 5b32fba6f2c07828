"""Station state in the Faust table, recovered by reading each changelog partition to its end.

Faust restores a table up to the changelog's high watermark, but the embedded Tansu broker
reports watermarks up to ~1,000 records short (DESIGN.md), so a restarted worker could miss
the latest states and re-open sessions that were already open. Before the first event of a
partition is applied, this store reads that partition's changelog to the end-of-partition
event (which is right) and takes the latest value of every key in it.

Only states of loaded partitions are handed out: whatever Faust restored for a partition not
yet read to its end (or no longer assigned) may be stale, and expiring or saving a stale
state would write it back over the newer one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


class StationStore:
    """Reads and writes station states; each key's changelog record goes to its own partition."""

    def __init__(self, table: Any, kafka_conf: dict[str, Any]) -> None:
        self._table = table
        self._kafka_conf = kafka_conf
        self._loaded: set[int] = set()
        self._partition_of: dict[bytes, int] = {}

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions taken away by a rebalance must be read again if they come back."""
        self._loaded.difference_update(partitions)

    async def ensure_loaded(self, partitions: set[int]) -> None:
        missing = partitions - self._loaded
        if not missing:
            return
        topic = self._table.changelog_topic.get_topic_name()
        records = await asyncio.get_running_loop().run_in_executor(
            None, read_to_end, self._kafka_conf, topic, sorted(missing))
        data = self._table.data
        for key, (partition, value) in records.items():
            if value is None:
                data.pop(key, None)
                self._partition_of.pop(key, None)
            else:
                data[key] = value
                self._partition_of[key] = partition
        self._loaded |= missing

    def get(self, station_id: str) -> bytes | None:
        value = self._table.data.get(station_id.encode())
        return bytes(value) if value is not None else None

    def items(self) -> list[tuple[str, bytes]]:
        """(station id, state) of every station of the loaded partitions (a copy: the table
        changes while a view reads)."""
        loaded, partition_of = self._loaded, self._partition_of
        return [(bytes(k).decode(), bytes(v)) for k, v in self._table.data.items()
                if partition_of.get(bytes(k), -1) in loaded]

    def put(self, station_id: str, partition: int, blob: bytes) -> None:
        key = station_id.encode()
        self._table.data[key] = blob
        self._partition_of[key] = partition
        self._table.send_changelog(partition, key, blob)


def read_to_end(kafka_conf: dict[str, Any], topic: str, partitions: list[int],
                timeout_s: float = 120.0) -> dict[bytes, tuple[int, bytes | None]]:
    """The latest (partition, value) per key of these partitions, read until each one's
    end-of-partition."""
    consumer = Consumer({
        **kafka_conf, "group.id": f"recovery-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "enable.partition.eof": True,
        "fetch.queue.backoff.ms": 10, "fetch.wait.max.ms": 10, "log_level": 3,
    })
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelog {topic} partitions {sorted(pending)} did not "
                                   f"reach their end within {timeout_s:.0f}s")
            for message in consumer.consume(1000, 0.1):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        return latest
                    raise RuntimeError(f"reading changelog {topic}: {error}")
                key = message.key()
                if key is not None:
                    latest[key] = (message.partition(), message.value())
    finally:
        consumer.close()
    return latest
