"""Tables of a sweep's points: one row per (point, arm), and means with intervals over seeds.

Torch-free: the in-process sweep, the API route, the sweep page and the CSV all read this.
A point of a train sweep has one arm (`scratch`); a point of a grow sweep has `grown` (the
network grown by insertion), `scratch` (its final architecture trained from scratch) and
`start` (kept at the starting depth).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

CONFIDENCE = 0.95
"""Confidence of the t-intervals of the means over seeds."""

ROW_FIELDS = (
    "job_id",
    "sweep_index",
    "status",
    "arm",
    "scaling",
    "depth",
    "seed",
    "width",
    "train_risk",
    "train_error",
    "val_risk",
    "val_error",
    "test_risk",
    "test_error",
    "generalization_gap_risk",
    "generalization_gap_error",
    "input_sensitivity",
    "input_sensitivity_se",
    "input_sensitivity_projections",
    "input_sensitivity_samples",
    "branch_norm_sum",
    "alpha_sum",
    "weight_frobenius_sq",
    "final_alpha_mean",
    "coordinates",
    "error",
)
"""Columns of the sweep's CSV, in order."""


class Arm(StrEnum):
    """Which network of a grid point a row describes."""

    SCRATCH = "scratch"
    GROWN = "grown"
    START = "start"


def _gaps(values: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in ("risk", "error"):
        test, train = values.get(f"test_{name}"), values.get(f"train_{name}")
        out[f"generalization_gap_{name}"] = None if test is None or train is None else test - train
    return out


def point_rows(point: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one point (a sweep_point result, or a failed/pending point stub)."""
    spec = point.get("spec") or {}
    base = {
        "job_id": point.get("job_id"),
        "sweep_index": point.get("sweep_index"),
        "status": point.get("status", "succeeded"),
        "scaling": (spec.get("model") or {}).get("scaling"),
        "seed": (spec.get("train") or {}).get("seed"),
        "width": (spec.get("model") or {}).get("width"),
        "coordinates": point.get("coordinates") or spec.get("coordinates") or {},
        "error": point.get("error"),
    }
    arms = point.get("arms") or []
    if not arms:
        depth = (spec.get("model") or {}).get("depth")
        return [{**base, "arm": Arm.SCRATCH.value, "depth": depth}]
    rows = []
    for arm in arms:
        row = {**base, **{k: arm.get(k) for k in ROW_FIELDS if k in arm}}
        row.update(_gaps(arm))
        sensitivity = arm.get("input_sensitivity") or {}
        row["input_sensitivity"] = sensitivity.get("estimate")
        row["input_sensitivity_se"] = sensitivity.get("standard_error")
        row["input_sensitivity_projections"] = sensitivity.get("projections")
        row["input_sensitivity_samples"] = sensitivity.get("samples")
        row.update(arm.get("capacity") or {})
        rows.append(row)
    return rows


def table(points: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row of every point, with every ROW_FIELDS key present."""
    rows = []
    for point in points:
        for row in point_rows(point):
            rows.append({k: row.get(k) for k in ROW_FIELDS})
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text (coordinates as `path=value;...`, paths sorted)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ROW_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = dict(row)
        # Sorted: JSONB (PostgreSQL) does not keep the keys' order.
        coordinates = sorted((row["coordinates"] or {}).items())
        out["coordinates"] = ";".join(f"{k}={v}" for k, v in coordinates)
        writer.writerow({k: "" if v is None else v for k, v in out.items()})
    return buffer.getvalue()


@dataclass(frozen=True)
class SeriesPoint:
    """Mean of a measure over the seeds of one (arm, scaling, depth), with a t-interval."""

    arm: str
    scaling: str
    depth: int
    n: int
    """Seeds with a value."""
    mean: float
    low: float | None
    """Lower end of the CONFIDENCE t-interval of the mean; None with a single seed."""
    high: float | None


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float | None, ...]:
    """(low, high) of the t-interval of the mean; (None, None) for fewer than two values."""
    if len(values) < 2:
        return None, None
    from scipy import stats

    mean = statistics.fmean(values)
    quantile = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1))
    half = quantile * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def series(rows: list[dict[str, Any]], measure: str) -> list[SeriesPoint]:
    """Mean and interval of `measure` over seeds, per (arm, scaling, depth), sorted."""
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for row in rows:
        value = row.get(measure)
        if row.get("status") != "succeeded" or value is None or row.get("depth") is None:
            continue
        groups[(row["arm"], str(row["scaling"]), int(row["depth"]))].append(float(value))
    out = []
    for (arm, scaling, depth), values in sorted(groups.items()):
        low, high = t_interval(values)
        out.append(
            SeriesPoint(arm, scaling, depth, len(values), statistics.fmean(values), low, high)
        )
    return out


def separated(a: SeriesPoint, b: SeriesPoint) -> bool | None:
    """True when the two intervals do not overlap; None when either has no interval."""
    if a.low is None or a.high is None or b.low is None or b.high is None:
        return None
    return bool(a.high < b.low or b.high < a.low)


def text_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of test error, gap and sensitivity per (arm, scaling, depth)."""
    errors = {(p.arm, p.scaling, p.depth): p for p in series(rows, "test_error")}
    gaps = {(p.arm, p.scaling, p.depth): p for p in series(rows, "generalization_gap_risk")}
    sens = {(p.arm, p.scaling, p.depth): p for p in series(rows, "input_sensitivity")}

    def cell(point: SeriesPoint | None) -> str:
        if point is None:
            return "n/a"
        if point.low is None or point.high is None:
            return f"{point.mean:.4g} (n={point.n})"
        return f"{point.mean:.4g} [{point.low:.3g}, {point.high:.3g}]"

    lines = [
        f"{'arm':<8}{'scaling':<16}{'depth':>6}  {'test error':<28}{'gap (risk)':<28}sensitivity",
    ]
    for key, point in errors.items():
        arm, scaling, depth = key
        lines.append(
            f"{arm:<8}{scaling:<16}{depth:>6}  {cell(point):<28}{cell(gaps.get(key)):<28}"
            f"{cell(sens.get(key))}"
        )
    failed = sum(1 for r in rows if r.get("status") == "failed")
    lines.append(
        f"means over seeds with {CONFIDENCE:.0%} t-intervals; {len(rows)} rows, {failed} failed"
    )
    return "\n".join(lines)
