"""A worker's lease on a job: the claim it holds, the guard on its writes, retries while it
holds, heartbeats, handing a job back, and reclaiming jobs whose lease ran out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    case,
    delete,
    insert,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from app.db.enums import JobStatus
from app.db.models import (
    Job,
    Metric,
    utcnow,
)
from app.db.retry import FIRST_DELAY_S, MAX_DELAY_S, call_with_retry
from app.db.retry import is_connection_error as is_connection_error  # re-exported
from app.db.session import affected_rows, begin_write
from expansion.results.result_file import finite_or_none

log = logging.getLogger(__name__)

T = TypeVar("T")


RETRY_FIRST_DELAY_S = FIRST_DELAY_S
"""First wait before an outcome write is retried after a connection error (then doubled)."""


RETRY_MAX_DELAY_S = MAX_DELAY_S
"""Longest wait between two tries of an outcome write."""


RECLAIM_EXHAUSTED_MESSAGE = "worker lost; attempts exhausted"
"""The message `reclaim_expired` leaves on a job it failed because its last lease ran out."""


MetricPoint = tuple[int, str, str, float]
"""(step, split, name, value) as reported by an experiment."""


class QueueError(Exception):
    """A queue operation cannot be done; the message says why."""


class JobNotFound(QueueError, LookupError):
    """No job has the given id."""


@dataclasses.dataclass
class ClaimedJob:
    """A job held under a lease by one worker; pass it to every later queue call."""

    job_id: int
    lease_token: str
    worker_id: str
    spec: dict[str, Any]
    attempt: int
    max_attempts: int
    lease_seconds: float
    lease_expires_at: dt.datetime
    cancel_requested: bool = False
    """Refreshed by each successful heartbeat."""


def retry_while_leased(claim: ClaimedJob, what: str, write: Callable[[bool], T]) -> T:
    """Run `write(retried)` under the worker's retry policy (`app.db.retry`) for as long as the
    claim's lease holds (after that another worker may own the job, so the connection error is
    raised). `retried` is True from the second try on: the first may have committed."""

    def lease_over() -> bool:
        over = utcnow() >= claim.lease_expires_at
        if over:
            log.error(
                "job %s: %s: the database is unreachable and the lease is over", claim.job_id, what
            )
        return over

    return call_with_retry(
        write,
        f"{what} (job {claim.job_id})",
        give_up=lease_over,
        first_delay_s=RETRY_FIRST_DELAY_S,
        max_delay_s=RETRY_MAX_DELAY_S,
    )


def _guard(claim: ClaimedJob) -> tuple[Any, ...]:
    return (
        Job.id == claim.job_id,
        Job.lease_token == claim.lease_token,
        Job.status == JobStatus.RUNNING,
    )


def _metric_rows(claim: ClaimedJob, metrics: Iterable[MetricPoint]) -> list[dict[str, Any]]:
    return [
        {
            "job_id": claim.job_id,
            "attempt": claim.attempt,
            "step": int(step),
            "split": str(split)[:16],
            "name": str(name)[:64],
            "value": finite_or_none(float(value)),
        }
        for step, split, name, value in metrics
    ]


def heartbeat(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    progress: float | None,
    stage: str | None,
    *,
    message: str | None = None,
    metrics: Sequence[MetricPoint] = (),
) -> bool:
    """Extend the lease, record progress and buffered metrics in one transaction; False (and
    nothing written) when the lease is lost. Refreshes `claim.cancel_requested`."""
    now = utcnow()
    expires = now + dt.timedelta(seconds=claim.lease_seconds)
    values: dict[str, Any] = {"lease_expires_at": expires, "heartbeat_at": now}
    if progress is not None and math.isfinite(progress):
        values["progress"] = min(max(float(progress), 0.0), 1.0)
    if stage is not None:
        values["stage"] = stage[:64]
    if message is not None:
        values["message"] = message
    with session_factory() as session:
        begin_write(session)
        row = session.execute(
            update(Job)
            .where(*_guard(claim))
            .values(**values)
            .returning(Job.cancel_requested)
            .execution_options(synchronize_session=False)
        ).first()
        if row is None:
            session.rollback()
            log.warning("job %s: lease lost (worker %s)", claim.job_id, claim.worker_id)
            return False
        rows = _metric_rows(claim, metrics)
        if rows:
            session.execute(insert(Metric), rows)
        session.commit()
    claim.cancel_requested = bool(row.cancel_requested)
    claim.lease_expires_at = expires
    return True


def release_job(session_factory: sessionmaker[Session], claim: ClaimedJob) -> bool:
    """Hand a running job back to the queue (worker shutting down); the attempt is not counted
    and its metric rows are dropped (the job will run again from the start). A job whose cancel
    was requested is cancelled instead of requeued. Retried on connection errors while the lease
    holds; False when the lease is lost."""
    cancelled = Job.cancel_requested.is_(True)

    def write(retried: bool) -> bool:
        with session_factory() as session:
            begin_write(session)
            updated = affected_rows(
                session.execute(
                    update(Job)
                    .where(*_guard(claim))
                    .values(
                        # One statement, so that a cancel racing the hand-back is never lost.
                        status=case((cancelled, JobStatus.CANCELLED), else_=JobStatus.QUEUED),
                        finished_at=case((cancelled, utcnow()), else_=None),
                        stage=case((cancelled, "cancelled"), else_="queued"),
                        message=case(
                            (cancelled, "cancelled while being handed back"),
                            else_=f"handed back by {claim.worker_id}",
                        ),
                        cancel_requested=False,
                        lease_owner=None,
                        lease_token=None,
                        lease_expires_at=None,
                        attempts=case((cancelled, Job.attempts), else_=Job.attempts - 1),
                    )
                    .execution_options(synchronize_session=False)
                )
            )
            if updated:
                session.execute(
                    delete(Metric)
                    .where(Metric.job_id == claim.job_id, Metric.attempt == claim.attempt)
                    .execution_options(synchronize_session=False)
                )
            session.commit()
        return bool(updated)

    return retry_while_leased(claim, "handing the job back", write)


def reclaim_expired(session_factory: sessionmaker[Session]) -> int:
    """Settle running jobs whose lease expired: cancel those whose cancel was requested, fail for
    good those at their attempt cap (keeping only the last attempt's metric rows), requeue the
    rest (dropping their metric rows: the job runs again). Returns how many jobs changed."""
    now = utcnow()
    expired = (Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
    cleared = {"lease_token": None, "lease_expires_at": None}
    opts = {"synchronize_session": False}
    with session_factory() as session:
        begin_write(session)
        n = affected_rows(
            session.execute(
                update(Job)
                .where(*expired, Job.cancel_requested.is_(True))
                .values(
                    status=JobStatus.CANCELLED,
                    finished_at=now,
                    cancel_requested=False,
                    stage="cancelled",
                    message="cancelled (its worker was lost)",
                    **cleared,
                )
                .execution_options(**opts)
            )
        )
        exhausted = session.execute(
            update(Job)
            .where(*expired, Job.attempts >= Job.max_attempts)
            .values(
                status=JobStatus.FAILED,
                finished_at=now,
                stage="failed",
                error="worker lost: lease expired on attempt "
                + Job.attempts.cast(Job.message.type)
                + " of "
                + Job.max_attempts.cast(Job.message.type)
                + "; giving up",
                message=RECLAIM_EXHAUSTED_MESSAGE,
                **cleared,
            )
            .returning(Job.id, Job.attempts)
            .execution_options(**opts)
        ).all()
        for job_id, attempts in exhausted:
            session.execute(
                delete(Metric)
                .where(Metric.job_id == job_id, Metric.attempt != attempts)
                .execution_options(**opts)
            )
        requeued = (
            session.execute(
                update(Job)
                .where(*expired)
                .values(
                    status=JobStatus.QUEUED,
                    lease_owner=None,
                    stage="queued",
                    message="requeued after its lease expired",
                    **cleared,
                )
                .returning(Job.id)
                .execution_options(**opts)
            )
            .scalars()
            .all()
        )
        if requeued:
            session.execute(
                delete(Metric).where(Metric.job_id.in_(requeued)).execution_options(**opts)
            )
        session.commit()
    n += len(exhausted) + len(requeued)
    if n:
        log.info("reclaimed %d job(s) with expired leases", n)
    return n
