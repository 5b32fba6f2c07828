"""Await Kafka's acknowledgement from asyncio: what lets the gateway answer a charger only
after its events are safe.

confluent-kafka reports deliveries through callbacks served by `poll`; a small thread
polls the `EventPublisher` and settles one asyncio future per message on the event loop.
With a partition window, that thread also cuts the windows that are due, and a charger's
future settles when the message carrying its events (with its partition's neighbours') is
acknowledged: the answer still waits for Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence

from producers.errors import PublishError
from producers.publisher import EventPublisher
from schemas.records import MAX_EVENTS_PER_MESSAGE, DeadLetter, MeterEvent

GATEWAY_PRODUCER_CONF: dict[str, str] = {"linger.ms": "2", "message.timeout.ms": "20000"}
"""A charger waits for each answer: batch little, and give up (the charger gets an error
and retries) well before its own call timeout."""


class KafkaDelivery:
    """Publishes one charger's events and dead letters and waits until Kafka has them."""

    def __init__(self, publisher: EventPublisher, dead_letter_topic: str,
                 encode_dead_letter: Callable[[DeadLetter], bytes]) -> None:
        self._publisher = publisher
        self._dead_letter_topic = dead_letter_topic
        self._encode_dead_letter = encode_dead_letter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="kafka-delivery", daemon=True)

    def start(self) -> KafkaDelivery:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving reports, then wait for every outstanding one (raises `PublishError`)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._publisher.flush(timeout)

    def _pump(self) -> None:
        while not self._stop.is_set():
            self._publisher.poll(0.05)

    async def publish(self, key: str, events: Sequence[MeterEvent]) -> None:
        """One Kafka message per `MAX_EVENTS_PER_MESSAGE` events (normally exactly one);
        returns once Kafka accepted all of them, raises `PublishError` if it did not."""
        waits = []
        for start in range(0, len(events), MAX_EVENTS_PER_MESSAGE):
            callback, done = self._future()
            self._publisher.publish(key, events[start:start + MAX_EVENTS_PER_MESSAGE], callback)
            waits.append(done)
        await self._settle(waits)

    async def record(self, topic: str, key: bytes, value: bytes | None) -> None:
        """Any message (None: a tombstone), returning once Kafka accepted it."""
        callback, done = self._future()
        self._publisher.publish_raw(topic, key, value, callback)
        await self._settle([done])

    async def dead_letter(self, letter: DeadLetter) -> None:
        callback, done = self._future()
        self._publisher.publish_raw(self._dead_letter_topic, letter.original_key,
                                    self._encode_dead_letter(letter), callback)
        await self._settle([done])

    def _future(self) -> tuple[Callable[[str | None], None], asyncio.Future[str | None]]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()

        def settle(error: str | None) -> None:
            if not done.done():
                done.set_result(error)

        def report(error: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # served after the gateway's loop closed
                loop.call_soon_threadsafe(settle, error)

        return report, done

    @staticmethod
    async def _settle(waits: list[asyncio.Future[str | None]]) -> None:
        errors = [error for error in await asyncio.gather(*waits) if error is not None]
        if errors:
            raise PublishError(f"Kafka refused {len(errors)} message(s): {errors[0]}")
