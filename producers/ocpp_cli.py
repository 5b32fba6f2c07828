"""`chargewatch gateway`: the OCPP gateway as a command. Kept apart from the gateway so the
CLI does not import the `ocpp` and `websockets` libraries until the command runs."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chargewatch.settings import Settings
    from producers.ocpp_gateway import OcppGateway


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: gateway.host)")
    parser.add_argument("--port", type=int, help="listen port (default: gateway.port)")


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    """`chargewatch gateway`: serve chargers until interrupted or terminated."""
    from chargewatch.errors import ConfigError
    from chargewatch.topics import Topics, ensure_topics
    from producers.ocpp_delivery import GATEWAY_PRODUCER_CONF, KafkaDelivery
    from producers.ocpp_gateway import OcppGateway
    from producers.publisher import EventPublisher
    from schemas.codec import Codec

    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise ConfigError("no Kafka to talk to: set KAFKA_BOOTSTRAP_SERVERS")
    host = args.host or settings.gateway.host
    port = args.port if args.port is not None else settings.gateway.port
    topics = Topics(settings.kafka.namespace)
    ensure_topics({"bootstrap.servers": bootstrap}, topics, settings.kafka.partitions)
    codec = Codec(settings.kafka.schema_registry_url)
    publisher = EventPublisher(
        {"bootstrap.servers": bootstrap, **GATEWAY_PRODUCER_CONF}, topics.meter_events,
        lambda events: codec.encode_meter_events(events, topics.meter_events))
    delivery = KafkaDelivery(publisher, topics.dead_letters,
                             lambda letter: codec.encode_dead_letter(letter, topics.dead_letters))
    gateway = OcppGateway(delivery, settings.gateway.heartbeat_interval_s)
    delivery.start()
    try:
        asyncio.run(_serve_until_stopped(gateway, host, port))
    finally:
        delivery.stop()
    return 0


async def _serve_until_stopped(gateway: OcppGateway, host: str, port: int) -> None:
    from producers.ocpp_gateway import SUBPROTOCOLS

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with gateway.serve(host, port) as server:
        bound = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
        print(f"OCPP gateway listening on {bound}: ws://host:port/<charge point id>, "
              f"subprotocols {', '.join(SUBPROTOCOLS)}", file=sys.stderr, flush=True)
        await stop.wait()
