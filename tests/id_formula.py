"""Expected session IDs, from the formula the docs state: written here, never the product's code.

docs/settings.md, "Session ID templates": a template is a format string over
`{num}` = `(offset × 1000 + index) × partitions + partition` of the event that opened the
session; `{station}`; `{connector}`; `{date}` (UTC start date, `YYYY-MM-DD`);
`{compact_date}` (`YYYYMMDD`); `{station_seq}` (1-based ordinal of the session at its
station); `{station_daily}` (1-based ordinal at its station on that date). Integer formats
only pad. Tests compare what the product renders (`IdTemplate.render`, the stitcher, the
pipeline) with this, so a wrong formula in the product cannot also be the expectation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EVENTS_PER_MESSAGE = 1000
"""The 1000 of the docs' formula: the most events one message may carry."""


def num(partition: int, offset: int, index: int, partitions: int) -> int:
    return (offset * EVENTS_PER_MESSAGE + index) * partitions + partition


def utc_day(start_ms: int) -> str:
    """`YYYY-MM-DD` of an instant, in UTC."""
    day = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=start_ms)).date()
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def session_id(template: str, *, partition: int = 0, offset: int = 0, index: int = 0,
               partitions: int = 1, station: str = "", connector: int = 0, start_ms: int = 0,
               station_seq: int = 1, station_daily: int = 1) -> str:
    return template.format(
        num=num(partition, offset, index, partitions), station=station, connector=connector,
        date=utc_day(start_ms), compact_date=utc_day(start_ms).replace("-", ""),
        station_seq=station_seq, station_daily=station_daily)
