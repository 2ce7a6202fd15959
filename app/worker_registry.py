"""The `workers` table: which worker processes exist, when each was last seen, what it runs."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Worker, utcnow
from app.db.session import begin_write


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
