"""Every hostile meter-events message becomes one dead letter with a clear reason, and the
batch goes on: the good message after it is still used."""

from __future__ import annotations

import pytest

from charging.pricing import SimpleTariff
from charging.session_ids import IdTemplate
from charging.stitcher import SessionStitcher, StitcherConfig
from processors.batch import MAX_DEAD_LETTER_ORIGINAL, BatchProcessor, RawMessage
from tests.hostile import CODEC, HOSTILE, T0, event

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("name", "data", "phrase"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_message_is_dead_lettered_with_its_reason(name: str, data: bytes,
                                                          phrase: str) -> None:
    stitcher = SessionStitcher(StitcherConfig(
        partitions=1, id_template=IdTemplate.parse("EV-{num:09d}"), tariff=SimpleTariff()))
    processor = BatchProcessor(stitcher, CODEC.decode_meter_events, lambda: T0)
    good = CODEC.encode_meter_events([event(event_id="good", station_id="CS-9")])
    messages = [RawMessage("meter-events", 0, 7, b"key", data),
                RawMessage("meter-events", 0, 8, b"CS-9", good)]
    out = processor.process(messages, {}.get)
    (letter,) = out.dead_letters
    kept = data[:MAX_DEAD_LETTER_ORIGINAL]
    assert (letter.original, letter.original_key, letter.source_offset, letter.stage) == (
        kept, b"key", 7, "processor")
    assert phrase in letter.error, letter.error
    assert (f"original truncated from {len(data)}" in letter.error) == (kept != data)
    assert len(letter.error) < 1000
    assert out.counts.events_used == 1
    assert out.counts.dead_lettered == 1
