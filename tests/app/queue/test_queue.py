"""The job queue on SQLite and PostgreSQL: claiming, leases, reclaiming, cancel, completion."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from app import queue
from app.db.enums import JobStatus
from app.db.models import Artifact, Insertion, Job, Metric
from app.db.session import claim_engine, session_factory
from app.queue import claim as queue_claim
from expansion.specs.problems import SpecError

SPEC = {"kind": "train", "data": {"name": "digits"}, "model": {"kind": "mlp", "width": 8}}


def _enqueue(url: str, n: int = 1, **kwargs: Any) -> list[int]:
    with session_factory(url)() as session:
        return [queue.enqueue_job(session, dict(SPEC), **kwargs).id for _ in range(n)]


def _job(url: str, job_id: int) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _expire(url: str, job_id: int) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    with session_factory(url)() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
        session.commit()


def _record(position: int, seed: int) -> dict[str, object]:
    return {
        "position": position,
        "seed": seed,
        "depth_before": 2,
        "depth_after": 3,
        "function_drift_eval": 0.0,
        "function_drift_train": 0.0,
        "descent": {
            "grad_norm_sq_train": 1.5,
            "grad_norm_sq_val": 1.2,
            "grad_norm_sq_unbiased": 1.1 + position,
            "grad_norm_sq_test_limit": float("nan"),
            "confidence": 0.95,
            "nonzero_gradient": "shown",
            "cosine_train_val": 0.7,
            "step": 0.1,
            "predicted_val_risk_delta": -0.11,
        },
        "jumpboard": {"step": 0.2, "val_risk_delta": -0.1, "test_risk_delta": -0.09},
        "realized": {
            "steps": 10,
            "base_test_risk": 1.0,
            "expanded_test_risk": 0.8,
            "control_test_risk": 0.85,
            "gain_vs_control": 0.05 * (seed + 1),
        },
    }


def test_enqueue_validates_and_stores_the_normalized_spec(db_url: str) -> None:
    (job_id,) = _enqueue(db_url, priority=3, max_attempts=2)
    job = _job(db_url, job_id)
    assert (job.status, job.kind, job.priority, job.max_attempts) == ("queued", "train", 3, 2)
    assert job.spec["model"]["width"] == 8
    assert job.spec["train"]["epochs"] == 10  # defaults filled in
    assert job.created_at.tzinfo is not None
    with session_factory(db_url)() as session, pytest.raises(SpecError) as info:
        queue.enqueue_job(session, {"kind": "train", "model": {"width": -1}})
    assert "model.width" in str(info.value)


def test_claim_order_is_priority_then_age(db_url: str) -> None:
    low = _enqueue(db_url, 2, priority=0)
    high = _enqueue(db_url, 1, priority=5)
    order = []
    while (claim := queue.claim_next_job(session_factory(db_url), "w", 30)) is not None:
        order.append(claim.job_id)
        assert claim.attempt == 1 and len(claim.lease_token) == 32
    assert order == [*high, *low]
    job = _job(db_url, low[0])
    assert (job.status, job.lease_owner, job.attempts) == ("running", "w", 1)


def test_each_claim_gets_its_own_token_and_heartbeat_extends_lease(db_url: str) -> None:
    _enqueue(db_url, 2)
    sessions = session_factory(db_url)
    a = queue.claim_next_job(sessions, "a", 30)
    b = queue.claim_next_job(sessions, "b", 30)
    assert a is not None and b is not None and a.lease_token != b.lease_token
    before = _job(db_url, a.job_id).lease_expires_at
    assert queue.heartbeat(sessions, a, 0.25, "train", metrics=[(1, "train", "loss", 2.0)])
    job = _job(db_url, a.job_id)
    assert job.lease_expires_at is not None and before is not None
    assert job.lease_expires_at >= before
    assert (job.progress, job.stage) == (0.25, "train")


def test_lost_lease_cannot_write(db_url: str) -> None:
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    stale = queue.claim_next_job(sessions, "old", 30)
    assert stale is not None
    _expire(db_url, job_id)
    assert queue.reclaim_expired(sessions) == 1
    assert _job(db_url, job_id).status == "queued"
    fresh = queue.claim_next_job(sessions, "new", 30)
    assert fresh is not None and fresh.job_id == job_id and fresh.attempt == 2

    assert not queue.heartbeat(sessions, stale, 0.9, "stale", metrics=[(1, "train", "loss", 9.0)])
    assert not queue.complete_job(sessions, stale, {"test_risk": 9.0})
    assert not queue.fail_job(sessions, stale, "stale failure")
    assert not queue.mark_cancelled(sessions, stale)
    assert not queue.release_job(sessions, stale)
    job = _job(db_url, job_id)
    assert (job.status, job.lease_owner, job.result, job.error) == ("running", "new", None, None)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Metric)) == 0

    assert queue.complete_job(sessions, fresh, {"test_risk": 0.5})
    assert _job(db_url, job_id).result == {"test_risk": 0.5}
    assert not queue.complete_job(sessions, fresh, {"test_risk": 0.1})  # already finished


def test_expired_leases_requeue_then_fail_at_the_cap(db_url: str) -> None:
    (job_id,) = _enqueue(db_url, max_attempts=2)
    sessions = session_factory(db_url)
    for attempt in (1, 2):
        claim = queue.claim_next_job(sessions, f"w{attempt}", 30)
        assert claim is not None and claim.attempt == attempt
        assert queue.reclaim_expired(sessions) == 0  # lease still valid
        _expire(db_url, job_id)
        assert queue.reclaim_expired(sessions) == 1
    job = _job(db_url, job_id)
    assert job.status == "failed"
    assert job.error is not None and "attempt 2 of 2" in job.error
    assert job.finished_at is not None
    assert queue.claim_next_job(sessions, "w3", 30) is None


def test_cancel_queued_job_never_starts(db_url: str) -> None:
    (job_id,) = _enqueue(db_url)
    with session_factory(db_url)() as session:
        job = queue.cancel_job(session, job_id)
        assert job.status == "cancelled" and job.finished_at is not None
        with pytest.raises(queue.JobNotFound):
            queue.cancel_job(session, job_id + 1000)
    assert queue.claim_next_job(session_factory(db_url), "w", 30) is None


def test_cancel_running_job_flags_it_for_its_worker(db_url: str) -> None:
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    with sessions() as session:
        job = queue.cancel_job(session, job_id)
        assert (job.status, job.cancel_requested) == ("running", True)
    assert not claim.cancel_requested
    assert queue.heartbeat(sessions, claim, None, None)
    assert claim.cancel_requested
    assert queue.mark_cancelled(sessions, claim)
    job = _job(db_url, job_id)
    assert (job.status, job.cancel_requested) == ("cancelled", False)
    with sessions() as session:  # cancelling a finished job changes nothing
        assert queue.cancel_job(session, job_id).status == "cancelled"


def test_cancel_of_lost_running_job_settles_on_reclaim(db_url: str) -> None:
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    assert queue.claim_next_job(sessions, "w", 30) is not None
    with sessions() as session:
        queue.cancel_job(session, job_id)
    _expire(db_url, job_id)
    assert queue.reclaim_expired(sessions) == 1
    assert _job(db_url, job_id).status == "cancelled"


def test_release_hands_the_job_back_without_counting_the_attempt(db_url: str) -> None:
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    assert queue.release_job(sessions, claim)
    job = _job(db_url, job_id)
    assert (job.status, job.attempts, job.lease_token) == ("queued", 0, None)


def test_completion_replaces_rows_of_an_earlier_attempt(db_url: str, tmp_path: Path) -> None:
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    first = queue.claim_next_job(sessions, "w1", 30)
    assert first is not None
    assert queue.heartbeat(sessions, first, 0.5, "train", metrics=[(1, "train", "loss", 3.0)])
    _expire(db_url, job_id)
    queue.reclaim_expired(sessions)
    second = queue.claim_next_job(sessions, "w2", 30)
    assert second is not None
    (tmp_path / "base.ckpt").write_bytes(b"weights")
    (tmp_path / "result.json").write_text("{}")
    records = [_record(p, s) for p in (0, 2) for s in (0, 1)]
    result = {
        "kind": "expand",
        "test_risk": 0.7,
        "test_error": float("nan"),
        "curves": {"train/loss": [[1, 2.0], [2, 1.5]], "val/accuracy": [[2, 0.5]]},
        "artifacts": ["base.ckpt", "missing.ckpt"],
        "insertions": records,
    }
    assert queue.complete_job(sessions, second, result, job_dir=tmp_path)
    job = _job(db_url, job_id)
    assert job.status == "succeeded" and job.progress == 1.0
    assert job.result is not None and "curves" not in job.result and "insertions" not in job.result
    assert job.result["test_risk"] == 0.7 and job.result["test_error"] is None
    with sessions() as session:
        metrics = session.execute(
            select(Metric.attempt, Metric.step, Metric.split, Metric.name, Metric.value)
            .where(Metric.job_id == job_id)
            .order_by(Metric.split, Metric.step)
        ).all()
        assert [tuple(m) for m in metrics] == [
            (2, 1, "train", "loss", 2.0),
            (2, 2, "train", "loss", 1.5),
            (2, 2, "val", "accuracy", 0.5),
        ]
        rows = session.scalars(select(Insertion).order_by(Insertion.position, Insertion.seed)).all()
        assert [(r.position, r.seed) for r in rows] == [(0, 0), (0, 1), (2, 0), (2, 1)]
        assert rows[2].grad_norm_sq_unbiased == pytest.approx(3.1)
        assert rows[3].gain_vs_control == pytest.approx(0.1)
        assert rows[0].nonzero_gradient == "shown" and rows[0].grad_norm_sq_test_limit is None
        assert rows[0].record["descent"]["grad_norm_sq_test_limit"] is None
        artifacts = {a.name: a for a in session.scalars(select(Artifact))}
        assert set(artifacts) == {"base.ckpt", "result.json"}
        assert artifacts["base.ckpt"].size == 7
        assert artifacts["base.ckpt"].sha256 == hashlib.sha256(b"weights").hexdigest()
        assert artifacts["base.ckpt"].path == "base.ckpt"


def test_metrics_store_non_finite_values_as_null(db_url: str) -> None:
    _enqueue(db_url)
    sessions = session_factory(db_url)
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    points = [(1, "train", "loss", float("nan")), (2, "train", "loss", 1.0)]
    assert queue.fail_job(sessions, claim, "FloatingPointError: loss is nan", metrics=points)
    with sessions() as session:
        values = session.scalars(select(Metric.value).order_by(Metric.step)).all()
    assert values[0] is None and values[1] == 1.0 and not math.isnan(values[1])


def _claim_all(url: str, claimers: int) -> list[int]:
    sessions = session_factory(url)
    claimed: list[list[int]] = [[] for _ in range(claimers)]
    barrier = threading.Barrier(claimers)

    def claim_until_empty(index: int) -> None:
        barrier.wait()
        while (claim := queue.claim_next_job(sessions, f"w{index}", 60)) is not None:
            claimed[index].append(claim.job_id)
            time.sleep(0.001)  # as a worker runs its job: a claim fast enough could drain alone

    threads = [threading.Thread(target=claim_until_empty, args=(i,)) for i in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert sum(1 for c in claimed if c) > 1, "the claimers did not run concurrently"
    return [job_id for c in claimed for job_id in c]


@pytest.mark.postgres
def test_concurrent_claimers_claim_every_job_exactly_once_postgres(postgres_url: str) -> None:
    ids = _enqueue(postgres_url, 200)
    claimed = _claim_all(postgres_url, 8)
    assert sorted(claimed) == sorted(ids)
    with session_factory(postgres_url)() as session:
        assert session.scalar(select(func.max(Job.attempts))) == 1
        assert session.scalar(select(func.count()).where(Job.status == "running")) == 200


def test_concurrent_claimers_claim_every_job_exactly_once_sqlite(sqlite_url: str) -> None:
    ids = _enqueue(sqlite_url, 60)
    claimed = _claim_all(sqlite_url, 4)
    assert sorted(claimed) == sorted(ids)


def test_insertion_row_flattens_the_certificate_and_the_gradient_test() -> None:
    from app.queue import insertion_row

    record = _record(1, 0)
    descent = record["descent"]
    assert isinstance(descent, dict)
    descent |= {
        "nonzero_gradient": "not_shown",
        "certificate_source": "holdout",
        "certificate_batches": 2,
        "grad_norm_sq_unbiased_train": 0.4,
        "grad_norm_sq_test_limit_train": None,
    }
    record["certificate"] = {
        "risk_decrease": 0.003,
        "risk_decrease_ci": [0.001, 0.005],
        "p_value": 0.002,
        "verdict": "holds",
    }
    realized = record["realized"]
    assert isinstance(realized, dict)
    realized["gain_ci"] = [0.01, 0.09]
    row = insertion_row(7, record)
    assert row["nonzero_gradient"] == "not_shown" and row["certificate_source"] == "holdout"
    assert row["certificate_batches"] == 2 and row["grad_norm_sq_unbiased_train"] == 0.4
    assert row["grad_norm_sq_test_limit_train"] is None
    assert row["certificate_verdict"] == "holds" and row["certificate_p_value"] == 0.002
    assert (row["certificate_risk_decrease_low"], row["certificate_risk_decrease_high"]) == (
        0.001,
        0.005,
    )
    assert (row["gain_ci_low"], row["gain_ci_high"]) == (0.01, 0.09)
    older = _record(1, 0)  # a record written before issue 20 (say, by an older worker)
    older_descent = older["descent"]
    assert isinstance(older_descent, dict)
    del older_descent["nonzero_gradient"], older_descent["grad_norm_sq_test_limit"]
    older_descent |= {"verdict": "fails", "condition_holds": False, "grad_norm_sq_lcb": -0.2}
    old_row = insertion_row(7, older)
    assert old_row["nonzero_gradient"] == "not_shown"
    assert old_row["grad_norm_sq_test_limit"] == -0.2
    assert old_row["certificate_verdict"] is None and old_row["certificate_batches"] is None
    assert "verdict" not in old_row["record"]["descent"]


# --------------------------------------------------------------------------- faults (issue 13)


def _metric_keys(url: str, job_id: int) -> list[tuple[int, int, str, str]]:
    with session_factory(url)() as session:
        rows = session.execute(
            select(Metric.attempt, Metric.step, Metric.split, Metric.name)
            .where(Metric.job_id == job_id)
            .order_by(Metric.split, Metric.name, Metric.step, Metric.attempt)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]  # Row -> tuple of its four columns


@contextlib.contextmanager
def _drop_outcome_connection(engine: Engine) -> Iterator[None]:
    """Terminate the server backend of the pooled connection the next outcome write will use
    (on PostgreSQL it is one statement on the queue's autocommit engine, `claim_engine`, run on
    the driver's cursor, which SQLAlchemy's events do not see), as a restart would."""
    queue_engine = claim_engine(engine)
    pooled = queue_engine.raw_connection()
    try:
        driver = pooled.dbapi_connection
        assert driver is not None
        pid = driver.info.backend_pid
    finally:
        pooled.close()
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as admin_conn:
            admin_conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            deadline = time.monotonic() + 10
            gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            while admin_conn.execute(gone, {"pid": pid}).scalar() and (time.monotonic() < deadline):
                time.sleep(0.01)
    finally:
        admin.dispose()
    assert isinstance(queue_engine.pool, QueuePool)
    assert queue_engine.pool.checkedin() == 1  # the dead connection is the one used next
    yield


@pytest.mark.postgres
@pytest.mark.parametrize("outcome", ["complete", "fail", "cancel"])
def test_outcome_write_survives_a_dropped_connection(postgres_url: str, outcome: str) -> None:
    """Issue 13.1: a finished job was failed for good when its final write met one dropped
    connection; now the write is retried while the lease holds, buffered metrics included."""
    (job_id,) = _enqueue(postgres_url)
    sessions = session_factory(postgres_url)
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    points = [(1, "train", "loss", 2.0), (2, "train", "loss", 1.0)]
    with _drop_outcome_connection(sessions.kw["bind"]):
        if outcome == "complete":
            assert queue.complete_job(sessions, claim, {"test_risk": 0.3}, metrics=points)
        elif outcome == "fail":
            assert queue.fail_job(sessions, claim, "ValueError: boom", metrics=points)
        else:
            assert queue.mark_cancelled(sessions, claim, metrics=points)
    expected = {"complete": "succeeded", "fail": "failed", "cancel": "cancelled"}[outcome]
    assert _job(postgres_url, job_id).status == expected
    assert _metric_keys(postgres_url, job_id) == [(1, 1, "train", "loss"), (1, 2, "train", "loss")]


@pytest.mark.postgres
def test_outcome_write_is_not_retried_after_the_lease_ended(postgres_url: str) -> None:
    (job_id,) = _enqueue(postgres_url)
    sessions = session_factory(postgres_url)
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    claim.lease_expires_at = dt.datetime.now(dt.UTC)  # as if it ended during the outage
    with (
        _drop_outcome_connection(sessions.kw["bind"]),
        pytest.raises(OperationalError),
    ):
        queue.complete_job(sessions, claim, {"test_risk": 0.3})
    assert _job(postgres_url, job_id).status == "running"  # reclaimed and run again later


def test_hand_back_leaves_no_duplicate_metric_rows(db_url: str) -> None:
    """Issue 13.7: a handed-back attempt's rows were kept under the attempt number that the
    next claim reuses, so the finished job had every point twice."""
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    points = [(1, "train", "loss", 2.0), (2, "train", "loss", 1.5)]
    first = queue.claim_next_job(sessions, "w1", 30)
    assert first is not None
    assert queue.heartbeat(sessions, first, 0.5, "train", metrics=points)
    assert queue.release_job(sessions, first)
    second = queue.claim_next_job(sessions, "w2", 30)
    assert second is not None and second.attempt == first.attempt == 1
    assert queue.heartbeat(sessions, second, 0.5, "train", metrics=points)
    assert queue.complete_job(sessions, second, {"test_risk": 0.2})
    assert _metric_keys(db_url, job_id) == [(1, 1, "train", "loss"), (1, 2, "train", "loss")]


def test_exhausted_attempts_keep_one_attempts_metric_rows(db_url: str) -> None:
    """Issue 13.7: a job failed at its attempt cap kept the rows of every attempt."""
    (job_id,) = _enqueue(db_url, max_attempts=2)
    sessions = session_factory(db_url)
    for attempt in (1, 2):
        claim = queue.claim_next_job(sessions, f"w{attempt}", 30)
        assert claim is not None and claim.attempt == attempt
        assert queue.heartbeat(sessions, claim, 0.5, "train", metrics=[(1, "train", "loss", 2.0)])
        _expire(db_url, job_id)
        assert queue.reclaim_expired(sessions) == 1
    assert _job(db_url, job_id).status == "failed"
    assert _metric_keys(db_url, job_id) == [(2, 1, "train", "loss")]


def test_test_set_metrics_reported_by_the_job_are_stored(db_url: str) -> None:
    """Issue 13.10: the final test-set figures a job reports (not part of its curves) were
    deleted when the result's curves replaced the job's metric rows."""
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    live = [(1, "train", "loss", 2.0), (2, "train", "loss", 1.0)]
    assert queue.heartbeat(sessions, claim, 0.9, "train", metrics=live)
    final = [(2, "test", "risk", 0.3), (2, "test", "error", 0.1)]
    result = {"test_risk": 0.3, "curves": {"train/loss": [[1, 2.0], [2, 1.0]]}}
    assert queue.complete_job(sessions, claim, result, metrics=final)
    assert _metric_keys(db_url, job_id) == [
        (1, 2, "test", "error"),
        (1, 2, "test", "risk"),
        (1, 1, "train", "loss"),
        (1, 2, "train", "loss"),
    ]


def test_job_cancelled_during_a_hand_back_is_not_requeued(db_url: str) -> None:
    """Issue 13.10: a cancel requested while the worker handed the job back was forgotten and
    the job ran again."""
    (job_id,) = _enqueue(db_url)
    sessions = session_factory(db_url)
    claim = queue.claim_next_job(sessions, "w", 30)
    assert claim is not None
    with sessions() as session:
        assert queue.cancel_job(session, job_id).cancel_requested
    assert queue.release_job(sessions, claim)
    job = _job(db_url, job_id)
    assert (job.status, job.cancel_requested) == (JobStatus.CANCELLED, False)
    assert job.finished_at is not None
    assert queue.claim_next_job(sessions, "w2", 30) is None


@pytest.mark.postgres
def test_claim_reads_the_partial_index_in_its_own_order(postgres_url: str) -> None:
    """The claim index matches `priority DESC, created_at, id`: no sort of the queued rows."""
    _enqueue(postgres_url, 3)
    pick = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED)
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    engine = session_factory(postgres_url).kw["bind"]
    with engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        compiled = pick.compile(engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(text(f"EXPLAIN {compiled}")).scalars())
    assert "ix_jobs_queued" in plan and "Sort" not in plan, plan


@pytest.mark.postgres
def test_claim_is_one_round_trip_on_the_worker_engine(postgres_url: str, tmp_path: Path) -> None:
    """No liveness ping, no BEGIN, no COMMIT: one round trip per claim (and per empty poll),
    counted in the client's protocol trace (one ReadyForQuery from the server per trip)."""
    from psycopg import pq

    _enqueue(postgres_url, 2)
    sessions = session_factory(postgres_url, pre_ping=False)
    assert queue.claim_next_job(sessions, "warm-up", 30) is not None  # opens the connection
    engine = claim_engine(sessions.kw["bind"])
    assert isinstance(engine.pool, QueuePool) and engine.pool.checkedin() == 1
    with engine.connect() as conn:
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        pgconn = dbapi_connection.pgconn
    trace = tmp_path / "trace"
    with trace.open("wb") as handle:
        pgconn.trace(handle.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            assert queue.claim_next_job(sessions, "w", 30) is not None
            assert queue.claim_next_job(sessions, "w", 30) is None
        finally:
            pgconn.untrace()
    lines = trace.read_text().splitlines()
    sent = [line.split("\t", 3)[-1] for line in lines if line.startswith("F")]
    trips = [line for line in lines if "ReadyForQuery" in line]
    assert len(trips) == 2, lines
    assert not any("BEGIN" in q or "COMMIT" in q or "SELECT 1" in q for q in sent), sent


@pytest.mark.postgres
def test_prepared_claim_keeps_the_partial_index_in_its_generic_plan(postgres_url: str) -> None:
    """Once the driver prepares the claim, PostgreSQL may run it with a generic plan (one plan
    for any parameter values): that plan must still read `ix_jobs_queued` without a sort, which
    holds only while `status = 'queued'` is SQL text rather than a parameter."""
    _enqueue(postgres_url, 12)
    sessions = session_factory(postgres_url, pre_ping=False)
    for _ in range(8):  # past psycopg's prepare threshold (5), on the pool's one connection
        assert queue.claim_next_job(sessions, "w", 30) is not None
    engine = claim_engine(sessions.kw["bind"])
    assert isinstance(engine.pool, QueuePool) and engine.pool.checkedin() == 1
    with engine.connect() as conn:
        name = conn.scalar(
            text("SELECT name FROM pg_prepared_statements WHERE statement LIKE '%SKIP LOCKED%'")
        )
        assert name is not None, "the claim was not prepared"
        conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        now = "now()::timestamptz"
        plan = "\n".join(
            conn.execute(text(f"EXPLAIN EXECUTE {name}('o', 't', {now}, {now}, 'm', 1)")).scalars()
        )
        conn.execute(text("RESET plan_cache_mode"))
        conn.rollback()
    assert "ix_jobs_queued" in plan and "Sort" not in plan, plan


@pytest.mark.postgres
def test_claim_commits_asynchronously_and_only_itself(postgres_url: str) -> None:
    """The claim turns `synchronous_commit` off for its own transaction; the pooled connection
    that the worker's outcome writes use next still commits synchronously."""
    _enqueue(postgres_url, 1)
    sessions = session_factory(postgres_url, pre_ping=False)
    engine = sessions.kw["bind"]
    row = queue_claim._claim_row_postgresql(
        engine,
        {"owner": "w", "token": "t", "expires": None, "now": None, "message": "m", "capacity": 1},
    )
    assert row is not None and row[-1] == "off"
    claims = claim_engine(engine)
    assert isinstance(claims.pool, QueuePool) and claims.pool.checkedin() == 1
    with claims.connect() as conn:  # the claim's own connection, after its transaction
        assert conn.scalar(text("SHOW synchronous_commit")) == "on"
    with sessions() as session:  # a transaction of the worker's, as a heartbeat runs it
        session.execute(update(Job).values(message="beat"))
        assert session.scalar(text("SHOW synchronous_commit")) == "on"
        session.commit()


@pytest.mark.postgres
def test_claim_turns_driver_errors_into_sqlalchemy_errors(postgres_url: str) -> None:
    """The claim runs on the driver's cursor; a dropped connection must still surface as
    SQLAlchemy's OperationalError with the connection invalidated (the worker retries on it)."""
    _enqueue(postgres_url, 2)
    sessions = session_factory(postgres_url, pre_ping=False)
    assert queue.claim_next_job(sessions, "w", 30) is not None
    with claim_engine(sessions.kw["bind"]).connect() as conn:
        pid = conn.scalar(text("SELECT pg_backend_pid()"))
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    with pytest.raises(OperationalError) as caught:
        queue.claim_next_job(sessions, "w", 30)
    assert caught.value.connection_invalidated
    assert queue.is_connection_error(caught.value)
    assert queue.claim_next_job(sessions, "w", 30) is not None  # a fresh connection
