"""The intent store: each batch's offset range, recorded in `sink_batches` before its insert.

ClickHouse I/O for the pure planner (sinks/batches.py); the scheme is in sinks/DESIGN.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from sinks.batches import Intent
from sinks.clickhouse import check_identifier
from sinks.table_sink import insert_rows


def load_intents(client: Client, database: str, topic: str) -> dict[int, Intent]:
    """The last recorded intent of every partition of `topic` (its highest range)."""
    result = client.query(
        "SELECT partition, argMax(first_offset, last_offset), max(last_offset), "
        "argMax(insert_token, last_offset) "
        "FROM {db:Identifier}.sink_batches WHERE topic = {topic:String} GROUP BY partition",
        parameters={"db": check_identifier(database), "topic": topic})
    return {int(p): Intent(topic, int(p), int(first), int(last), group)
            for p, first, last, group in result.result_rows}


def record_intents(client: Client, database: str, intents: Sequence[Intent]) -> None:
    """Record batches' ranges before their inserts (see sinks/DESIGN.md), in one insert."""
    insert_rows(client, f"{check_identifier(database)}.sink_batches",
                [(i.topic, i.partition, i.first, i.last, i.group) for i in intents],
                ["topic", "partition", "first_offset", "last_offset", "insert_token"], None)
