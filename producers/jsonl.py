"""Meter events as JSON Lines: the replay file format.

One meter event per line, a JSON object whose keys are exactly the `MeterEvent` field
names. Blank lines are skipped; anything else that is not a valid event is rejected with
the line number, the field and what was wrong (replay dead-letters it and goes on).

Fields (required first):
- `event_id` (required): non-empty string, unique per event (a repeated id is a duplicate).
- `station_id` (required): non-empty string, the charger; also the Kafka message key.
- `connector_id` (required): integer >= 1, the connector / EVSE id.
- `kind` (required): `started`, `meter`, `ended` or `status`. OCPP names are accepted in
  any case: `StartTransaction`, `MeterValues`, `StopTransaction`, `StatusNotification`
  (1.6) and `Started`, `Updated`, `Ended` (2.0.1 TransactionEvent).
- `event_time_ms` (required): charger clock, integer epoch milliseconds or an ISO-8601
  string with a UTC offset, e.g. `2026-11-23T08:15:00.250Z`.
- `receive_time_ms`: gateway clock, same forms; defaults to `event_time_ms`.
- `transaction_id`: string (an integer is taken as its decimal string).
- `seq`: integer >= 0, the per-transaction sequence number.
- `id_tag`, `vehicle_id`: strings (RFID tag; VIN or EVCCID).
- `energy_wh`: finite number >= 0, the lifetime Energy.Active.Import.Register in Wh.
- `power_w`, `current_a`, `voltage_v`: finite numbers.
- `soc_pct`: finite number within 0..100.
- `status`, `error_code`, `stop_reason`: strings.

`null` is the same as an absent optional field. Unknown fields are rejected, so a typo
such as `energy_kwh` is caught instead of silently losing the reading. Epoch values below
10^11 are rejected as "looks like epoch seconds". Example:

    {"event_id":"CS-0001-1-7:3","station_id":"CS-0001","connector_id":1,"kind":"meter",
     "event_time_ms":1795414825842,"receive_time_ms":1795414826011,
     "transaction_id":"CS-0001-1-7","seq":2,"energy_wh":12005431.0,"power_w":11000.0,
     "soc_pct":41.2,"current_a":15.9,"voltage_v":230.0}

(one line in the file; wrapped here).
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from producers.errors import ReplayFormatError
from schemas.codec import MAX_CONNECTOR_ID, text_problem
from schemas.records import EventKind, MeterEvent

MAX_LINE_BYTES = 512 * 1024
"""Longest line parsed at all; replay dead-letters longer ones unread (producers/replay.py)."""
_MAX_LONG = 2**63 - 1

_KINDS = {
    "started": EventKind.STARTED, "starttransaction": EventKind.STARTED,
    "meter": EventKind.METER, "metervalues": EventKind.METER, "updated": EventKind.METER,
    "ended": EventKind.ENDED, "stoptransaction": EventKind.ENDED,
    "status": EventKind.STATUS, "statusnotification": EventKind.STATUS,
}
_FIELDS = tuple(f.name for f in fields(MeterEvent))
_KNOWN = frozenset(_FIELDS)
_TEXT = ("id_tag", "vehicle_id", "status", "error_code", "stop_reason")
_CHECKED_TEXT = ("event_id", "station_id", "transaction_id", *_TEXT)
_NUMBERS = ("energy_wh", "power_w", "soc_pct", "current_a", "voltage_v")
_MIN_EPOCH_MS = 10**11
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def event_to_json(event: MeterEvent) -> str:
    """One line (no newline) for `event`: absent optional fields are left out, times in ms."""
    row: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(event, name)
        if value is not None:
            row[name] = str(value) if name == "kind" else value
    return json.dumps(row, separators=(",", ":"), allow_nan=False)


def parse_event_line(line: str, line_no: int) -> MeterEvent:
    """Parse one line of the replay format; raises `ReplayFormatError` naming line and field."""
    if len(line) > MAX_LINE_BYTES:
        raise ReplayFormatError(line_no, None, f"{len(line)} characters; at most {MAX_LINE_BYTES}")
    try:
        row = json.loads(line)
    except ValueError as exc:  # also ints over Python's 4300-digit limit
        # In full: json's messages are short and say where ("line 1 column 2 (char 1)").
        raise ReplayFormatError(line_no, None, f"bad JSON: {exc}") from None
    except RecursionError:
        raise ReplayFormatError(line_no, None, "bad JSON: nested too deeply") from None
    if not isinstance(row, dict):
        raise ReplayFormatError(line_no, None,
                                f"expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - _KNOWN)
    if unknown:
        raise ReplayFormatError(line_no, unknown[0],
                                "unknown field (allowed: " + ", ".join(_FIELDS) + ")")
    values: dict[str, Any] = {
        "event_id": _text(row, "event_id", line_no, required=True),
        "station_id": _text(row, "station_id", line_no, required=True),
        "connector_id": _connector(row, line_no),
        "kind": _kind(row, line_no),
        "event_time_ms": _time(row, "event_time_ms", line_no, required=True),
    }
    received = _time(row, "receive_time_ms", line_no, required=False)
    values["receive_time_ms"] = values["event_time_ms"] if received is None else received
    values["transaction_id"] = _transaction(row, line_no)
    values["seq"] = _seq(row, line_no)
    for name in _TEXT:
        values[name] = _text(row, name, line_no, required=False)
    for name in _NUMBERS:
        values[name] = _number(row, name, line_no)
    problem = text_problem(values, _CHECKED_TEXT)
    if problem is not None:
        raise ReplayFormatError(line_no, problem.split(" ", 1)[0], problem)
    return MeterEvent(**values)


def _cut(text: str, most: int = 60) -> str:
    return text if len(text) <= most else text[:most] + "..."


def _show(value: Any) -> str:
    """A value for an error message: repr, cut so a huge value keeps the message short."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {len(str(value))} digits"
    return _cut(repr(value))


def _missing(row: dict[str, Any], name: str, line_no: int, required: bool) -> bool:
    if row.get(name) is not None:
        return False
    if required:
        raise ReplayFormatError(line_no, name, "missing (required)")
    return True


def _text(row: dict[str, Any], name: str, line_no: int, required: bool) -> Any:
    if _missing(row, name, line_no, required):
        return None
    value = row[name]
    if not isinstance(value, str):
        raise ReplayFormatError(line_no, name, f"must be a string, got {_show(value)}")
    if required and not value.strip():
        raise ReplayFormatError(line_no, name, "must not be empty")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _connector(row: dict[str, Any], line_no: int) -> int:
    _missing(row, "connector_id", line_no, required=True)
    value = row["connector_id"]
    if not _is_int(value) or not 1 <= value <= MAX_CONNECTOR_ID:
        raise ReplayFormatError(line_no, "connector_id",
                                f"must be a positive integer at most {MAX_CONNECTOR_ID}, "
                                f"got {_show(value)}")
    return int(value)


def _kind(row: dict[str, Any], line_no: int) -> EventKind:
    _missing(row, "kind", line_no, required=True)
    value = row["kind"]
    kind = _KINDS.get(value.strip().lower()) if isinstance(value, str) else None
    if kind is None:
        raise ReplayFormatError(
            line_no, "kind",
            f"unknown kind {_show(value)} (expected started, meter, ended, status or an OCPP name)")
    return kind


def _time(row: dict[str, Any], name: str, line_no: int, required: bool) -> int | None:
    if _missing(row, name, line_no, required):
        return None
    value = row[name]
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ReplayFormatError(line_no, name,
                                    f"not an ISO-8601 time: {_show(value)}") from None
        if moment.tzinfo is None:
            raise ReplayFormatError(line_no, name,
                                    f"ISO-8601 time without a UTC offset: {_show(value)}")
        return (moment - _EPOCH) // _ONE_MS
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        raise ReplayFormatError(
            line_no, name, f"must be integer epoch milliseconds or ISO-8601, got {_show(value)}")
    if value > _MAX_LONG:
        raise ReplayFormatError(line_no, name, f"{_show(value)} is out of range")
    if value < _MIN_EPOCH_MS:
        raise ReplayFormatError(line_no, name,
                                f"{_show(value)} looks like epoch seconds; expected milliseconds")
    return int(value)


def _transaction(row: dict[str, Any], line_no: int) -> str | None:
    if _missing(row, "transaction_id", line_no, required=False):
        return None
    value = row["transaction_id"]
    if _is_int(value):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ReplayFormatError(line_no, "transaction_id",
                                f"must be a non-empty string or integer, got {_show(value)}")
    return value


def _seq(row: dict[str, Any], line_no: int) -> int | None:
    if _missing(row, "seq", line_no, required=False):
        return None
    value = row["seq"]
    if not _is_int(value) or not 0 <= value <= _MAX_LONG:
        raise ReplayFormatError(line_no, "seq",
                                f"must be an integer >= 0 and < 2^63, got {_show(value)}")
    return int(value)


def _number(row: dict[str, Any], name: str, line_no: int) -> float | None:
    if _missing(row, name, line_no, required=False):
        return None
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReplayFormatError(line_no, name, f"must be a number, got {_show(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise ReplayFormatError(line_no, name, f"must be finite, got {_show(value)}") from None
    if not math.isfinite(value):
        raise ReplayFormatError(line_no, name, f"must be finite, got {value!r}")
    if name == "energy_wh" and value < 0:
        raise ReplayFormatError(line_no, name, f"must not be negative, got {value!r}")
    if name == "soc_pct" and not 0 <= value <= 100:
        raise ReplayFormatError(line_no, name, f"must be within 0..100, got {value!r}")
    return float(value)
