"""Publisher and replay against the real embedded broker, read back with a real consumer."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from chargewatch.embedded import EmbeddedBroker, free_port
from infra.topics import Topics, ensure_topics
from producers.errors import PublishError
from producers.jsonl import event_to_json
from producers.publisher import EventPublisher
from producers.replay import MAX_LINE_BYTES, replay_file
from producers.simulator import FleetConfig, simulate
from schemas.codec import Codec
from schemas.records import MeterEvent

pytestmark = pytest.mark.integration

PARTITIONS = 3


def read_all(bootstrap: str, topic: str, expected: int,
             timeout_s: float = 30.0) -> list[tuple[bytes | None, int, bytes]]:
    """(key, partition, value) of every message, read until each partition reports EOF.

    Partitions are assigned rather than subscribed: no group join to wait for.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.partition.eof": "true",
        "session.timeout.ms": "6000", "fetch.queue.backoff.ms": "10",
        "enable.auto.commit": "false",
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    out: list[tuple[bytes | None, int, bytes]] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if len(at_eof) == PARTITIONS and len(out) >= expected:
                break
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(message.partition())
                    continue
                raise AssertionError(message.error().str())
            at_eof.discard(message.partition())
            out.append((message.key(), message.partition(), message.value()))
    finally:
        consumer.close()
    return out


def test_simulation_arrives_complete_and_in_per_key_order(broker: EmbeddedBroker,
                                                          namespace: str) -> None:
    topics = Topics(namespace)
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    ensure_topics(conf, topics, PARTITIONS)
    codec = Codec()
    publisher = EventPublisher(conf, topics.meter_events,
                               lambda batch: codec.encode_meter_events(batch, topics.meter_events))
    published: dict[str, list[MeterEvent]] = defaultdict(list)
    sim = simulate(FleetConfig(seed=3, stations=3))
    for key, events in sim.messages():
        publisher.publish(key, events)
        published[key].extend(events)
    stats = publisher.flush(30)
    assert stats.messages == stats.delivered == sim.counts.messages > 100
    assert stats.sent == sim.counts.events and stats.failed == 0

    received: dict[str, list[MeterEvent]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for key, partition, value in read_all(broker.bootstrap_servers, topics.meter_events,
                                          stats.messages):
        assert key is not None
        received[key.decode()].extend(codec.decode_meter_events(value))
        partitions[key.decode()].add(partition)
    assert received == published
    assert all(len(p) == 1 for p in partitions.values())


def test_replay_dead_letters_the_bad_line_and_publishes_the_rest(
        broker: EmbeddedBroker, namespace: str, tmp_path: Path) -> None:
    topics = Topics(namespace)
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    ensure_topics(conf, topics, PARTITIONS)
    codec = Codec()
    events = [e for _, batch in simulate(FleetConfig(seed=5, stations=2)).messages()
              for e in batch][:300]
    lines = [event_to_json(e) for e in events]
    lines.insert(120, lines[120].replace('"connector_id":', '"connector_id":-'))
    lines.insert(200, "")
    lines.insert(250, "x" * (MAX_LINE_BYTES + 10))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    publisher = EventPublisher(conf, topics.meter_events,
                               lambda batch: codec.encode_meter_events(batch, topics.meter_events))
    seen: list[int] = []
    stats = replay_file(path, publisher, topics.dead_letters,
                        lambda letter: codec.encode_dead_letter(letter, topics.dead_letters),
                        progress=seen.append, events_per_message=5)
    publisher.flush(30)
    assert (stats.lines, stats.events, stats.dead_lettered) == (303, 300, 2)
    assert seen[-1] == 303

    letters = [codec.decode_dead_letter(value) for _, _, value in
               read_all(broker.bootstrap_servers, topics.dead_letters, 2)]
    assert [(d.source_offset, d.stage, d.source_partition) for d in letters] == [
        (121, "replay", -1), (251, "replay", -1)]
    bad, long = letters
    assert bad.source_topic == f"file:{path}"
    assert bad.original == lines[120].encode()
    assert "line 121" in bad.error and "connector_id" in bad.error
    assert len(long.original) == MAX_LINE_BYTES and "longer than" in long.error

    by_station: dict[str, list[MeterEvent]] = defaultdict(list)
    for key, _, value in read_all(broker.bootstrap_servers, topics.meter_events, 1):
        by_station[key.decode()].extend(codec.decode_meter_events(value))
    expected: dict[str, list[MeterEvent]] = defaultdict(list)
    for e in events:
        expected[e.station_id].append(e)
    assert by_station == expected


def test_undeliverable_messages_fail_at_flush() -> None:
    codec = Codec()
    publisher = EventPublisher(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": "500"},
        "nowhere", lambda events: codec.encode_meter_events(events))
    _, events = next(iter(simulate(FleetConfig(stations=1)).messages()))
    publisher.publish("CS-0001", events)
    with pytest.raises(PublishError, match="1 of 1 messages were not delivered"):
        publisher.flush(10)
    assert publisher.stats.failed == 1
