"""Writers from one topic-partition's batch of messages into ClickHouse, one per topic.

Each turns `(offset, value, key)` messages into rows and inserts them in one call under
the batch's deduplication token, so a retried or rebuilt batch is dropped by ClickHouse.
Bytes that do not decode are never dropped: a sessions message becomes a DeadLetter that
the caller publishes to the dead-letters topic; a dead-letters message that does not
decode is stored as its own dead_letters row (publishing it back would loop).
The intent store (`load_intents`, `record_intent`) lives here too: it is ClickHouse I/O,
while sinks/batches.py stays pure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.records import ChargingSession, DeadLetter
from sinks.batches import Intent
from sinks.clickhouse import check_identifier

STAGE = "sink"

SESSION_COLUMNS = [
    "session_id", "version", "state", "station_id", "connector_id", "transaction_id", "id_tag",
    "vehicle_id", "start_time", "end_time", "meter_start_wh", "meter_end_wh", "energy_wh",
    "soc_start_pct", "soc_end_pct", "max_power_w", "avg_power_w", "charging_ms", "plugged_ms",
    "cost", "currency", "event_count", "stop_reason", "flags", "_topic", "_partition", "_offset",
]
DEAD_LETTER_COLUMNS = [
    "original", "original_key", "source_topic", "source_partition", "source_offset", "stage",
    "error", "failed_at", "_partition", "_offset",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed message: what a batch is made of."""

    offset: int
    value: bytes | None
    key: bytes | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def dead_letter_for(topic: str, partition: int, message: Message, error: str) -> DeadLetter:
    """The dead letter of a message this sink could not use."""
    return DeadLetter(original=message.value or b"", source_topic=topic,
                      source_partition=partition, source_offset=message.offset, stage=STAGE,
                      error=error, failed_ms=_now_ms(), original_key=message.key)


def _decode_failure(message: Message, decode: Any) -> tuple[Any, str | None]:
    """Decode `message.value`, or say why it cannot be used."""
    if message.value is None:
        return None, "empty message (tombstone): no record to store"
    try:
        return decode(message.value), None
    except DecodeError as exc:
        return None, str(exc) or type(exc).__name__


def session_row(session: ChargingSession, topic: str, partition: int, offset: int) -> tuple:
    """The charging_sessions row of one session; times stay epoch ms (DateTime64(3) takes them)."""
    s = session
    return (s.session_id, s.version, str(s.state), s.station_id, s.connector_id,
            s.transaction_id, s.id_tag, s.vehicle_id, s.start_ms, s.end_ms, s.meter_start_wh,
            s.meter_end_wh, s.energy_wh, s.soc_start_pct, s.soc_end_pct, s.max_power_w,
            s.avg_power_w, s.charging_ms, s.plugged_ms, s.cost, s.currency, s.event_count,
            s.stop_reason, list(s.flags), topic, partition, offset)


def dead_letter_row(letter: DeadLetter, partition: int, offset: int) -> tuple:
    """The dead_letters row of one dead letter read at (partition, offset) of its topic."""
    return (letter.original, letter.original_key, letter.source_topic, letter.source_partition,
            letter.source_offset, letter.stage, letter.error, letter.failed_ms, partition, offset)


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch write did: rows inserted and dead letters for the caller to publish."""

    rows: int
    dead_letters: list[DeadLetter]


class SessionSink:
    """sessions-completed → `{database}.charging_sessions`."""

    table = "charging_sessions"

    def __init__(self, client: Client, database: str, codec: Codec) -> None:
        self.client = client
        self.database = check_identifier(database)
        self.codec = codec

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        rows: list[tuple] = []
        letters: list[DeadLetter] = []
        for message in messages:
            session, error = _decode_failure(message, self.codec.decode_session)
            if error is None:
                rows.append(session_row(session, topic, partition, message.offset))
            else:
                letters.append(dead_letter_for(topic, partition, message, error))
        _insert(self.client, f"{self.database}.{self.table}", rows, SESSION_COLUMNS, token)
        return Written(len(rows), letters)


class DeadLetterSink:
    """dead-letters → `{database}.dead_letters`; its own undecodable input becomes a row too."""

    table = "dead_letters"

    def __init__(self, client: Client, database: str, codec: Codec) -> None:
        self.client = client
        self.database = check_identifier(database)
        self.codec = codec

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        rows: list[tuple] = []
        for message in messages:
            letter, error = _decode_failure(message, self.codec.decode_dead_letter)
            if error is not None:
                letter = dead_letter_for(topic, partition, message, error)
            rows.append(dead_letter_row(letter, partition, message.offset))
        _insert(self.client, f"{self.database}.{self.table}", rows, DEAD_LETTER_COLUMNS, token)
        return Written(len(rows), [])


def _insert(client: Client, table: str, rows: list[tuple], columns: list[str],
            token: str) -> None:
    if rows:
        client.insert(table, rows, column_names=columns,
                      settings={"insert_deduplication_token": token})


def load_intents(client: Client, database: str, topic: str) -> dict[int, Intent]:
    """The last recorded intent of every partition of `topic` (its highest range)."""
    result = client.query(
        "SELECT partition, argMax(first_offset, last_offset), max(last_offset) "
        "FROM {db:Identifier}.sink_batches WHERE topic = {topic:String} GROUP BY partition",
        parameters={"db": check_identifier(database), "topic": topic})
    return {int(p): Intent(topic, int(p), int(first), int(last))
            for p, first, last in result.result_rows}


def record_intent(client: Client, database: str, intent: Intent) -> None:
    """Record a batch's range before its insert (see sinks/DESIGN.md)."""
    client.insert(f"{check_identifier(database)}.sink_batches",
                  [(intent.topic, intent.partition, intent.first, intent.last)],
                  column_names=["topic", "partition", "first_offset", "last_offset"])
