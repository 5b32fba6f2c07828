"""`chargewatch gateway`: the OCPP gateway as a command, and `chargewatch gateway
hash-password` for its allow-list. Kept apart from the gateway so the CLI does not import
the `ocpp` and `websockets` libraries until the command runs."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.health_web import HealthServer
    from infra.settings import GatewaySettings, Settings
    from producers.ocpp_auth import GatewayPolicy
    from producers.ocpp_gateway import OcppGateway


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: gateway.host)")
    parser.add_argument("--port", type=int, help="listen port (default: gateway.port)")
    actions = parser.add_subparsers(dest="gateway_action", required=False)
    hashing = actions.add_parser(
        "hash-password", help="print a charger's allow-list line (password read from stdin)",
        description="Read a charger's password (prompted twice on a terminal, else the first "
                    "line of stdin) and print the line to put under `chargers:` in "
                    "gateway.chargers_file.")
    hashing.add_argument("charger_id", help="charge point id (the Basic auth username)")
    hashing.set_defaults(fn=cmd_hash_password)


def cmd_hash_password(settings: Settings, args: argparse.Namespace) -> int:
    """Print `  <id>: "<scrypt hash>"`; the password itself is never echoed or stored."""
    from infra.errors import ConfigError
    from producers.ocpp_auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.charger_id}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("empty password: a charger needs one to authenticate")
    print(f"  {json.dumps(args.charger_id)}: {json.dumps(hash_password(password))}")
    return 0


def gateway_policy(gateway: GatewaySettings) -> GatewayPolicy:
    """The security profile and limits these settings ask for; a bad allow-list or TLS file
    is a configuration error (exit 2) before anything listens."""
    from infra.errors import ConfigError
    from producers.errors import GatewaySecurityError
    from producers.ocpp_auth import ChargerAllowList, GatewayPolicy, server_tls_context

    allow_list = tls = None
    try:
        if gateway.security_profile >= 1 and gateway.chargers_file is not None:
            allow_list = ChargerAllowList.load(gateway.chargers_file)
        if gateway.security_profile == 2 and gateway.tls_cert_file and gateway.tls_key_file:
            tls = server_tls_context(gateway.tls_cert_file, gateway.tls_key_file)
    except GatewaySecurityError as exc:
        raise ConfigError(str(exc)) from None
    return GatewayPolicy(allow_list=allow_list, ssl_context=tls,
                         max_message_bytes=gateway.max_message_bytes,
                         max_messages_per_s=gateway.max_messages_per_s,
                         burst=gateway.burst_messages)


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    """`chargewatch gateway`: serve chargers until interrupted or terminated."""
    from chargewatch.publishing import publish_window
    from infra.errors import ConfigError
    from infra.kafka_config import check_connection, client_config
    from infra.topics import Topics, ensure_topics, read_to_end
    from producers.ocpp_delivery import GATEWAY_PRODUCER_CONF, KafkaDelivery
    from producers.ocpp_gateway import OcppGateway
    from producers.ocpp_transactions import states_from_records
    from producers.publisher import EventPublisher
    from schemas.codec import Codec

    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise ConfigError("no Kafka to talk to: set KAFKA_BOOTSTRAP_SERVERS")
    policy = gateway_policy(settings.gateway)
    host = args.host or settings.gateway.host
    port = args.port if args.port is not None else settings.gateway.port
    topics = Topics(settings.kafka.namespace)
    kafka_conf = client_config(settings.kafka, bootstrap)
    check_connection(kafka_conf)
    ensure_topics(kafka_conf, topics, settings.kafka.partitions)
    codec = Codec(settings.kafka.schema_registry_url)
    publisher = EventPublisher(
        {**kafka_conf, **GATEWAY_PRODUCER_CONF}, topics.meter_events,
        lambda events: codec.encode_meter_events(events, topics.meter_events),
        publish_window(settings, timed=True))
    publisher.partitions()
    delivery = KafkaDelivery(publisher, topics.dead_letters,
                             lambda letter: codec.encode_dead_letter(letter, topics.dead_letters))
    chargers = states_from_records(read_to_end(
        kafka_conf, topics.gateway_transactions, list(range(settings.kafka.partitions))))
    gateway = OcppGateway(delivery, settings.gateway.heartbeat_interval_s, policy=policy,
                          transactions_topic=topics.gateway_transactions, chargers=chargers)
    listening = threading.Event()
    web, stop_probe = _health_web(settings, kafka_conf, listening)
    delivery.start()
    try:
        asyncio.run(_serve_until_stopped(gateway, host, port, listening))
    finally:
        stop_probe.set()
        web.stop()
        delivery.stop()
    return 0


def _health_web(settings: Settings, kafka_conf: dict[str, Any],
                listening: threading.Event) -> tuple[HealthServer, threading.Event]:
    """`/health`, `/ready` and `/metrics` on `gateway.web_port`, Kafka probed meanwhile."""
    from infra.health import HealthTracker, KafkaProbe
    from infra.health_web import HealthServer
    from infra.metrics import health_registry

    tracker = HealthTracker(settings.health.unreachable_s)
    stop = threading.Event()
    KafkaProbe(kafka_conf, tracker, settings.health.probe_timeout_s).start(
        stop, settings.health.probe_every_s)
    web = HealthServer(settings.gateway.web_host, settings.gateway.web_port, tracker,
                       health_registry(tracker),
                       lambda: None if listening.is_set() else "not listening for chargers yet")
    print(f"health and metrics on http://{settings.gateway.web_host}:{web.port}/health",
          file=sys.stderr, flush=True)
    return web.start(), stop


async def _serve_until_stopped(gateway: OcppGateway, host: str, port: int,
                               listening: threading.Event) -> None:
    from producers.ocpp_gateway import SUBPROTOCOLS

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    scheme = "wss" if gateway.policy.ssl_context is not None else "ws"
    async with gateway.serve(host, port) as server:
        bound = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
        print(f"OCPP gateway listening on {bound}: {scheme}://host:port/<charge point id>, "
              f"security profile {gateway.policy.profile}, subprotocols "
              f"{', '.join(SUBPROTOCOLS)}", file=sys.stderr, flush=True)
        listening.set()
        await stop.wait()
