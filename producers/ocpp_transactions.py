"""The gateway's open transactions, kept in a compacted topic so a restart forgets none.

OCPP 1.6 StopTransaction and later 2.0.1 TransactionEvents do not say which connector
their transaction runs on; only the gateway that saw the start knows. Each change to a
charger's open transactions is written (keyed by charger id, the whole set as JSON) and
acknowledged by Kafka before the charger gets its answer; a starting gateway reads the
topic to its end. A gateway replica that a charger reconnects to reads the same topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OpenTransaction:
    connector_id: int
    start_ms: int | None
    """Start time when the start was seen; None when learnt from a later message."""


@dataclass
class ChargerState:
    """What the gateway knows about one charger's open transactions, across reconnects."""

    open: dict[str, OpenTransaction] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps({tx: [o.connector_id, o.start_ms] for tx, o in self.open.items()},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ChargerState:
        rows: dict[str, Any] = json.loads(blob)
        return cls({tx: OpenTransaction(int(connector), start if start is None else int(start))
                    for tx, (connector, start) in rows.items()})


def states_from_records(records: Mapping[bytes, tuple[int, bytes | None]]
                        ) -> dict[str, ChargerState]:
    """Charger states from the topic's latest record per key (a tombstone: none open)."""
    return {key.decode(): ChargerState.from_bytes(value)
            for key, (_, value) in records.items() if value}
