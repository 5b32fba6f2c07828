"""dead-letters → `dead_letters`: what any stage could not use, with its reason."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.records import DeadLetter
from sinks.table_sink import (
    Message,
    TableSink,
    dead_letter_for,
    decode_failure,
)

DEAD_LETTER_COLUMNS = [
    "original", "original_key", "source_topic", "source_partition", "source_offset", "stage",
    "error", "failed_at", "_partition", "_offset",
]


def dead_letter_row(letter: DeadLetter, partition: int, offset: int) -> tuple:
    """The dead_letters row of one dead letter read at (partition, offset) of its topic."""
    return (letter.original, letter.original_key, letter.source_topic, letter.source_partition,
            letter.source_offset, letter.stage, letter.error, letter.failed_ms, partition, offset)


class DeadLetterSink(TableSink):
    """dead-letters → `{database}.dead_letters`; its own undecodable input becomes a row too."""

    table = "dead_letters"

    columns = DEAD_LETTER_COLUMNS

    def rows(self, topic: str, partition: int, messages: Sequence[Message]
             ) -> tuple[list[tuple], list[DeadLetter]]:
        rows: list[tuple] = []
        for message in messages:
            letter, error = decode_failure(message, self.codec.decode_dead_letter)
            if error is not None:
                letter = dead_letter_for(topic, partition, message, error)
            rows.append(dead_letter_row(letter, partition, message.offset))
        return rows, []
