"""Every state change of a job: enqueue, claim, heartbeat, complete, fail, cancel, reclaim.

The `jobs` table is the queue. A claim is one UPDATE ... RETURNING statement (with
`FOR UPDATE SKIP LOCKED` on PostgreSQL; under SQLite's single-writer lock on SQLite) that hands
the claimer a fresh random lease token. Every later write by the claimer is guarded by
`WHERE id = :id AND lease_token = :token`; zero rows updated means the lease was lost (reclaimed
after expiry, or handed back) and the caller must stop working on the job.

Times come from the clock of the process doing the write (UTC), so hosts sharing one database
need synchronized clocks (NTP), which a lease of tens of seconds tolerates easily.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Engine,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIModule
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
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
from app.db.session import affected_rows, begin_write, claim_engine
from app.devices import devices_needed
from expansion.results.result_file import finite_or_none, json_safe

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_FIRST_DELAY_S = 0.1
"""First wait before an outcome write is retried after a connection error (then doubled)."""
RETRY_MAX_DELAY_S = 5.0
"""Longest wait between two tries of an outcome write."""

SUMMARY_DROPPED_KEYS = ("curves", "insertions")
"""Result keys kept out of the job's summary: curves live in `metrics`, records in `insertions`."""

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


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` says the database connection failed (dropped, refused, server restarting,
    SQLite busy): the write did not happen, or did not certainly happen, and may be tried again.
    A refused statement (constraint, bad data) is not one."""
    if not isinstance(exc, DBAPIError):
        return False
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError | InterfaceError)


def retry_while_leased(claim: ClaimedJob, what: str, write: Callable[[bool], T]) -> T:
    """Run `write(retried)`; on a connection error try again with exponential backoff for as
    long as the claim's lease holds (after that another worker may own the job, so the error is
    raised). `retried` is True from the second try on: the first may have committed."""
    delay = RETRY_FIRST_DELAY_S
    retried = False
    while True:
        try:
            return write(retried)
        except DBAPIError as exc:
            if not is_connection_error(exc):
                raise
            left = (claim.lease_expires_at - utcnow()).total_seconds()
            if left <= delay:
                log.error("job %s: %s failed and the lease is over: %s", claim.job_id, what, exc)
                raise
            log.warning(
                "job %s: %s failed (%s); retrying in %.1f s",
                claim.job_id,
                what,
                type(exc.orig or exc).__name__,
                delay,
            )
            time.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_DELAY_S)
            retried = True


# --------------------------------------------------------------------------- enqueue / cancel


def enqueue_job(
    session: Session,
    spec: dict[str, Any],
    *,
    priority: int = 0,
    max_attempts: int | None = None,
) -> Job:
    """Validate `spec`, store it as a queued job and commit; raises `SpecError` on a bad spec."""
    from expansion.specs.experiments import SweepExperiment
    from expansion.specs.parsing import parse_spec

    parsed = parse_spec(spec)
    if max_attempts is None:
        from app.settings import get_settings

        max_attempts = get_settings().max_attempts
    if max_attempts < 1:
        raise QueueError(f"max_attempts must be at least 1 (got {max_attempts})")
    if isinstance(parsed, SweepExperiment):  # a parent job plus one queued job per grid point
        from app.queue.sweeps import enqueue_sweep

        return enqueue_sweep(session, parsed, priority=priority, max_attempts=max_attempts)
    job = Job(
        name=parsed.name,
        kind=parsed.kind,
        spec=parsed.model_dump(mode="json"),
        status=JobStatus.QUEUED,
        priority=priority,
        attempts=0,
        max_attempts=max_attempts,
        progress=0.0,
        stage="queued",
        message="",
        cancel_requested=False,
        created_at=utcnow(),
        devices=devices_needed(parsed),
    )
    session.add(job)
    session.commit()
    return job


def cancel_job(session: Session, job_id: int) -> Job:
    """Cancel a job and commit: a queued job becomes `cancelled` and never starts; a running one
    gets `cancel_requested` (its worker stops it); a finished job is returned unchanged."""
    now = utcnow()
    if session.in_transaction():
        # End the caller's (read) transaction so this one starts as a writer: on SQLite a
        # read transaction that later writes can fail at once instead of waiting for the lock.
        session.commit()
    begin_write(session)
    cancelled = affected_rows(
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.CANCELLED,
                finished_at=now,
                stage="cancelled",
                message="cancelled before it started",
            )
            .execution_options(synchronize_session=False)
        )
    )
    if not cancelled:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(cancel_requested=True, message="cancel requested")
            .execution_options(synchronize_session=False)
        )
    session.commit()
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    if job.kind == "sweep" and not job.is_finished:  # cancelling a sweep cancels its points
        from app.queue.sweeps import cancel_sweep_points

        job = cancel_sweep_points(session, job)
    return job


# --------------------------------------------------------------------------- claim / lease


def _sql_constant(value: str | int | float) -> Any:
    """`value` written into the SQL text instead of sent as a parameter (trusted constants only:
    enum values and numbers of this module, never input)."""
    if isinstance(value, str):
        return literal_column("'" + value.replace("'", "''") + "'")
    return literal_column(repr(value))


@functools.cache
def _claim_statement(*, asynchronous_commit: bool = False) -> Any:
    """The claim statement, built once (its parameters are bound per call): building and
    hashing a fresh statement cost more CPU than the database spends on the claim.

    Everything that does not change between claims is SQL text, not a parameter. This matters
    for `status = 'queued'`: psycopg prepares the statement on the server after a few runs, and
    a prepared plan that must work for any `status` value cannot use the partial index
    `ix_jobs_queued` (its condition is `status = 'queued'`), so PostgreSQL either plans the
    claim afresh every time or, once the table is small enough for the generic plan to look
    as cheap, settles on a scan and sort of the whole table for every later claim. With the
    constants in the text the prepared statement has one plan, on the partial index, and is
    planned once per connection.

    `asynchronous_commit` (PostgreSQL only) makes the statement switch `synchronous_commit`
    off for its own transaction (`set_config(..., true)` is `SET LOCAL` as a function): see
    `claim_next_job` for why a claim may skip the wait for its WAL flush."""
    queued = _sql_constant(JobStatus.QUEUED.value)
    pick = (
        select(Job.id)
        .where(Job.status == queued, Job.devices <= bindparam("capacity"))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(_sql_constant(1))
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
    )
    returned: list[Any] = [Job.id, Job.spec, Job.attempts, Job.max_attempts, Job.cancel_requested]
    if asynchronous_commit:
        # In RETURNING: evaluated once, for the claimed row, before the statement's implicit
        # transaction commits (and not at all when there is no claim to commit).
        returned.append(
            func.set_config(
                _sql_constant("synchronous_commit"), _sql_constant("off"), literal_column("true")
            ).label("commit_mode")
        )
    return (
        update(Job)
        .where(Job.id == pick.scalar_subquery(), Job.status == queued)
        .values(
            status=_sql_constant(JobStatus.RUNNING.value),
            lease_owner=bindparam("owner"),
            lease_token=bindparam("token"),
            lease_expires_at=bindparam("expires", type_=Job.lease_expires_at.type),
            heartbeat_at=bindparam("now", type_=Job.heartbeat_at.type),
            attempts=Job.attempts + _sql_constant(1),
            started_at=bindparam("now", type_=Job.started_at.type),
            progress=_sql_constant(0.0),
            stage=_sql_constant("starting"),
            message=bindparam("message"),
            error=null(),
        )
        .returning(*returned)
        .execution_options(synchronize_session=False)
    )


_CLAIM_PARAMETERS = frozenset({"owner", "token", "expires", "now", "message", "capacity"})
"""The claim statement's bound parameters (everything else in it is SQL text)."""


_CLAIM_SQL: dict[type[Dialect], str] = {}


def _claim_sql(dialect: Dialect) -> str:
    """The PostgreSQL claim statement rendered for the driver (asynchronous commit on), once
    per dialect class."""
    sql = _CLAIM_SQL.get(type(dialect))
    if sql is None:
        compiled = _claim_statement(asynchronous_commit=True).compile(dialect=dialect)
        if set(compiled.params) != _CLAIM_PARAMETERS:  # a constant turned into a parameter
            raise QueueError(f"claim statement parameters {sorted(compiled.params)}")
        sql = _CLAIM_SQL[type(dialect)] = str(compiled)
    return sql


def _claim_row_postgresql(engine: Engine, params: dict[str, Any]) -> Sequence[Any] | None:
    """Run the claim on a connection of the claim engine (`claim_engine`: autocommit kept,
    no reset on return), straight on the driver's cursor.

    The claim's client side costs more CPU than its server side: SQLAlchemy's execution
    context and result objects were about half of it (a statement compiled once does not save
    them), and switching a pooled connection into autocommit and back most of the rest.
    Errors are turned into SQLAlchemy's as `Connection.execute` does (`OperationalError` etc.,
    the connection invalidated when the server is gone), which the worker's retry logic
    relies on."""
    claims = claim_engine(engine)
    sql = _claim_sql(claims.dialect)
    dbapi_error: type[DBAPIModule.Error] = claims.dialect.loaded_dbapi.Error
    pooled = claims.raw_connection()
    try:
        driver_connection = pooled.dbapi_connection
        if driver_connection is None:  # only after invalidation, never on a fresh checkout
            raise QueueError("the claim's pooled connection is closed")
        try:
            cursor = driver_connection.cursor()
            try:
                cursor.execute(sql, params)
                return cursor.fetchone()
            finally:
                cursor.close()
        except dbapi_error as exc:
            invalidated = claims.dialect.is_disconnect(exc, driver_connection, None)
            if invalidated:
                # The server went away: every pooled claim connection is as dead as this one.
                pooled.invalidate(exc)
                claims.dispose()
            raise DBAPIError.instance(
                sql,
                params,
                exc,
                dbapi_error,
                connection_invalidated=invalidated,
                dialect=claims.dialect,
            ) from exc
    finally:
        pooled.close()


def claim_next_job(
    session_factory: sessionmaker[Session],
    worker_id: str,
    lease_seconds: float,
    *,
    capacity: int = 1,
) -> ClaimedJob | None:
    """Claim the queued job of highest priority (oldest first) among those needing at most
    `capacity` devices (what the worker offers), under a new lease; None if none.

    On PostgreSQL the claim is one autocommitted `UPDATE ... WHERE id = (SELECT ... FOR UPDATE
    SKIP LOCKED LIMIT 1) RETURNING` statement: one round trip (no BEGIN, no COMMIT; with the
    worker's engine no liveness ping either), prepared on the server by the driver after a few
    claims. On SQLite it runs under BEGIN IMMEDIATE.

    On PostgreSQL the claim commits asynchronously (`synchronous_commit` off for its own
    transaction only): it does not wait for its WAL record to reach the disk. A crash of the
    database server in the fraction of a second before that flush can lose the claim, and that
    is safe: the row goes back to exactly what it was, a queued job with its attempt not
    counted, so another worker claims it again. The worker that had claimed it can never write
    to it: every later write is guarded by the claim's lease token, which the row no longer
    holds, so its first heartbeat finds the lease lost and stops the run (the same path as a
    lease taken over after expiry). The claim is durable as soon as any later synchronous
    commit reaches the disk (WAL is flushed in order), normally the worker's own registry
    update right after the claim, and at the latest after three `wal_writer_delay`s (0.6 s by
    default). Outcome writes (heartbeats, completion, failure, hand-back) stay synchronous."""
    token = secrets.token_hex(16)
    now = utcnow()
    expires = now + dt.timedelta(seconds=lease_seconds)
    params = {
        "owner": worker_id,
        "token": token,
        "expires": expires,
        "now": now,
        "message": f"claimed by {worker_id}",
        "capacity": capacity,
    }
    engine: Engine = session_factory.kw["bind"]
    row: Any
    if engine.dialect.name == "postgresql":
        row = _claim_row_postgresql(engine, params)
    else:
        with session_factory() as session:
            begin_write(session)
            row = session.execute(_claim_statement(), params).first()
            session.commit()
    if row is None:
        return None
    job_id, spec, attempts, max_attempts, cancel_requested = row[:5]
    log.info("worker %s claimed job %s (attempt %s)", worker_id, job_id, attempts)
    return ClaimedJob(
        job_id=job_id,
        lease_token=token,
        worker_id=worker_id,
        spec=dict(spec),
        attempt=attempts,
        max_attempts=max_attempts,
        lease_seconds=lease_seconds,
        lease_expires_at=expires,
        cancel_requested=bool(cancel_requested),
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


# --------------------------------------------------------------------------- finishing


def result_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result dict without its curves and insertion records, JSON-safe."""
    return json_safe({k: v for k, v in result.items() if k not in SUMMARY_DROPPED_KEYS})


def insertion_row(job_id: int, record: dict[str, Any]) -> dict[str, Any]:
    """The flattened `insertions` row of one insertion record (DESIGN.md 5)."""
    record = json_safe(record)
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
    for column, (section, key) in INSERTION_COLUMNS.items():
        row[column] = (record.get(section) or {}).get(key)
    if row["condition_holds"] is not None:
        row["condition_holds"] = bool(row["condition_holds"])
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


def complete_job(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    result: dict[str, Any],
    *,
    job_dir: Path | None = None,
    metrics: Sequence[MetricPoint] = (),
) -> bool:
    """Mark the job succeeded and store its summary, insertion rows, artifact rows and final
    metrics in one lease-guarded transaction that first deletes rows an earlier attempt left.

    The job's metrics are every point this attempt reported (stored by heartbeats, or still
    buffered in `metrics`) plus the result's curves, one row per (step, split, name): final
    test-set figures reported after training are kept. Retried on connection errors while the
    lease holds. False when the lease is lost."""
    names = list(result.get("artifacts") or [])
    if job_dir is not None and (job_dir / "result.json").is_file():
        names.append("result.json")
    artifacts = describe_artifacts(job_dir, names) if job_dir is not None else []
    points = [*metrics, *_curve_points(result)]
    insertions = [insertion_row(claim.job_id, r) for r in result.get("insertions") or []]
    final = {"result": result_summary(result), "progress": 1.0, "stage": "done", "message": ""}

    def write(retried: bool) -> bool:
        with session_factory() as session:
            begin_write(session)
            if not _end_attempt(session, claim, JobStatus.SUCCEEDED, final):
                session.rollback()
                return retried and _already_ended(session, claim, JobStatus.SUCCEEDED)
            job_id = claim.job_id
            session.execute(delete(Insertion).where(Insertion.job_id == job_id))
            session.execute(delete(Artifact).where(Artifact.job_id == job_id))
            _store_attempt_metrics(session, claim, points)
            if insertions:
                session.execute(insert(Insertion), insertions)
            if artifacts:
                session.execute(insert(Artifact), [{"job_id": job_id, **a} for a in artifacts])
            session.commit()
        return True

    if not retry_while_leased(claim, "storing the result", write):
        log.warning("job %s: lease lost before completion", claim.job_id)
        return False
    log.info("job %s succeeded", claim.job_id)
    return True


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


def _finish(
    session_factory: sessionmaker[Session],
    claim: ClaimedJob,
    status: JobStatus,
    values: dict[str, Any],
    metrics: Sequence[MetricPoint],
) -> bool:
    def write(retried: bool) -> bool:
        with session_factory() as session:
            begin_write(session)
            if not _end_attempt(session, claim, status, values):
                session.rollback()
                return retried and _already_ended(session, claim, status)
            _store_attempt_metrics(session, claim, metrics)
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
) -> bool:
    """Mark the job failed for good with `error` as the reason; False when the lease is lost."""
    first_line = error.strip().splitlines()[-1] if error.strip() else "failed"
    return _finish(
        session_factory,
        claim,
        JobStatus.FAILED,
        {"error": error, "stage": "failed", "message": first_line[:500]},
        metrics,
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
                message="worker lost; attempts exhausted",
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


def lease_is_held(session_factory: sessionmaker[Session], claim: ClaimedJob) -> bool:
    """True while `claim` still holds its job's lease (read only)."""
    with session_factory() as session:
        found = session.execute(select(Job.id).where(*_guard(claim))).first()
    return found is not None
