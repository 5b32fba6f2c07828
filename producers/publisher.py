"""Publishes meter events to Kafka: the one place producers talk to a broker.

Built for "never drop, never reorder": the idempotent producer with acks=all keeps one key's
messages in publish order even across retries; a full local queue makes `publish` wait
(serving delivery reports) instead of failing; a message the broker finally refuses is
counted and turned into a `PublishError` at `flush`, so a run can never end quietly short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from producers.errors import PublishError
from schemas.records import MeterEvent

PRODUCER_DEFAULTS: dict[str, str] = {
    "enable.idempotence": "true",
    "acks": "all",
    "linger.ms": "20",
    "compression.type": "none",
    "partitioner": "murmur2_random",
    "log_level": "4",
}
"""Java-compatible key hashing (murmur2), so every Kafka client agrees on a key's partition.
librdkafka logs warnings and errors only (its info lines report every broker disconnect)."""

DeliveryCallback = Callable[[str | None], None]
"""Told once per message: None when Kafka has it, else the broker's error text. Called from
whichever thread serves delivery reports (`poll`, `flush`, or a full-queue `publish`)."""


@dataclass(frozen=True, slots=True)
class PublishStats:
    """`messages` handed to the producer (events and raw), `sent` meter events in them,
    `delivered`/`failed` messages acknowledged or refused by the broker so far."""

    sent: int
    delivered: int
    failed: int
    messages: int


class EventPublisher:
    """Encodes batches of one station's events and produces them keyed by station id."""

    def __init__(self, conf: dict[str, str], topic: str,
                 encode: Callable[[Sequence[MeterEvent]], bytes]) -> None:
        self.topic = topic
        self._encode = encode
        self._producer = Producer({**PRODUCER_DEFAULTS, **conf})
        self._sent = 0
        self._messages = 0
        self._delivered = 0
        self._failed = 0
        self._first_error: str | None = None

    def publish(self, key: str, events: Sequence[MeterEvent],
                on_delivery: DeliveryCallback | None = None) -> None:
        """One message with all of `events` (one station's, in order) keyed by `key`;
        `on_delivery` is told when Kafka has accepted or refused it."""
        self._produce(self.topic, key.encode(), self._encode(events), on_delivery)
        self._sent += len(events)

    def publish_raw(self, topic: str, key: bytes | None, value: bytes | None,
                    on_delivery: DeliveryCallback | None = None) -> None:
        """An already encoded message (e.g. a dead letter; None: a tombstone) on any topic."""
        self._produce(topic, key, value, on_delivery)

    def poll(self, timeout: float) -> int:
        """Serve delivery reports for up to `timeout` seconds; how many were served.

        A long-running producer that awaits each delivery (the OCPP gateway) calls this in
        a loop of its own; batch producers need only `flush`."""
        return self._producer.poll(timeout)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 on_delivery: DeliveryCallback | None = None) -> None:
        report = self._on_delivery if on_delivery is None else \
            lambda error, message: self._report(error, message, on_delivery)
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=report)
                break
            except BufferError:
                self._producer.poll(0.05)  # queue full: let deliveries drain, then retry
            except KafkaException as exc:
                raise PublishError(f"{topic}: message of {len(value or b'')} bytes refused: "
                                   f"{exc.args[0].str()}") from exc
        self._messages += 1
        self._producer.poll(0)

    def _report(self, error: KafkaError | None, message: Message,
                on_delivery: DeliveryCallback) -> None:
        self._on_delivery(error, message)
        on_delivery(None if error is None else f"{message.topic()}: {error.str()}")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self._delivered += 1
            return
        self._failed += 1
        if self._first_error is None:
            self._first_error = f"{message.topic()}: {error.str()}"

    @property
    def stats(self) -> PublishStats:
        return PublishStats(sent=self._sent, delivered=self._delivered, failed=self._failed,
                            messages=self._messages)

    def flush(self, timeout: float = 30.0) -> PublishStats:
        """Wait for every delivery report; raise `PublishError` if any message did not land."""
        remaining = self._producer.flush(timeout)
        if self._failed:
            raise PublishError(f"{self._failed} of {self._messages} messages were not "
                               f"delivered; first error: {self._first_error}")
        if remaining:
            raise PublishError(f"{remaining} messages still undelivered after {timeout:.0f}s; "
                               "is the broker reachable?")
        return self.stats
