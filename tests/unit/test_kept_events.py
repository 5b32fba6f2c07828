"""The kept meter events on disk: whole frames survive, a frame cut short by a crash is cut
off, and each run gets topics of its own while the partition count and ClickHouse stay the
ones the events were written with. (Producing them back into a broker:
tests/integration/test_kept_events_restore.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from chargewatch.kept_events import KeptEvents, _frame, _read_frames
from infra.errors import ConfigError

pytestmark = pytest.mark.unit


def test_frames_round_trip_and_a_torn_tail_is_cut_off(tmp_path: Path) -> None:
    kept = KeptEvents(tmp_path, "up")
    frames = [(1_800_000_000_000, b"CS-1", b"\xc3\x01payload"), (1_800_000_000_001, None, None),
              (1_800_000_000_002, b"", b"")]
    path = tmp_path / "meter-events-1.log"
    whole = b"".join(_frame(*f) for f in frames)
    path.write_bytes(whole + _frame(1, b"key", b"value")[:-2])  # a crash mid-frame
    assert kept.counts(2) == [0, 3]
    assert path.stat().st_size == len(whole)
    with path.open("rb") as src:
        assert [f[:3] for f in _read_frames(src)] == frames


def test_each_run_has_its_own_topics_and_the_owners_are_remembered(tmp_path: Path) -> None:
    assert KeptEvents(tmp_path, "demo").begin_run("chargewatch", 4, "chdb:///d") == \
        "chargewatch-r1"
    assert KeptEvents(tmp_path, "up").begin_run("chargewatch", 4, "chdb:///d") == \
        "chargewatch-r2"
    assert KeptEvents(tmp_path, "up").state()["owners"] == ["demo", "up"]


@pytest.mark.parametrize(("partitions", "clickhouse", "named"), [
    (8, "chdb:///d", "CHARGEWATCH_KAFKA__PARTITIONS"),
    (4, "chdb:///elsewhere", "CLICKHOUSE_URL"),
])
def test_other_partitions_or_clickhouse_are_refused(tmp_path: Path, partitions: int,
                                                    clickhouse: str, named: str) -> None:
    KeptEvents(tmp_path, "up").begin_run("chargewatch", 4, "chdb:///d")
    with pytest.raises(ConfigError, match=named):
        KeptEvents(tmp_path, "up").begin_run("chargewatch", partitions, clickhouse)
