"""OCPP security profiles 1 and 2 and the per-charger limits, over real websockets with the
`ocpp` library's client classes and the real embedded broker behind the gateway."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from chargewatch.embedded import EmbeddedBroker
from infra.kafka_config import client_config
from infra.settings import KafkaSettings
from infra.topics import Topics, ensure_topics
from producers.ocpp_auth import ChargerAllowList, GatewayPolicy, hash_password, server_tls_context
from producers.ocpp_delivery import GATEWAY_PRODUCER_CONF, KafkaDelivery
from producers.ocpp_gateway import OcppGateway
from producers.publisher import EventPublisher
from schemas.codec import Codec
from tests.tls import self_signed

pytestmark = pytest.mark.integration

PASSWORD = "Correct-Horse-Battery-1"
ALLOW = ChargerAllowList.from_data({"chargers": {
    "CP-OK": hash_password(PASSWORD, (1024, 8, 1)),
    "CP/201": hash_password("other-password-201", (1024, 8, 1))}})


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _serve(broker: EmbeddedBroker, namespace: str, policy: GatewayPolicy,
           scenario: Callable[[str], Awaitable[Any]]) -> Any:
    """Run `scenario(base_url)` against a gateway with this policy on a free loopback port."""
    topics = Topics(namespace)
    conf = client_config(KafkaSettings(), broker.bootstrap_servers)
    ensure_topics(conf, topics, 1)
    codec = Codec()
    publisher = EventPublisher({**conf, **GATEWAY_PRODUCER_CONF}, topics.meter_events,
                               lambda batch: codec.encode_meter_events(batch, topics.meter_events))
    delivery = KafkaDelivery(publisher, topics.dead_letters,
                             lambda d: codec.encode_dead_letter(d, topics.dead_letters)).start()
    gateway = OcppGateway(delivery, heartbeat_interval_s=120, policy=policy)
    scheme = "wss" if policy.ssl_context else "ws"

    async def main() -> Any:
        async with gateway.serve("127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            return await scenario(f"{scheme}://127.0.0.1:{port}")

    try:
        return asyncio.run(main())
    finally:
        delivery.stop(timeout=5)


async def _boot(url: str, charger_id: str, version: str, headers: dict[str, str],
                tls: ssl.SSLContext | None = None) -> str:
    """Connect as a charger and send BootNotification; the status it is answered with."""
    async with connect(f"{url}/{charger_id.replace('/', '%2F')}", subprotocols=[version],  # type: ignore[list-item]
                       additional_headers=headers, ssl=tls) as ws:
        if version == "ocpp1.6":
            cp: Any = ChargePoint16(charger_id, ws, response_timeout=10)
            request: Any = call16.BootNotification(charge_point_model="CW-1",
                                                   charge_point_vendor="ChargeWatch")
        else:
            cp = ChargePoint201(charger_id, ws, response_timeout=10)
            request = call201.BootNotification(
                charging_station={"model": "CW-2", "vendor_name": "ChargeWatch"},
                reason="PowerUp")
        task = asyncio.create_task(cp.start())
        try:
            return str((await cp.call(request)).status)
        finally:
            task.cancel()


async def _refused(url: str, charger_id: str, headers: dict[str, str]) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        await _boot(url, charger_id, "ocpp1.6", headers)
    return caught.value


def test_profile_1_refuses_wrong_unknown_and_mismatched_chargers(
        broker: EmbeddedBroker, namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(url: str) -> dict[str, Any]:
        return {
            "wrong password": await _refused(url, "CP-OK", _basic("CP-OK", "guess")),
            "unknown": await _refused(url, "CP-NEW", _basic("CP-NEW", PASSWORD)),
            "no credentials": await _refused(url, "CP-OK", {}),
            "id mismatch": await _refused(url, "CP/201", _basic("CP-OK", PASSWORD)),
            "other's password": await _refused(url, "CP/201", _basic("CP/201", PASSWORD)),
            "right 1.6": await _boot(url, "CP-OK", "ocpp1.6", _basic("CP-OK", PASSWORD)),
            "right 2.0.1": await _boot(url, "CP/201", "ocpp2.0.1",
                                       _basic("CP/201", "other-password-201")),
        }

    with caplog.at_level(logging.DEBUG):
        got = _serve(broker, namespace, GatewayPolicy(allow_list=ALLOW), scenario)
    for case in ("wrong password", "unknown", "no credentials", "id mismatch",
                 "other's password"):
        response = got[case].response
        assert response.status_code == 401, case
        assert response.headers["WWW-Authenticate"].startswith("Basic "), case
    assert (got["right 1.6"], got["right 2.0.1"]) == ("Accepted", "Accepted")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    # The operator reads which check failed; the charger got the same bare 401 either way.
    assert "CP-NEW refused at the handshake: unknown charger" in logged
    assert "CP-OK refused at the handshake: wrong password" in logged
    assert "CP/201 refused at the handshake: wrong password" in logged  # another's password
    assert got["wrong password"].response.body == got["unknown"].response.body
    assert PASSWORD not in logged and "guess" not in logged


def test_profile_2_serves_tls_with_basic_auth(broker: EmbeddedBroker, namespace: str,
                                              tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    policy = GatewayPolicy(allow_list=ALLOW, ssl_context=server_tls_context(cert, key))

    async def scenario(url: str) -> dict[str, Any]:
        assert url.startswith("wss://")
        plain = url.replace("wss://", "ws://")
        with pytest.raises(InvalidMessage):  # a plain ws:// client gets no HTTP answer
            await _boot(plain, "CP-OK", "ocpp1.6", _basic("CP-OK", PASSWORD))
        with pytest.raises(ssl.SSLCertVerificationError):  # a charger that does not trust it
            await _boot(url, "CP-OK", "ocpp1.6", _basic("CP-OK", PASSWORD),
                        ssl.create_default_context())
        with pytest.raises(InvalidStatus) as wrong:
            await _boot(url, "CP-OK", "ocpp1.6", _basic("CP-OK", "guess"), trust)
        return {"wrong": wrong.value.response.status_code,
                "right": await _boot(url, "CP-OK", "ocpp1.6", _basic("CP-OK", PASSWORD), trust)}

    assert _serve(broker, namespace, policy, scenario) == {"wrong": 401, "right": "Accepted"}


def _frame(n: int) -> str:
    return json.dumps([2, f"m{n}", "Heartbeat", {}])


def test_over_sized_messages_close_with_1009(broker: EmbeddedBroker, namespace: str) -> None:
    async def scenario(url: str) -> tuple[Any, ...]:
        async with connect(f"{url}/CP-BIG", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            await ws.send(_frame(1))
            answer = json.loads(await ws.recv())
            data = "x" * 5000
            await ws.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "v", "data": data}]))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return answer[0], closed.value.rcvd.code, closed.value.rcvd.reason

    kind, code, reason = _serve(broker, namespace, GatewayPolicy(max_message_bytes=4096),
                                scenario)
    assert (kind, code) == (3, 1009)  # the small message was answered
    assert "4096" in reason


def test_a_charger_over_its_rate_is_disconnected_with_1008(broker: EmbeddedBroker,
                                                           namespace: str) -> None:
    async def scenario(url: str) -> tuple[list[str], int, str, list[str]]:
        answered: list[str] = []
        async with connect(f"{url}/CP-FAST", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            for n in range(6):
                await ws.send(_frame(n))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    answered.append(json.loads(await ws.recv())[1])
        async with connect(f"{url}/CP-SLOW", subprotocols=["ocpp1.6"]) as other:  # type: ignore[list-item]
            others = []
            for n in range(3):  # another charger has its own bucket
                await other.send(_frame(n))
                others.append(json.loads(await other.recv())[1])
        return answered, closed.value.rcvd.code, closed.value.rcvd.reason, others

    answered, code, reason, others = _serve(
        broker, namespace, GatewayPolicy(max_messages_per_s=0.5, burst=3), scenario)
    assert answered == ["m0", "m1", "m2"]  # the burst, then the close
    assert code == 1008 and "0.5 messages/s" in reason
    assert others == ["m0", "m1", "m2"]
