"""Which partition a station's events go to, and the window that gathers them per partition.

A meter-events message may carry the events of several stations, provided they share a
partition (schemas/meter_event_batch.avsc). Stations are placed by the murmur2 hash of their
id, exactly as Kafka's Java clients and librdkafka's `murmur2_random` partitioner place a
key, so a station lands on the same partition whether its message is keyed by its own id
or gathered with its neighbours, and whichever client wrote it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schemas.records import MeterEvent

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`) as an unsigned int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length % 4
    if extra == 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a non-empty key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


Callback = Callable[[str | None], None]


@dataclass(slots=True)
class Gathered:
    """The events bound for one partition, in publish order, and who waits for them."""

    partition: int
    opened_s: float
    events: list[MeterEvent] = field(default_factory=list)
    calls: list[tuple[int, Callback | None]] = field(default_factory=list)
    """Per publish call, in order: how many of `events` it gave and who waits for them."""

    @property
    def callbacks(self) -> list[Callback]:
        return [callback for _, callback in self.calls if callback is not None]


class PartitionWindow:
    """Gathers events per partition; a partition's events are cut into a message when
    `max_events` are gathered or the oldest has waited `window_s`, whichever comes first.

    Not thread-safe: the publisher holds its lock around every call. Each partition's
    events leave in the order they came, so a station's order is kept (a station has one
    partition)."""

    def __init__(self, window_s: float | None, max_events: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`window_s` None cuts by size only (and at a flush): the same calls then always make
        the same messages, so a file published twice gives the same log, and the same session
        IDs (their numbers come from offsets). A live source (the gateway) needs the timer."""
        if (window_s is not None and window_s <= 0) or max_events < 1:
            raise ValueError("a window needs window_s > 0 (or None) and max_events >= 1")
        self.window_s = window_s
        self.max_events = max_events
        self._clock = clock
        self._open: dict[int, Gathered] = {}

    @property
    def gathered(self) -> int:
        """Events gathered and not yet cut (no __len__: an empty window must stay truthy)."""
        return sum(len(g.events) for g in self._open.values())

    def add(self, partition: int, events: Sequence[MeterEvent],
            callback: Callback | None) -> list[Gathered]:
        """Gather `events` (at most `max_events`: the caller splits more) for `partition`;
        returns what is cut by size now. One call's events always travel in one message."""
        if not 1 <= len(events) <= self.max_events:
            raise ValueError(f"{len(events)} events in one add; 1..{self.max_events}")
        cut = []
        gathered = self._open.get(partition)
        if gathered is not None and len(gathered.events) + len(events) > self.max_events:
            cut.append(self._open.pop(partition))
            gathered = None
        if gathered is None:
            gathered = self._open[partition] = Gathered(partition, self._clock())
        gathered.events.extend(events)
        gathered.calls.append((len(events), callback))
        if len(gathered.events) >= self.max_events:
            cut.append(self._open.pop(partition))
        return cut

    def due(self) -> list[Gathered]:
        """What has waited its window out."""
        if self.window_s is None:
            return []
        deadline = self._clock() - self.window_s
        ready = [g for g in self._open.values() if g.opened_s <= deadline]
        for gathered in ready:
            del self._open[gathered.partition]
        return ready

    def drain(self) -> list[Gathered]:
        """Everything gathered, due or not (before a flush)."""
        ready, self._open = list(self._open.values()), {}
        return ready

    def wait_s(self) -> float:
        """How long until the next window is due (a whole window when none is open)."""
        if self.window_s is None:
            return math.inf
        if not self._open:
            return self.window_s
        oldest = min(g.opened_s for g in self._open.values())
        return max(0.0, oldest + self.window_s - self._clock())
