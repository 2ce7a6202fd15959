"""A result kept through a database outage longer than the lease (issue 25): stored if no other
attempt of the job started since, whatever reclaiming did meanwhile; discarded, and said so on
the job, once another attempt runs. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from result_fixtures import KEPT_TRAIN_RESULT, KEPT_TRAIN_SPEC
from sqlalchemy import select, update

from app import queue
from app.db.enums import JobStatus
from app.db.models import Artifact, Job, Metric
from app.db.session import session_factory

SPEC = KEPT_TRAIN_SPEC
RESULT = KEPT_TRAIN_RESULT


def _claimed_job(url: str, *, max_attempts: int = 3) -> queue.ClaimedJob:
    sessions = session_factory(url)
    with sessions() as session:
        queue.enqueue_job(session, dict(SPEC), max_attempts=max_attempts)
    claim = queue.claim_next_job(sessions, "worker-a", lease_seconds=30)
    assert claim is not None
    return claim


def _expire_and_reclaim(url: str, job_id: int) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    sessions = session_factory(url)
    with sessions() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
        session.commit()
    assert queue.reclaim_expired(sessions) == 1


def _job(url: str, job_id: int) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _job_dir(tmp_path: Path) -> Path:
    job_dir = tmp_path / "job"
    job_dir.mkdir(parents=True)
    (job_dir / "base.ckpt").write_bytes(b"weights")
    return job_dir


def _store(url: str, claim: queue.ClaimedJob, job_dir: Path) -> queue.PendingResultOutcome:
    return queue.store_pending_result(
        session_factory(url), claim, RESULT, job_dir=job_dir, metrics=[(1, "train", "loss", 1.0)]
    )


def _assert_stored_once(url: str, job_id: int) -> None:
    job = _job(url, job_id)
    assert (job.status, job.attempts, job.warning) == (JobStatus.SUCCEEDED, 1, None)
    assert job.result is not None and job.result["test_risk"] == 0.25
    assert job.lease_expires_at is None
    with session_factory(url)() as session:
        assert session.scalars(select(Artifact.name)).all() == ["base.ckpt"]
        points = session.execute(select(Metric.attempt, Metric.step, Metric.name)).all()
    assert sorted(tuple(p) for p in points) == [(1, 1, "loss"), (1, 2, "loss")]


def test_result_stored_while_the_lease_still_names_the_attempt(db_url: str, tmp_path: Path) -> None:
    claim = _claimed_job(db_url)
    outcome = _store(db_url, claim, _job_dir(tmp_path))
    assert outcome is queue.PendingResultOutcome.STORED
    _assert_stored_once(db_url, claim.job_id)
    # A retry whose first try committed before its connection dropped changes nothing.
    assert _store(db_url, claim, _job_dir(tmp_path / "again")) is queue.PendingResultOutcome.STORED
    _assert_stored_once(db_url, claim.job_id)


def test_result_stored_after_the_job_was_requeued_but_not_claimed_again(
    db_url: str, tmp_path: Path
) -> None:
    claim = _claimed_job(db_url)
    _expire_and_reclaim(db_url, claim.job_id)
    assert _job(db_url, claim.job_id).status == JobStatus.QUEUED
    assert _store(db_url, claim, _job_dir(tmp_path)) is queue.PendingResultOutcome.STORED
    _assert_stored_once(db_url, claim.job_id)


def test_result_stored_after_the_last_attempt_was_failed_by_reclaiming(
    db_url: str, tmp_path: Path
) -> None:
    claim = _claimed_job(db_url, max_attempts=1)
    _expire_and_reclaim(db_url, claim.job_id)
    assert _job(db_url, claim.job_id).status == JobStatus.FAILED
    assert _store(db_url, claim, _job_dir(tmp_path)) is queue.PendingResultOutcome.STORED
    _assert_stored_once(db_url, claim.job_id)
    assert _job(db_url, claim.job_id).error is None


def test_result_discarded_and_said_so_once_another_attempt_started(
    db_url: str, tmp_path: Path
) -> None:
    claim = _claimed_job(db_url)
    _expire_and_reclaim(db_url, claim.job_id)
    second = queue.claim_next_job(session_factory(db_url), "worker-b", lease_seconds=30)
    assert second is not None and second.attempt == 2
    outcome = _store(db_url, claim, _job_dir(tmp_path))
    assert outcome is queue.PendingResultOutcome.SUPERSEDED
    job = _job(db_url, claim.job_id)
    assert (job.status, job.attempts, job.lease_token) == (JobStatus.RUNNING, 2, second.lease_token)
    assert job.result is None
    assert job.warning is not None and "attempt 1" in job.warning and "discarded" in job.warning
    # The running attempt is untouched: its lease still holds.
    assert queue.heartbeat(session_factory(db_url), second, 0.5, "train")
