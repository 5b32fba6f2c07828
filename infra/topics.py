"""Topic names, creation, and reading a (compacted) topic to its end. Every name carries the
configured namespace prefix."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True, slots=True)
class Topics:
    namespace: str = "chargewatch"

    def _name(self, base: str) -> str:
        return f"{self.namespace}.{base}" if self.namespace else base

    @property
    def meter_events(self) -> str:
        return self._name("meter-events")

    @property
    def session_updates(self) -> str:
        return self._name("session-updates")

    @property
    def sessions_completed(self) -> str:
        return self._name("sessions-completed")

    @property
    def anomalies(self) -> str:
        return self._name("anomalies")

    @property
    def dead_letters(self) -> str:
        return self._name("dead-letters")

    @property
    def connector_status(self) -> str:
        """Every applied connector status (key = station id): the status history's source."""
        return self._name("connector-status")

    @property
    def gateway_transactions(self) -> str:
        """The OCPP gateway's open transactions per charger (compacted; ocpp_transactions)."""
        return self._name("gateway-transactions")

    def all(self) -> list[str]:
        return [self.meter_events, self.session_updates, self.sessions_completed,
                self.anomalies, self.dead_letters, self.connector_status,
                self.gateway_transactions]


COMPACTED = {"cleanup.policy": "compact", "retention.ms": "-1"}
RETAINED = {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)}


def ensure_topics(admin_conf: dict[str, str], topics: Topics, partitions: int) -> None:
    """Create the pipeline's topics if missing, with the configs clients read set explicitly.

    Tansu returns only configs that were set explicitly, so both policies are always set.
    """
    admin = AdminClient(admin_conf)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(name, partitions, 1,
                 config=COMPACTED if name in (topics.session_updates, topics.gateway_transactions)
                 else RETAINED)
        for name in topics.all() if name not in existing
    ]
    if not wanted:
        return
    for future in admin.create_topics(wanted, operation_timeout=10).values():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


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
                raise TimeoutError(f"topic {topic} partitions {sorted(pending)} did not "
                                   f"reach their end within {timeout_s:.0f}s")
            for message in consumer.consume(1000, 0.1):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        return latest
                    raise RuntimeError(f"reading {topic}: {error}")
                key = message.key()
                if key is not None:
                    latest[key] = (message.partition(), message.value())
    finally:
        consumer.close()
    return latest
