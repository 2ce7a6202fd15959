"""Sweep jobs: a parent job whose grid points are queued jobs of their own (issue 12).

`enqueue_sweep` stores the sweep and one `sweep_point` job per grid point (`parent_id` set) in
one transaction. The sweep itself never trains and is never claimed: it is stored `running`
(no lease, so nothing reclaims it) while any point is unfinished, and `refresh_sweep` derives
its final status from its points: `cancelled` when the sweep was cancelled, `succeeded` when at
least one point succeeded (failed points fail only themselves and are counted in the message),
`failed` when none did. Cancelling the sweep cancels its queued points and asks its running
points to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job, utcnow
from app.db.session import begin_write
from app.devices import devices_needed
from expansion.specs.experiments import SweepExperiment
from expansion.specs.grid import expand_sweep

log = logging.getLogger(__name__)

SWEEP_KIND = "sweep"
POINT_KIND = "sweep_point"


@dataclass(frozen=True)
class PointCounts:
    """How many of a sweep's points are in each status."""

    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        """All points."""
        return self.queued + self.running + self.succeeded + self.failed + self.cancelled

    @property
    def finished(self) -> int:
        """Points in a final status."""
        return self.succeeded + self.failed + self.cancelled

    def describe(self) -> str:
        """One line for the sweep's message."""
        return (
            f"{self.finished} of {self.total} points finished: {self.succeeded} succeeded, "
            f"{self.failed} failed, {self.cancelled} cancelled; {self.running} running, "
            f"{self.queued} queued"
        )


def enqueue_sweep(
    session: Session, sweep: SweepExperiment, *, priority: int, max_attempts: int
) -> Job:
    """Store the sweep job and one queued point job per grid point in one transaction."""
    points = expand_sweep(sweep)
    now = utcnow()
    if session.in_transaction():
        session.commit()
    parent = Job(
        name=sweep.name,
        kind=SWEEP_KIND,
        spec=sweep.model_dump(mode="json"),
        status="running",
        priority=priority,
        attempts=0,
        max_attempts=max_attempts,
        progress=0.0,
        stage="sweep",
        message=PointCounts(queued=len(points)).describe(),
        cancel_requested=False,
        created_at=now,
        started_at=now,
    )
    session.add(parent)
    session.flush()
    session.add_all(
        Job(
            name=point.name,
            kind=POINT_KIND,
            spec=point.model_dump(mode="json"),
            status="queued",
            priority=priority,
            attempts=0,
            max_attempts=max_attempts,
            progress=0.0,
            stage="queued",
            message="",
            cancel_requested=False,
            created_at=now,
            parent_id=parent.id,
            devices=devices_needed(point),
        )
        for point in points
    )
    session.commit()
    log.info("sweep %s queued with %d points", parent.id, len(points))
    return parent


def point_counts(session: Session, sweep_id: int) -> PointCounts:
    """How many of the sweep's points are in each status."""
    rows = session.execute(
        select(Job.status, func.count()).where(Job.parent_id == sweep_id).group_by(Job.status)
    ).all()
    return PointCounts(**{status: n for status, n in rows})


def sweep_points(session: Session, sweep_id: int) -> Sequence[Job]:
    """The sweep's point jobs in grid order."""
    return session.scalars(select(Job).where(Job.parent_id == sweep_id).order_by(Job.id)).all()


def derived_status(counts: PointCounts, cancel_requested: bool) -> str:
    """The sweep's status given its points' (see the module docstring)."""
    if counts.finished < counts.total:
        return "running"
    if cancel_requested:
        return "cancelled"
    if counts.succeeded:
        return "succeeded"
    if counts.cancelled == counts.total:
        return "cancelled"
    return "failed"


def refresh_sweep(session: Session, sweep_id: int) -> None:
    """Derive the unfinished sweep's status, progress and message from its points; commit."""
    if session.in_transaction():
        session.commit()
    begin_write(session)
    sweep = session.get(Job, sweep_id, populate_existing=True)
    if sweep is None or sweep.kind != SWEEP_KIND or sweep.is_finished:
        session.rollback()
        return
    counts = point_counts(session, sweep_id)
    status = derived_status(counts, sweep.cancel_requested)
    values: dict[str, Any] = {
        "status": status,
        "progress": counts.finished / counts.total if counts.total else 1.0,
        "message": counts.describe(),
    }
    if status != "running":
        values.update(
            finished_at=utcnow(),
            stage=status,
            cancel_requested=False,
            result={
                "kind": SWEEP_KIND,
                "points": counts.total,
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "cancelled": counts.cancelled,
            },
            error="every point failed" if status == "failed" else None,
        )
    session.execute(
        update(Job)
        .where(Job.id == sweep_id, Job.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def refresh_parent_of(factory: sessionmaker[Session], job_id: int) -> None:
    """After a job ended: refresh its sweep, when it is a sweep's point."""
    with factory() as session:
        parent_id = session.scalar(select(Job.parent_id).where(Job.id == job_id))
        if parent_id is not None:
            refresh_sweep(session, parent_id)


def refresh_open_sweeps(factory: sessionmaker[Session]) -> int:
    """Refresh every unfinished sweep (points can end without their worker: lease expiry)."""
    with factory() as session:
        ids = session.scalars(
            select(Job.id).where(Job.kind == SWEEP_KIND, Job.status == "running")
        ).all()
        for sweep_id in ids:
            refresh_sweep(session, sweep_id)
    return len(ids)


def cancel_sweep_points(session: Session, sweep: Job) -> Job:
    """Cancel the sweep's queued points and ask its running points to stop; then refresh the
    sweep (cancelled at once when no point was running). Returns the refreshed sweep."""
    if session.in_transaction():
        session.commit()
    begin_write(session)
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.parent_id == sweep.id, Job.status == "queued")
        .values(
            status="cancelled",
            finished_at=now,
            stage="cancelled",
            message="cancelled with its sweep before it started",
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Job)
        .where(Job.parent_id == sweep.id, Job.status == "running")
        .values(cancel_requested=True, message="cancel requested (its sweep was cancelled)")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    refresh_sweep(session, sweep.id)
    refreshed = session.get(Job, sweep.id, populate_existing=True)
    assert refreshed is not None
    return refreshed
