"""Engines and session factories for a database URL (SQLite or PostgreSQL).

SQLite gets WAL journaling, foreign keys and a busy timeout so that a worker process and the API
can share one file; PostgreSQL connections are checked before use (a liveness round trip per
checkout), except on the worker's engine (`pre_ping=False`): the queue retries its writes on
connection errors instead, so a claim costs one round trip. Engines are cached per URL in each
process (a forked child must call `dispose_engines()` before touching the database).
"""

from __future__ import annotations

import threading
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.settings import sqlite_path

SQLITE_BUSY_TIMEOUT_S = 30.0

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def is_sqlite(url: str) -> bool:
    """True for a SQLite URL."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off so that "begin" below can emit
    # BEGIN IMMEDIATE for read-then-write transactions (a deferred one could fail with
    # SQLITE_BUSY when it upgrades to a writer instead of waiting for the lock).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_db_engine(url: str, *, pre_ping: bool = True, **kwargs: Any) -> Engine:
    """A new engine for `url` with the pragmas/options this service relies on; `pre_ping`
    checks each PostgreSQL connection with a round trip before handing it out."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", pre_ping)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


NO_PRE_PING_SUFFIX = "#no-pre-ping"
CLAIM_SUFFIX = "#claims"


def get_engine(url: str, *, pre_ping: bool = True) -> Engine:
    """The process-wide cached engine for `url` (with or without a liveness ping per use)."""
    key = url if pre_ping or is_sqlite(url) else url + NO_PRE_PING_SUFFIX
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = create_db_engine(url, pre_ping=pre_ping)
        return engine


def claim_engine(engine: Engine) -> Engine:
    """The process-wide engine for the queue's claims on `engine`'s PostgreSQL database.

    Its connections are opened in autocommit mode and kept there, with no reset when they go
    back to the pool and no liveness ping: a claim is one autocommitted statement, and
    switching a shared connection into autocommit and back (and rolling it back on return)
    cost the client more CPU than the statement itself. The claim's caller handles a dropped
    connection (`app.queue`)."""
    url = engine.url.render_as_string(hide_password=False)
    key = url + CLAIM_SUFFIX
    with _LOCK:
        claims = _ENGINES.get(key)
        if claims is None:
            claims = _ENGINES[key] = create_db_engine(
                url,
                pre_ping=False,
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,
                pool_size=2,
                max_overflow=8,
            )
        return claims


def session_factory(url_or_engine: str | Engine, *, pre_ping: bool = True) -> sessionmaker[Session]:
    """A session factory bound to the cached engine of a URL (or to the given engine).

    `pre_ping=False` (the worker's queue calls) skips the liveness round trip on each use; its
    callers must retry on connection errors (`app.queue.retry_while_leased`)."""
    if isinstance(url_or_engine, str):
        engine = get_engine(url_or_engine, pre_ping=pre_ping)
    else:
        engine = url_or_engine
    return sessionmaker(bind=engine, expire_on_commit=False)


WRITE_OPTIONS: dict[str, Any] = {"sqlite_begin": "IMMEDIATE"}
"""Execution options for a transaction that reads then writes: takes SQLite's write lock first."""


def begin_write(session: Session) -> None:
    """Start `session`'s transaction as a writer (BEGIN IMMEDIATE on SQLite; no-op elsewhere).

    Does nothing when the session's transaction has already begun."""
    if session.in_transaction():
        return
    session.connection(execution_options=WRITE_OPTIONS)


def forget_engine(url: str) -> None:
    """Dispose and forget the cached engine of `url` (before dropping its database)."""
    with _LOCK:
        keys = (url, url + NO_PRE_PING_SUFFIX, url + CLAIM_SUFFIX)
        engines = [_ENGINES.pop(key, None) for key in keys]
    for engine in engines:
        if engine is not None:
            engine.dispose()


def reset_pools() -> None:
    """Close every pooled connection of this process's cached engines (kept cached): after a
    database outage the pooled connections are dead, and each would otherwise fail once."""
    with _LOCK:
        engines = list(_ENGINES.values())
    for engine in engines:
        engine.dispose()


def dispose_engines(close: bool = True) -> None:
    """Forget every cached engine (after fork: `close=False` leaves the parent's sockets alone)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose(close=close)
        _ENGINES.clear()


def affected_rows(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (`Session.execute` is typed as returning a plain Result,
    which has no `rowcount`; for these statements it is a CursorResult)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)
