"""OCPP chargers -> gateway -> Kafka -> Faust -> ClickHouse: a 1.6 and a 2.0.1 charger each
run one session, and ClickHouse holds both with the energy, identity, times and cost the
chargers' messages imply."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from chargewatch.embedded import EmbeddedBroker
from chargewatch.stack import LocalStack
from charging.pricing import SimpleTariff, price_session
from infra.settings import load_settings
from producers.ocpp_delivery import GATEWAY_PRODUCER_CONF, KafkaDelivery
from producers.ocpp_gateway import OcppGateway
from producers.ocpp_mapping import TX_EPOCH_MS
from producers.publisher import EventPublisher
from schemas.codec import Codec
from tests.ocpp_chargers import MINUTE, T0, charger, run_session_16, run_session_201

pytestmark = pytest.mark.e2e


def _ms(value: Any) -> int:
    return int(round(value.timestamp() * 1000))


def test_ocpp_chargers_sessions_land_in_clickhouse(broker: EmbeddedBroker, chdb_url: str,
                                                   database: str, tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap_servers,
               "namespace": f"e2e{uuid.uuid4().hex[:8]}", "partitions": 3},
        clickhouse={"url": chdb_url, "database": database})
    with LocalStack(settings, tmp_path) as stack:
        codec = Codec()
        topics = stack.topics
        publisher = EventPublisher(
            {"bootstrap.servers": stack.bootstrap_servers, **GATEWAY_PRODUCER_CONF},
            topics.meter_events,
            lambda batch: codec.encode_meter_events(batch, topics.meter_events))
        delivery = KafkaDelivery(publisher, topics.dead_letters,
                                 lambda d: codec.encode_dead_letter(d, topics.dead_letters))
        gateway = OcppGateway(delivery.start())

        async def chargers() -> None:
            async with gateway.serve("127.0.0.1", 0) as server:
                url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
                async with charger(url, "E2E-16", "ocpp1.6") as cp16, \
                        charger(url, "E2E-201", "ocpp2.0.1") as cp201:
                    await asyncio.gather(run_session_16(cp16), run_session_201(cp201))

        try:
            asyncio.run(chargers())
        finally:
            delivery.stop()
        stack.wait_for_sessions(2, timeout_s=60)
        result = stack.client.query(
            f"SELECT * FROM {database}.charging_sessions FINAL ORDER BY station_id")
        rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    tariff_settings = settings.processor.tariff
    tariff = SimpleTariff(tariff_settings.currency, tariff_settings.per_kwh,
                          tariff_settings.per_minute)
    expected = [  # station, connector, tx, id_tag, vehicle, start/end minute, Wh, reason
        ("E2E-16", 1, str((T0 + MINUTE - TX_EPOCH_MS) // 1000), "RFID-16", None, 1, 31,
         22500.0, "EVDisconnected"),
        ("E2E-201", 2, "tx-201-a", "RFID-201", "WVWZZZ1JZXW000001", 2, 42, 10000.0,
         "EVDisconnected"),
    ]
    assert [(r["station_id"], r["connector_id"], r["transaction_id"], r["id_tag"],
             r["vehicle_id"], (_ms(r["start_time"]) - T0) / MINUTE,
             (_ms(r["end_time"]) - T0) / MINUTE, r["energy_wh"], r["stop_reason"])
            for r in rows] == expected
    for row, (*_, start, end, energy, _reason) in zip(rows, expected, strict=True):
        assert row["state"] == "completed"
        assert row["cost"] == price_session(energy, (end - start) * MINUTE, tariff)
        assert row["currency"] == tariff.currency
