"""`chargewatch dead-letters`: what the pipeline could not use, readable by a person.

Each letter shows when it failed, the stage that gave up (replay, processor, sink), where
the input came from (topic, partition and offset, or the replayed file and its line), the
reason in full, and a safe preview of the original bytes: text with every control or
invisible character escaped (nothing reaches the terminal that could move its cursor or
change its colours), binary as hex, both cut to a bounded length with the full size said.

History comes from ClickHouse's `dead_letters` table: directly, or through the sink's
`/dead-letters` endpoint while the sink holds the chDB folder (chargewatch/lookup.py).
`--follow` then prints new letters as they are published on the dead-letters topic, like
`chargewatch anomalies --follow`; the topic is read from its end, taken before the history
is read, so a letter is printed once although it may be in both.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.text import Text

from infra.clock import now_ms
from infra.errors import ChargeWatchError, ConfigError
from infra.settings import Settings

PREVIEW_CHARS = 160
"""Most characters of a text preview (escapes count once each)."""
PREVIEW_HEX_BYTES = 48
"""Most bytes of a binary preview."""
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}
_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_COLUMNS = ("original", "original_key", "source_topic", "source_partition", "source_offset",
            "stage", "error", "failed_ms")


def add_dead_letters_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="WHEN",
                        help="only letters since WHEN: 30m, 2h, 7d, or a UTC date/time such as "
                             "2026-12-04 or 2026-12-04T08:00")
    parser.add_argument("--limit", type=int, default=50,
                        help="most letters of the history shown, the newest (default 50)")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="then keep printing new letters until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def parse_since(text: str | None, now: int) -> int:
    """Epoch ms of `--since`: a duration back from `now` or an ISO date/time (UTC unless it
    says otherwise); 0 when not given. ConfigError naming the option otherwise."""
    if text is None:
        return 0
    value = text.strip()
    ago = _AGO.match(value.lower())
    if ago:
        return now - int(timedelta(**{_UNITS[ago[2]]: int(ago[1])}).total_seconds() * 1000)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r}: expected a duration such as 30m, 2h or 7d, or a "
                          "date/time such as 2026-12-04 or 2026-12-04T08:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def preview(data: bytes, most_chars: int = PREVIEW_CHARS,
            most_hex: int = PREVIEW_HEX_BYTES) -> str:
    """A bounded, terminal-safe rendering of original bytes: quoted text with escapes, or
    hex for binary, and the size when cut (or when binary)."""
    if not data:
        return "(empty)"
    text = _as_text(data[:most_chars * 4])
    if text is not None:
        shown = "".join(_escape(c) for c in text[:most_chars])
        cut = len(text) > most_chars or len(data) > len(text.encode())
        return f'"{shown}"' + (f" … ({len(data):,} bytes)" if cut else "")
    shown = data[:most_hex].hex(" ")
    more = " …" if len(data) > most_hex else ""
    return f"{shown}{more} (binary, {len(data):,} bytes)"


def _as_text(head: bytes) -> str | None:
    """`head` as UTF-8 text (a character cut at the end is dropped), or None when it is not
    text: invalid UTF-8, or more than a quarter control characters."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data" or exc.start < len(head) - 3:
            return None
        text = head[:exc.start].decode("utf-8")
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\n\r\t")
    return None if controls * 4 > len(text) else text


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char == " " or char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def source_of(letter: dict[str, Any]) -> str:
    """Where the input came from: `topic[partition]@offset`, or `file line N` for replay."""
    topic = str(letter["source_topic"])
    if topic.startswith("file:"):
        return f"{topic.removeprefix('file:')} line {letter['source_offset']}"
    return f"{topic}[{letter['source_partition']}]@{letter['source_offset']}"


def query_dead_letters(client: Any, database: str, since_ms: int,
                       limit: int) -> tuple[list[dict[str, Any]], int]:
    """The newest `limit` letters failed since `since_ms`, oldest first, and how many
    there are since then in all.

    A letter repeated by a later run of the local stack (its kept meter events are processed
    again, under that run's topic names, chargewatch/kept_events.py) is shown once: the
    newest, when stage, source partition and offset, reason and bytes are the same and the
    topics differ only in the run.
    """
    from chargewatch.kept_events import same_topic_sql
    from sinks.clickhouse import check_identifier

    db = check_identifier(database)
    letters = (
        f"SELECT original, original_key, source_topic, source_partition, source_offset, "
        f"stage, error, failed_at FROM {db}.dead_letters FINAL "
        f"WHERE failed_at >= fromUnixTimestamp64Milli({{since:Int64}}) "
        f"ORDER BY failed_at DESC, source_topic DESC, source_partition DESC, "
        f"source_offset DESC "
        f"LIMIT 1 BY stage, source_partition, source_offset, error, original, "
        f"{same_topic_sql('source_topic')}")
    total = int(client.command(f"SELECT count() FROM ({letters})",
                               parameters={"since": since_ms}))
    result = client.query(
        f"SELECT original, original_key, source_topic, source_partition, source_offset, "
        f"stage, error, toUnixTimestamp64Milli(failed_at) FROM ({letters}) "
        f"LIMIT {{limit:UInt32}}",
        parameters={"since": since_ms, "limit": limit},
        column_formats={"original": "bytes", "original_key": "bytes"})
    rows = [dict(zip(_COLUMNS, row, strict=True)) for row in result.result_rows]
    return rows[::-1], total


def to_wire(letter: dict[str, Any]) -> dict[str, Any]:
    """A letter as JSON: bytes in base64, so any bytes survive the trip."""
    return {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
            for k, v in letter.items()}


def from_wire(letter: dict[str, Any]) -> dict[str, Any]:
    return {k: base64.b64decode(v) if k in ("original", "original_key") and v is not None
            else v for k, v in letter.items()}


def as_json(letter: dict[str, Any]) -> dict[str, Any]:
    """The `--json` object of one letter."""
    original = letter["original"] or b""
    return {"failed_at": _iso(letter["failed_ms"]), "stage": letter["stage"],
            "source": source_of(letter), "source_topic": letter["source_topic"],
            "source_partition": letter["source_partition"],
            "source_offset": letter["source_offset"], "error": letter["error"],
            "original_preview": preview(original), "original_bytes": len(original),
            "original_base64": base64.b64encode(original).decode(),
            "failed_ms": letter["failed_ms"]}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def show(letter: dict[str, Any], out: Console, *, json_lines: bool) -> None:
    if json_lines:
        sys.stdout.write(orjson.dumps(as_json(letter)).decode() + "\n")
        sys.stdout.flush()
        return
    out.print(Text.assemble((_iso(letter["failed_ms"]), "dim"), "  ",
                            (f"{letter['stage']:<9}", "bold yellow"), " ",
                            (source_of(letter), "bold")))
    out.print(Text.assemble(("  reason   ", "dim"), str(letter["error"])))
    out.print(Text.assemble(("  original ", "dim"), preview(letter["original"] or b"")))


def history(settings: Settings, since_ms: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The letters from ClickHouse, or from the sink worker that holds the chDB folder."""
    from chargewatch.lookup import ClickHouseSource, SinkWebSource, open_source

    source = open_source(settings)
    if isinstance(source, ClickHouseSource):
        return query_dead_letters(source.client, source.database, since_ms, limit)
    if isinstance(source, SinkWebSource):
        answer = _get(f"{source.base_url}/dead-letters?since_ms={since_ms}&limit={limit}")
        return [from_wire(row) for row in answer["letters"]], int(answer["total"])
    raise ChargeWatchError(f"cannot read dead letters from {type(source).__name__}")


def _get(url: str) -> Any:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise ChargeWatchError(f"the sink at {url} answered {exc.code}: "
                               f"{exc.read().decode(errors='replace')}") from None


def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.discovery import require_kafka

    if args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    since_ms = parse_since(args.since, now_ms())
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    follower = _Follower(settings, require_kafka(settings)) if args.follow else None
    try:
        letters, total = history(settings, since_ms, args.limit)
        for letter in letters:
            show(letter, out, json_lines=args.json)
        shown = f"the newest {len(letters):,} of {total:,}" if total > len(letters) \
            else f"{total:,}"
        err.print(f"{shown} dead letters" + (f" since {_iso(since_ms)}" if since_ms else "")
                  + ("; following new ones (Ctrl-C stops)" if follower else ""))
        if follower:
            seen = {_key(letter) for letter in letters}
            follower.run(lambda letter: _key(letter) in seen or letter["failed_ms"] < since_ms,
                         lambda letter: show(letter, out, json_lines=args.json), err)
    except KeyboardInterrupt:
        pass
    finally:
        if follower:
            follower.close()
    return 0


def _key(letter: dict[str, Any]) -> tuple[Any, ...]:
    return (letter["source_topic"], letter["source_partition"], letter["source_offset"],
            letter["stage"])


class _Follower:
    """The dead-letters topic from its end when made (before the history is read: a letter
    published in between is in both, and printed once), decoded letter by letter."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        import uuid

        from confluent_kafka import Consumer, TopicPartition

        from chargewatch.anomalies_cli import topic_partitions
        from infra.kafka_config import client_config
        from infra.topics import Topics
        from schemas.codec import Codec

        self.topic = Topics(settings.kafka.namespace).dead_letters
        self.codec = Codec(settings.kafka.schema_registry_url)
        self.consumer = Consumer({**client_config(settings.kafka, bootstrap),
                                  "group.id": f"chargewatch-dead-letters-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "fetch.queue.backoff.ms": 10,
                                  "fetch.wait.max.ms": settings.kafka.fetch_max_wait_ms})
        ends = [TopicPartition(self.topic, p, self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, p), timeout=10)[1])
            for p in topic_partitions(self.consumer, self.topic)]
        self.consumer.assign(ends)

    def run(self, skip: Any, on_letter: Any, err: Console) -> None:
        from schemas.errors import DecodeError

        while True:
            message = self.consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise ChargeWatchError(f"reading {self.topic}: {error}")
                continue
            try:
                decoded = self.codec.decode_dead_letter(message.value() or b"")
            except DecodeError as exc:
                err.print(f"skipped {self.topic}[{message.partition()}]@{message.offset()}: "
                          f"not a dead letter ({exc})")
                continue
            letter = {"original": decoded.original, "original_key": decoded.original_key,
                      "source_topic": decoded.source_topic,
                      "source_partition": decoded.source_partition,
                      "source_offset": decoded.source_offset, "stage": decoded.stage,
                      "error": decoded.error, "failed_ms": decoded.failed_ms}
            if not skip(letter):
                on_letter(letter)

    def close(self) -> None:
        self.consumer.close()
