"""The results page's calibration section: table per group and predictor, one scatter each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Job
from app.web.calibration import collect_records, group_label, predictor_points
from app.web.charts import predictor_scatter_chart
from app.web.results import ResultFilters
from expansion.results.calibration import GROUP_KEYS, calibration_rows, parse_group_by
from expansion.specs.predictor_names import PREDICTOR_DESCRIPTIONS, PREDICTOR_NAMES

PAGE_RESAMPLES = 200
"""Cluster bootstrap resamples on the page (the API takes `resamples` for finer intervals)."""
PAGE_PERMUTATIONS = 1000
"""Joint permutations of the page's max-T adjusted p-values."""
GROUP_CHOICES: tuple[str, ...] = ("all", *GROUP_KEYS, "configuration")


def results_calibration(session: Session, filters: ResultFilters, group_by: str) -> dict[str, Any]:
    """Template values: `calibration` rows (predictors, then the position-index baselines),
    `group_by` (+ choices and any problem), and `predictor_charts` (one scatter per predictor,
    a trace per job)."""
    problem = ""
    try:
        keys = parse_group_by(group_by)
    except ValueError as exc:
        problem, group_by, keys = str(exc), "dataset", ("dataset",)
    records = [
        r
        for r in collect_records(session, [filters.job] if filters.job is not None else None)
        if (not filters.data or r.config.get("dataset") == filters.data)
        and (not filters.model or r.config.get("model") == filters.model)
    ]
    rows = calibration_rows(records, keys, resamples=PAGE_RESAMPLES, permutations=PAGE_PERMUTATIONS)
    points = predictor_points(records)
    job_ids = sorted({p["job_id"] for p in points})
    names: dict[int, str] = {}
    if job_ids:
        query = select(Job.id, Job.name).where(Job.id.in_(job_ids))
        names = {job_id: name for job_id, name in session.execute(query)}
    labels = {j: f"job {j}" + (f" · {names[j]}" if names.get(j) else "") for j in job_ids}
    charts = [
        predictor_scatter_chart(
            f"predictor-{name}", name, PREDICTOR_DESCRIPTIONS.get(name, ""), points, labels
        )
        for name in PREDICTOR_NAMES
    ]
    return {
        "calibration": [{**row.as_dict(), "label": group_label(row.group)} for row in rows],
        "group_by": group_by,
        "group_choices": GROUP_CHOICES,
        "group_problem": problem,
        "predictor_charts": charts,
        "calibration_jobs": len(job_ids),
    }
