"""`--chart FILE.png`: the picture of a report, where a picture says more than the table.

Matplotlib with the Agg backend (no display needed); imported only when a chart is asked
for, so the other commands do not pay for it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
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


CHARTS: dict[str, ChartSpec] = {
    "station-daily": ChartSpec("day", "energy_kwh", "line", "Energy per day (kWh)"),
    "station-health": ChartSpec("day", "failure_rate_pct", "line", "Failed sessions (%)"),
    "station-availability": ChartSpec("station_id", "availability_pct", "bar",
                                      "Availability (%), least available first"),
    "model-availability": ChartSpec("firmware", "availability_pct", "bar",
                                    "Availability (%) by firmware"),
    "utilization": ChartSpec("station_id", "utilization_pct", "bar", "Utilization (%)"),
    "heatmap": ChartSpec("weekday", "", "heatmap", "Sessions started, weekday x hour (UTC)"),
    "session-lengths": ChartSpec("bucket", "sessions", "bar", "Sessions by plugged-in time"),
    "session-energy": ChartSpec("bucket", "sessions", "bar", "Sessions by energy"),
    "efficiency": ChartSpec("station_id", "avg_of_peak_pct", "bar",
                            "Average power while charging, % of peak"),
    "cost-per-vehicle": ChartSpec("vehicle_id", "total_cost", "bar", "Cost per vehicle"),
    "cost-per-station": ChartSpec("station_id", "revenue", "bar", "Revenue per station"),
    "top-stations": ChartSpec("station_id", "revenue", "bar", "Revenue per station"),
    "top-anomalies": ChartSpec("kind", "anomalies", "bar", "Anomalies"),
    "summary": ChartSpec("currency", "revenue", "bar", "Revenue per currency"),
}
MAX_BARS = 30


def save_chart(name: str, report: Report, path: Path | str) -> Path:
    """Draw report `name` into `path` (PNG, SVG or PDF by suffix); returns the path."""
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
            _heatmap(figure, axes, report)
        else:
            _xy(axes, report, spec)
        axes.set_title(spec.title)
        figure.tight_layout()
        out = Path(path)
        figure.savefig(out, dpi=110)
    finally:
        plt.close(figure)
    return out


def _column(report: Report, name: str) -> int:
    if name not in report.columns:
        raise StackError(f"chart needs column {name!r}; the report has {report.columns}")
    return report.columns.index(name)


def _xy(axes: Any, report: Report, spec: ChartSpec) -> None:
    x, y = _column(report, spec.x), _column(report, spec.y)
    if spec.kind == "line":
        totals: dict[Any, float] = defaultdict(float)
        for row in report.rows:
            totals[row[x]] += float(row[y] or 0)
        keys = sorted(totals)
        axes.plot(keys, [totals[k] for k in keys], marker="o")
        axes.figure.autofmt_xdate()
    else:
        rows = report.rows[:MAX_BARS]
        labels = ["(none)" if row[x] is None else str(row[x]) for row in rows]
        axes.bar(range(len(rows)), [float(row[y] or 0) for row in rows])
        axes.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=8)
    axes.set_xlabel(spec.x)
    axes.set_ylabel(spec.y)
    axes.grid(axis="y", alpha=0.3)


def _heatmap(figure: Any, axes: Any, report: Report) -> None:
    grid = [[float(v) for v in row[1:]] for row in report.rows]
    image = axes.imshow(grid, aspect="auto", cmap="viridis")
    axes.set_yticks(range(len(report.rows)), [row[0] for row in report.rows])
    axes.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=8)
    axes.set_xlabel("hour of day (UTC)")
    figure.colorbar(image, ax=axes, label="sessions")
