"""`--chart FILE.png`: the picture of a report, where a picture says more than the table.

Matplotlib with the Agg backend (no display needed); imported only when a chart is asked
for, so the other commands do not pay for it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from infra.errors import StackError
from sinks.reports import Report


@dataclass(frozen=True, slots=True)
class ChartSpec:
    x: str
    y: str
    kind: str
    """"line" (over time, summed per x), "bar" (one bar per row, first rows) or "heatmap"."""
    title: str
    label: tuple[str, ...] = ()
    """Columns named in each bar's label (default: `x` alone), e.g. model and firmware."""
    zoom: bool = False
    """Bound the value axis to the range the bars span (96.6 vs 100 shows, 0-100 hides it)."""


CHARTS: dict[str, ChartSpec] = {
    "station-daily": ChartSpec("day", "energy_kwh", "line", "Energy per day (kWh)"),
    "station-health": ChartSpec("day", "failure_rate_pct", "line", "Failed sessions (%)"),
    "station-availability": ChartSpec("station_id", "availability_pct", "bar",
                                      "Availability (%), least available first", zoom=True),
    "model-availability": ChartSpec("firmware", "availability_pct", "bar",
                                    "Availability (%) by charger model and firmware",
                                    label=("model", "firmware"), zoom=True),
    "utilization": ChartSpec("station_id", "utilization_pct", "bar", "Utilization (%)"),
    "heatmap": ChartSpec("weekday", "", "heatmap", "Sessions started, weekday x hour"),
    "session-lengths": ChartSpec("bucket", "sessions", "bar", "Sessions by plugged-in time"),
    "session-energy": ChartSpec("bucket", "sessions", "bar", "Sessions by energy"),
    "efficiency": ChartSpec("station_id", "avg_of_peak_pct", "bar",
                            "Average power while charging, % of peak"),
    "cost-per-vehicle": ChartSpec("vehicle_id", "total_cost", "bar", "Cost per vehicle"),
    "cost-per-station": ChartSpec("station_id", "revenue", "bar", "Revenue per station"),
    "top-stations": ChartSpec("station_id", "revenue", "bar", "Revenue per station"),
    "top-anomalies": ChartSpec("kind", "anomalies", "bar", "Anomalies by kind and station",
                               label=("kind", "station_id")),
    "summary": ChartSpec("currency", "revenue", "bar", "Revenue per currency"),
}
MAX_BARS = 30


def save_chart(name: str, report: Report, path: Path | str, tz: str = "UTC") -> Path:
    """Draw report `name` into `path` (PNG, SVG or PDF by suffix); returns the path."""
    figure = draw(name, report, tz)
    try:
        out = Path(path)
        figure.savefig(out, dpi=110)
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return out


def draw(name: str, report: Report, tz: str = "UTC") -> Any:
    """The matplotlib figure of report `name` (`tz`: the zone the heatmap's hours are in)."""
    spec = CHARTS.get(name)
    if spec is None:
        raise StackError(f"report {name!r} has no chart")
    if not report.rows:
        raise StackError(f"report {name!r} has no rows to chart")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise StackError("charts need matplotlib: pip install matplotlib") from None
    figure, axes = plt.subplots(figsize=(11, 5.5))
    try:
        if spec.kind == "heatmap":
            _heatmap(figure, axes, report, tz)
            axes.set_title(f"{spec.title} ({tz})")
        else:
            _xy(axes, report, spec)
            axes.set_title(spec.title)
        figure.tight_layout()
    except BaseException:
        plt.close(figure)
        raise
    return figure


def _column(report: Report, name: str) -> int:
    if name not in report.columns:
        raise StackError(f"chart needs column {name!r}; the report has {report.columns}")
    return report.columns.index(name)


def _xy(axes: Any, report: Report, spec: ChartSpec) -> None:
    x, y = _column(report, spec.x), _column(report, spec.y)
    if spec.kind == "line":
        _line(axes, report, x, y)
    else:
        rows = report.rows[:MAX_BARS]
        labels = [_label(report, row, spec.label or (spec.x,)) for row in rows]
        values = [float(row[y] or 0) for row in rows]
        axes.bar(range(len(rows)), values)
        axes.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=8)
        if spec.zoom:
            low, high = min(values), max(values)
            margin = max((high - low) * 0.15, 0.5)
            axes.set_ylim(low - margin, high + margin)
    axes.set_xlabel(" / ".join(spec.label) if spec.label else spec.x)
    axes.set_ylabel(spec.y)
    axes.grid(axis="y", alpha=0.3)


def _line(axes: Any, report: Report, x: int, y: int) -> None:
    """Values summed per day, on an axis bounded to the days there are (half a day
    either side), so one day is one point in the middle, not a dot on a 4-year axis."""
    totals: dict[date, float] = defaultdict(float)
    for row in report.rows:
        day = row[x] if isinstance(row[x], date) else date.fromisoformat(str(row[x]))
        totals[day] += float(row[y] or 0)
    keys = sorted(totals)
    moments = [datetime(d.year, d.month, d.day) for d in keys]
    axes.plot(moments, [totals[k] for k in keys], marker="o")
    axes.set_xlim(moments[0] - timedelta(hours=12), moments[-1] + timedelta(hours=12))
    axes.figure.autofmt_xdate()


def _label(report: Report, row: tuple, columns: tuple[str, ...]) -> str:
    parts = [row[_column(report, c)] for c in columns]
    return " ".join("(none)" if p is None else str(p) for p in parts)


def _heatmap(figure: Any, axes: Any, report: Report, tz: str) -> None:
    grid = [[float(v) for v in row[1:]] for row in report.rows]
    image = axes.imshow(grid, aspect="auto", cmap="viridis")
    axes.set_yticks(range(len(report.rows)), [row[0] for row in report.rows])
    axes.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=8)
    axes.set_xlabel(f"hour of day ({tz})")
    figure.colorbar(image, ax=axes, label="sessions")
