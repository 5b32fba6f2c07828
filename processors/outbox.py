"""The stitcher's outputs go to Kafka through librdkafka, not through Faust's producer.

Faust's `Topic.send` costs ~30 µs of Python per record (futures, callbacks, aiokafka's
accumulator) and its producer buffer makes every consumed message wait for it to ebb; a
batch publishes one running update per touched session, so that cost grew with the
stations a batch touched. librdkafka batches in C: a batch hands it every record, then
waits once until the broker has them all (`flush`). A record the broker refuses fails
the batch, which then is not acked (processors/app.py).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from processors.errors import PublishFailed

OUTBOX_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "partitioner": "murmur2_random",
    "log_level": 4,
}
"""Idempotent with acks=all (a retry neither duplicates nor reorders a key's records);
murmur2 partitions keys as Faust and Java clients do."""


class Outbox:
    def __init__(self, kafka_conf: dict[str, Any], flush_timeout_s: float = 60.0) -> None:
        self._producer = Producer({**OUTBOX_DEFAULTS, **kafka_conf})
        self._timeout = flush_timeout_s
        self._error: str | None = None

    def send(self, topic: str, key: bytes | None, value: bytes,
             partition: int | None = None) -> None:
        """Hand one record to librdkafka (to `partition`, or the key's), serving delivery
        reports while its queue is full."""
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery,
                                       **where)
                return
            except BufferError:
                self._producer.poll(0.05)

    def flush(self) -> None:
        """Wait until the broker acknowledged every record sent so far.

        Raises PublishFailed when one was refused or the wait timed out.
        """
        left = self._producer.flush(self._timeout)
        error, self._error = self._error, None
        if error is not None:
            raise PublishFailed(f"Kafka refused an output record: {error}")
        if left:
            raise PublishFailed(f"{left} output records not acknowledged after "
                                f"{self._timeout:.0f} s")

    def _on_delivery(self, error: KafkaError | None, _: Message) -> None:
        if error is not None and self._error is None:
            self._error = str(error)
