"""`chargewatch anomalies`: the anomalies topic for a person on call.

Reads every partition directly (assign, no consumer group: nothing to join, nothing
committed), from the end by default or from the beginning, filters by severity and station,
and prints one line per anomaly record (an episode's open, update and closed states each
get one: charging/episodes.py): coloured for a terminal, or one JSON object per line.
Partitions are read side by side, so lines are merged by time: what every partition held
up to its end is printed sorted by time; with `--follow`, what arrives after is printed
sorted per poll round (a record that comes later than its time shows late, not hidden).
Without `--follow` it stops once every partition reached its end. The Kafka client is
imported when the command runs, so building the `chargewatch` parser loads no driver.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.text import Text

from charging.anomalies import at_least
from charging.episodes import SINGLE
from infra.errors import ChargeWatchError
from infra.settings import Settings
from schemas.records import Anomaly, Severity

if TYPE_CHECKING:
    from confluent_kafka import Consumer

_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "dim"}


def add_anomalies_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new anomalies until Ctrl-C")
    parser.add_argument("--severity", choices=[s.value for s in Severity], default="info",
                        help="only this severity and above (default info: all)")
    parser.add_argument("--station", help="only this station")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start at the oldest retained anomaly (default: only new ones)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def cmd_anomalies(settings: Settings, args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

    from chargewatch.discovery import require_kafka
    from infra.kafka_config import client_config
    from infra.topics import Topics
    from schemas.codec import Codec
    from schemas.errors import DecodeError

    bootstrap = require_kafka(settings)
    topic = Topics(settings.kafka.namespace).anomalies
    codec = Codec(settings.kafka.schema_registry_url)
    minimum = Severity(args.severity)
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True)
    consumer = Consumer({**client_config(settings.kafka, bootstrap),
                         "group.id": f"chargewatch-anomalies-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.queue.backoff.ms": 10,
                         "fetch.wait.max.ms": settings.kafka.fetch_max_wait_ms})
    shown = _Shown(minimum, args.station, out, as_json=args.json)
    try:
        partitions = topic_partitions(consumer, topic)
        start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        pending = set(partitions)
        while args.follow or pending:
            msg = consumer.poll(0.5)
            if msg is None:
                if not pending:
                    shown.flush()  # following: each quiet poll prints what came, by time
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    if not pending:
                        shown.flush()  # every partition read to its end
                elif error.fatal():
                    raise ChargeWatchError(f"reading {topic}: {error}")
                continue
            try:
                shown.add(codec.decode_anomaly(msg.value() or b""))
            except DecodeError as exc:
                err.print(f"[dim]skipped {topic}[{msg.partition()}]@{msg.offset()}: {exc}[/dim]")
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        shown.flush()
    return 0


class _Shown:
    """Anomalies waiting to be printed, merged by time across partitions."""

    def __init__(self, minimum: Severity, station: str | None, out: Console, *,
                 as_json: bool) -> None:
        self.minimum, self.station, self.out, self.as_json = minimum, station, out, as_json
        self.waiting: list[Anomaly] = []

    def add(self, anomaly: Anomaly) -> None:
        if at_least(anomaly.severity, self.minimum) and self.station in (None,
                                                                          anomaly.station_id):
            self.waiting.append(anomaly)

    def flush(self) -> None:
        for anomaly in sorted(self.waiting, key=lambda a: (a.detected_ms, a.anomaly_id)):
            _show(anomaly, self.out, as_json=self.as_json)
        self.waiting = []


def topic_partitions(consumer: Consumer, topic: str) -> list[int]:
    """The partitions of `topic`; ChargeWatchError when it does not exist."""
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise ChargeWatchError(f"topic {topic} not found: is the namespace right, and did the "
                               "pipeline create its topics?")
    return sorted(meta.partitions)


def as_dict(anomaly: Anomaly) -> dict[str, Any]:
    a = anomaly
    return {"detected_at": _iso(a.detected_ms), "severity": a.severity.value, "kind": a.kind,
            "station_id": a.station_id, "connector_id": a.connector_id,
            "session_id": a.session_id, "message": a.message, "evidence": a.evidence,
            "anomaly_id": a.anomaly_id, "detected_ms": a.detected_ms, "status": a.status,
            "occurrences": a.occurrences, "first_ms": a.first_ms, "last_ms": a.last_ms}


def _show(anomaly: Anomaly, out: Console, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(as_dict(anomaly)).decode() + "\n")
        sys.stdout.flush()
        return
    a = anomaly
    style = _STYLE[a.severity]
    where = a.station_id if a.connector_id is None else f"{a.station_id}/{a.connector_id}"
    evidence = " ".join(f"{k}={v}" for k, v in a.evidence.items())
    message = a.message.removeprefix(f"{where}: ")  # the column already says where
    status = "" if a.status == SINGLE else a.status
    out.print(Text.assemble(
        (_iso(a.detected_ms), "dim"), " ", (f"{a.severity.value.upper():8}", style), " ",
        (f"{a.kind:22}", style), " ", (f"{status:6}", "bold"), " ", (f"{where:14}", "bold"),
        " ", message,
        (f"  [{evidence}]" if evidence else "", "dim")))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
