"""Jobs into the queue (a sweep as a parent and its points) and cancellation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    update,
)
from sqlalchemy.orm import Session

from app.db.enums import JobStatus
from app.db.models import (
    Job,
    utcnow,
)
from app.db.session import affected_rows, begin_write
from app.devices import devices_needed
from app.queue.lease import JobNotFound, QueueError
from app.queue.sweeps import cancel_sweep_points, enqueue_sweep
from expansion.specs.experiments import AnyExperiment, SweepExperiment
from expansion.specs.parsing import parse_spec


def enqueue_job(
    session: Session,
    spec: AnyExperiment | dict[str, Any],
    *,
    priority: int = 0,
    max_attempts: int | None = None,
) -> Job:
    """Store `spec` as a queued job (a sweep: its parent and one job per point) and commit.

    The service passes the experiment it parsed where the spec came in (`app.services`); a raw
    mapping (tests, scripts) is parsed here, raising `SpecError` on a bad spec."""
    parsed = spec if isinstance(spec, BaseModel) else parse_spec(spec)
    if max_attempts is None:
        from app.settings import get_settings

        max_attempts = get_settings().max_attempts
    if max_attempts < 1:
        raise QueueError(f"max_attempts must be at least 1 (got {max_attempts})")
    if isinstance(parsed, SweepExperiment):  # a parent job plus one queued job per grid point
        return enqueue_sweep(session, parsed, priority=priority, max_attempts=max_attempts)
    job = Job(
        name=parsed.name,
        kind=parsed.kind,
        spec=parsed.model_dump(mode="json"),
        status=JobStatus.QUEUED,
        priority=priority,
        attempts=0,
        max_attempts=max_attempts,
        progress=0.0,
        stage="queued",
        message="",
        cancel_requested=False,
        created_at=utcnow(),
        devices=devices_needed(parsed),
    )
    session.add(job)
    session.commit()
    return job


def cancel_job(session: Session, job_id: int) -> Job:
    """Cancel a job and commit: a queued job becomes `cancelled` and never starts; a running one
    gets `cancel_requested` (its worker stops it); a finished job is returned unchanged."""
    now = utcnow()
    if session.in_transaction():
        # End the caller's (read) transaction so this one starts as a writer: on SQLite a
        # read transaction that later writes can fail at once instead of waiting for the lock.
        session.commit()
    begin_write(session)
    cancelled = affected_rows(
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.CANCELLED,
                finished_at=now,
                stage="cancelled",
                message="cancelled before it started",
            )
            .execution_options(synchronize_session=False)
        )
    )
    if not cancelled:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(cancel_requested=True, message="cancel requested")
            .execution_options(synchronize_session=False)
        )
    session.commit()
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    if job.kind == "sweep" and not job.is_finished:  # cancelling a sweep cancels its points
        job = cancel_sweep_points(session, job)
    return job
