"""The job resource as the API shows it: the `JobOut` view of a row, lookup by id."""

from __future__ import annotations

from fastapi import HTTPException

from app.api.deps import SessionDep
from app.api.schemas import JobOut
from app.db.models import Job


def job_out(job: Job) -> JobOut:
    """The API view of a job row."""
    return JobOut.model_validate(job)


def get_job_or_404(session: SessionDep, job_id: int) -> Job:
    """The job with `job_id`, or a 404 answer."""
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    return job
