"""The processor's intake: batches fill while the previous one is processed, a quiet stream
waits at most the linger, a full intake holds the reader back."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.intake import Intake

pytestmark = pytest.mark.unit


@given(st.lists(st.integers(), max_size=60), st.integers(min_value=1, max_value=10))
@settings(max_examples=60, deadline=None)
def test_every_item_is_taken_once_in_order(items: list[int], max_batch: int) -> None:
    async def run() -> list[list[int]]:
        intake: Intake[int] = Intake(max_batch, linger_s=0.001)
        taken: list[list[int]] = []

        async def reader() -> None:
            for item in items:
                await intake.put(item)

        feeding = asyncio.ensure_future(reader())
        while sum(map(len, taken)) < len(items):
            taken.append(await intake.take())
        await feeding
        return taken

    batches = asyncio.run(run())
    assert [item for batch in batches for item in batch] == items
    assert all(0 < len(batch) <= max_batch for batch in batches)


GENEROUS_S = 8.0
"""Upper bounds say "did not wait for something else": far above any scheduling delay on a
loaded machine, far below what the wrong wait would take (a batch that never fills, a linger
of an hour), which the per-test timeout would cut off."""


def test_a_lone_item_waits_the_linger_and_no_longer() -> None:
    async def run() -> tuple[list[int], float]:
        intake: Intake[int] = Intake(100, linger_s=0.05)
        started = time.monotonic()
        await intake.put(1)
        return await intake.take(), time.monotonic() - started

    batch, waited = asyncio.run(run())
    assert batch == [1]  # taken with 99 places free: the linger, not a full batch, ended it
    assert 0.05 <= waited < GENEROUS_S


def test_a_full_batch_is_taken_without_waiting_and_the_reader_waits_for_room() -> None:
    async def run() -> tuple[list[int], bool, float]:
        intake: Intake[int] = Intake(3, linger_s=3600.0)
        for item in (1, 2, 3):
            await intake.put(item)
        assert not intake.offer(4)  # full: the reader must wait for room
        blocked = asyncio.ensure_future(intake.put(4))
        await asyncio.sleep(0.01)
        held_back = not blocked.done()
        started = time.monotonic()
        batch = await intake.take()
        await blocked
        return batch, held_back, time.monotonic() - started

    batch, held_back, waited = asyncio.run(run())
    assert batch == [1, 2, 3] and held_back
    assert waited < GENEROUS_S  # not the hour of linger
