"""The processors' open-session finder and the report chart rendering, without a worker."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from chargewatch.charts import CHARTS, draw, save_chart
from charging.pricing import SimpleTariff
from charging.session_ids import IdTemplate
from charging.state import StationState
from charging.stitcher import SessionStitcher, StitcherConfig
from infra.errors import StackError
from processors.web import find_open, session_json
from schemas.records import EventKind, EventPosition, MeterEvent
from sinks.reports import Report

pytestmark = pytest.mark.unit

STITCHER = SessionStitcher(StitcherConfig(
    partitions=4, id_template=IdTemplate.parse("EV-{num:09d}"),
    tariff=SimpleTariff("EUR", Decimal("0.40"), Decimal("0.00"))))


T0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z: a charger time before 2010 is a reset clock


def event(station: str, connector: int, kind: EventKind, t_ms: int, tx: str,
          energy: float) -> MeterEvent:
    return MeterEvent(f"{station}:{tx}:{t_ms}", station, connector, kind, T0 + t_ms,
                      T0 + t_ms + 10, transaction_id=tx, energy_wh=energy, power_w=7000.0,
                      soc_pct=40.0)


class States:
    """Station states as a worker's store holds them: key bytes -> state bytes."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, station_id: str) -> bytes | None:
        return self.data.get(station_id.encode())

    def items(self) -> list[tuple[bytes, bytes]]:
        return list(self.data.items())


@pytest.fixture
def store() -> States:
    states = States()
    offset = 0
    for n in range(30):
        station = f"ST-{n:03d}"
        state: StationState | None = None
        for connector, kind, t_ms, energy in ((1, EventKind.STARTED, 0, 100.0),
                                              (1, EventKind.METER, 60_000, 1100.0),
                                              (2, EventKind.STARTED, 0, 0.0),
                                              (2, EventKind.ENDED, 120_000, 500.0)):
            result = STITCHER.apply(state, event(station, connector, kind, t_ms,
                                                 f"T{connector}", energy),
                                    EventPosition(n % 4, offset))
            state, offset = result.state, offset + 1
        assert state is not None
        states.data[station.encode()] = state.to_bytes()
    return states


def open_ids(store: States) -> dict[str, str]:
    ids = {}
    for key, blob in store.items():
        state = StationState.from_bytes(blob)
        for session in state.open_sessions().values():
            ids[key.decode()] = session.session_id
    return ids


def test_open_session_by_id_and_by_transaction(store: States) -> None:
    ids = open_ids(store)
    assert len(ids) == 30
    found = find_open(store, STITCHER, ids["ST-017"], None)
    assert found is not None
    assert (found.station_id, found.connector_id, found.state, found.energy_wh) == (
        "ST-017", 1, "open", 1000.0)
    assert found.cost == Decimal("0.40")
    by_tx = find_open(store, STITCHER, "T1", "ST-017")
    assert by_tx == found
    as_json = session_json(found)
    assert as_json["cost"] == "0.40" and as_json["flags"] == []


def test_closed_or_unknown_sessions_are_not_open(store: States) -> None:
    assert find_open(store, STITCHER, "T2", "ST-017") is None  # ended: in ClickHouse
    assert find_open(store, STITCHER, "EV-999999999", None) is None
    assert find_open(store, STITCHER, "T1", "ST-NOPE") is None


def test_every_chart_draws(tmp_path: Path) -> None:
    hours = [f"h{h:02d}" for h in range(24)]
    samples = {
        "heatmap": Report(["weekday", *hours], [(d, *range(24)) for d in ("Mon", "Tue")]),
        "station-daily": Report(["day", "energy_kwh"], [("2026-01-01", 3.0),
                                                        ("2026-01-02", 4.5)]),
    }
    for name, spec in CHARTS.items():
        rows = [("2026-01-01", 1.5), ("2026-01-02", 2)] if spec.kind == "line" else \
            [("a", 1.5), (None, 2)]
        extra = [c for c in spec.label if c not in (spec.x, spec.y)]
        report = samples.get(name) or Report([spec.x, spec.y, *extra],
                                             [(*r, *("m" for _ in extra)) for r in rows])
        path = save_chart(name, report, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    with pytest.raises(StackError, match="no rows"):
        save_chart("utilization", Report(["station_id", "utilization_pct"], []),
                   tmp_path / "x.png")
    with pytest.raises(StackError, match="needs column 'revenue'"):
        save_chart("top-stations", Report(["station_id"], [("a",)]), tmp_path / "y.png")


def test_cli_report_names_are_the_registry() -> None:
    from chargewatch.lookup import REPORTS
    from chargewatch.reporting import REPORT_NAMES

    assert tuple(REPORTS) == REPORT_NAMES


def test_charts_show_the_data_not_the_void() -> None:
    """Issue 16 §4: a day is bounded to itself, the model chart names the model and zooms to
    where the values differ, anomaly bars say which station, the heatmap names its zone."""
    import datetime as dt

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    one_day = draw("station-daily", Report(["day", "energy_kwh"], [(dt.date(2026, 11, 23), 5.0)]))
    low, high = (mdates.num2date(v).replace(tzinfo=None) for v in one_day.axes[0].get_xlim())
    assert dt.datetime(2026, 11, 22) <= low < dt.datetime(2026, 11, 23) < high \
        <= dt.datetime(2026, 11, 24)
    models = draw("model-availability", Report(
        ["model", "firmware", "availability_pct"],
        [("Terra 54", "1.8.3", 96.6), ("Terra 54", "1.9.0", 100.0)]))
    axes = models.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["Terra 54 1.8.3", "Terra 54 1.9.0"]
    bottom, top = axes.get_ylim()
    assert 90 < bottom < 96.6 and 100 < top < 102
    anomalies = draw("top-anomalies", Report(["kind", "station_id", "anomalies"],
                                             [("connector_fault", "CS-0007", 3)]))
    assert anomalies.axes[0].get_xticklabels()[0].get_text() == "connector_fault CS-0007"
    hours = [f"h{h:02d}" for h in range(24)]
    heat = draw("heatmap", Report(["weekday", *hours], [("Mon", *range(24))]),
                tz="Europe/Oslo")
    assert "Europe/Oslo" in heat.axes[0].get_title()
    for figure in (one_day, models, anomalies, heat):
        plt.close(figure)
