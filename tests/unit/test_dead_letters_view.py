"""How `chargewatch dead-letters` shows a letter: the preview of the original bytes is
bounded and terminal-safe whatever the bytes are; sources and `--since` read as a person
writes them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargewatch.dead_letters_cli import (
    from_wire,
    parse_since,
    preview,
    source_of,
    to_wire,
)
from infra.errors import ConfigError

pytestmark = pytest.mark.unit

NOW = 1_800_000_000_000


def test_text_is_quoted_with_quotes_and_backslashes_escaped() -> None:
    assert preview(b'{"event_id": 1}') == '"{\\"event_id\\": 1}"'
    assert preview(b"a\\b") == '"a\\\\b"'


def test_terminal_control_characters_are_escaped_not_sent() -> None:
    shown = preview(b"\x1b[31mred\x00\r\n")
    assert shown == '"\\x1b[31mred\\x00\\r\\n"'
    assert "\x1b" not in shown


def test_non_ascii_text_stays_readable_but_invisible_characters_are_escaped() -> None:
    assert preview("Ladestation Köln ✓".encode()) == '"Ladestation Köln ✓"'
    assert preview("abc\u202edef\u200b".encode()) == '"abc\\u202edef\\u200b"'


def test_binary_is_hex_with_its_size() -> None:
    avro = b"\xc3\x01" + bytes(range(60))
    shown = preview(avro)
    assert shown.startswith("c3 01 00 01 02")
    assert shown.endswith("… (binary, 62 bytes)")
    assert shown.count(" ") < 60  # bounded: 48 bytes, not 62
    assert preview(b"\xff\xfe") == "ff fe (binary, 2 bytes)"
    mostly_controls = bytes(range(1, 9)) + b"ab"  # valid UTF-8, but not text
    assert preview(mostly_controls) == "01 02 03 04 05 06 07 08 61 62 (binary, 10 bytes)"


def test_long_text_is_cut_and_says_its_size() -> None:
    shown = preview(b"a" * 10_000)
    assert shown == '"' + "a" * 160 + '" … (10,000 bytes)'
    cut_in_a_character = ("é" * 1000).encode()  # the bounded head ends inside one
    assert preview(cut_in_a_character).startswith('"éé')


def test_empty_original() -> None:
    assert preview(b"") == "(empty)"


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_bounded_printable_preview(data: bytes) -> None:
    shown = preview(data)
    assert all(c == " " or c.isprintable() for c in shown)
    assert len(shown) <= 160 * 10 + 40


@given(st.text(st.characters(categories=["L", "N", "P", "S"], exclude_characters='"\\'),
               max_size=160))
def test_printable_text_is_shown_as_it_is(text: str) -> None:
    assert preview(text.encode()) == (f'"{text}"' if text else "(empty)")


def test_sources_read_as_topic_partition_offset_or_file_line() -> None:
    assert source_of({"source_topic": "cw.meter-events", "source_partition": 2,
                      "source_offset": 17}) == "cw.meter-events[2]@17"
    assert source_of({"source_topic": "file:data/day1.jsonl", "source_partition": -1,
                      "source_offset": 3}) == "data/day1.jsonl line 3"


@pytest.mark.parametrize(("text", "expected"), [
    (None, 0),
    ("30m", NOW - 30 * 60_000),
    ("2h", NOW - 2 * 3_600_000),
    ("7d", NOW - 7 * 86_400_000),
    ("2026-12-04", int(datetime(2026, 12, 4, tzinfo=UTC).timestamp() * 1000)),
    ("2026-12-04T08:00+01:00", int(datetime(2026, 12, 4, 7, tzinfo=UTC).timestamp() * 1000)),
    ("2026-12-04T08:00:00Z", int(datetime(2026, 12, 4, 8, tzinfo=UTC).timestamp() * 1000)),
])
def test_since_takes_durations_and_utc_times(text: str | None, expected: int) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "30 minutes", "-2h", "2026-13-01"])
def test_a_bad_since_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="^--since"):
        parse_since(text, NOW)


def test_any_bytes_survive_the_sink_endpoint() -> None:
    letter = {"original": bytes(range(256)), "original_key": None, "source_topic": "t",
              "source_partition": 0, "source_offset": 1, "stage": "sink", "error": "e",
              "failed_ms": NOW}
    assert from_wire(to_wire(letter)) == letter
