"""The OCPP gateway over real websockets with the real embedded broker: simulated 1.6 and
2.0.1 chargers run a session, and the meter-events topic holds exactly the mapped events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ocpp.exceptions import InternalError
from ocpp.v16 import call as call16
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chargewatch.embedded import EmbeddedBroker, free_port
from infra.topics import Topics, ensure_topics
from producers.errors import PublishError
from producers.ocpp_delivery import GATEWAY_PRODUCER_CONF, KafkaDelivery
from producers.ocpp_gateway import OcppGateway
from producers.ocpp_mapping import TX_EPOCH_MS, format_time
from producers.publisher import EventPublisher
from schemas.codec import Codec
from schemas.records import EventKind, MeterEvent
from tests.integration.test_publisher import PARTITIONS, read_all
from tests.ocpp_chargers import MINUTE, T0, at, charger, run_session_16, run_session_201

pytestmark = pytest.mark.integration

NOW = T0 + 120 * MINUTE
"""The gateway's clock in these tests: every receive time."""


def _run(broker: EmbeddedBroker, namespace: str,
         scenario: Callable[[str], Awaitable[Any]], bootstrap: str | None = None,
         ) -> tuple[Any, Topics]:
    """Run `scenario(url)` against a gateway on a free loopback port."""
    topics = Topics(namespace)
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, PARTITIONS)
    codec = Codec()
    conf = {"bootstrap.servers": bootstrap or broker.bootstrap_servers, **GATEWAY_PRODUCER_CONF}
    if bootstrap:
        conf["message.timeout.ms"] = "1000"
    publisher = EventPublisher(conf, topics.meter_events,
                               lambda batch: codec.encode_meter_events(batch, topics.meter_events))
    delivery = KafkaDelivery(publisher, topics.dead_letters,
                             lambda d: codec.encode_dead_letter(d, topics.dead_letters)).start()
    gateway = OcppGateway(delivery, heartbeat_interval_s=120, clock=lambda: NOW,
                          authorize=lambda tag: not tag.startswith("BLOCKED"))

    async def main() -> Any:
        async with gateway.serve("127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            return await scenario(f"ws://127.0.0.1:{port}")

    try:
        return asyncio.run(main()), topics
    finally:
        try:
            delivery.stop(timeout=5)
        except PublishError:
            if not bootstrap:  # only the unreachable broker may leave messages undelivered
                raise


def _events(broker: EmbeddedBroker, topic: str, messages: int) -> dict[str, list[list[MeterEvent]]]:
    """Each key's messages, each decoded to its events, in order."""
    codec = Codec()
    out: dict[str, list[list[MeterEvent]]] = {}
    for key, _, value in read_all(broker.bootstrap_servers, topic, messages):
        assert key is not None
        out.setdefault(key.decode(), []).append(codec.decode_meter_events(value))
    return out


def _ev(station: str, connector: int, kind: EventKind, minutes: float, event_id: str,
        **fields: Any) -> MeterEvent:
    return MeterEvent(event_id=event_id, station_id=station, connector_id=connector, kind=kind,
                      event_time_ms=T0 + int(minutes * MINUTE), receive_time_ms=NOW, **fields)


def test_ocpp16_session_reaches_kafka_exactly(broker: EmbeddedBroker, namespace: str) -> None:
    async def scenario(url: str) -> Any:
        async with charger(url, "CP-16", "ocpp1.6") as cp:
            return await run_session_16(cp)

    sent, topics = _run(broker, namespace, scenario)
    tx = (T0 + MINUTE - TX_EPOCH_MS) // 1000
    assert sent.transaction_id == tx
    assert (sent.boot.status, sent.boot.interval) == ("Accepted", 120)
    assert sent.heartbeat.current_time == format_time(NOW)
    assert sent.authorize.id_tag_info["status"] == "Accepted"
    assert sent.stop.id_tag_info["status"] == "Accepted"
    t = str(tx)
    assert _events(broker, topics.meter_events, 4) == {"CP-16": [
        [_ev("CP-16", 1, EventKind.STATUS, 0, f"CP-16:1:status:{T0}", status="Preparing",
             error_code="NoError")],
        [_ev("CP-16", 1, EventKind.STARTED, 1, f"CP-16:1:{t}:start", transaction_id=t,
             id_tag="RFID-16", energy_wh=1000.0)],
        [_ev("CP-16", 1, EventKind.METER, 11, f"CP-16:1:{t}:m{T0 + 11 * MINUTE}:0",
             transaction_id=t, energy_wh=8500.0, power_w=11000.0, soc_pct=42.0,
             current_a=16.1, voltage_v=231.0),
         _ev("CP-16", 1, EventKind.METER, 21, f"CP-16:1:{t}:m{T0 + 21 * MINUTE}:1",
             transaction_id=t, energy_wh=16000.0)],
        [_ev("CP-16", 1, EventKind.ENDED, 31, f"CP-16:1:{t}:stop", transaction_id=t,
             id_tag="RFID-16", energy_wh=23500.0, soc_pct=80.0, stop_reason="EVDisconnected")],
    ]}


def test_ocpp201_session_reaches_kafka_exactly(broker: EmbeddedBroker, namespace: str) -> None:
    async def scenario(url: str) -> Any:
        async with charger(url, "CS/201", "ocpp2.0.1") as cp:
            return await run_session_201(cp)

    boot, topics = _run(broker, namespace, scenario)
    assert (boot.status, boot.interval) == ("Accepted", 120)
    ident = {"transaction_id": "tx-201-a", "id_tag": "RFID-201",
             "vehicle_id": "WVWZZZ1JZXW000001"}
    plain = {"transaction_id": "tx-201-a"}
    assert _events(broker, topics.meter_events, 4) == {"CS/201": [
        [_ev("CS/201", 2, EventKind.STATUS, 0, f"CS/201:2:status:{T0}", status="Occupied")],
        [_ev("CS/201", 2, EventKind.STARTED, 2, "CS/201:tx-201-a:0:0", seq=0, energy_wh=2000.0,
             soc_pct=30.0, **ident)],
        [_ev("CS/201", 2, EventKind.METER, 12, "CS/201:tx-201-a:1:0", seq=1, energy_wh=7000.0,
             power_w=22000.0, **plain)],
        [_ev("CS/201", 2, EventKind.ENDED, 42, "CS/201:tx-201-a:2:0", seq=2, energy_wh=12000.0,
             stop_reason="EVDisconnected", **plain)],
    ]}


def test_unmappable_messages_become_dead_letters_and_are_answered(
        broker: EmbeddedBroker, namespace: str) -> None:
    async def scenario(url: str) -> Any:
        async with charger(url, "CP-DL", "ocpp1.6") as cp:
            stop = await cp.call(call16.StopTransaction(meter_stop=5, timestamp=at(3),
                                                        transaction_id=777, id_tag="BLOCKED-1"))
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=778, meter_value=[
                {"timestamp": at(4), "sampledValue": [{"value": "5", "unit": "W"}]}]))
            return stop

    stop, topics = _run(broker, namespace, scenario)
    assert stop.id_tag_info["status"] == "Invalid"
    letters = [Codec().decode_dead_letter(v)
               for _, _, v in read_all(broker.bootstrap_servers, topics.dead_letters, 2)]
    assert [(d.stage, d.source_topic, d.original_key) for d in letters] == \
        [("gateway", "ocpp:CP-DL", b"CP-DL")] * 2
    assert "transaction 777" in letters[0].error and b'"StopTransaction"' in letters[0].original
    assert "unit 'W'" in letters[1].error
    assert read_all(broker.bootstrap_servers, topics.meter_events, 0, timeout_s=3) == []


def test_charger_gets_an_error_while_kafka_does_not_accept(broker: EmbeddedBroker,
                                                           namespace: str) -> None:
    async def scenario(url: str) -> Any:
        async with charger(url, "CP-DOWN", "ocpp1.6") as cp:
            with pytest.raises(InternalError):
                await cp.call(call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Available"), suppress=False)
            return True

    assert _run(broker, namespace, scenario, bootstrap=f"127.0.0.1:{free_port()}")[0]


def test_handshake_needs_a_subprotocol_and_a_charger_id(broker: EmbeddedBroker,
                                                       namespace: str) -> None:
    async def scenario(url: str) -> list[int]:
        statuses = []
        for target, protocols in ((f"{url}/CP-1", None), (f"{url}/CP-1", ["ocpp1.5"]),
                                  (f"{url}/", ["ocpp1.6"])):
            with pytest.raises(InvalidStatus) as failed:
                async with connect(target, subprotocols=protocols):
                    pass
            statuses.append(failed.value.response.status_code)
        async with connect(f"{url}/ocpp/CP-2", subprotocols=["ocpp1.6", "ocpp2.0.1"]) as ws:
            statuses.append(0 if ws.subprotocol == "ocpp2.0.1" else -1)
        return statuses

    assert _run(broker, namespace, scenario)[0] == [400, 400, 404, 0]


def test_a_restarted_gateway_still_knows_the_open_transactions(broker: EmbeddedBroker,
                                                               namespace: str) -> None:
    """A 1.6 StopTransaction names no connector: a gateway started after the start was seen
    reads it from the transactions topic instead of dead-lettering the stop."""
    from infra.topics import read_to_end
    from producers.ocpp_transactions import states_from_records

    topics = Topics(namespace)
    conf = {"bootstrap.servers": broker.bootstrap_servers}
    ensure_topics(conf, topics, PARTITIONS)
    codec = Codec()

    def serve_once(scenario: Callable[[str], Awaitable[Any]]) -> Any:
        publisher = EventPublisher({**conf, **GATEWAY_PRODUCER_CONF}, topics.meter_events,
                                   lambda b: codec.encode_meter_events(b, topics.meter_events))
        delivery = KafkaDelivery(publisher, topics.dead_letters,
                                 lambda d: codec.encode_dead_letter(d, topics.dead_letters))
        known = states_from_records(read_to_end(conf, topics.gateway_transactions,
                                                list(range(PARTITIONS))))
        gateway = OcppGateway(delivery.start(), clock=lambda: NOW, chargers=known,
                              transactions_topic=topics.gateway_transactions)

        async def main() -> Any:
            async with gateway.serve("127.0.0.1", 0) as server:
                return await scenario(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            return asyncio.run(main())
        finally:
            delivery.stop(timeout=5)

    async def start(url: str) -> int:
        async with charger(url, "CP-R", "ocpp1.6") as cp:
            started = await cp.call(call16.StartTransaction(
                connector_id=2, id_tag="RFID-R", meter_start=1000, timestamp=at(1)))
            return int(started.transaction_id)

    async def stop(url: str) -> None:
        async with charger(url, "CP-R", "ocpp1.6") as cp:
            await cp.call(call16.StopTransaction(
                meter_stop=9000, timestamp=at(30), transaction_id=tx, id_tag="RFID-R",
                reason="EVDisconnected"))

    tx = serve_once(start)
    serve_once(stop)  # a new gateway: nothing in memory from the first
    t = str(tx)
    assert _events(broker, topics.meter_events, 2) == {"CP-R": [
        [_ev("CP-R", 2, EventKind.STARTED, 1, f"CP-R:2:{t}:start", transaction_id=t,
             id_tag="RFID-R", energy_wh=1000.0)],
        [_ev("CP-R", 2, EventKind.ENDED, 30, f"CP-R:2:{t}:stop", transaction_id=t,
             id_tag="RFID-R", energy_wh=9000.0, stop_reason="EVDisconnected")],
    ]}
    assert read_to_end(conf, topics.dead_letters, list(range(PARTITIONS))) == {}
    # the stop closed it: the charger's record is a tombstone now
    assert states_from_records(read_to_end(conf, topics.gateway_transactions,
                                           list(range(PARTITIONS)))) == {}
