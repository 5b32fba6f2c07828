"""Events taken in while the previous batch is processed: batches that size themselves.

Faust's `take_events` stops reading while its batch is processed and then waits a fixed
window to fill the next one, so reading and processing take turns. Here the agent only
appends events, and the processing task takes a batch once `max_batch` events wait or the
oldest has waited `linger_s`, whichever comes first: events that arrived while the previous
batch was processed count towards the next, so under load batches fill without waiting,
and the linger bounds what an event waits when the stream is quiet. Batches should not be
much smaller than that: a batch's cost grows with the stations it touches (one state
write, one running update each), not only with its events. A full intake makes the reader
wait (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class Intake(Generic[T]):
    def __init__(self, max_batch: int, linger_s: float) -> None:
        self._items: list[T] = []
        self._max = max_batch
        self._linger = linger_s
        self._first_at = 0.0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        """Add one item, waiting while `max_batch` items are already waiting."""
        while not self.offer(item):
            self._room.clear()
            await self._room.wait()

    def offer(self, item: T) -> bool:
        """Add one item if there is room (False: full, `put` waits for room). The reader's
        usual path: no coroutine per item."""
        items = self._items
        if len(items) >= self._max:
            return False
        if not items:
            self._first_at = time.monotonic()
            self._ready.set()  # a waiting taker starts the linger
        items.append(item)
        if len(items) >= self._max:
            self._ready.set()
        return True

    async def take(self) -> list[T]:
        """The next batch (at most `max_batch`, oldest first)."""
        while True:
            if len(self._items) >= self._max:
                break
            if self._items:
                wait = self._first_at + self._linger - time.monotonic()
                if wait <= 0:
                    break
            else:
                wait = None
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait)
        batch, self._items = self._items[:self._max], self._items[self._max:]
        self._room.set()  # what is left over keeps its (older) linger start
        return batch
