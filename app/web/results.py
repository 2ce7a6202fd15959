"""Certificate-vs-realized points across all jobs, and how well the certificate ranks them.

A point is one insertion position of one succeeded expand job: its certificate (the mean over
seeds of the unbiased estimate `grad_norm_sq_unbiased`; the bound over seeds `seeds_lcb`, the
minimum of the per-seed lower bounds, never their mean; the position's verdict over seeds and
its family-wise verdict over the positions scanned) and its realized gain against the control
(mean over seeds, with its interval and the method that made it). The Spearman rank correlation
between certified and realized gain says how well the certificate ranks the stored data.
Older results lack some of these keys: their values are None (shown as "n/a").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Insertion, Job
from expansion.results.records import Verdict, seed_verdict, verdict_counts
from expansion.results.result_file import finite_or_none as _finite

NOT_AVAILABLE = "n/a"

VERDICTS: tuple[str, ...] = tuple(v.value for v in Verdict)


@dataclass(frozen=True)
class ResultFilters:
    """Filters of the results page; an empty value means 'any'."""

    data: str = ""
    model: str = ""
    verdict: str = ""
    """`holds`, `fails` or `undecided`: the position's family-wise verdict (Holm over the
    positions scanned); points without one (older results) never match a set verdict."""
    job: int | None = None

    def accepts(self, point: Mapping[str, Any]) -> bool:
        """True when the point passes every filter that is set."""
        if self.data and point["data"] != self.data:
            return False
        if self.model and point["model"] != self.model:
            return False
        if self.job is not None and point["job_id"] != self.job:
            return False
        if self.verdict in VERDICTS:
            return bool(point["family_verdict"] == self.verdict)
        return True


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho between certified and realized gain over n points (None when undefined)."""

    rho: float | None
    n: int


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman rank correlation (ties share their average rank), by scipy.

    None when it is undefined: fewer than 3 pairs, or one side has no variation.
    """
    if len(xs) != len(ys):
        raise ValueError(f"spearman needs pairs: got {len(xs)} x values and {len(ys)} y values")
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rho = float(stats.spearmanr(xs, ys).statistic)
    return None if math.isnan(rho) else rho


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


def _verdict_word(value: Any) -> str:
    """`holds`, `fails` or `undecided`; n/a for anything else (a missing key)."""
    return str(value) if value in VERDICTS else NOT_AVAILABLE


def points_from_positions(
    job_id: int, job_name: str, spec: Mapping[str, Any], positions: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Points of one job from its result's `positions` rows (or rows rebuilt from insertions)."""
    points = []
    for row in positions:
        ci = row.get("gain_ci") or [None, None]
        counts = row.get("verdict_counts")
        points.append(
            {
                "job_id": job_id,
                "job_name": job_name,
                "data": spec.get("data", {}).get("name", ""),
                "model": spec.get("model", {}).get("kind", ""),
                "position": int(row["position"]),
                "n_seeds": int(row.get("n_seeds") or 0),
                "certified_gain": _finite(row.get("certified_gain")),
                "seeds_lcb": _finite(row.get("seeds_lcb")),
                "verdict": _verdict_word(row.get("verdict")),
                "verdict_counts": counts if isinstance(counts, dict) else None,
                "family_verdict": _verdict_word(row.get("family_verdict")),
                "gain_mean": _finite(row.get("gain_mean")),
                "gain_std": _finite(row.get("gain_std")),
                "gain_ci": [_finite(ci[0]), _finite(ci[1])] if len(ci) == 2 else [None, None],
                "gain_ci_method": str(row.get("gain_ci_method") or NOT_AVAILABLE),
            }
        )
    return points


def _row_verdict(row: Insertion) -> Verdict | None:
    """The seed's verdict from the `verdict` column, else from an older `condition_holds`."""
    if row.verdict in VERDICTS:
        return Verdict(row.verdict)
    if row.condition_holds is not None:
        return Verdict.HOLDS if row.condition_holds else Verdict.FAILS
    return None


def positions_from_insertions(insertions: Sequence[Insertion]) -> list[dict[str, Any]]:
    """Per-position rows rebuilt from insertion rows, for results without `positions`.

    The verdict over seeds is the intersection-union one (holds iff every seed holds); the bound
    over seeds is the minimum of the per-seed bounds (None unless every seed has one). The
    family-wise verdict needs the scan's p-values and the paired interval the experiment's own
    statistics: both are left out (n/a).
    """
    by_position: dict[int, list[Insertion]] = {}
    for row in insertions:
        by_position.setdefault(row.position, []).append(row)
    rebuilt = []
    for position, rows in sorted(by_position.items()):
        verdicts = [_row_verdict(r) for r in rows]
        known = [v for v in verdicts if v is not None]
        bounds = [r.grad_norm_sq_lcb for r in rows]
        rebuilt.append(
            {
                "position": position,
                "n_seeds": len(rows),
                "certified_gain": _mean(r.grad_norm_sq_unbiased for r in rows),
                "seeds_lcb": min(b for b in bounds if b is not None)
                if bounds and all(b is not None for b in bounds)
                else None,
                "verdict": seed_verdict(known) if len(known) == len(rows) else None,
                "verdict_counts": verdict_counts(known) if len(known) == len(rows) else None,
                "gain_mean": _mean(r.gain_vs_control for r in rows),
                "gain_ci": None,
            }
        )
    return rebuilt


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
