"""One session, one shape: what `chargewatch session` shows for an open session (the
processor's live state) and a completed one (a ClickHouse row) alike.

The fields are the charging_sessions columns (sinks.session_rows.SESSION_COLUMNS) without
the storage bookkeeping; times are instants (ISO-8601 in JSON), money keeps the four decimal
places it is stored with, and state of charge is rounded to the tenth a charger reports
(ClickHouse keeps it as Float32: 40.4 reads back as 40.400001525878906).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sinks.session_rows import SESSION_COLUMNS

FIELDS = tuple(c for c in SESSION_COLUMNS if c != "sign" and not c.startswith("_"))
MONEY_PLACES = Decimal("0.0001")
"""charging_sessions.cost is Decimal(18, 4)."""
_TIMES = {"start_ms": "start_time", "end_ms": "end_time"}


def session_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A session in the one shape, from a ClickHouse row or a processor's live JSON."""
    record = dict(raw)
    for ms_key, time_key in _TIMES.items():
        if ms_key in record:
            record[time_key] = dt.datetime.fromtimestamp(record.pop(ms_key) / 1000, dt.UTC)
    for key in ("start_time", "end_time"):
        value = record.get(key)
        if isinstance(value, str):
            record[key] = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif isinstance(value, dt.datetime) and value.tzinfo is None:
            record[key] = value.replace(tzinfo=dt.UTC)
    if record.get("cost") is not None:
        record["cost"] = Decimal(str(record["cost"])).quantize(MONEY_PLACES)
    for key in ("soc_start_pct", "soc_end_pct"):
        if record.get(key) is not None:
            record[key] = round(float(record[key]), 1)
    record["flags"] = list(record.get("flags") or [])
    return {key: record.get(key) for key in FIELDS}
