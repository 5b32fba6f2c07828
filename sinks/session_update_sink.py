"""session-updates → `session_updates`: the running state of open sessions, for live views."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.catalog import SchemaVersion
from schemas.records import DeadLetter
from sinks.avro_blocks import container
from sinks.derived_views import UPDATES_IN
from sinks.row_mappings import UPDATE_ROW, update_row
from sinks.table_sink import (
    Message,
    Part,
    TableSink,
    Written,
    dead_letter_for,
    decode_failure,
    decode_rows,
    dedup,
)

_INPUT_COLUMNS = UPDATES_IN.columns
"""The Avro insert's columns (derived from the mapping: computed once)."""


class SessionUpdateSink(TableSink):
    """session-updates → `{database}.session_updates`: open sessions for live monitoring.

    The table keeps the newest update of each session (ReplacingMergeTree on the update
    time) for a day (TTL); `power_w` is the session's average power so far.

    Updates are most of what the sink reads, so ClickHouse decodes them: the bodies of a
    batch go in as Avro containers, one per writer schema (sinks/avro_blocks.py), into
    `session_updates_in` (sinks/derived_views.py); Python only reads each header. A
    container ClickHouse refuses (a corrupt body) sends the batch through the decoding
    path, which dead-letters what does not decode.
    """

    table = "session_updates"
    columns = UPDATE_ROW.column_names

    def insert(self, prepared: tuple[str, Sequence[Part]], token: str) -> Written:
        topic, parts = prepared
        bodies: dict[SchemaVersion, list[bytes]] = {}
        letters: list[DeadLetter] = []
        for partition, messages in parts:
            for message in messages:
                found, error = decode_failure(message, self.codec.writer_of)
                if error is None:
                    writer, start = found
                    if writer.name == "ChargingSession":
                        bodies.setdefault(writer, []).append(message.value[start:])
                        continue
                    error = f"expected ChargingSession, got {writer.label}"
                letters.append(dead_letter_for(topic, partition, message, error))
        try:
            for n, (writer, group) in enumerate(bodies.items()):
                self.client.raw_insert(
                    f"{self.database}.session_updates_in", _INPUT_COLUMNS,
                    insert_block=container(writer, group), fmt="Avro",
                    settings=dedup(f"{token}-{n}"))
        except Exception:  # noqa: BLE001 - decode in Python; it raises again if ClickHouse is down
            return super().insert(prepared, token)
        return Written(sum(map(len, bodies.values())), letters)

    def rows(self, topic: str, partition: int, messages: Sequence[Message]
             ) -> tuple[list[tuple], list[DeadLetter]]:
        """The decoding path: rows decoded in Python (the same mapping, UPDATE_ROW)."""
        return decode_rows(topic, partition, messages, self.codec.decode_session,
                           lambda session, _partition, _offset: update_row(session))

    def stored_offsets(self, partition: int, first: int, last: int) -> None:
        """None: a repeated update is the same row of a ReplacingMergeTree (no view reads
        the table), so a split batch is written again whole."""
        return None
