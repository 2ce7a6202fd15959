"""Claiming the next job: one statement that picks, leases and returns it."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Engine,
    bindparam,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIModule
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app.db.enums import JobStatus
from app.db.models import (
    Job,
    utcnow,
)
from app.db.session import begin_write, claim_engine
from app.queue.lease import ClaimedJob, QueueError

log = logging.getLogger(__name__)


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
    """Run the claim on a connection of the claim engine (`execute_autocommitted`)."""
    return execute_autocommitted(engine, _claim_sql(claim_engine(engine).dialect), params)


def execute_autocommitted(engine: Engine, sql: str, params: dict[str, Any]) -> Sequence[Any] | None:
    """Run one statement, rendered for the driver, as its own transaction on a connection of
    the claim engine (`claim_engine`: autocommit kept, no reset on return), straight on the
    driver's cursor; returns its first row. The claim and the one-statement finish
    (`app.queue.finish_statement`) use it.

    The claim's client side costs more CPU than its server side: SQLAlchemy's execution
    context and result objects were about half of it (a statement compiled once does not save
    them), and switching a pooled connection into autocommit and back most of the rest.
    Errors are turned into SQLAlchemy's as `Connection.execute` does (`OperationalError` etc.,
    the connection invalidated when the server is gone), which the worker's retry logic
    relies on."""
    claims = claim_engine(engine)
    dbapi_error: type[DBAPIModule.Error] = claims.dialect.loaded_dbapi.Error
    try:
        pooled = claims.raw_connection()
    except dbapi_error as exc:
        # `raw_connection` passes the driver's error through as is (connection refused while
        # the server is down): wrap it like `Engine.connect` does, so the retry policy sees a
        # connection error.
        raise DBAPIError.instance(
            None, None, exc, dbapi_error, connection_invalidated=True, dialect=claims.dialect
        ) from exc
    try:
        driver_connection = pooled.dbapi_connection
        if driver_connection is None:  # only after invalidation, never on a fresh checkout
            raise QueueError("the queue's pooled connection is closed")
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
