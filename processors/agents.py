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
from collections.abc import Iterable
from typing import Any

from infra.topics import read_to_end


class StationStore:
    """The worker's station states: read from the changelog, kept after each batch.

    The changelog records themselves are written by the stitching process
    (processors/stitching_process.py), each to its station's own partition."""

    def __init__(self, table: Any, kafka_conf: dict[str, Any]) -> None:
        self._table = table
        self._kafka_conf = kafka_conf
        self._loaded: set[int] = set()
        self._partition_of: dict[bytes, int] = {}

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions taken away by a rebalance must be read again if they come back."""
        self._loaded.difference_update(partitions)

    async def ensure_loaded(
            self, partitions: set[int]) -> dict[bytes, tuple[int, bytes | None]]:
        """Read the partitions not read yet; returns what was read (None: deleted)."""
        missing = partitions - self._loaded
        if not missing:
            return {}
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
        return records

    def get(self, station_id: str) -> bytes | None:
        value = self._table.data.get(station_id.encode())
        return bytes(value) if value is not None else None

    def items(self) -> list[tuple[str, bytes]]:
        """(station id, state) of every station of the loaded partitions (a copy: the table
        changes while a view reads)."""
        loaded, partition_of = self._loaded, self._partition_of
        return [(bytes(k).decode(), bytes(v)) for k, v in self._table.data.items()
                if partition_of.get(bytes(k), -1) in loaded]

    @property
    def changelog(self) -> str:
        return str(self._table.changelog_topic.get_topic_name())

    def put(self, station_id: str, partition: int, blob: bytes) -> None:
        """Keep a state the stitching process already wrote to the changelog."""
        key = station_id.encode()
        self._table.data[key] = blob
        self._partition_of[key] = partition
