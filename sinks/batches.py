"""The sink's batch planner: which buffered offsets of one topic-partition to insert next.

Pure logic over offsets, no Kafka or ClickHouse here, so every case is a plain unit test.
ClickHouse drops an insert whose deduplication token it has seen recently; the token is
`topic-partition-first-last`. For that to make a retry harmless, a retried batch must be
the same range as the one it repeats, although batches are cut by size and time and a
restarted sink reads with different timing. So before inserting, the sink records the
batch's range (its *intent*); after a restart the planner cuts the rebuilt batch to exactly
the recorded range. The cases are written out in sinks/DESIGN.md.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sinks.errors import BatchStateError


@dataclass(frozen=True, slots=True)
class Intent:
    """A batch's offset range, recorded before its insert; `last` is inclusive."""

    topic: str
    partition: int
    first: int
    last: int
    group: str = ""
    """The token of the insert this range went into with other partitions' ranges (a
    coalesced insert, `group_token`); "" when it went in alone."""

    @property
    def token(self) -> str:
        """The range's own token: the same range always gives the same token."""
        return f"{self.topic}-{self.partition}-{self.first}-{self.last}"

    @property
    def insert_token(self) -> str:
        """The deduplication token of the insert this range was recorded for."""
        return self.group or self.token

    @property
    def next_offset(self) -> int:
        """The offset to commit once the batch is in ClickHouse."""
        return self.last + 1


class Case(StrEnum):
    """How the buffered offsets relate to the last recorded intent (see DESIGN.md)."""

    NEW = "new"
    """Starts right after the intent (or there is none): a new batch, cut by size or time."""
    GAP = "gap"
    """Starts later than intent.last + 1: offsets between were compacted away. A new batch."""
    SAME = "same"
    """Starts at intent.first, ends at intent.last: the recorded batch, rebuilt."""
    OVERLAP = "overlap"
    """Starts at intent.first, reaches past intent.last: cut at intent.last, rest is new."""
    CONTAINS = "contains"
    """Starts inside the intent (its head was compacted away): cut at intent.last."""
    BEFORE = "before"
    """Offsets below intent.first: written by an earlier batch; skipped, never re-inserted."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until more offsets arrive, time passes, or the partition end is seen."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Drop the first `count` buffered messages: ClickHouse already has them."""

    count: int
    case: Case = Case.BEFORE


@dataclass(frozen=True, slots=True)
class Write:
    """Insert the first `count` buffered messages under `intent.token`.

    `record` is true for a new range (record the intent before inserting) and false for a
    rebuilt one (its intent is already recorded).
    """

    count: int
    intent: Intent
    case: Case
    record: bool


Step = Wait | Skip | Write


def plan(topic: str, partition: int, offsets: Sequence[int], intent: Intent | None, *,
         max_size: int, due: bool, end_offset: int | None = None) -> Step:
    """The next step for one partition's buffer.

    `offsets` are the buffered messages' offsets, ascending (gaps allowed: compaction);
    `intent` the last recorded intent of this partition; `due` says the oldest buffered
    message has waited the batch time; `end_offset` is the partition's end offset when the
    consumer has just reached it (partition EOF), else None.

    Raises BatchStateError when the partition ends before the last recorded intent: the
    topic was recreated or truncated, and inserting its new offsets under old tokens would
    silently drop them.
    """
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    if intent is not None and end_offset is not None and end_offset <= intent.last:
        raise BatchStateError(
            f"{topic}[{partition}] ends at offset {end_offset}, but offsets up to "
            f"{intent.last} were already written to ClickHouse: the topic was recreated or "
            "truncated. Use a fresh database, or delete this partition's rows from sink_batches.")
    if not offsets:
        return Wait()
    head = offsets[0]
    if intent is not None and head < intent.first:
        return Skip(bisect_left(offsets, intent.first))
    if intent is not None and head <= intent.last:
        return _rebuild(offsets, intent, end_offset)
    return _new(topic, partition, offsets, intent, max_size, due or end_offset is not None)


def _rebuild(offsets: Sequence[int], intent: Intent, end_offset: int | None) -> Step:
    """The buffer starts inside the recorded range: insert exactly that range, once complete."""
    count = bisect_right(offsets, intent.last)
    beyond = count < len(offsets)
    if not beyond and end_offset is None:
        return Wait()  # more of the recorded range may still be on its way
    case = Case.CONTAINS if offsets[0] > intent.first else Case.OVERLAP if beyond else Case.SAME
    return Write(count, intent, case, record=False)


def _new(topic: str, partition: int, offsets: Sequence[int], intent: Intent | None,
         max_size: int, flush: bool) -> Step:
    if len(offsets) >= max_size:
        count = max_size
    elif flush:
        count = len(offsets)
    else:
        return Wait()
    case = Case.GAP if intent is not None and offsets[0] > intent.next_offset else Case.NEW
    return Write(count, Intent(topic, partition, offsets[0], offsets[count - 1]), case,
                 record=True)


def group_token(intents: Sequence[Intent]) -> str:
    """The token of one insert of several ranges of one topic: `topic-p-f-l+p-f-l…` by
    partition, so the same set of ranges always gives the same token, and one range alone
    its own token. Kafka topic names hold no "+"."""
    ordered = sorted(intents, key=lambda i: i.partition)
    return f"{ordered[0].topic}-" + "+".join(f"{i.partition}-{i.first}-{i.last}"
                                             for i in ordered)


def group_ranges(intent: Intent) -> frozenset[tuple[int, int, int]]:
    """The (partition, first, last) ranges that went into `intent`'s insert."""
    if not intent.group:
        return frozenset({(intent.partition, intent.first, intent.last)})
    ranges = intent.group[len(intent.topic) + 1:].split("+")
    return frozenset(tuple(int(n) for n in r.split("-")) for r in ranges)  # type: ignore[misc]
