"""Tables of a sweep's points: one row per (point, arm), and means with intervals over seeds.

Torch-free: the in-process sweep, the API route, the sweep page and the CSV all read this.
A point of a train sweep has one arm (`scratch`); a point of a grow sweep has `grown` (the
network grown by insertion), `scratch` (its final architecture trained from scratch) and
`start` (kept at the starting depth).

Every seed of a sweep is scored on the same test set, so the spread over seeds does not contain
the test set's own sampling noise. The intervals of `series` add it where it is known
(expansion.results.seed_means): the binomial variance of the test error on `test_examples`
examples, and the input sensitivity's own standard errors. Other measures (risks, gaps) get the
Student-t interval over seeds alone, and each point says which (`method`).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from scipy import stats

from expansion.results.seed_means import (
    binomial_variance,
    interval,
    seed_mean,
    shared_variance,
)

CONFIDENCE = 0.95
"""Confidence of the intervals of the means over seeds."""
LIMITS: dict[str, tuple[float, float]] = {
    "test_error": (0.0, 1.0),
    "input_sensitivity": (0.0, float("inf")),
}
"""Where a measure's values can lie: its intervals are cut there."""
SEEDS_ONLY = "t over seeds (test-set noise not included)"
WITH_TEST_SET = "seeds + test-set binomial variance"
WITH_ESTIMATION = "seeds + the estimate's own standard error"

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
    "test_examples",
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
    """Mean of a measure over the seeds of one (arm, scaling, depth), with its interval."""

    arm: str
    scaling: str
    depth: int
    n: int
    """Seeds with a value."""
    mean: float
    low: float | None
    """Lower end of the CONFIDENCE interval of the mean; None with a single seed."""
    high: float | None
    shared_variance: float = 0.0
    """Variance of the noise every seed shares (the test set's), included in the interval."""
    method: str = SEEDS_ONLY
    """What the interval includes."""


def t_interval(
    values: list[float], confidence: float = CONFIDENCE
) -> tuple[float | None, float | None]:
    """(low, high) of the Student-t interval of the mean over seeds (scipy); (None, None) for
    fewer than two values. It covers the seeds' spread only."""
    if len(values) < 2:
        return None, None
    if statistics.pstdev(values) == 0.0:
        mean = statistics.fmean(values)
        return mean, mean
    low, high = stats.t.interval(
        confidence, len(values) - 1, loc=statistics.fmean(values), scale=stats.sem(values)
    )
    return float(low), float(high)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def series(
    rows: list[dict[str, Any]], measure: str, *, test_examples: int | None = None
) -> list[SeriesPoint]:
    """Mean and interval of `measure` over seeds, per (arm, scaling, depth), sorted.

    `test_error` adds the binomial test-set variance (test set size from the rows'
    `test_examples`, else the `test_examples` given); `input_sensitivity` adds its standard
    errors; other measures are over seeds alone."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        value = row.get(measure)
        if row.get("status") != "succeeded" or value is None or row.get("depth") is None:
            continue
        groups[(row["arm"], str(row["scaling"]), int(row["depth"]))].append(row)
    out = []
    for (arm, scaling, depth), members in sorted(groups.items()):
        values = [float(r[measure]) for r in members]
        mean = statistics.fmean(values)
        shared, method = _shared(measure, mean, members, test_examples)
        limits = LIMITS.get(measure, (float("-inf"), float("inf")))
        bounds = interval(seed_mean(values, shared), CONFIDENCE, limits) if shared > 0 else None
        low, high = bounds if bounds is not None else t_interval(values)
        if shared == 0.0 and low is not None and high is not None:
            low, high = max(low, limits[0]), min(high, limits[1])
        out.append(SeriesPoint(arm, scaling, depth, len(values), mean, low, high, shared, method))
    return out


def _shared(
    measure: str, mean: float, members: list[dict[str, Any]], test_examples: int | None
) -> tuple[float, str]:
    """The shared (test-set) variance of a cell's seed-mean and the interval's method."""
    if measure == "test_error":
        sizes = [n for r in members if (n := _int_or_none(r.get("test_examples"))) is not None]
        n = min(sizes) if sizes else test_examples
        if n:
            return binomial_variance(mean, n), WITH_TEST_SET
    if measure == "input_sensitivity":
        errors = [
            float(r["input_sensitivity_se"]) for r in members if r.get("input_sensitivity_se")
        ]
        if len(errors) == len(members):
            return shared_variance(errors), WITH_ESTIMATION
    return 0.0, SEEDS_ONLY


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
        f"means over seeds with {CONFIDENCE:.0%} intervals (test error and sensitivity include the"
        f" test set's noise); {len(rows)} rows, {failed} failed"
    )
    return "\n".join(lines)
