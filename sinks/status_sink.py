"""connector-status → `connector_status`, and the station registry → `stations`.

The status history is what availability, MTBF and MTTR are computed from
(charging/station_health.py).
Writes follow the other sinks (table_sink.py): one insert per batch under the batch's
deduplication token; a republished status (processor replay) is the same row key again,
merged away by ReplacingMergeTree and read with FINAL; undecodable bytes become dead
letters for the caller to publish.
"""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from charging.stations import StationRegistry
from schemas.records import ConnectorStatus, DeadLetter
from sinks.clickhouse import check_identifier
from sinks.table_sink import Message, TableSink, decode_rows

STATUS_COLUMNS = ["station_id", "connector_id", "time", "event_id", "status", "error_code",
                  "event_time", "receive_time", "_partition", "_offset"]
STATION_COLUMNS = ["station_id", "model", "firmware", "connectors", "rated_power_w"]


def status_row(status: ConnectorStatus, partition: int, offset: int) -> tuple:
    """The connector_status row of one status read at (partition, offset); times in epoch ms."""
    s = status
    return (s.station_id, s.connector_id, s.time_ms, s.event_id, s.status, s.error_code,
            s.event_time_ms, s.receive_time_ms, partition, offset)


class StatusSink(TableSink):
    """connector-status → `{database}.connector_status`."""

    table = "connector_status"

    columns = STATUS_COLUMNS

    def rows(self, topic: str, partition: int, messages: Sequence[Message]
             ) -> tuple[list[tuple], list[DeadLetter]]:
        return decode_rows(topic, partition, messages, self.codec.decode_connector_status,
                           status_row)


def load_stations(client: Client, database: str, registry: StationRegistry) -> int:
    """Write every registry entry into `stations` (a station's latest load wins); returns
    how many. Model and firmware the file leaves out are stored as '' (unknown)."""
    rows = [(station_id, info.model or "", info.firmware or "", len(info.connectors),
             dict(info.connectors))
            for station_id, info in sorted(registry.stations.items())]
    if rows:
        client.insert(f"{check_identifier(database)}.stations", rows,
                      column_names=STATION_COLUMNS)
    return len(rows)
