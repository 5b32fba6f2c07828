"""anomalies → `anomalies`, for on-call and the top-anomalies report."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.records import Anomaly, DeadLetter
from sinks.table_sink import Message, TableSink, decode_rows

ANOMALY_COLUMNS = [
    "anomaly_id", "kind", "severity", "station_id", "connector_id", "session_id", "detected_at",
    "message", "evidence", "status", "occurrences", "last_at", "updated_at", "_partition",
    "_offset",
]


def anomaly_row(anomaly: Anomaly, partition: int, offset: int) -> tuple:
    """The anomalies row of one anomaly read at (partition, offset) of its topic."""
    a = anomaly
    return (a.anomaly_id, a.kind, str(a.severity), a.station_id, a.connector_id, a.session_id,
            a.first_ms if a.first_ms is not None else a.detected_ms, a.message, dict(a.evidence),
            a.status, a.occurrences, a.last_ms, a.detected_ms, partition, offset)


class AnomalySink(TableSink):
    """anomalies → `{database}.anomalies`; undecodable input becomes a dead letter.

    Anomaly IDs are deterministic, so a republished anomaly is a second row with the same
    key that ReplacingMergeTree merges away (read with FINAL); no lookup before the insert.
    """

    table = "anomalies"

    columns = ANOMALY_COLUMNS

    def rows(self, topic: str, partition: int, messages: Sequence[Message]
             ) -> tuple[list[tuple], list[DeadLetter]]:
        return decode_rows(topic, partition, messages, self.codec.decode_anomaly,
                           anomaly_row)
