"""What every sink shares: the batch a sink is given, what it reports back, and the insert.

Each sink turns one topic-partition's `(offset, value, key)` messages into rows and inserts
them in one call under the batch's deduplication token, so a retried or rebuilt batch is
dropped by ClickHouse. Bytes that do not decode are never dropped: they become a
DeadLetter that the runner publishes to the dead-letters topic (the dead-letters sink
stores its own undecodable input instead: publishing it back would loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from infra.clock import now_ms
from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.records import DeadLetter
from sinks.clickhouse import check_identifier

STAGE = "sink"


@dataclass(slots=True)
class Message:
    """One consumed message: what a batch is made of (not frozen: the sink builds one per
    message read, and a frozen one took 5x as long)."""

    offset: int
    value: bytes | None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch write did: records stored (or found stored already) and dead letters
    for the caller to publish."""

    rows: int
    dead_letters: list[DeadLetter]


def dead_letter_for(topic: str, partition: int, message: Message, error: str) -> DeadLetter:
    """The dead letter of a message this sink could not use."""
    return DeadLetter(original=message.value or b"", source_topic=topic,
                      source_partition=partition, source_offset=message.offset, stage=STAGE,
                      error=error, failed_ms=now_ms(), original_key=message.key)


def decode_failure(message: Message, decode: Any) -> tuple[Any, str | None]:
    """Decode `message.value`, or say why it cannot be used."""
    if message.value is None:
        return None, "empty message (tombstone): no record to store"
    try:
        return decode(message.value), None
    except DecodeError as exc:
        return None, str(exc) or type(exc).__name__


def decode_rows(topic: str, partition: int, messages: Sequence[Message], decode: Any,
                row: Any) -> tuple[list[tuple], list[DeadLetter]]:
    """Rows of one partition's messages, `row(record, partition, offset)` of each decoded
    record; a dead letter for each message that cannot be used."""
    rows: list[tuple] = []
    letters: list[DeadLetter] = []
    for message in messages:
        record, error = decode_failure(message, decode)
        if error is None:
            rows.append(row(record, partition, message.offset))
        else:
            letters.append(dead_letter_for(topic, partition, message, error))
    return rows, letters


Part = tuple[int, Sequence[Message]]
"""One partition's messages in a batch; a coalesced batch holds several partitions' parts."""


class TableSink:
    """A sink writing one topic's records into one table of `database`.

    A sink that can build its rows message by message gives `columns` and `rows`; the
    others override `prepare` and `insert`.
    """

    table: str
    columns: list[str]

    def __init__(self, client: Client, database: str, codec: Codec) -> None:
        self.client = client
        self.database = check_identifier(database)
        self.codec = codec

    def rows(self, topic: str, partition: int, messages: Sequence[Message]
             ) -> tuple[list[tuple], list[DeadLetter]]:
        """The rows of one partition's messages, and dead letters for what does not decode."""
        raise NotImplementedError

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        """Write one partition's batch under `token`."""
        return self.insert(self.prepare(topic, [(partition, messages)]), token)

    def prepare(self, topic: str, parts: Sequence[Part]) -> Any:
        """The part of writing a batch that asks ClickHouse nothing: the runner runs it
        ahead, while the previous batch is inserted. By default the batch as it is."""
        return topic, parts

    def insert(self, prepared: Any, token: str) -> Written:
        """Write a batch `prepare` returned, under `token`, in one insert."""
        topic, parts = prepared
        rows: list[tuple] = []
        letters: list[DeadLetter] = []
        for partition, messages in parts:
            more, undecoded = self.rows(topic, partition, messages)
            rows += more
            letters += undecoded
        insert_rows(self.client, f"{self.database}.{self.table}", rows, self.columns, token)
        return Written(len(rows), letters)

    def stored_offsets(self, partition: int, first: int, last: int) -> set[int] | None:
        """The offsets in `[first, last]` of `partition` that have a row in the table (the
        range probe of a split coalesced batch, sinks/DESIGN.md); None from a sink whose
        write itself skips what is stored."""
        result = self.client.query(
            "SELECT DISTINCT _offset FROM {db:Identifier}.{table:Identifier} "
            "WHERE _partition = {p:Int32} AND _offset BETWEEN {f:Int64} AND {l:Int64}",
            parameters={"db": self.database, "table": self.table, "p": partition,
                        "f": first, "l": last})
        return {int(row[0]) for row in result.result_rows}


def dedup(token: str) -> dict[str, Any]:
    """Insert settings that make ClickHouse drop a repeat of `token`, in views too."""
    return {"insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1}


def insert_rows(client: Client, table: str, rows: list[tuple], columns: list[str],
                token: str | None) -> None:
    """Insert `rows` under `token` (None: no deduplication), with the column types read
    from ClickHouse once per table and column list (per insert it was a DESCRIBE each)."""
    if not rows:
        return
    key = (table, tuple(columns))
    types = _column_types.get(key)
    if types is None:
        types = _column_types[key] = client.create_insert_context(
            table, column_names=columns).column_types
    client.insert(table, rows, column_names=columns, column_types=types,
                  settings=None if token is None else dedup(token))


_column_types: dict[tuple[str, tuple[str, ...]], Sequence[Any]] = {}
