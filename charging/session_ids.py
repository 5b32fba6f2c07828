"""Session IDs: deterministic, and unique across the network by construction.

An ID is rendered from a configurable template whose placeholders take only values that
the input log fixes: the position of the session's opening event (`{num}`), or the
station with a per-station ordinal kept in station state. Replaying the same log, with
restored or with fresh state, therefore gives the same IDs.

Why the accepted templates cannot collide: every placeholder except `{station}` renders
from a restricted alphabet (digits, hex digits, or a fixed-length date), and any two
placeholders are separated by a literal holding a non-alphanumeric character. Reading
an ID from both ends, each placeholder's text ends where the separator's first (or
last) non-alphanumeric character begins (or after its fixed length, for dates), so the
single free-text `{station}` is what is left in the middle: the rendering is injective
in the placeholder values. The key rule then makes the values themselves distinct for
distinct sessions: `{num}` is injective in the event position; `{station}` with
`{station_seq}` (or a date with `{station_daily}`) is distinct within and across stations.
Integer formats only pad, never truncate, so this survives a number outgrowing its width.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from string import Formatter

from charging.errors import InvalidIdTemplate, PositionOutOfRange
from schemas.records import MAX_EVENTS_PER_MESSAGE, EventPosition

DEFAULT_ID_TEMPLATE = "EV-{num:09d}"

_INT_PLACEHOLDERS = frozenset({"num", "connector", "station_seq", "station_daily"})
_TEXT_PLACEHOLDERS = frozenset({"station", "date", "compact_date"})
_FREE_TEXT = frozenset({"station"})
_DATES = frozenset({"date", "compact_date"})
_INT_SPEC = re.compile(r"(?:0[1-9][0-9]{0,2})?[dxX]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXAMPLES = "e.g. 'EV-{num:09d}', 'SESSION-{num:012X}' or '{station}-{date}-{station_daily:03d}'"


def utc_date(epoch_ms: int) -> date:
    """The UTC calendar date of an instant (exact for any integer milliseconds)."""
    return (_EPOCH + timedelta(milliseconds=epoch_ms)).date()


def position_number(position: EventPosition, partitions: int) -> int:
    """`(offset * MAX_EVENTS_PER_MESSAGE + index) * partitions + partition`: injective.

    Raises PositionOutOfRange when the position lies outside the ranges that make the
    formula injective (a partition count or batch size that the configuration does not
    know about would silently produce colliding numbers).
    """
    if not 0 <= position.partition < partitions:
        raise PositionOutOfRange(
            f"partition {position.partition} is outside 0..{partitions - 1}: the meter-events "
            f"topic has more partitions than configured; set the partition count to match")
    if not 0 <= position.index < MAX_EVENTS_PER_MESSAGE:
        raise PositionOutOfRange(
            f"event index {position.index} in one message is outside "
            f"0..{MAX_EVENTS_PER_MESSAGE - 1} (MAX_EVENTS_PER_MESSAGE)")
    if position.offset < 0:
        raise PositionOutOfRange(f"offset {position.offset} is negative")
    return (position.offset * MAX_EVENTS_PER_MESSAGE + position.index) * partitions \
        + position.partition


@dataclass(frozen=True, slots=True)
class IdContext:
    """Everything a template may use, all fixed by the input log and station state."""

    station_id: str
    connector_id: int
    start_ms: int
    position: EventPosition
    """Position of the event that opened the session."""
    partitions: int
    """Partition count of the meter-events topic."""
    station_seq: int
    """1-based ordinal of the session on its station."""
    station_daily: int
    """1-based ordinal of the session on its station on its UTC start date."""


@dataclass(frozen=True, slots=True)
class _Part:
    literal: str
    name: str | None
    spec: str


@dataclass(frozen=True, slots=True)
class IdTemplate:
    """A parsed template that is known to produce unique IDs; build it with `parse`."""

    text: str
    parts: tuple[_Part, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if p.name is not None)

    @property
    def uses_daily(self) -> bool:
        """Whether station state must keep per-date counters for `{station_daily}`."""
        return "station_daily" in self.names

    @classmethod
    def parse(cls, text: str) -> IdTemplate:
        """Parse and check a template; raises InvalidIdTemplate saying why it is refused."""

        def refuse(why: str) -> InvalidIdTemplate:
            return InvalidIdTemplate(
                f"session ID template {text!r} is refused: {why}. A template is unique by "
                f"construction when it contains {{num}}, or {{station}} with {{station_seq}}, "
                f"or {{station}} with {{date}} or {{compact_date}} and {{station_daily}}; "
                f"{_EXAMPLES}")

        try:
            raw = list(Formatter().parse(text))
        except ValueError as exc:
            raise refuse(f"it is not a valid format string ({exc})") from None
        parts: list[_Part] = []
        for literal, name, spec, conversion in raw:
            if name is None:
                parts.append(_Part(literal, None, ""))
                continue
            if name not in _INT_PLACEHOLDERS and name not in _TEXT_PLACEHOLDERS:
                every = _INT_PLACEHOLDERS | _TEXT_PLACEHOLDERS
                known = ", ".join(f"{{{n}}}" for n in sorted(every))
                raise refuse(f"unknown placeholder {{{name}}} (known: {known})")
            if conversion:
                raise refuse(f"conversion !{conversion} on {{{name}}} is not allowed")
            spec = spec or ""
            if name in _TEXT_PLACEHOLDERS and spec:
                raise refuse(f"{{{name}}} takes no format spec, got {spec!r}")
            if name in _INT_PLACEHOLDERS and spec and not _INT_SPEC.fullmatch(spec):
                raise refuse(
                    f"format spec {spec!r} on {{{name}}} is not allowed: only the "
                    f"non-truncating integer formats d, 0Nd, x, 0Nx, X, 0NX are")
            parts.append(_Part(literal, name, spec))
        _check_unique(parts, refuse)
        return cls(text, tuple(parts))

    def canonical(self, text: str) -> str:
        """`text` in the letter case this template renders, where the template fixes it.

        A support call reads IDs aloud: `ev-000000042` is `EV-000000042`, and a hex number
        is upper or lower case as its spec says. `{station}` is free text and keeps the case
        given (station ids may differ only in case). Text the template cannot have rendered
        is returned as it is.
        """
        match = self._pattern().fullmatch(text)
        if match is None:
            return text
        out: list[str] = []
        for n, part in enumerate(self.parts):
            out.append(part.literal)
            if part.name is not None:
                value = match.group(f"p{n}")
                out.append(value.upper() if part.spec.endswith("X") else
                           value if part.name == "station" else value.lower())
        return "".join(out)

    def _pattern(self) -> re.Pattern[str]:
        pieces = []
        for n, part in enumerate(self.parts):
            pieces.append(f"(?i:{re.escape(part.literal)})")
            if part.name is not None:
                pieces.append(f"(?P<p{n}>{_placeholder_pattern(part)})")
        return re.compile("".join(pieces))

    def render(self, ctx: IdContext) -> str:
        """The session ID for one session: a pure function of the context."""
        out: list[str] = []
        for part in self.parts:
            out.append(part.literal)
            if part.name is not None:
                out.append(_value(part.name, part.spec, ctx))
        return "".join(out)


def _check_unique(parts: list[_Part], refuse: Callable[[str], InvalidIdTemplate]) -> None:
    names = [p.name for p in parts if p.name is not None]
    free = [n for n in names if n in _FREE_TEXT]
    if len(free) > 1:
        raise refuse("it has more than one free-text placeholder ({station}), so where one "
                     "ends and the next begins is ambiguous")
    previous: str | None = None
    between = ""
    for part in parts:
        between += part.literal
        if part.name is None:
            continue
        if previous is not None and all(ch.isalnum() for ch in between):
            raise refuse(
                f"{{{previous}}} and {{{part.name}}} are not separated by a literal with a "
                f"non-alphanumeric character (like '-'), so e.g. 'S1'+'11' and 'S11'+'1' "
                f"would render the same")
        previous, between = part.name, ""
    used = set(names)
    if "num" in used:
        return
    if "station" in used and "station_seq" in used:
        return
    if "station" in used and "station_daily" in used and used & _DATES:
        return
    raise refuse("none of its placeholder combinations is unique across the network")


def _placeholder_pattern(part: _Part) -> str:
    """What one placeholder can render, letters in either case."""
    if part.name == "station":
        return ".+"
    if part.name == "date":
        return "[0-9]{4}-[0-9]{2}-[0-9]{2}"
    if part.name == "compact_date":
        return "[0-9]{8}"
    return "[0-9a-fA-F]+" if part.spec[-1:] in ("x", "X") else "[0-9]+"


def _value(name: str, spec: str, ctx: IdContext) -> str:
    if name == "num":
        return format(position_number(ctx.position, ctx.partitions), spec)
    if name == "station":
        return ctx.station_id
    if name == "date":
        return utc_date(ctx.start_ms).isoformat()
    if name == "compact_date":
        return utc_date(ctx.start_ms).isoformat().replace("-", "")
    number = {"connector": ctx.connector_id, "station_seq": ctx.station_seq,
              "station_daily": ctx.station_daily}[name]
    if number < 0:
        raise ValueError(f"{{{name}}} must not be negative, got {number}")
    return format(number, spec)
