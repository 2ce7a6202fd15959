"""An attempt's outcome stored under its lease: success with the result, its records, metrics and
artifacts; failure; cancellation.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from app.db.enums import JobStatus
from app.db.models import (
    INSERTION_COLUMNS,
    Artifact,
    Insertion,
    Job,
    Metric,
    utcnow,
)
from app.db.session import affected_rows, begin_write
from app.queue.finish_statement import EndKind, end_attempt, end_attempt_params
from app.queue.lease import (
    RECLAIM_EXHAUSTED_MESSAGE,
    ClaimedJob,
    MetricPoint,
    _guard,
    _metric_rows,
    retry_while_leased,
)
from expansion.results.older_results import current_record
from expansion.results.result_file import json_safe_record

log = logging.getLogger(__name__)


SUMMARY_DROPPED_KEYS = ("curves", "insertions")
"""Result keys kept out of the job's summary: curves live in `metrics`, records in `insertions`."""


def result_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result dict without its curves and insertion records, JSON-safe."""
    summary: dict[str, Any] = {k: v for k, v in result.items() if k not in SUMMARY_DROPPED_KEYS}
    return json_safe_record(summary)


def insertion_row(job_id: int, record: dict[str, Any]) -> dict[str, Any]:
    """The flattened `insertions` row of one insertion record (docs/design.md 5), stored under
    today's names (a record from an older worker is renamed first)."""
    record = json_safe_record(current_record(record))
    row: dict[str, Any] = {
        "job_id": job_id,
        "position": int(record["position"]),
        "seed": int(record["seed"]),
        "depth_before": record.get("depth_before"),
        "depth_after": record.get("depth_after"),
        "function_drift_eval": record.get("function_drift_eval"),
        "function_drift_train": record.get("function_drift_train"),
        "predictors": record.get("predictors"),
        "record": record,
    }
    for column, (section, key, index) in INSERTION_COLUMNS.items():
        value = (record.get(section) or {}).get(key)
        if index is not None:
            value = value[index] if isinstance(value, list) and len(value) == 2 else None
        row[column] = value
    return row


def describe_artifacts(job_dir: Path, names: Iterable[str]) -> list[dict[str, Any]]:
    """Size and sha256 of each named file under `job_dir` (missing files are skipped)."""
    rows = []
    for name in dict.fromkeys(names):
        path = job_dir / name
        if not path.is_file():
            log.warning("artifact %s listed but not found under %s", name, job_dir)
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        rows.append(
            {
                "name": Path(name).name,
                "path": str(Path(name)),
                "size": path.stat().st_size,
                "sha256": digest.hexdigest(),
            }
        )
    return rows


def _curve_points(result: dict[str, Any]) -> list[MetricPoint]:
    points: list[MetricPoint] = []
    for key, series in (result.get("curves") or {}).items():
        split, _, name = str(key).partition("/")
        if not name:
            split, name = "train", split
        for step, value in series:
            if value is not None:
                points.append((int(step), split, name, float(value)))
    return points


def _dedupe_metrics(session: Session, job_id: int) -> None:
    """Keep one row per (attempt, step, split, name) of the job: the first stored. A heartbeat
    whose commit was cut off may have been stored and then sent again, and a result's curves
    repeat points already reported live."""
    first = (
        select(func.min(Metric.id))
        .where(Metric.job_id == job_id)
        .group_by(Metric.attempt, Metric.step, Metric.split, Metric.name)
    )
    session.execute(
        delete(Metric)
        .where(Metric.job_id == job_id, Metric.id.not_in(first))
        .execution_options(synchronize_session=False)
    )


def _store_attempt_metrics(
    session: Session, claim: ClaimedJob, metrics: Sequence[MetricPoint]
) -> None:
    """Drop the rows of the job's other attempts, add `metrics` to this attempt's, dedupe."""
    session.execute(
        delete(Metric)
        .where(Metric.job_id == claim.job_id, Metric.attempt != claim.attempt)
        .execution_options(synchronize_session=False)
    )
    rows = _metric_rows(claim, metrics)
    if rows:
        session.execute(insert(Metric), rows)
    _dedupe_metrics(session, claim.job_id)


def _already_ended(session: Session, claim: ClaimedJob, status: JobStatus) -> bool:
    """True when this claim already gave the job `status` (a retried write whose first try
    committed before its connection dropped)."""
    row = session.execute(
        select(Job.status).where(Job.id == claim.job_id, Job.lease_token == claim.lease_token)
    ).first()
    return row is not None and row.status == status


def _success_rows(
    claim: ClaimedJob,
    result: dict[str, Any],
    job_dir: Path | None,
    metrics: Sequence[MetricPoint],
    kept: Sequence[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[MetricPoint], list[dict[str, Any]], list[dict[str, Any]]]:
    """What a success stores: the job's final values, metric points, insertion and artifact
    rows (`kept`: the rows of files the artifact store already holds; without them, the files
    named by the result, and `result.json`, described in place in `job_dir`)."""
    if kept is not None:
        artifacts = list(kept)
    else:
        names = list(result.get("artifacts") or [])
        if job_dir is not None and (job_dir / "result.json").is_file():
            names.append("result.json")
        artifacts = describe_artifacts(job_dir, names) if job_dir is not None else []
    points = [*metrics, *_curve_points(result)]
    insertions = [insertion_row(claim.job_id, r) for r in result.get("insertions") or []]
    final = {"result": result_summary(result), "progress": 1.0, "stage": "done", "message": ""}
    return final, points, insertions, artifacts


def _store_success(
    session: Session,
    claim: ClaimedJob,
    points: Sequence[MetricPoint],
    insertions: list[dict[str, Any]],
    artifacts: list[dict[str, Any]],
) -> None:
    """Replace the job's insertion, artifact and metric rows by this attempt's (in the caller's
    transaction, after the guarded status update)."""
    job_id = claim.job_id
    session.execute(delete(Insertion).where(Insertion.job_id == job_id))
    session.execute(delete(Artifact).where(Artifact.job_id == job_id))
    _store_attempt_metrics(session, claim, points)
    if insertions:
        session.execute(insert(Insertion), insertions)
    if artifacts:
        session.execute(insert(Artifact), [{"job_id": job_id, **a} for a in artifacts])


def complete_job(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    result: dict[str, Any],
    *,
    job_dir: Path | None = None,
    metrics: Sequence[MetricPoint] = (),
    artifacts: Sequence[dict[str, Any]] | None = None,
) -> bool:
    """Mark the job succeeded and store its summary, insertion rows, artifact rows and final
    metrics in one lease-guarded transaction that first deletes rows an earlier attempt left.

    The job's metrics are every point this attempt reported (stored by heartbeats, or still
    buffered in `metrics`) plus the result's curves, one row per (step, split, name): final
    test-set figures reported after training are kept. Retried on connection errors while the
    lease holds (then the connection error is raised: see `store_pending_result`). False when
    the lease is lost.

    `artifacts` are the rows of files already kept by the artifact store (`app.artifacts`);
    without them, the files named by the result (and `result.json`) in `job_dir` are
    described in place."""
    final, points, insertions, rows = _success_rows(claim, result, job_dir, metrics, artifacts)
    engine = _postgresql_engine(session_factory)

    def write(retried: bool) -> bool:
        if engine is not None:
            params = end_attempt_params(
                claim,
                JobStatus.SUCCEEDED,
                final,
                points,
                utcnow(),
                insertions=insertions,
                artifacts=rows,
            )
            if end_attempt(engine, EndKind.SUCCESS, params):
                return True
            return retried and _ended_by_this_claim(session_factory, claim, JobStatus.SUCCEEDED)
        with session_factory() as session:
            begin_write(session)
            if not _end_attempt(session, claim, JobStatus.SUCCEEDED, final):
                session.rollback()
                return retried and _already_ended(session, claim, JobStatus.SUCCEEDED)
            _store_success(session, claim, points, insertions, rows)
            session.commit()
        return True

    if not retry_while_leased(claim, "storing the result", write):
        log.warning("job %s: lease lost before completion", claim.job_id)
        return False
    log.info("job %s succeeded", claim.job_id)
    return True


class PendingResultOutcome(enum.StrEnum):
    """What became of a result kept through a database outage (`store_pending_result`)."""

    STORED = "stored"
    """Stored: the job succeeded with this attempt."""
    SUPERSEDED = "superseded"
    """Discarded: another attempt had started (or the job ended otherwise); the job says so."""


def _pending_guard(claim: ClaimedJob) -> tuple[Any, ...]:
    """The rows a kept result may still be stored on: the job at this attempt's number, with no
    attempt started since, either still under this lease, or reclaimed after it expired and not
    claimed again (requeued, or failed because it was the last attempt)."""
    return (
        Job.id == claim.job_id,
        Job.attempts == claim.attempt,
        or_(
            and_(Job.status == JobStatus.RUNNING, Job.lease_token == claim.lease_token),
            and_(Job.status == JobStatus.QUEUED, Job.lease_token.is_(None)),
            and_(
                Job.status == JobStatus.FAILED,
                Job.lease_token.is_(None),
                Job.message == RECLAIM_EXHAUSTED_MESSAGE,
            ),
        ),
    )


def store_pending_result(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    result: dict[str, Any],
    *,
    job_dir: Path | None = None,
    metrics: Sequence[MetricPoint] = (),
    artifacts: Sequence[dict[str, Any]] | None = None,
) -> PendingResultOutcome:
    """Store a result that a database outage longer than the lease kept from `complete_job`:
    one transaction, guarded so that it succeeds only if no other attempt of the job started
    since (`_pending_guard`). Otherwise the result is discarded and the job's `warning` says
    so. One try: the caller retries connection errors (`app.db.retry.call_with_retry`).
    `artifacts`: the rows of files the artifact store already holds, as for `complete_job`."""
    final, points, insertions, artifacts = _success_rows(claim, result, job_dir, metrics, artifacts)
    now = utcnow()
    with session_factory() as session:
        begin_write(session)
        stored = affected_rows(
            session.execute(
                update(Job)
                .where(*_pending_guard(claim))
                .values(
                    status=JobStatus.SUCCEEDED,
                    finished_at=now,
                    heartbeat_at=now,
                    lease_owner=claim.worker_id,
                    lease_token=claim.lease_token,
                    lease_expires_at=None,
                    cancel_requested=False,
                    error=None,
                    **final,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if stored:
            _store_success(session, claim, points, insertions, artifacts)
            session.commit()
            log.info("job %s succeeded (result kept through a database outage)", claim.job_id)
            return PendingResultOutcome.STORED
        if _already_ended(session, claim, JobStatus.SUCCEEDED):  # a retry after our commit
            session.rollback()
            return PendingResultOutcome.STORED
        note = (
            f"the result of attempt {claim.attempt}, finished while the database was "
            "unreachable, was discarded: another attempt had started"
        )
        session.execute(
            update(Job)
            .where(Job.id == claim.job_id)
            .values(warning=note)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    log.warning("job %s: %s", claim.job_id, note)
    return PendingResultOutcome.SUPERSEDED


def _end_attempt(
    session: Session, claim: ClaimedJob, status: JobStatus, values: dict[str, Any]
) -> bool:
    """Set the final `status` (and `values`) of the claimed attempt and drop its lease, guarded
    by the lease token; False (nothing written) when the lease is lost."""
    now = utcnow()
    return bool(
        affected_rows(
            session.execute(
                update(Job)
                .where(*_guard(claim))
                .values(
                    status=status,
                    finished_at=now,
                    heartbeat_at=now,
                    lease_expires_at=None,
                    cancel_requested=False,
                    **values,
                )
                .execution_options(synchronize_session=False)
            )
        )
    )


KEPT_ON_FAILURE = ("base.ckpt",)
"""Files a failed job keeps as artifacts: a base trained before the failure is not lost."""


def _postgresql_engine(session_factory: sessionmaker[Session]) -> Engine | None:
    """The factory's engine when it is PostgreSQL's (the one-statement finish), else None."""
    engine: Engine = session_factory.kw["bind"]
    return engine if engine.dialect.name == "postgresql" else None


def _ended_by_this_claim(
    session_factory: sessionmaker[Session], claim: ClaimedJob, status: JobStatus
) -> bool:
    with session_factory() as session:
        return _already_ended(session, claim, status)


_END_KINDS = {
    JobStatus.SUCCEEDED: EndKind.SUCCESS,
    JobStatus.FAILED: EndKind.FAILURE,
    JobStatus.CANCELLED: EndKind.CANCELLED,
}


def _finish(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    status: JobStatus,
    values: dict[str, Any],
    metrics: Sequence[MetricPoint],
    artifacts: Sequence[dict[str, Any]] = (),
) -> bool:
    engine = _postgresql_engine(session_factory)

    def write(retried: bool) -> bool:
        if engine is not None:  # one round trip (app.queue.finish_statement)
            params = end_attempt_params(
                claim, status, values, metrics, utcnow(), artifacts=artifacts
            )
            kind = _END_KINDS[status]
            if kind is EndKind.FAILURE and artifacts:
                kind = EndKind.FAILURE_KEEPING_ARTIFACTS
            if end_attempt(engine, kind, params):
                return True
            return retried and _ended_by_this_claim(session_factory, claim, status)
        with session_factory() as session:
            begin_write(session)
            if not _end_attempt(session, claim, status, values):
                session.rollback()
                return retried and _already_ended(session, claim, status)
            _store_attempt_metrics(session, claim, metrics)
            if artifacts:
                session.execute(delete(Artifact).where(Artifact.job_id == claim.job_id))
                session.execute(
                    insert(Artifact), [{"job_id": claim.job_id, **a} for a in artifacts]
                )
            session.commit()
        return True

    if not retry_while_leased(claim, f"marking the job {status}", write):
        return False
    log.info("job %s %s", claim.job_id, status)
    return True


def fail_job(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    error: str,
    *,
    metrics: Sequence[MetricPoint] = (),
    job_dir: Path | None = None,
    artifacts: Sequence[dict[str, Any]] | None = None,
) -> bool:
    """Mark the job failed for good with `error` as the reason, keeping as artifacts the files
    of KEPT_ON_FAILURE (a trained base): `artifacts`, the rows of those the artifact store
    already holds, or else those found in `job_dir`, described in place. False when the lease
    is lost."""
    first_line = error.strip().splitlines()[-1] if error.strip() else "failed"
    if artifacts is not None:
        kept = list(artifacts)
    else:
        present = [n for n in KEPT_ON_FAILURE if job_dir is not None and (job_dir / n).is_file()]
        kept = describe_artifacts(job_dir, present) if job_dir is not None else []
    return _finish(
        session_factory,
        claim,
        JobStatus.FAILED,
        {"error": error, "stage": "failed", "message": first_line[:500]},
        metrics,
        kept,
    )


def mark_cancelled(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    *,
    metrics: Sequence[MetricPoint] = (),
) -> bool:
    """Mark a running job cancelled after its worker stopped it; False when the lease is lost."""
    return _finish(
        session_factory,
        claim,
        JobStatus.CANCELLED,
        {"stage": "cancelled", "message": "cancelled while running"},
        metrics,
    )
