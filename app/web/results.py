"""Certificate-vs-realized points across all jobs, and how well the certificate ranks them.

A point is one insertion position of one succeeded expand job: its certificate in nats (the
seeds' jumpboard models' risk decrease on the certificate split, with its interval, its
verdict against `expand.min_effect` and its family-wise verdict over the positions scanned),
the |E g|^2 test beside it (shown at how many seeds; U's seed mean) and its realized gain
against the control (mean over seeds, with its interval and the method that made it). The
Spearman rank correlation between the certificate's risk decrease and the realized gain says
how well the certificate ranks the stored data. Older results are read under today's names;
what they lack (the certificate in nats) is None, shown as "n/a".
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
from expansion.results.older_results import current_section
from expansion.results.records import TestOutcome, every_seed_shows, outcome_counts
from expansion.results.result_file import finite_or_none as _finite

NOT_AVAILABLE = "n/a"

VERDICTS: tuple[str, ...] = ("holds", "fails", "undecided")
OUTCOMES: tuple[str, ...] = tuple(o.value for o in TestOutcome)


@dataclass(frozen=True)
class ResultFilters:
    """Filters of the results page; an empty value means 'any'."""

    data: str = ""
    model: str = ""
    verdict: str = ""
    """`holds`, `fails` or `undecided`: the certificate's family-wise verdict (Holm over the
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
    """Spearman's rho between the certificate's risk decrease and the realized gain over n
    points (None when undefined)."""

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
    """Spearman's rho of the certificate's risk decrease against the realized gain over points
    that have both."""
    pairs = [
        (p["certificate_risk_decrease"], p["gain_mean"])
        for p in points
        if p.get("certificate_risk_decrease") is not None and p.get("gain_mean") is not None
    ]
    rho = spearman([x for x, _ in pairs], [y for _, y in pairs])
    return RankCorrelation(rho=rho, n=len(pairs))


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _word(value: Any, allowed: Sequence[str]) -> str:
    """`value` when it is one of `allowed`; n/a for anything else (a missing key)."""
    return str(value) if value in allowed else NOT_AVAILABLE


def points_from_positions(
    job_id: int, job_name: str, spec: Mapping[str, Any], positions: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Points of one job from its result's `positions` rows (or rows rebuilt from insertions)."""
    points = []
    for stored in positions:
        row = current_section(stored)
        ci = row.get("gain_ci") or [None, None]
        cert = row.get("certificate") or {}
        cert_ci = cert.get("risk_decrease_ci") or [None, None]
        counts = row.get("nonzero_gradient_counts")
        points.append(
            {
                "job_id": job_id,
                "job_name": job_name,
                "data": spec.get("data", {}).get("name", ""),
                "model": spec.get("model", {}).get("kind", ""),
                "position": int(row["position"]),
                "n_seeds": int(row.get("n_seeds") or 0),
                "certificate_risk_decrease": _finite(cert.get("risk_decrease")),
                "certificate_ci": [_finite(cert_ci[0]), _finite(cert_ci[1])]
                if len(cert_ci) == 2
                else [None, None],
                "verdict": _word(cert.get("verdict"), VERDICTS),
                "family_verdict": _word(cert.get("family_verdict"), VERDICTS),
                "nonzero_gradient": _word(row.get("nonzero_gradient"), OUTCOMES),
                "nonzero_gradient_counts": counts if isinstance(counts, dict) else None,
                "grad_norm_sq_unbiased": _finite(row.get("grad_norm_sq_unbiased")),
                "gain_mean": _finite(row.get("gain_mean")),
                "gain_std": _finite(row.get("gain_std")),
                "gain_ci": [_finite(ci[0]), _finite(ci[1])] if len(ci) == 2 else [None, None],
                "gain_ci_method": str(row.get("gain_ci_method") or NOT_AVAILABLE),
            }
        )
    return points


def positions_from_insertions(insertions: Sequence[Insertion]) -> list[dict[str, Any]]:
    """Per-position rows rebuilt from insertion rows, for results without `positions`.

    The certificate's estimate over seeds is the mean of the seeds' risk decreases (the same
    certificate examples for every seed); its interval and verdicts need the per-example
    differences, which only the experiment had: left out (n/a). The |E g|^2 test over seeds is
    the intersection-union one (shown iff every seed shows it). The realized-gain interval
    needs the per-example test losses: left out as well.
    """
    by_position: dict[int, list[Insertion]] = {}
    for row in insertions:
        by_position.setdefault(row.position, []).append(row)
    rebuilt = []
    for position, rows in sorted(by_position.items()):
        outcomes = [TestOutcome(r.nonzero_gradient) for r in rows if r.nonzero_gradient in OUTCOMES]
        decreases = [r.certificate_risk_decrease for r in rows]
        complete = len(outcomes) == len(rows)
        rebuilt.append(
            {
                "position": position,
                "n_seeds": len(rows),
                "certificate": {
                    "risk_decrease": _mean(decreases)
                    if all(d is not None for d in decreases)
                    else None,
                },
                "grad_norm_sq_unbiased": _mean(r.grad_norm_sq_unbiased for r in rows),
                "nonzero_gradient": every_seed_shows(outcomes) if complete else None,
                "nonzero_gradient_counts": outcome_counts(outcomes) if complete else None,
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
