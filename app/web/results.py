"""Certificate-vs-realized points across all jobs, and how well the certificate ranks them.

A point is one insertion position of one succeeded expand job: its certified first-order gain
(mean over seeds of `grad_norm_sq_unbiased`, with the LCB) and its realized gain against the
control (mean over seeds, with the paired confidence interval). The Spearman rank correlation
between the two says how well the certificate predicts the realized gain on the stored data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Insertion, Job
from expansion.result_file import finite_or_none as _finite


@dataclass(frozen=True)
class ResultFilters:
    """Filters of the results page; an empty value means 'any'."""

    data: str = ""
    model: str = ""
    holds: str = ""
    """`yes`: the certificate holds (LCB > 0); `no`: it does not."""
    job: int | None = None

    def accepts(self, point: Mapping[str, Any]) -> bool:
        """True when the point passes every filter that is set."""
        if self.data and point["data"] != self.data:
            return False
        if self.model and point["model"] != self.model:
            return False
        if self.job is not None and point["job_id"] != self.job:
            return False
        if self.holds in ("yes", "no"):
            return point["condition_holds"] is (self.holds == "yes")
        return True


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho between certified and realized gain over n points (None when undefined)."""

    rho: float | None
    n: int


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks starting at 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        average = (start + end) / 2 + 1
        for k in range(start, end + 1):
            ranks[order[k]] = average
        start = end + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman rank correlation (Pearson correlation of tie-averaged ranks).

    None when it is undefined: fewer than 3 pairs, or one side has no variation.
    """
    if len(xs) != len(ys):
        raise ValueError(f"spearman needs pairs: got {len(xs)} x values and {len(ys)} y values")
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mean_x, mean_y = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mean_x) * (b - mean_y) for a, b in zip(rx, ry, strict=True))
    var_x = sum((a - mean_x) ** 2 for a in rx)
    var_y = sum((b - mean_y) ** 2 for b in ry)
    if var_x == 0 or var_y == 0:
        return None
    return cov / math.sqrt(var_x * var_y)


def rank_correlation(points: Sequence[Mapping[str, Any]]) -> RankCorrelation:
    """Spearman's rho of certified gain against realized gain over points that have both."""
    pairs = [
        (p["certified_gain"], p["gain_mean"])
        for p in points
        if p.get("certified_gain") is not None and p.get("gain_mean") is not None
    ]
    rho = spearman([x for x, _ in pairs], [y for _, y in pairs])
    return RankCorrelation(rho=rho, n=len(pairs))


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def points_from_positions(
    job_id: int, job_name: str, spec: Mapping[str, Any], positions: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Points of one job from its result's `positions` summaries."""
    points = []
    for row in positions:
        certified = _finite(row.get("certified_gain"))
        lcb = _finite(row.get("certified_gain_lcb"))
        ci = row.get("gain_ci") or [None, None]
        points.append(
            {
                "job_id": job_id,
                "job_name": job_name,
                "data": spec.get("data", {}).get("name", ""),
                "model": spec.get("model", {}).get("kind", ""),
                "position": int(row["position"]),
                "n_seeds": int(row.get("n_seeds") or 0),
                "certified_gain": certified,
                "certified_gain_lcb": lcb,
                "condition_holds": None if lcb is None else lcb > 0,
                "gain_mean": _finite(row.get("gain_mean")),
                "gain_std": _finite(row.get("gain_std")),
                "gain_ci": [_finite(ci[0]), _finite(ci[1])] if len(ci) == 2 else [None, None],
            }
        )
    return points


def positions_from_insertions(insertions: Sequence[Insertion]) -> list[dict[str, Any]]:
    """Per-position summaries built from insertion rows, for results without `positions`.

    Means only: the paired interval needs the experiment's own statistics, so it is left out.
    """
    by_position: dict[int, list[Insertion]] = {}
    for row in insertions:
        by_position.setdefault(row.position, []).append(row)
    return [
        {
            "position": position,
            "n_seeds": len(rows),
            "certified_gain": _mean(r.grad_norm_sq_unbiased for r in rows),
            "certified_gain_lcb": _mean(r.grad_norm_sq_lcb for r in rows),
            "gain_mean": _mean(r.gain_vs_control for r in rows),
            "gain_ci": None,
        }
        for position, rows in sorted(by_position.items())
    ]


def collect_points(session: Session, filters: ResultFilters | None = None) -> list[dict[str, Any]]:
    """Every (job, position) point of the succeeded expand jobs that pass `filters`."""
    filters = filters or ResultFilters()
    query = (
        select(Job.id, Job.name, Job.spec, Job.result["positions"])
        .where(Job.kind == "expand", Job.status == "succeeded")
        .order_by(Job.id)
    )
    if filters.job is not None:
        query = query.where(Job.id == filters.job)
    points: list[dict[str, Any]] = []
    for row in session.execute(query):
        job_id, name, spec, positions = row[0], row[1], row[2], row[3]
        if not positions:
            rows = session.scalars(select(Insertion).where(Insertion.job_id == job_id)).all()
            positions = positions_from_insertions(rows)
        points.extend(points_from_positions(job_id, name, spec or {}, positions))
    return [p for p in points if filters.accepts(p)]
