"""A sweep's points: GET /jobs/{id}/sweep (JSON) and /jobs/{id}/sweep.csv (every point's row)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from app.api.deps import ReadAccess, SessionDep
from app.api.job_resource import get_job_or_404
from app.api.schemas import ErrorOut, JobId
from app.urls import job_path
from app.web.sweep_view import sweep_rows
from expansion.results.sweep_summary import CONFIDENCE, ROW_FIELDS, series, to_csv

router = APIRouter(prefix="/jobs", tags=["sweeps"])

SUMMARY_MEASURES = ("test_error", "test_risk", "generalization_gap_risk", "input_sensitivity")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid bearer token."},
    404: {"model": ErrorOut, "description": "No such sweep."},
}


def _sweep_or_404(session: SessionDep, job_id: int) -> Any:
    job = get_job_or_404(session, job_id)
    if job.kind != "sweep":
        raise HTTPException(
            status_code=404, detail=f"job {job_id} is a {job.kind} job, not a sweep"
        )
    return job


@router.get("/{job_id}/sweep", dependencies=[ReadAccess], responses=_ERRORS)
def get_sweep(session: SessionDep, job_id: JobId) -> dict[str, Any]:
    """The sweep's points (one row per point and arm) and the means over seeds per
    (arm, scaling, depth) with their intervals (`method` says whether the test set's noise is
    included), for the main measures."""
    job = _sweep_or_404(session, job_id)
    rows = sweep_rows(session, job)
    return {
        "id": job.id,
        "status": job.status,
        "grid": (job.spec or {}).get("grid"),
        "columns": list(ROW_FIELDS),
        "rows": rows,
        "confidence": CONFIDENCE,
        "means": {
            measure: [vars(point) for point in series(rows, measure)]
            for measure in SUMMARY_MEASURES
        },
        "csv": f"{job_path(job.id)}/sweep.csv",
    }


@router.get(
    "/{job_id}/sweep.csv",
    dependencies=[ReadAccess],
    responses={**_ERRORS, 200: {"content": {"text/csv": {}}, "description": "Every point."}},
)
def get_sweep_csv(session: SessionDep, job_id: JobId) -> Response:
    """Every point of the sweep as CSV, one row per point and arm (columns: ROW_FIELDS)."""
    job = _sweep_or_404(session, job_id)
    return Response(
        to_csv(sweep_rows(session, job)),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="sweep-{job.id}.csv"'},
    )
