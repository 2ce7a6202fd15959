"""Results a worker kept on disk through a database outage, recovered by the next worker to start
on the same artifact folder when the one that kept them died (issue 25): stored once if no
other attempt started since, discarded (and said so on the job) otherwise; a file that is not a
kept result is left alone. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from result_fixtures import KEPT_TRAIN_RESULT, KEPT_TRAIN_SPEC
from sqlalchemy import select, update

from app import queue
from app.db.enums import JobStatus
from app.db.models import Artifact, Job, Metric
from app.db.session import session_factory
from app.settings import Settings
from app.worker.loop import Worker
from app.worker.pending_results import (
    PENDING_RESULT_FILE,
    KeptResult,
    read_kept_result,
    recover_kept_results,
    write_kept_result,
)

SPEC = KEPT_TRAIN_SPEC
RESULT = KEPT_TRAIN_RESULT


def _claimed(url: str, worker_id: str = "dead-worker") -> queue.ClaimedJob:
    sessions = session_factory(url)
    with sessions() as session:
        queue.enqueue_job(session, dict(SPEC))
    claim = queue.claim_next_job(sessions, worker_id, lease_seconds=30)
    assert claim is not None
    return claim


def _keep(artifacts: Path, claim: queue.ClaimedJob) -> Path:
    """What a worker that died after keeping its result leaves in the job's folder."""
    job_dir = artifacts / str(claim.job_id)
    job_dir.mkdir(parents=True)
    (job_dir / "base.ckpt").write_bytes(b"weights")
    path = job_dir / PENDING_RESULT_FILE
    write_kept_result(path, KeptResult(claim, RESULT, [(1, "train", "loss", 1.0)], None))
    return path


def _job(url: str, job_id: int) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_kept_result_reads_back_as_written(tmp_path: Path, db_url: str) -> None:
    claim = _claimed(db_url)
    kept = read_kept_result(_keep(tmp_path, claim))
    assert (kept.claim.job_id, kept.claim.attempt) == (claim.job_id, claim.attempt)
    assert kept.claim.lease_token == claim.lease_token
    assert kept.result == RESULT and kept.metrics == [(1, "train", "loss", 1.0)]


def test_a_worker_starting_stores_the_result_a_dead_worker_kept(
    db_url: str, tmp_path: Path
) -> None:
    claim = _claimed(db_url)
    path = _keep(tmp_path / "artifacts", claim)
    settings = Settings(
        database_url=db_url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        device_lock_dir=tmp_path / "device-locks",
    )
    assert Worker(settings, poll_seconds=0.1).run(exit_when_idle=True) == 0
    job = _job(db_url, claim.job_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert job.result is not None and job.result["test_risk"] == 0.25
    with session_factory(db_url)() as session:
        assert session.scalars(select(Artifact.name)).all() == ["base.ckpt"]
        steps = session.scalars(select(Metric.step).order_by(Metric.step)).all()
    assert steps == [1, 2]
    assert not path.exists()


def test_a_kept_result_is_discarded_once_another_attempt_started(
    db_url: str, tmp_path: Path
) -> None:
    claim = _claimed(db_url)
    path = _keep(tmp_path, claim)
    sessions = session_factory(db_url)
    with sessions() as session:  # the dead worker's lease ran out; the job was reclaimed
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        session.execute(update(Job).where(Job.id == claim.job_id).values(lease_expires_at=past))
        session.commit()
    assert queue.reclaim_expired(sessions) == 1
    second = queue.claim_next_job(sessions, "live-worker", lease_seconds=30)
    assert second is not None and second.attempt == 2
    outcomes = recover_kept_results(sessions, tmp_path)
    assert outcomes == [(claim.job_id, queue.PendingResultOutcome.SUPERSEDED)]
    job = _job(db_url, claim.job_id)
    assert job.status == JobStatus.RUNNING and job.lease_token == second.lease_token
    assert job.result is None and job.warning is not None and "discarded" in job.warning
    assert not path.exists()


def test_a_file_that_is_not_a_kept_result_is_left_alone(db_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "7" / PENDING_RESULT_FILE
    broken.parent.mkdir()
    broken.write_text("{not json")
    assert recover_kept_results(session_factory(db_url), tmp_path) == []
    assert broken.exists()
