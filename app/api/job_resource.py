"""The job resource as the API shows it: the `JobOut` view of a row, lookup by id."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy.orm import Session

from app.api.deps import SessionDep
from app.api.schemas import JobOut
from app.db.models import Job
from app.settings import Settings
from app.worker.registry import job_warning, largest_live_offer, stale_after


def live_offer(session: Session, settings: Settings) -> int | None:
    """The most devices any live worker offers (None: no live worker), read once per answer."""
    return largest_live_offer(session, stale_after(settings))


def job_out(job: Job, largest_offer: int | None = None) -> JobOut:
    """The API view of a job row; `largest_offer` (`live_offer`) lets it warn of a queued job
    that no live worker can run."""
    out = JobOut.model_validate(job)
    out.warning = job_warning(job, largest_offer)
    return out


def get_job_or_404(session: SessionDep, job_id: int) -> Job:
    """The job with `job_id`, or a 404 answer."""
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    return job
