"""Reading a job's row and waiting until it reaches a state, for tests that run a worker."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.db.models import Job
from app.db.session import session_factory


def read_job(url: str, job_id: int) -> Job:
    """The job's row as it is now (detached)."""
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def wait_for_job(
    url: str, job_id: int, predicate: Callable[[Job], bool], limit_s: float, poll_s: float = 0.05
) -> Job:
    """The job's row once `predicate` holds for it; AssertionError after `limit_s` seconds."""
    deadline = time.monotonic() + limit_s
    job = read_job(url, job_id)
    while not predicate(job):
        if time.monotonic() >= deadline:
            raise AssertionError(f"job {job_id} never reached the expected state: {job.status}")
        time.sleep(poll_s)
        job = read_job(url, job_id)
    return job
