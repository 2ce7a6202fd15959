"""The job resource as the API shows it: its links, the `JobOut` view of a row, lookup by id."""

from __future__ import annotations

from fastapi import HTTPException

from app.api.deps import SessionDep
from app.api.schemas import (
    JobLinks,
    JobOut,
)
from app.db.models import Job
from app.urls import job_path

_SUMMARY_KEYS = (
    "test_risk",
    "test_error",
    "val_risk",
    "val_error",
    "train_risk",
    "train_error",
    "parameters",
    "device",
)


def job_links(job_id: int) -> JobLinks:
    """Relative links to a job's resources and its web page."""
    base = job_path(job_id)
    return JobLinks(
        self=base,
        page=f"/jobs/{job_id}",
        events=f"{base}/events",
        metrics=f"{base}/metrics",
        insertions=f"{base}/insertions",
        artifacts=f"{base}/artifacts",
    )


def job_out(job: Job) -> JobOut:
    """The API view of a job row."""
    summary = None
    if job.result:
        summary = {k: job.result[k] for k in _SUMMARY_KEYS if k in job.result}
    return JobOut(
        id=job.id,
        status=job.status,
        kind=job.kind,
        name=job.name,
        priority=job.priority,
        progress=job.progress,
        stage=job.stage,
        message=job.message,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        spec=job.spec,
        summary=summary,
        parent_id=job.parent_id,
        links=job_links(job.id),
    )


def get_job_or_404(session: SessionDep, job_id: int) -> Job:
    """The job with `job_id`, or a 404 answer."""
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    return job
