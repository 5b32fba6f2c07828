"""The publisher's per-partition window (producers/partitioning.py), without a broker."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from infra.settings import PublisherSettings
from producers.partitioning import PartitionWindow, murmur2, partition_of
from schemas.records import EventKind, MeterEvent

pytestmark = pytest.mark.unit


def event(station: str, n: int) -> MeterEvent:
    return MeterEvent(event_id=f"{station}-{n}", station_id=station, connector_id=1,
                      kind=EventKind.METER, event_time_ms=1_700_000_000_000 + n,
                      receive_time_ms=1_700_000_000_000 + n, energy_wh=float(n))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "signed"), [
    ("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829), ("abc", 479470107),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971)])
def test_murmur2_matches_kafkas_own_test_vectors(text: str, signed: int) -> None:
    """The values of Kafka's UtilsTest.testMurmur2 (Java ints)."""
    assert murmur2(text.encode()) == signed & 0xFFFFFFFF


def test_a_window_is_cut_by_time() -> None:
    clock = Clock()
    window = PartitionWindow(0.020, 100, clock)
    assert window.add(0, [event("A", 1)], None) == []
    assert window.due() == [] and window.wait_s() == pytest.approx(0.020)
    clock.now += 0.010
    assert window.add(0, [event("B", 1)], None) == []
    assert window.due() == [] and window.wait_s() == pytest.approx(0.010)
    clock.now += 0.011
    [cut] = window.due()
    assert [e.event_id for e in cut.events] == ["A-1", "B-1"] and window.gathered == 0


def test_a_window_is_cut_by_size_and_one_call_never_splits() -> None:
    window = PartitionWindow(10.0, 5, Clock())
    assert window.add(1, [event("A", n) for n in range(3)], None) == []
    [cut] = window.add(1, [event("B", n) for n in range(3)], None)  # 6 > 5: A's go first
    assert [e.station_id for e in cut.events] == ["A"] * 3
    [full] = window.add(1, [event("C", n) for n in range(2)], None)  # B 3 + C 2 = 5: cut
    assert [e.event_id for e in full.events] == ["B-0", "B-1", "B-2", "C-0", "C-1"]
    with pytest.raises(ValueError, match="1..5"):
        window.add(1, [event("D", n) for n in range(6)], None)


def test_events_are_grouped_per_partition_in_order_per_station() -> None:
    clock = Clock()
    window = PartitionWindow(0.020, 1000, clock)
    stations = [f"CP-{i:03d}" for i in range(40)]
    calls = []
    for n in range(5):
        for station in stations:
            callback = calls.append
            window.add(partition_of(station.encode(), 4), [event(station, n)], callback)
    clock.now += 1
    cuts = window.due()
    assert sorted(c.partition for c in cuts) == [0, 1, 2, 3]
    for cut in cuts:
        assert {partition_of(e.station_id.encode(), 4) for e in cut.events} == {cut.partition}
        assert len(cut.callbacks) == len(cut.events)
        for station in {e.station_id for e in cut.events}:
            mine = [e.event_id for e in cut.events if e.station_id == station]
            assert mine == [f"{station}-{n}" for n in range(5)]
    assert sum(len(c.events) for c in cuts) == 200


def test_at_low_volume_a_window_holds_one_event() -> None:
    clock = Clock()
    window = PartitionWindow(0.020, 500, clock)
    sizes = []
    for n in range(10):
        window.add(n % 4, [event(f"S{n}", n)], None)
        clock.now += 0.5  # one charger message every half second
        sizes += [len(cut.events) for cut in window.due()]
    assert sizes == [1] * 10


def test_a_window_without_a_timer_is_cut_by_size_alone_whatever_the_clock() -> None:
    """simulate and replay: the same calls make the same messages however long they take."""
    def cuts(pause_s: float) -> list[list[str]]:
        clock = Clock()
        window = PartitionWindow(None, 4, clock)
        out = []
        for n in range(10):
            out += window.add(n % 2, [event(f"S{n % 3}", n)], None)
            clock.now += pause_s
            out += window.due()
        assert window.wait_s() == math.inf
        out += window.drain()
        return [[e.event_id for e in cut.events] for cut in out]

    assert cuts(0.0) == cuts(5.0) == [["S0-0", "S2-2", "S1-4", "S0-6"],
                                      ["S1-1", "S0-3", "S2-5", "S1-7"], ["S2-8"], ["S0-9"]]


def test_the_settings_page_documents_the_window() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    defaults = PublisherSettings()
    for name in ("window_ms", "window_max_events"):
        row = f"| `CHARGEWATCH_PUBLISHER__{name.upper()}` | `{getattr(defaults, name)}` |"
        assert row in page, f"docs/settings.md lacks {row}"
