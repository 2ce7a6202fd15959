"""Predictor calibration over the stored expand jobs (issue 11): records, tables, points.

Reads succeeded expand jobs' insertion rows (their `predictors` column, or the stored record's
`predictors` for rows written before the column existed) and hands them to the torch-free
`expansion.results.calibration`. Used by `GET /api/v1/calibration`, the results page, and the job
page's headline (`calibration_for_job`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Insertion, Job
from expansion.results.calibration import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    GROUP_KEYS,
    CalibrationRecord,
    CalibrationRow,
    calibration_rows,
    config_of,
)
from expansion.results.result_file import finite_or_none as _finite
from expansion.specs.predictor_names import DEFAULT_SELECTION_PREDICTOR, PREDICTOR_NAMES

CSV_COLUMNS: tuple[str, ...] = (
    "job_id",
    "job_name",
    "data",
    "model",
    "norm",
    "scaling",
    "depth",
    "position",
    "seed",
    "gain_vs_control",
    *PREDICTOR_NAMES,
)
"""Columns of the calibration CSV: one row per insertion (job, position, seed)."""


@dataclass(frozen=True)
class JobCalibration:
    """How well the job's selection predictor ranked the gain on stored jobs like it."""

    predictor: str
    n_jobs: int
    """Stored jobs of the same configuration with a usable within-job Spearman."""
    rho: float | None
    lo: float | None
    hi: float | None
    gain_reliability: float | None
    """Split-half reliability of the realized gains' ranking over seeds (Spearman-Brown)."""
    correlation_ceiling: float | None = None
    """About the largest Spearman that reliability allows (its square root)."""
    p_value: float | None = None
    """Exact permutation p-value of the mean within-job Spearman."""


def _job_rows(
    session: Session, job_ids: Sequence[int] | None = None
) -> list[tuple[Job, list[Any]]]:
    query = select(Job).where(Job.kind == "expand", Job.status == "succeeded").order_by(Job.id)
    if job_ids is not None:
        query = query.where(Job.id.in_(list(job_ids)))
    jobs = list(session.scalars(query))
    if not jobs:
        return []
    by_job: dict[int, list[Insertion]] = {j.id: [] for j in jobs}
    rows = session.scalars(select(Insertion).where(Insertion.job_id.in_(list(by_job))))
    for row in rows:
        by_job[row.job_id].append(row)
    return [(j, by_job[j.id]) for j in jobs]


def insertion_predictors(row: Insertion) -> dict[str, float | None]:
    """The row's predictors (column, else the stored record's mapping), None where missing."""
    raw = row.predictors or (row.record or {}).get("predictors") or {}
    return {name: _finite(raw.get(name)) for name in PREDICTOR_NAMES}


def collect_records(
    session: Session, job_ids: Sequence[int] | None = None
) -> list[CalibrationRecord]:
    """One calibration record per stored insertion of the succeeded expand jobs."""
    records = []
    for job, rows in _job_rows(session, job_ids):
        config = config_of(job.spec or {})
        for row in rows:
            records.append(
                CalibrationRecord(
                    job=str(job.id),
                    config=config,
                    position=row.position,
                    seed=row.seed,
                    gain=_finite(row.gain_vs_control),
                    predictors=insertion_predictors(row),
                )
            )
    return records


def calibration_table(
    session: Session,
    group_by: Sequence[str],
    resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
) -> list[CalibrationRow]:
    """A row per group and predictor (then per baseline) over every stored expand job."""
    return calibration_rows(
        collect_records(session), group_by, resamples=resamples, permutations=permutations
    )


def calibration_for_job(
    session: Session, job: Job, resamples: int = DEFAULT_RESAMPLES
) -> JobCalibration | None:
    """Calibration of `job`'s selection predictor (`expand.by`) on stored jobs of the same
    configuration (data set, model kind, norm, scaling, depth), the job itself included.

    None when the job is not an expand job. `rho` is None when no similar job has three
    positions with both the predictor and the gain measured.
    """
    if job.kind != "expand":
        return None
    spec = job.spec or {}
    predictor = str((spec.get("expand") or {}).get("by") or DEFAULT_SELECTION_PREDICTOR)
    config = config_of(spec)
    similar = [
        j.id
        for j in session.scalars(select(Job).where(Job.kind == "expand", Job.status == "succeeded"))
        if config_of(j.spec or {}) == config
    ]
    records = collect_records(session, similar) if similar else []
    rows = calibration_rows(
        records,
        GROUP_KEYS,
        predictors=[predictor],
        baselines=(),
        resamples=resamples,
        permutations=0,  # one predictor: its exact p-value needs no adjustment
    )
    if not rows:
        return JobCalibration(predictor, 0, None, None, None, None)
    row = rows[0]
    return JobCalibration(
        predictor=predictor,
        n_jobs=row.n_jobs,
        rho=row.spearman,
        lo=row.spearman_ci[0],
        hi=row.spearman_ci[1],
        gain_reliability=row.gain_reliability,
        correlation_ceiling=row.correlation_ceiling,
        p_value=row.p_value,
    )


def predictor_points(records: Sequence[CalibrationRecord]) -> list[dict[str, Any]]:
    """One point per (job, position): seed means of every predictor and of the realized gain."""
    grouped: dict[tuple[str, int], list[CalibrationRecord]] = {}
    for r in records:
        grouped.setdefault((r.job, r.position), []).append(r)
    points = []
    for (job, position), recs in sorted(grouped.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
        gains = [r.gain for r in recs if r.gain is not None]
        values: dict[str, float | None] = {}
        for name in PREDICTOR_NAMES:
            got = [v for r in recs if (v := r.predictors.get(name)) is not None]
            values[name] = sum(got) / len(got) if got else None
        points.append(
            {
                "job_id": int(job),
                "position": position,
                "n_seeds": len(recs),
                "config": dict(recs[0].config),
                "gain_mean": sum(gains) / len(gains) if gains else None,
                "predictors": values,
            }
        )
    return points


def csv_rows(session: Session) -> list[dict[str, Any]]:
    """Rows of the calibration CSV (CSV_COLUMNS), one per stored insertion."""
    out = []
    for job, rows in _job_rows(session):
        config = config_of(job.spec or {})
        for row in sorted(rows, key=lambda r: (r.position, r.seed)):
            out.append(
                {
                    "job_id": job.id,
                    "job_name": job.name,
                    "data": config["dataset"],
                    "model": config["model"],
                    "norm": config["norm"],
                    "scaling": config["scaling"],
                    "depth": config["depth"],
                    "position": row.position,
                    "seed": row.seed,
                    "gain_vs_control": row.gain_vs_control,
                    **insertion_predictors(row),
                }
            )
    return out


def group_label(group: Mapping[str, str]) -> str:
    """`dataset=digits, norm=layer`, or `all jobs` for the pooled group."""
    return ", ".join(f"{k}={v}" for k, v in group.items()) or "all jobs"
