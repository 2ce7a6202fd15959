"""The `workers` table: which worker processes exist, when each was last seen, what it runs.

A worker whose row was not touched for a lease is dead (killed, host lost): it is not counted
as live, and the next worker pass deletes its row.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.enums import JobStatus
from app.db.models import Job, Worker, utcnow
from app.db.session import affected_rows, begin_write
from app.devices import parse_devices
from app.settings import Settings

log = logging.getLogger(__name__)


def register_worker(
    session_factory: sessionmaker[Session], worker_id: str, host: str, pid: int, devices: str
) -> None:
    """Insert or refresh this worker's row."""
    now = utcnow()
    with session_factory() as session:
        begin_write(session)
        worker = session.get(Worker, worker_id)
        if worker is None:
            session.add(
                Worker(
                    id=worker_id,
                    host=host,
                    pid=pid,
                    devices=devices,
                    started_at=now,
                    last_seen=now,
                )
            )
        else:
            worker.host, worker.pid, worker.devices = host, pid, devices
            worker.started_at = worker.last_seen = now
            worker.current_job_id = None
        session.commit()


def touch_worker(
    session_factory: sessionmaker[Session], worker_id: str, current_job_id: int | None
) -> None:
    """Record that the worker is alive and which job it runs."""
    with session_factory() as session:
        begin_write(session)
        session.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(last_seen=utcnow(), current_job_id=current_job_id)
            .execution_options(synchronize_session=False)
        )
        session.commit()


def unregister_worker(session_factory: sessionmaker[Session], worker_id: str) -> None:
    """Remove the worker's row (clean shutdown)."""
    with session_factory() as session:
        begin_write(session)
        session.execute(delete(Worker).where(Worker.id == worker_id))
        session.commit()


def stale_after(settings: Settings) -> dt.timedelta:
    """How long a worker may stay silent before it counts as dead: one lease, the same rule
    that hands its job to another worker. A live worker touches its row at every idle poll and
    every heartbeat, both far more often."""
    return dt.timedelta(seconds=settings.lease_seconds)


def prune_dead_workers(session_factory: sessionmaker[Session], silent_for: dt.timedelta) -> int:
    """Delete the rows of workers not seen for `silent_for` (killed, host lost); returns how
    many. Their jobs are settled by `app.queue.reclaim_expired`."""
    cutoff = utcnow() - silent_for
    with session_factory() as session:
        begin_write(session)
        removed = affected_rows(
            session.execute(
                delete(Worker)
                .where(Worker.last_seen < cutoff)
                .execution_options(synchronize_session=False)
            )
        )
        session.commit()
    if removed:
        log.info("removed %d dead worker(s) not seen since %s", removed, cutoff.isoformat())
    return removed


def count_live_workers(session: Session, silent_for: dt.timedelta) -> tuple[int, int]:
    """(live, dead) worker rows: live ones were seen within `silent_for`."""
    cutoff = utcnow() - silent_for
    live = session.scalar(
        select(func.count()).select_from(Worker).where(Worker.last_seen >= cutoff)
    )
    total = session.scalar(select(func.count()).select_from(Worker))
    return int(live or 0), int(total or 0) - int(live or 0)


def largest_live_offer(session: Session, silent_for: dt.timedelta) -> int | None:
    """The most devices any live worker offers (`--devices`); None when no worker is live.
    Workers touch their rows at every idle poll and heartbeat, so this follows a worker that
    starts or dies within one heartbeat."""
    cutoff = utcnow() - silent_for
    counts = []
    for devices in session.scalars(select(Worker.devices).where(Worker.last_seen >= cutoff)):
        try:
            counts.append(parse_devices(devices or "").count)
        except ValueError:  # written by another version: not counted
            continue
    return max(counts) if counts else None


def unrunnable_warning(job: Job, largest_offer: int | None) -> str | None:
    """Why no live worker can run a queued `job` (it needs more devices than any offers), or
    None. Without any live worker nothing is said: starting one is the operator's next step
    anyway, and `/status` counts them."""
    if job.status != JobStatus.QUEUED or largest_offer is None or job.devices <= largest_offer:
        return None
    return (
        f"no live worker can run this job: it needs {job.devices} devices and the most any "
        f"live worker offers is {largest_offer}"
    )


def job_warning(job: Job, largest_offer: int | None) -> str | None:
    """Everything the job's reader should be warned of: the note stored on the job (a result
    discarded after an outage) and whether any live worker can run it; None if nothing."""
    notes = [note for note in (job.warning, unrunnable_warning(job, largest_offer)) if note]
    return "; ".join(notes) or None
