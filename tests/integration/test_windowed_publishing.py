"""The publisher's partition window against the real embedded broker: stations land where
Kafka's own partitioner puts their keys, several per message, each in order; a charger
behind a windowed gateway is answered only after Kafka acknowledged its event."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from ocpp.v16 import call as call16

from chargewatch.embedded import EmbeddedBroker, free_port
from infra.settings import load_settings
from infra.topics import Topics, ensure_topics, read_to_end
from processors.batch import RawMessage
from processors.stitching_process import StitchingProcess
from producers.ocpp_delivery import GATEWAY_PRODUCER_CONF, KafkaDelivery
from producers.ocpp_gateway import OcppGateway
from producers.partitioning import PartitionWindow
from producers.publisher import DeliveryCallback, EventPublisher
from schemas.codec import Codec
from schemas.errors import RegistryError
from schemas.records import EventKind, MeterEvent
from tests.integration.test_publisher import PARTITIONS, read_all
from tests.ocpp_chargers import T0, charger

pytestmark = pytest.mark.integration

CODEC = Codec()


def event(station: str, n: int) -> MeterEvent:
    return MeterEvent(event_id=f"{station}:{n}", station_id=station, connector_id=1,
                      kind=EventKind.METER, event_time_ms=T0 + n, receive_time_ms=T0 + n,
                      energy_wh=float(n))


def test_windowed_stations_land_where_kafka_puts_their_keys(broker: EmbeddedBroker,
                                                            namespace: str) -> None:
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    keyed, windowed = Topics(namespace), Topics(namespace + "w")
    for topics in (keyed, windowed):
        ensure_topics(conf, topics, PARTITIONS)
    stations = [f"CP-{i:03d}" for i in range(60)]
    plain = EventPublisher(conf, keyed.meter_events, CODEC.encode_meter_events)
    gathering = EventPublisher(conf, windowed.meter_events, CODEC.encode_meter_events,
                               PartitionWindow(0.5, 50))
    for n in range(4):
        for station in stations:
            plain.publish(station, [event(station, n)])
            gathering.publish(station, [event(station, n)])
    assert plain.flush(30).messages == 240
    stats = gathering.flush(30)
    assert stats.sent == 240 and stats.delivered == stats.messages < 240 / 5

    placed = {key.decode(): partition
              for key, partition, _ in read_all(broker.bootstrap_servers, keyed.meter_events, 240)}
    order: dict[str, list[str]] = defaultdict(list)
    stations_per_message = []
    for key, partition, value in read_all(broker.bootstrap_servers, windowed.meter_events,
                                          stats.messages):
        events = CODEC.decode_meter_events(value)
        assert key is not None and key.decode() == events[0].station_id
        assert {placed[e.station_id] for e in events} == {partition}
        stations_per_message.append(len({e.station_id for e in events}))
        for e in events:
            order[e.station_id].append(e.event_id)
    assert order == {s: [f"{s}:{n}" for n in range(4)] for s in stations}
    assert max(stations_per_message) > 1


def test_a_windowed_gateway_answers_only_after_kafka_has_the_event(broker: EmbeddedBroker,
                                                                   namespace: str) -> None:
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, PARTITIONS)
    publisher = EventPublisher({"bootstrap.servers": broker.bootstrap_servers,
                                **GATEWAY_PRODUCER_CONF}, topics.meter_events,
                               CODEC.encode_meter_events, PartitionWindow(0.5, 500))
    acked: dict[str, float] = {}
    publish = publisher.publish

    def noting_acks(key: str, events: Any, on_delivery: DeliveryCallback | None = None) -> None:
        def report(error: str | None) -> None:
            acked[key] = time.monotonic()
            assert on_delivery is not None
            on_delivery(error)
        publish(key, events, report)

    publisher.publish = noting_acks  # type: ignore[method-assign]
    delivery = KafkaDelivery(publisher, topics.dead_letters,
                             lambda d: CODEC.encode_dead_letter(d, topics.dead_letters)).start()
    gateway = OcppGateway(delivery, heartbeat_interval_s=120, clock=lambda: T0)
    chargers = [f"CP-{i:02d}" for i in range(12)]

    async def status(url: str, charger_id: str) -> tuple[str, float, float]:
        async with charger(url, charger_id, "ocpp1.6") as cp:
            sent = time.monotonic()
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError",
                                                    status="Available"), suppress=False)
            return charger_id, sent, time.monotonic()

    async def main() -> list[tuple[str, float, float]]:
        async with gateway.serve("127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            return await asyncio.gather(*(status(url, c) for c in chargers))

    try:
        answers = asyncio.run(main())
    finally:
        delivery.stop(timeout=5)
    for charger_id, sent, answered in answers:
        assert sent <= acked[charger_id] <= answered
    messages = read_all(broker.bootstrap_servers, topics.meter_events, 1)
    stations = sorted(e.station_id for _, _, v in messages for e in CODEC.decode_meter_events(v))
    assert stations == chargers and len(messages) < len(chargers)


def test_a_multi_station_message_is_stitched_into_each_stations_session(
        broker: EmbeddedBroker, namespace: str) -> None:
    """Stations gathered by the window go through a real stitching process: one session per
    station with its own energy, and each station's changelog record on its own partition."""
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    settings = load_settings(kafka={"bootstrap_servers": broker.bootstrap_servers,
                                    "namespace": namespace, "partitions": PARTITIONS})
    topics = Topics(namespace)
    ensure_topics(conf, topics, PARTITIONS)
    changelog = f"{namespace}-station-state-changelog"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(changelog, PARTITIONS, 1)])[changelog].result(10)
    stations = [f"CS-{n}" for n in range(9)]
    publisher = EventPublisher(conf, topics.meter_events, CODEC.encode_meter_events,
                               PartitionWindow(30.0, 500))
    for i in range(4):
        for n, station in enumerate(stations):
            kind = [EventKind.STARTED, EventKind.METER, EventKind.METER, EventKind.ENDED][i]
            publisher.publish(station, [MeterEvent(
                event_id=f"{station}-{i}", station_id=station, connector_id=1, kind=kind,
                event_time_ms=T0 + i * 600_000, receive_time_ms=T0 + i * 600_000,
                transaction_id="T1", seq=i, energy_wh=1_000.0 + i * 100 * (n + 1))])
    stats = publisher.flush(30)
    assert stats.messages <= PARTITIONS
    offsets: dict[int, int] = defaultdict(int)
    messages = []
    for key, partition, value in read_all(broker.bootstrap_servers, topics.meter_events,
                                          stats.messages):
        messages.append(RawMessage(topics.meter_events, partition, offsets[partition], key,
                                   value))
        offsets[partition] += 1
    placed = {e.station_id: m.partition for m in messages
              for e in CODEC.decode_meter_events(m.value)}

    async def run() -> Any:
        return await StitchingProcess(settings, broker.bootstrap_servers, changelog).process(
            messages)

    done = asyncio.run(run())
    assert done.counts.events_used == 36 and done.counts.dead_lettered == 0
    stored = read_to_end(conf, changelog, list(range(PARTITIONS)))
    assert {key.decode(): partition for key, (partition, _) in stored.items()} == placed
    completed = [CODEC.decode_session(value) for _, _, value in read_all(
        broker.bootstrap_servers, topics.sessions_completed, len(stations))]
    assert {s.station_id: s.energy_wh for s in completed} == {
        station: 300.0 * (n + 1) for n, station in enumerate(stations)}


def test_a_bad_event_fails_only_its_own_caller(broker: EmbeddedBroker, namespace: str) -> None:
    """A gathered message that does not encode goes out call by call: the caller whose event
    cannot be encoded is told, its neighbours' events land."""
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    topics = Topics(namespace)
    ensure_topics(conf, topics, PARTITIONS)
    publisher = EventPublisher(conf, topics.meter_events, CODEC.encode_meter_events,
                               PartitionWindow(30.0, 500))
    told: dict[str, str | None] = {}
    stations = [f"CP-{n}" for n in range(6)]
    for station in stations:
        bad = station == "CP-3"
        publisher.publish(station, [replace(event(station, 0), power_w=math.nan if bad else 1.0)],
                          lambda error, s=station: told.__setitem__(s, error))
    stats = publisher.flush(30)
    assert stats.sent == 5 and stats.failed == 0
    assert "power_w is nan" in str(told.pop("CP-3"))
    assert told == {s: None for s in stations if s != "CP-3"}
    landed = sorted(e.station_id for _, _, v in read_all(broker.bootstrap_servers,
                                                         topics.meter_events, stats.messages)
                    for e in CODEC.decode_meter_events(v))
    assert landed == [s for s in stations if s != "CP-3"]


def test_a_registry_that_cannot_be_asked_fails_each_caller_and_nothing_else(
        broker: EmbeddedBroker, namespace: str) -> None:
    """No Schema Registry answers (none can run here: a closed port stands in for it, the
    client's retries off) while the gateway's delivery thread cuts the windows: every
    caller is told, nothing escapes `poll` (that would end the delivery thread and leave
    every charger without an answer), and each message asks the registry at most twice
    (the gathered message, then one call), not once per caller."""
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    topics = Topics(namespace)
    ensure_topics(conf, topics, PARTITIONS)
    codec = Codec(f"http://127.0.0.1:{free_port()}", {"max.retries": 0})
    asked: list[int] = []

    def encode(events: Sequence[MeterEvent]) -> bytes:
        asked.append(len(events))
        return codec.encode_meter_events(events, topics.meter_events)

    publisher = EventPublisher(conf, topics.meter_events, encode, PartitionWindow(0.05, 500))
    told: dict[str, str | None] = {}
    stations = [f"CP-{n:02d}" for n in range(40)]
    for station in stations:
        publisher.publish(station, [event(station, 0)],
                          lambda error, s=station: told.__setitem__(s, error))
    deadline = time.monotonic() + 30
    while len(told) < len(stations) and time.monotonic() < deadline:
        publisher.poll(0.05)
    assert sorted(told) == stations
    assert all("cannot register" in str(error) for error in told.values())
    assert len(asked) <= 2 * PARTITIONS
    assert publisher.flush(10).sent == 0


def test_a_batch_the_registry_refuses_goes_out_call_by_call(broker: EmbeddedBroker,
                                                            namespace: str) -> None:
    """A registry that refuses the batch record's subject but knows the single event's
    (stood in for by an encoder that raises `RegistryError` for more than one event): the
    gathered message goes out one call at a time, and every caller's event lands."""
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    topics = Topics(namespace)
    ensure_topics(conf, topics, PARTITIONS)

    def encode(events: Sequence[MeterEvent]) -> bytes:
        if len(events) > 1:
            raise RegistryError("cannot register MeterEventBatch v2: 409 incompatible")
        return CODEC.encode_meter_events(events, topics.meter_events)

    publisher = EventPublisher(conf, topics.meter_events, encode, PartitionWindow(30.0, 500))
    told: dict[str, str | None] = {}
    stations = [f"CP-{n}" for n in range(6)]
    for station in stations:
        publisher.publish(station, [event(station, 0)],
                          lambda error, s=station: told.__setitem__(s, error))
    stats = publisher.flush(30)
    assert stats.sent == stats.messages == len(stations)
    assert told == {s: None for s in stations}
