"""What a sweep's page and API show: its points' rows, means over seeds, and the charts.

One query layer for the sweep route (`/api/v1/jobs/{id}/sweep`) and the sweep page: both read
the point jobs through `sweep_rows`. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.db.models import Job
from app.queue.sweeps import PointCounts, point_counts, sweep_points
from app.web.charts import SERIES_COLORS, Chart, _layout
from expansion.results.sweep_summary import CONFIDENCE, ROW_FIELDS, SeriesPoint, series, table

SCALING_ORDER = ("constant", "inv_sqrt_depth", "inv_depth", "learnable")
SCALING_LABELS = {
    "constant": "constant α",
    "inv_sqrt_depth": "1/√L",
    "inv_depth": "1/L",
    "learnable": "learnable",
}


def _point(job: Job) -> dict[str, Any]:
    spec = job.spec or {}
    if job.result:
        return {**job.result, "job_id": job.id, "status": job.status}
    return {
        "job_id": job.id,
        "status": job.status,
        "spec": spec,
        "sweep_index": spec.get("sweep_index"),
        "coordinates": spec.get("coordinates") or {},
        "error": job.message if job.status == "failed" else None,
    }


def sweep_rows(session: Session, sweep: Job) -> list[dict[str, Any]]:
    """One row per (point, arm) of the sweep, in grid order, with every ROW_FIELDS key."""
    return table(_point(job) for job in sweep_points(session, sweep.id))


def _scaling_key(scaling: str) -> tuple[int, str]:
    order = SCALING_ORDER.index(scaling) if scaling in SCALING_ORDER else len(SCALING_ORDER)
    return order, scaling


def _label(arm: str, scaling: str, arms: set[str]) -> str:
    name = SCALING_LABELS.get(scaling, scaling)
    return name if arms == {"scratch"} else f"{name} ({arm})"


def depth_chart(element_id: str, points: list[SeriesPoint], *, title: str, y_title: str) -> Chart:
    """Mean against depth (log axis), one line per (scaling, arm), interval error bars."""
    arms = {p.arm for p in points}
    groups: dict[tuple[str, str], list[SeriesPoint]] = {}
    for p in points:
        groups.setdefault((p.scaling, p.arm), []).append(p)
    data = []
    for index, ((scaling, arm), group) in enumerate(
        sorted(groups.items(), key=lambda kv: (_scaling_key(kv[0][0]), kv[0][1]))
    ):
        group.sort(key=lambda p: p.depth)
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": _label(arm, scaling, arms),
                "x": [p.depth for p in group],
                "y": [p.mean for p in group],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [None if p.high is None else p.high - p.mean for p in group],
                    "arrayminus": [None if p.low is None else p.mean - p.low for p in group],
                    "visible": True,
                },
                "customdata": [p.n for p in group],
                "hovertemplate": "depth %{x}<br>mean %{y:.4g}<br>seeds %{customdata}"
                "<extra>%{fullData.name}</extra>",
                "line": {
                    "color": SERIES_COLORS[index % len(SERIES_COLORS)],
                    "dash": "dot" if arm == "grown" else "solid",
                },
                "marker": {"color": SERIES_COLORS[index % len(SERIES_COLORS)]},
            }
        )
    layout = _layout(title, "depth L (blocks, log scale)", y_title)
    layout["xaxis"].update(type="log", tickvals=sorted({p.depth for p in points}))
    return Chart(element_id, data, layout, empty_message="No finished points yet.")


def sensitivity_chart(element_id: str, points: list[SeriesPoint]) -> Chart:
    """Input sensitivity against the scaling rule, one line per depth, interval error bars."""
    by_depth: dict[int, list[SeriesPoint]] = {}
    for p in points:
        if p.arm == "scratch":
            by_depth.setdefault(p.depth, []).append(p)
    data = []
    for index, (depth, group) in enumerate(sorted(by_depth.items())):
        group.sort(key=lambda p: _scaling_key(p.scaling))
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"depth {depth}",
                "x": [SCALING_LABELS.get(p.scaling, p.scaling) for p in group],
                "y": [p.mean for p in group],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [None if p.high is None else p.high - p.mean for p in group],
                    "arrayminus": [None if p.low is None else p.mean - p.low for p in group],
                    "visible": True,
                },
                "line": {"color": SERIES_COLORS[index % len(SERIES_COLORS)]},
            }
        )
    layout = _layout(
        "Input sensitivity against branch scaling",
        "branch scaling rule",
        "E‖∂logits/∂x‖²_F (log scale)",
    )
    layout["yaxis"]["type"] = "log"
    return Chart(element_id, data, layout, empty_message="No sensitivity measured yet.")


@dataclass
class SweepView:
    """Everything the sweep page shows."""

    job: Job
    counts: PointCounts
    rows: list[dict[str, Any]]
    error_chart: Chart
    gap_chart: Chart
    sensitivity_chart: Chart
    grid: dict[str, list[Any]] = field(default_factory=dict)
    columns: tuple[str, ...] = ROW_FIELDS
    confidence: float = CONFIDENCE

    @property
    def live(self) -> bool:
        """True while points are unfinished."""
        return self.counts.finished < self.counts.total


def build_sweep_view(session: Session, sweep: Job) -> SweepView:
    """The sweep page's contents from the sweep's point jobs."""
    rows = sweep_rows(session, sweep)
    pct = f"{CONFIDENCE:.0%}"
    return SweepView(
        job=sweep,
        counts=point_counts(session, sweep.id),
        rows=rows,
        error_chart=depth_chart(
            "sweep-error-chart",
            series(rows, "test_error"),
            title=f"Test error against depth (mean over seeds, {pct} interval, test set included)",
            y_title="test error (0-1)",
        ),
        gap_chart=depth_chart(
            "sweep-gap-chart",
            series(rows, "generalization_gap_risk"),
            title=f"Generalization gap against depth (mean, {pct} t-interval over seeds)",
            y_title="test risk − train risk (nats)",
        ),
        sensitivity_chart=sensitivity_chart(
            "sweep-sensitivity-chart", series(rows, "input_sensitivity")
        ),
        grid=dict((sweep.spec or {}).get("grid") or {}),
    )
