"""Local time for time-of-use restrictions: where the local clock crosses a tariff boundary.

OCPI restrictions are in the station's local time. An interval between two readings is
split wherever the local clock or calendar crosses a boundary some element uses (a
start/end time of day, or midnight for days of the week and dates). Days that cross a
daylight-saving change are handled by converting each candidate boundary with both folds
and by adding the change itself as a boundary, so evaluating an element at the start of
each piece is exact: between two consecutive boundaries nothing local changes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from charging.tariffs.model import Restrictions

_DAY_MS = 86_400_000


def local(zone: ZoneInfo, time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms / 1000, zone)


def local_match(r: Restrictions, moment: datetime) -> bool:
    """Whether the local-clock restrictions hold at this local moment."""
    if r.day_of_week and moment.weekday() not in r.day_of_week:
        return False
    day = moment.date()
    if (r.start_date is not None and day < r.start_date) or (
            r.end_date is not None and day >= r.end_date):
        return False
    if r.start_time is None and r.end_time is None:
        return True
    second = moment.hour * 3600 + moment.minute * 60 + moment.second
    start = r.start_time or 0
    end = r.end_time if r.end_time is not None else 86_400
    if start < end:
        return start <= second < end
    if start > end:  # spans midnight, e.g. 22:00-06:00
        return second >= start or second < end
    return True


def boundary_seconds(restrictions: list[Restrictions]) -> tuple[int, ...]:
    """Seconds after local midnight at which some local restriction may change."""
    out: set[int] = set()
    for r in restrictions:
        if r.start_time is not None:
            out.add(r.start_time)
        if r.end_time is not None:
            out.add(r.end_time % 86_400)
        if r.day_of_week or r.start_date is not None or r.end_date is not None or \
                r.start_time is not None or r.end_time is not None:
            out.add(0)
    return tuple(sorted(out))


def next_boundary(zone: ZoneInfo, seconds: tuple[int, ...], after_ms: int) -> int:
    """The first instant after `after_ms` where local restrictions may change."""
    here = local(zone, after_ms)
    best = after_ms + 3 * _DAY_MS
    day = here.date() - timedelta(days=1)
    for offset in range(4):
        current: date = day + timedelta(days=offset)
        for second in seconds:
            wall = datetime.combine(current, time(second // 3600, second // 60 % 60))
            for fold in (0, 1):
                at = int(wall.replace(tzinfo=zone, fold=fold).timestamp() * 1000)
                if after_ms < at < best:
                    best = at
    change = _offset_change(zone, after_ms, best)
    return change if change is not None else best


def _offset_change(zone: ZoneInfo, low_ms: int, high_ms: int) -> int | None:
    """The first instant in (low, high] where the zone's UTC offset changes (DST), if any."""
    first = _offset(zone, low_ms)
    if _offset(zone, high_ms) == first:
        return None
    while high_ms - low_ms > 1:
        middle = (low_ms + high_ms) // 2
        if _offset(zone, middle) == first:
            low_ms = middle
        else:
            high_ms = middle
    return high_ms


def _offset(zone: ZoneInfo, time_ms: int) -> timedelta | None:
    return datetime.fromtimestamp(time_ms / 1000, UTC).astimezone(zone).utcoffset()
