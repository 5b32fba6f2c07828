"""Replays a JSON Lines file of meter events (format: `producers.jsonl`) onto Kafka.

Nothing read is silently dropped: every line becomes events on the meter-events topic or a
dead letter (stage "replay", source `file:<path>`, offset = line number) with the reason,
plus one warning log line, and the replay goes on. Blank lines carry nothing and are
skipped. A line longer than `MAX_LINE_BYTES` (512 KiB) is dead-lettered unparsed, its
original cut to the first `MAX_LINE_BYTES` (which keeps the dead letter under Kafka's default
1 MB message limit), so one broken file cannot exhaust memory: the file is read line by line
with that cap, never whole.

Grouping: consecutive valid lines of the same station are published together, up to
`events_per_message` per message (default 1: one event per message, as a plain file has no
gateway batches to preserve). A station change or the end of the file closes the group, so
each station's events keep their file order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from infra.clock import now_ms
from producers.errors import ReplayFormatError
from producers.jsonl import MAX_LINE_BYTES, parse_event_line

__all__ = ["MAX_LINE_BYTES", "ReplayStats", "replay_file"]
from producers.publisher import EventPublisher
from schemas.records import MAX_EVENTS_PER_MESSAGE, DeadLetter, MeterEvent

_PROGRESS_EVERY = 1000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayStats:
    lines: int
    events: int
    dead_lettered: int


def _read_line(src: BinaryIO) -> tuple[bytes, int | None] | None:
    """The next line without its end-of-line; for a line over MAX_LINE_BYTES, its first
    MAX_LINE_BYTES and its full size (the rest is skipped), else the size is None."""
    raw = src.readline(MAX_LINE_BYTES + 1)
    if not raw:
        return None
    if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
        return raw.rstrip(b"\r\n"), None
    size = len(raw)
    while (rest := src.readline(1 << 16)) and not rest.endswith(b"\n"):
        size += len(rest)
    return raw[:MAX_LINE_BYTES], size + len(rest.rstrip(b"\r\n"))


def _event_or_error(raw: bytes, size: int | None, line_no: int) -> MeterEvent | str | None:
    """The line's event, the reason it is not one, or None for a blank line."""
    if size is not None:
        return (f"line {line_no}: {size} bytes, longer than the {MAX_LINE_BYTES}-byte limit; "
                "not parsed (original truncated)")
    if not raw.strip():
        return None
    try:
        return parse_event_line(raw.decode("utf-8"), line_no)
    except UnicodeDecodeError as exc:
        return f"line {line_no}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
    except ReplayFormatError as exc:
        return str(exc)


def replay_file(
    path: Path | str,
    publisher: EventPublisher,
    dead_letter_topic: str,
    encode_dead_letter: Callable[[DeadLetter], bytes],
    progress: Callable[[int], None] | None = None,
    *,
    events_per_message: int = 1,
    now_ms: Callable[[], int] = now_ms,
) -> ReplayStats:
    """Publish every event in `path`; dead-letter every line that is not one.

    `progress` is called with the number of lines read every 1000 lines and at the end.
    The caller flushes `publisher` (and so learns about delivery failures).
    """
    if not 1 <= events_per_message <= MAX_EVENTS_PER_MESSAGE:
        raise ValueError(f"events_per_message must be 1..{MAX_EVENTS_PER_MESSAGE}")
    source = f"file:{path}"
    lines = events = dead = 0
    group: list[MeterEvent] = []

    def send_group() -> None:
        nonlocal group
        if group:
            publisher.publish(group[0].station_id, group)
            group = []

    def dead_letter(original: bytes, line_no: int, error: str) -> None:
        letter = DeadLetter(original=original, source_topic=source, source_partition=-1,
                            source_offset=line_no, stage="replay", error=error,
                            failed_ms=now_ms())
        publisher.publish_raw(dead_letter_topic, source.encode(), encode_dead_letter(letter))
        log.warning("%s:%d dead-lettered: %s", path, line_no, error)

    with open(path, "rb") as src:
        while (read := _read_line(src)) is not None:
            raw, size = read
            lines += 1
            if progress and lines % _PROGRESS_EVERY == 0:
                progress(lines)
            found = _event_or_error(raw, size, lines)
            if found is None:
                continue
            if isinstance(found, str):
                dead += 1
                dead_letter(raw, lines, found)
                continue
            if group and (group[0].station_id != found.station_id
                          or len(group) >= events_per_message):
                send_group()
            group.append(found)
            events += 1
    send_group()
    if progress:
        progress(lines)
    return ReplayStats(lines=lines, events=events, dead_lettered=dead)
