"""The OCPP gateway: a websocket server that real chargers connect to (OCPP 1.6-J, 2.0.1).

A charger connects to `ws://host:port/<charge point id>` offering the subprotocol
`ocpp1.6` or `ocpp2.0.1` (the last path segment is its id; a connection without a shared
subprotocol is refused with HTTP 400, one without an id with 404). Every message that
carries session data is mapped by `producers.ocpp_mapping`, its events are published as
one Kafka message keyed by the charger id, and only when Kafka has accepted it does the
charger get its answer. If Kafka refuses or times out, the charger gets a CallError and
retries, as both specs expect; messages are handled one at a time per connection, so a
charger's events stay in order.

A message that cannot be mapped (a bad unit, a stop for a transaction this gateway does
not know) is published to `dead-letters` with its raw JSON, stage "gateway", and answered
normally: the charger cannot fix it by retrying.

Transactions: 1.6 transaction ids are assigned by `derive_transaction_id` (seconds since
2020 of the start time: deterministic, retry-safe, unique per charger). The connector of
an open transaction (1.6 StopTransaction and later 2.0.1 TransactionEvents do not carry
it) is remembered per charger, re-learnt from 1.6 MeterValues, and, given a transactions
topic, written there before the charger's answer (`producers.ocpp_transactions`), so a
restarted gateway or another replica still knows it. Without that topic a stop arriving
at a restarted gateway for a transaction it never saw becomes a dead letter.

Security (`producers.ocpp_auth.GatewayPolicy`): with security profile 1 or 2 the handshake
is refused with HTTP 401 and `WWW-Authenticate: Basic` unless the Basic username is the
charger id of the URL and its password matches the allow-list; profile 2 serves wss://.
A message over `max_message_bytes` closes the connection with 1009 (message too big); a
charger over its message rate (a token bucket per charger id, kept across reconnects) is
disconnected with 1008 (policy violation) without its message being handled, so it sends
it again after reconnecting, and a flooding charger costs the gateway one close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.datatypes import IdTokenInfoType
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import AuthorizationStatusEnumType, RegistrationStatusEnumType
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from infra.clock import now_ms
from producers import ocpp_mapping as mapping
from producers.ocpp_auth import GatewayPolicy, TokenBucket, basic_credentials
from producers.ocpp_delivery import KafkaDelivery
from producers.ocpp_mapping import OcppMessageError
from producers.ocpp_transactions import ChargerState, OpenTransaction
from schemas.records import DeadLetter, MeterEvent

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")
"""Offered in this order: a charger that speaks both gets 2.0.1."""


def accept_all(id_tag: str) -> bool:
    """The default allow-list: every id tag is accepted (billing decides later)."""
    return True


def charger_id_of(path: str) -> str:
    """The charge point id: the last non-empty segment of the URL path, percent-decoded."""
    segments = [s for s in urlsplit(path).path.split("/") if s]
    return unquote(segments[-1]) if segments else ""


class OcppGateway:
    """Serves chargers; one instance per process, shared by all connections."""

    def __init__(self, delivery: KafkaDelivery, heartbeat_interval_s: int = 300,
                 authorize: Callable[[str], bool] = accept_all,
                 clock: Callable[[], int] = now_ms,
                 policy: GatewayPolicy | None = None, transactions_topic: str | None = None,
                 chargers: Mapping[str, ChargerState] | None = None) -> None:
        self.delivery = delivery
        self.heartbeat_interval_s = heartbeat_interval_s
        self.authorize = authorize
        self.clock = clock
        self.policy = policy or GatewayPolicy()
        self.transactions_topic = transactions_topic
        self.chargers: dict[str, ChargerState] = dict(chargers or {})
        self._buckets: dict[str, TokenBucket] = {}

    def serve(self, host: str, port: int) -> Any:
        """The websocket server (an async context manager yielding a `Server`)."""
        return serve(self._connection, host, port, subprotocols=list(SUBPROTOCOLS),
                     process_request=self._check_request, ping_interval=None,
                     max_size=self.policy.max_message_bytes, ssl=self.policy.ssl_context)

    async def _check_request(self, connection: ServerConnection,
                             request: Request) -> Response | None:
        """Refuse a handshake without a charger id (404) or, under profiles 1 and 2, without
        that charger's Basic credentials (401). The password is never logged."""
        charger_id = charger_id_of(request.path)
        if not charger_id:
            return connection.respond(HTTPStatus.NOT_FOUND,
                                      "connect to ws://host:port/<charge point id>\n")
        allow_list = self.policy.allow_list
        if allow_list is None:
            return None
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None:
            return self._unauthorized(connection, charger_id, "no Basic credentials")
        username, password = credentials
        if username != charger_id:
            return self._unauthorized(connection, charger_id,
                                      f"Basic username {username!r} is not the charger id")
        refusal = await asyncio.to_thread(allow_list.refusal, charger_id, password)
        if refusal is not None:
            return self._unauthorized(connection, charger_id, refusal)
        return None

    @staticmethod
    def _unauthorized(connection: ServerConnection, charger_id: str, why: str) -> Response:
        log.warning("%s refused at the handshake: %s", charger_id, why)
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="ChargeWatch OCPP", charset="UTF-8"'
        return response

    def within_rate(self, charger_id: str) -> bool:
        """Spend one of this charger's message tokens; False when it is over its rate."""
        now = time.monotonic()
        bucket = self._buckets.get(charger_id)
        if bucket is None:
            bucket = self._buckets[charger_id] = TokenBucket(
                self.policy.max_messages_per_s, self.policy.burst, now)
        return bucket.take(now)

    async def _connection(self, connection: ServerConnection) -> None:
        charger_id = charger_id_of(connection.request.path if connection.request else "")
        handler_class = _Charger201 if connection.subprotocol == "ocpp2.0.1" else _Charger16
        handler = handler_class(charger_id, connection, self)
        log.info("%s connected with %s", charger_id, connection.subprotocol)
        with contextlib.suppress(ConnectionClosed):
            await handler.start()
        log.info("%s disconnected (%s %s)", charger_id, connection.close_code,
                 connection.close_reason)

    def state_of(self, charger_id: str) -> ChargerState:
        return self.chargers.setdefault(charger_id, ChargerState())

    async def remember(self, charger_id: str) -> None:
        """Write a charger's open transactions to the transactions topic and wait for Kafka
        (no topic: kept in this process only)."""
        if self.transactions_topic is None:
            return
        state = self.state_of(charger_id)
        await self.delivery.record(self.transactions_topic, charger_id.encode(),
                                   state.to_bytes() if state.open else None)

    async def forward(self, charger_id: str, raw: str,
                      build: Callable[[], Sequence[MeterEvent]]) -> bool:
        """Publish what `build` maps and wait for Kafka; a mapping error becomes a dead
        letter. True when the events were published."""
        try:
            events = build()
        except (OcppMessageError, KeyError, TypeError, ValueError) as exc:
            await self.reject(charger_id, raw, f"{type(exc).__name__}: {exc}")
            return False
        if events:
            await self.delivery.publish(charger_id, events)
        return True

    async def reject(self, charger_id: str, raw: str, reason: str) -> None:
        log.warning("%s: message dead-lettered: %s", charger_id, reason)
        await self.delivery.dead_letter(DeadLetter(
            original=raw.encode(), source_topic=f"ocpp:{charger_id}", source_partition=-1,
            source_offset=-1, stage="gateway", error=reason, failed_ms=self.clock(),
            original_key=charger_id.encode()))


class _GatewayConnection:
    """What both protocol versions' connections share: the gateway, the charger's state and
    the raw message being handled (for dead letters)."""

    def __init__(self, charger_id: str, connection: ServerConnection,
                 gateway: OcppGateway) -> None:
        super().__init__(charger_id, connection)  # type: ignore[call-arg]
        self._gateway = gateway
        self._state = gateway.state_of(charger_id)
        self._raw = ""

    async def route_message(self, raw_msg: str) -> None:
        if not self._gateway.within_rate(self.id):  # type: ignore[attr-defined]
            policy = self._gateway.policy
            log.warning("%s over its message rate: disconnected", self.id)  # type: ignore[attr-defined]
            await self._connection.close(  # type: ignore[attr-defined]
                1008, f"over {policy.max_messages_per_s:g} messages/s (burst {policy.burst})")
            return
        self._raw = raw_msg  # messages are routed one at a time: this is the one handled
        await super().route_message(raw_msg)  # type: ignore[misc]


class _Charger16(_GatewayConnection, ChargePoint16):
    """One OCPP 1.6-J connection."""

    def _now(self) -> str:
        return mapping.format_time(self._gateway.clock())

    def _id_tag_info(self, id_tag: str) -> IdTagInfo:
        ok = self._gateway.authorize(id_tag)
        return IdTagInfo(status=AuthorizationStatus.accepted if ok else AuthorizationStatus.invalid)

    @on(Action16.boot_notification)
    def on_boot_notification(self, **_: Any) -> result16.BootNotification:
        return result16.BootNotification(current_time=self._now(),
                                         interval=self._gateway.heartbeat_interval_s,
                                         status=RegistrationStatus.accepted)

    @on(Action16.heartbeat)
    def on_heartbeat(self, **_: Any) -> result16.Heartbeat:
        return result16.Heartbeat(current_time=self._now())

    @on(Action16.authorize)
    def on_authorize(self, id_tag: str, **_: Any) -> result16.Authorize:
        return result16.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @on(Action16.status_notification)
    async def on_status_notification(self, **payload: Any) -> result16.StatusNotification:
        receive = self._gateway.clock()
        await self._gateway.forward(self.id, self._raw,
                                    lambda: [mapping.status_event_16(self.id, payload, receive)])
        return result16.StatusNotification()

    @on(Action16.start_transaction)
    async def on_start_transaction(self, **payload: Any) -> result16.StartTransaction:
        receive = self._gateway.clock()
        connector = int(payload["connector_id"])
        start_ms = mapping.parse_time_ms(payload["timestamp"])
        open_ = self._state.open
        same = [tx for tx, o in open_.items() if o.connector_id == connector]
        retried = [tx for tx in same if open_[tx].start_ms == start_ms]
        if retried:  # the charger did not get our answer and sent the same start again
            tx_id = int(retried[0])
        else:
            for tx in same:  # a connector has one transaction: an unstopped one is over
                del open_[tx]
            tx_id = mapping.derive_transaction_id(
                start_ms, {int(tx) for tx in open_ if tx.isdigit()})
        published = await self._gateway.forward(
            self.id, self._raw,
            lambda: mapping.start_transaction_events(self.id, payload, tx_id, receive))
        if published:
            open_[str(tx_id)] = OpenTransaction(connector, start_ms)
            await self._gateway.remember(self.id)
        return result16.StartTransaction(transaction_id=tx_id,
                                         id_tag_info=self._id_tag_info(payload["id_tag"]))

    @on(Action16.meter_values)
    async def on_meter_values(self, **payload: Any) -> result16.MeterValues:
        receive = self._gateway.clock()
        tx = payload.get("transaction_id")
        if tx is not None and str(tx) not in self._state.open:
            self._state.open[str(tx)] = OpenTransaction(int(payload["connector_id"]), None)
            await self._gateway.remember(self.id)
        await self._gateway.forward(
            self.id, self._raw, lambda: mapping.meter_values_events(self.id, payload, receive))
        return result16.MeterValues()

    @on(Action16.stop_transaction)
    async def on_stop_transaction(self, **payload: Any) -> result16.StopTransaction:
        receive = self._gateway.clock()
        tx = str(payload["transaction_id"])
        known = self._state.open.get(tx)
        if known is None:
            await self._gateway.reject(self.id, self._raw, (
                f"StopTransaction for transaction {tx}, which this gateway has not seen "
                f"start (connector unknown)"))
        elif await self._gateway.forward(self.id, self._raw, lambda: (
                mapping.stop_transaction_events(self.id, payload, known.connector_id, receive))):
            del self._state.open[tx]
            await self._gateway.remember(self.id)
        id_tag = payload.get("id_tag")
        return result16.StopTransaction(
            id_tag_info=self._id_tag_info(id_tag) if id_tag else None)


class _Charger201(_GatewayConnection, ChargePoint201):
    """One OCPP 2.0.1 connection."""

    def _now(self) -> str:
        return mapping.format_time(self._gateway.clock())

    def _token_info(self, token: Mapping[str, Any]) -> IdTokenInfoType:
        ok = self._gateway.authorize(str(token.get("id_token", "")))
        return IdTokenInfoType(status=AuthorizationStatusEnumType.accepted if ok
                               else AuthorizationStatusEnumType.invalid)

    @on(Action201.boot_notification)
    def on_boot_notification(self, **_: Any) -> result201.BootNotification:
        return result201.BootNotification(current_time=self._now(),
                                          interval=self._gateway.heartbeat_interval_s,
                                          status=RegistrationStatusEnumType.accepted)

    @on(Action201.heartbeat)
    def on_heartbeat(self, **_: Any) -> result201.Heartbeat:
        return result201.Heartbeat(current_time=self._now())

    @on(Action201.authorize)
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> result201.Authorize:
        return result201.Authorize(id_token_info=self._token_info(id_token))

    @on(Action201.status_notification)
    async def on_status_notification(self, **payload: Any) -> result201.StatusNotification:
        receive = self._gateway.clock()
        await self._gateway.forward(self.id, self._raw,
                                    lambda: [mapping.status_event_201(self.id, payload, receive)])
        return result201.StatusNotification()

    @on(Action201.meter_values)
    def on_meter_values(self, **_: Any) -> result201.MeterValues:
        return result201.MeterValues()  # outside a transaction: no session data (see mapping)

    @on(Action201.transaction_event)
    async def on_transaction_event(self, **payload: Any) -> result201.TransactionEvent:
        receive = self._gateway.clock()
        tx = str(payload["transaction_info"]["transaction_id"])
        evse = (payload.get("evse") or {}).get("id")
        known = self._state.open.get(tx)
        if evse is None and known is not None:
            evse = known.connector_id
        if evse is None:
            await self._gateway.reject(self.id, self._raw, (
                f"TransactionEvent for transaction {tx} without an EVSE, and this gateway has "
                f"not seen the transaction's first event"))
        else:
            evse_id = int(evse)
            if payload["event_type"] != "Ended" and known is None:
                self._state.open[tx] = OpenTransaction(evse_id, None)
                await self._gateway.remember(self.id)
            published = await self._gateway.forward(self.id, self._raw, lambda: (
                mapping.transaction_event_events(self.id, payload, evse_id, receive)))
            if published and payload["event_type"] == "Ended" and \
                    self._state.open.pop(tx, None) is not None:
                await self._gateway.remember(self.id)
        token = payload.get("id_token")
        return result201.TransactionEvent(
            id_token_info=self._token_info(token) if token else None)
