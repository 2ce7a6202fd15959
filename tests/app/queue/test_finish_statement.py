"""Finishing a job in one round trip on PostgreSQL (issue 24): one autocommitted statement per
success or failure, which also clears an earlier attempt's rows, as the ORM path did."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from app import queue
from app.db.enums import JobStatus
from app.db.models import Artifact, Insertion, Job, Metric
from app.db.session import claim_engine, session_factory
from app.queue.finish import insertion_row

pytestmark = pytest.mark.postgres

SPEC: dict[str, Any] = {"kind": "train", "model": {"kind": "mlp"}}


def _claim(url: str) -> queue.ClaimedJob:
    sessions = session_factory(url, pre_ping=False)
    with sessions() as session:
        queue.enqueue_job(session, dict(SPEC))
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    return claim


def _round_trips(url: str, tmp_path: Path, finish: Any) -> int:
    """ReadyForQuery messages (one per round trip) while `finish()` runs on the queue's
    pooled connection, from the client's protocol trace."""
    from psycopg import pq

    engine = claim_engine(session_factory(url, pre_ping=False).kw["bind"])
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.checkedin() == 1
    with engine.connect() as conn:
        pgconn = conn.connection.dbapi_connection.pgconn  # type: ignore[union-attr]  # open
    trace = tmp_path / "trace"
    with trace.open("wb") as handle:
        pgconn.trace(handle.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            assert finish()
        finally:
            pgconn.untrace()
    lines = trace.read_text().splitlines()
    sent = [line for line in lines if line.startswith("F")]
    assert not any("BEGIN" in line or "COMMIT" in line for line in sent), sent
    return sum("ReadyForQuery" in line for line in lines)


def test_success_and_failure_are_one_round_trip_each(postgres_url: str, tmp_path: Path) -> None:
    sessions = session_factory(postgres_url, pre_ping=False)
    done = _claim(postgres_url)
    result = {"kind": "train", "test_risk": 0.5, "curves": {"train/loss": [[1, 1.0]]}}
    trips = _round_trips(
        postgres_url,
        tmp_path,
        lambda: queue.complete_job(sessions, done, result, metrics=[(1, "train", "loss", 1.0)]),
    )
    assert trips == 1
    failed = _claim(postgres_url)
    trips = _round_trips(
        postgres_url, tmp_path, lambda: queue.fail_job(sessions, failed, "ValueError: boom")
    )
    assert trips == 1
    with sessions() as session:
        statuses = {row.id: row.status for row in session.execute(select(Job.id, Job.status))}
    assert statuses == {done.job_id: JobStatus.SUCCEEDED, failed.job_id: JobStatus.FAILED}


def test_success_replaces_every_earlier_row_in_the_same_statement(
    postgres_url: str, tmp_path: Path
) -> None:
    """Rows left under the same unique keys (insertion position and seed, artifact name) are
    replaced, other attempts' metric rows dropped, repeated points stored once."""
    sessions = session_factory(postgres_url, pre_ping=False)
    claim = _claim(postgres_url)
    record = {"position": 1, "seed": 0, "descent": {"grad_norm_sq_train": float("nan")}}
    with sessions() as session:
        old = insertion_row(claim.job_id, {**record, "depth_before": 9})
        session.execute(insert(Insertion), [old])
        session.execute(
            insert(Artifact),
            [
                {
                    "job_id": claim.job_id,
                    "name": "a.ckpt",
                    "path": "a.ckpt",
                    "size": 1,
                    "sha256": "0",
                }
            ],
        )
        session.execute(
            insert(Metric),
            [
                {"job_id": claim.job_id, "attempt": 0, "step": 1, "split": "train", "name": "loss"},
                {"job_id": claim.job_id, "attempt": 1, "step": 1, "split": "train", "name": "loss"},
                {"job_id": claim.job_id, "attempt": 1, "step": 1, "split": "train", "name": "loss"},
            ],
        )
        session.commit()
    (tmp_path / "a.ckpt").write_bytes(b"new weights")
    result = {
        "kind": "expand",
        "test_risk": float("inf"),
        "artifacts": ["a.ckpt"],
        "insertions": [{**record, "depth_before": 2}],
        "curves": {"train/loss": [[1, 1.0], [2, 0.5], [2, 0.4]]},
    }
    points = [(2, "train", "loss", 0.6), (3, "val", "loss", 0.7)]
    assert queue.complete_job(sessions, claim, result, job_dir=tmp_path, metrics=points)
    with sessions() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.status == JobStatus.SUCCEEDED
        assert job.result is not None and job.result["test_risk"] is None
        rows = session.scalars(select(Insertion)).all()
        assert [(r.position, r.seed, r.depth_before) for r in rows] == [(1, 0, 2)]
        assert rows[0].grad_norm_sq_train is None
        (artifact,) = session.scalars(select(Artifact)).all()
        assert (artifact.name, artifact.size) == ("a.ckpt", len(b"new weights"))
        metrics = session.execute(
            select(Metric.attempt, Metric.step, Metric.split, Metric.name, Metric.value).order_by(
                Metric.split, Metric.step
            )
        ).all()
    # The first stored row of each point wins: attempt 1's step 1 (value null), then the
    # buffered step 2 (reported live) before the curve's, then the buffered validation point.
    assert [tuple(m) for m in metrics] == [
        (1, 1, "train", "loss", None),
        (1, 2, "train", "loss", 0.6),
        (1, 3, "val", "loss", 0.7),
    ]


def test_lost_lease_writes_nothing(postgres_url: str) -> None:
    sessions = session_factory(postgres_url, pre_ping=False)
    claim = _claim(postgres_url)
    stale = queue.ClaimedJob(**{**claim.__dict__, "lease_token": "not-the-token"})
    assert not queue.complete_job(sessions, stale, {"test_risk": 0.1}, metrics=[(1, "t", "x", 1)])
    assert not queue.fail_job(sessions, stale, "boom")
    with sessions() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.status == JobStatus.RUNNING and job.result is None
        assert session.scalars(select(Metric)).all() == []


def test_a_failure_keeps_the_trained_base_in_the_same_statement(
    postgres_url: str, tmp_path: Path
) -> None:
    """A job failing after training keeps base.ckpt as its one artifact (issue 21); a failure
    with nothing to keep writes no artifact row."""
    import hashlib

    sessions = session_factory(postgres_url, pre_ping=False)
    claim = _claim(postgres_url)
    (tmp_path / "base.ckpt").write_bytes(b"trained weights")
    (tmp_path / "scratch.bin").write_bytes(b"not kept")
    assert queue.fail_job(sessions, claim, "boom after training", job_dir=tmp_path)
    bare = _claim(postgres_url)
    assert queue.fail_job(sessions, bare, "boom before training", job_dir=tmp_path / "none")
    with sessions() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.status == JobStatus.FAILED
        kept = session.scalars(select(Artifact).where(Artifact.job_id == claim.job_id)).all()
        assert [a.name for a in kept] == ["base.ckpt"]
        assert kept[0].sha256 == hashlib.sha256(b"trained weights").hexdigest()
        assert session.scalars(select(Artifact).where(Artifact.job_id == bare.job_id)).all() == []


@pytest.mark.parametrize("call", ["claim", "finish"])
def test_a_refused_connection_is_a_sqlalchemy_connection_error(call: str) -> None:
    """With the server down, opening a connection for the claim or the one-statement finish
    fails with SQLAlchemy's OperationalError (the driver's own error escaped before), which the
    worker's retry policy retries."""
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2"
    sessions = session_factory(url, pre_ping=False)
    claim = queue.ClaimedJob(
        job_id=1,
        lease_token="t",
        worker_id="w",
        spec={},
        attempt=1,
        max_attempts=1,
        lease_seconds=30,
        lease_expires_at=dt.datetime.now(dt.UTC),  # over: the write is tried once
    )
    with pytest.raises(OperationalError) as caught:
        if call == "claim":
            queue.claim_next_job(sessions, "w", 30)
        else:
            queue.fail_job(sessions, claim, "boom")
    assert queue.is_connection_error(caught.value)
