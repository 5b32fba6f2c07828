"""The embedded broker's meter events kept across broker restarts: what the archiver copied
from one broker is produced back into the next at the same offsets, and stopping the
archiver first copies what the broker holds up to its end."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from chargewatch.embedded import EmbeddedBroker
from chargewatch.kept_events import KeptEvents
from infra.kafka_config import client_config
from infra.settings import KafkaSettings
from infra.topics import Topics, ensure_topics
from producers.publisher import PRODUCER_DEFAULTS

pytestmark = pytest.mark.integration

PARTITIONS = 3


def _read_all(conf: dict, topic: str) -> dict[int, list[tuple[int, bytes | None, bytes | None,
                                                               int]]]:
    consumer = Consumer({**conf, "group.id": "read-all", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    found: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    ended: set[int] = set()
    try:
        while len(ended) < PARTITIONS:
            for message in consumer.consume(1000, 1.0):
                if message.error() is not None:
                    assert message.error().code() == KafkaError._PARTITION_EOF
                    ended.add(message.partition())
                    continue
                found[message.partition()].append(
                    (message.offset(), message.key(), message.value(), message.timestamp()[1]))
    finally:
        consumer.close()
    return found


def test_a_restarted_broker_gets_the_kept_messages_at_their_offsets(tmp_path: Path) -> None:
    kept = KeptEvents(tmp_path / "broker", "up")
    with EmbeddedBroker(log_path=tmp_path / "first.log") as first:
        conf = client_config(KafkaSettings(), first.bootstrap_servers)
        topics = Topics(kept.begin_run("kept", PARTITIONS, "chdb:///x"))
        ensure_topics(conf, topics, PARTITIONS)
        archiver = kept.archiver(conf, topics.meter_events, kept.counts(PARTITIONS)).start()
        producer = Producer({**conf, **PRODUCER_DEFAULTS})  # partitions as our publishers do
        for i in range(2000):
            producer.produce(topics.meter_events, key=f"CS-{i % 11}".encode(),
                             value=None if i % 500 == 7 else f"event {i}".encode(),
                             timestamp=1_800_000_000_000 + i)
        producer.flush(30)
        archiver.stop()  # copies up to the end first: nothing is waited for here
        before = _read_all(conf, topics.meter_events)
    assert kept.counts(PARTITIONS) == [len(before[p]) for p in range(PARTITIONS)]
    with EmbeddedBroker(log_path=tmp_path / "second.log") as second:
        conf = client_config(KafkaSettings(), second.bootstrap_servers)
        namespace = kept.begin_run("kept", PARTITIONS, "chdb:///x")
        assert namespace == "kept-r2"
        ensure_topics(conf, Topics(namespace), PARTITIONS)
        counts = kept.restore(conf, Topics(namespace).meter_events, PARTITIONS)
        after = _read_all(conf, Topics(namespace).meter_events)
    assert sum(counts) == 2000
    assert after == before
