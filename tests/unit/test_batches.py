"""The batch planner, case by case (sinks/DESIGN.md), and a crash-anywhere property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.batches import Case, Intent, Skip, Wait, Write, group_ranges, group_token, plan
from sinks.errors import BatchStateError

pytestmark = pytest.mark.unit

T, P = "ns.sessions-completed", 3


def intent(first: int, last: int) -> Intent:
    return Intent(T, P, first, last)


def step(offsets: list[int], last: Intent | None, *, max_size: int = 100, due: bool = False,
         end: int | None = None) -> Wait | Skip | Write:
    return plan(T, P, offsets, last, max_size=max_size, due=due, end_offset=end)


def test_token_names_topic_partition_and_range() -> None:
    assert intent(10, 19).token == "ns.sessions-completed-3-10-19"
    assert intent(10, 19).next_offset == 20


def test_empty_buffer_waits() -> None:
    assert step([], None, due=True) == Wait()
    assert step([], intent(0, 9), end=10) == Wait()


def test_new_waits_until_size_or_time() -> None:
    assert step([0, 1, 2], None, max_size=5) == Wait()
    assert step([0, 1, 2], None, max_size=5, due=True) == Write(3, intent(0, 2), Case.NEW, True)


def test_new_cut_by_size() -> None:
    assert step(list(range(12)), None, max_size=5) == Write(5, intent(0, 4), Case.NEW, True)


def test_new_flushes_at_partition_end() -> None:
    assert step([5, 6], intent(0, 4), end=7) == Write(2, intent(5, 6), Case.NEW, True)


def test_new_after_committed_intent() -> None:
    # The previous batch was inserted and committed: the buffer starts right after it.
    assert step([10, 11, 12], intent(0, 9), max_size=3) == Write(3, intent(10, 12), Case.NEW,
                                                                 True)


def test_gap_after_compaction_starts_a_new_batch_at_the_first_offset_present() -> None:
    assert step([15, 17, 20], intent(0, 9), due=True) == Write(3, intent(15, 20), Case.GAP, True)


def test_same_rebuilds_exactly_the_recorded_range() -> None:
    # Crash after the insert, before the commit: the restart reads the same offsets again,
    # now with a larger max_size; the batch is cut to the recorded range, same token.
    rebuilt = step(list(range(10)), intent(0, 9), max_size=5000, end=10)
    assert rebuilt == Write(10, intent(0, 9), Case.SAME, False)


def test_same_waits_for_the_whole_recorded_range() -> None:
    # Only part of the recorded range is read yet: neither size nor time may cut it short.
    assert step([0, 1, 2], intent(0, 9), max_size=2, due=True) == Wait()


def test_overlap_cuts_at_the_intent_and_the_rest_becomes_new() -> None:
    first = step(list(range(15)), intent(0, 9), max_size=5000)
    assert first == Write(10, intent(0, 9), Case.OVERLAP, False)
    rest = step(list(range(10, 15)), intent(0, 9), max_size=5000, due=True)
    assert rest == Write(5, intent(10, 14), Case.NEW, True)


def test_contains_when_the_head_of_the_range_was_compacted_away() -> None:
    assert step([4, 6, 9, 12], intent(0, 9)) == Write(3, intent(0, 9), Case.CONTAINS, False)


def test_contains_completes_at_partition_end() -> None:
    assert step([4, 6], intent(0, 9), end=10) == Write(2, intent(0, 9), Case.CONTAINS, False)


def test_before_skips_offsets_already_written() -> None:
    # A commit was lost after an insert that succeeded, and the next intent was recorded:
    # offsets below it are in ClickHouse already and must not come back under a new token.
    assert step([5, 6, 7, 8, 10, 11], intent(10, 19)) == Skip(4)
    assert step([10, 11], intent(10, 19), end=20) == Write(2, intent(10, 19), Case.SAME, False)


def test_partition_ending_before_the_intent_is_refused() -> None:
    with pytest.raises(BatchStateError, match=r"ends at offset 3.*recreated"):
        step([0, 1, 2], intent(0, 9), end=3)
    with pytest.raises(BatchStateError):
        step([], intent(0, 9), end=0)


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        step([0], None, max_size=0)


# --- property: crash anywhere, compact anything, never a duplicate, never a loss ------------

ACTIONS = st.lists(st.tuples(st.integers(1, 7), st.booleans(), st.integers(0, 9)),
                   min_size=1, max_size=60)


class Model:
    """Kafka (a log, a committed offset) and ClickHouse (token-deduplicated inserts, intents)."""

    def __init__(self, log: list[int]) -> None:
        self.log = log
        self.committed = 0
        self.intents: dict[int, Intent] = {}
        self.blocks: dict[str, list[int]] = {}

    def insert(self, token: str, offsets: list[int]) -> None:
        self.blocks.setdefault(token, offsets)  # a repeated token is dropped


@settings(max_examples=300, deadline=None)
@given(gaps=st.lists(st.integers(1, 3), min_size=1, max_size=80), actions=ACTIONS,
       max_size=st.integers(1, 9), compact=st.sets(st.integers(0, 79)))
def test_crash_anywhere_gives_every_offset_once(
        gaps: list[int], actions: list[tuple[int, bool, int]], max_size: int,
        compact: set[int]) -> None:
    log = [sum(gaps[:i + 1]) for i in range(len(gaps))]
    model = Model(log)
    compacted: set[int] = set()
    buffer: list[int] = []
    read_upto = 0
    for chunk, due, crash_at in actions:
        if crash_at == 0:  # crash: lose the buffer, maybe compact, restart from committed
            buffer = []
            removable = {log[i] for i in compact if i < len(log) - 1}
            compacted |= removable
            model.log = [o for o in model.log if o not in removable]
            read_upto = model.committed
            continue
        fresh = [o for o in model.log if o >= read_upto][:chunk]
        buffer += fresh
        if fresh:
            read_upto = fresh[-1] + 1
        at_end = not [o for o in model.log if o >= read_upto]
        end = model.log[-1] + 1 if at_end else None
        crashed = False
        while not crashed:
            last = model.intents.get(P)
            nxt = plan(T, P, buffer, last, max_size=max_size, due=due, end_offset=end)
            if isinstance(nxt, Wait):
                break
            if isinstance(nxt, Skip):
                model.committed = max(model.committed, buffer[nxt.count - 1] + 1)
                buffer = buffer[nxt.count:]
                continue
            if nxt.record:
                model.intents[P] = nxt.intent
                if crash_at == 1:
                    crashed = True
                    break
            model.insert(nxt.intent.token, buffer[:nxt.count])
            if crash_at == 2:
                crashed = True
                break
            model.committed = nxt.intent.next_offset
            buffer = buffer[nxt.count:]
        if crashed:
            buffer = []
            read_upto = model.committed
    # Drain: a final clean run reads everything left.
    buffer = [o for o in model.log if o >= model.committed]
    end = model.log[-1] + 1
    while buffer:
        nxt = plan(T, P, buffer, model.intents.get(P), max_size=max_size, due=True, end_offset=end)
        assert not isinstance(nxt, Wait)
        if isinstance(nxt, Write):
            if nxt.record:
                model.intents[P] = nxt.intent
            model.insert(nxt.intent.token, buffer[:nxt.count])
        buffer = buffer[nxt.count:]
    written = [o for block in model.blocks.values() for o in block]
    assert len(written) == len(set(written)), "an offset was inserted twice"
    assert set(model.log) <= set(written), "an offset still in the log was never inserted"
    assert set(written) <= set(log)


@given(topic=st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True),
       ranges=st.dictionaries(st.integers(0, 500), st.tuples(st.integers(0, 10**12),
                                                            st.integers(0, 10**6)),
                              min_size=1, max_size=6))
def test_a_group_token_names_its_ranges_whatever_their_order(
        topic: str, ranges: dict[int, tuple[int, int]]) -> None:
    intents = [Intent(topic, p, first, first + span) for p, (first, span) in ranges.items()]
    token = group_token(intents)
    assert token == group_token(list(reversed(intents)))
    expected = {(i.partition, i.first, i.last) for i in intents}
    assert group_ranges(Intent(topic, intents[0].partition, 0, 0, token)) == expected
    if len(intents) == 1:  # a range alone keeps the token it always had
        assert token == intents[0].token == intents[0].insert_token
