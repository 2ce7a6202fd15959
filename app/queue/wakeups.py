"""Wake-ups for idle workers: LISTEN on PostgreSQL's `jumpboard_jobs` channel, which a trigger
(migration 0013) notifies whenever a job becomes queued, so an idle worker claims a new job at
once instead of at its next poll. Polling stays: the wait still ends after the poll interval
(the fallback for a lost notification, a job whose retry delay ran out, SQLite, or a listening
connection that broke and is being reconnected).
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "jumpboard_jobs"
"""The channel migration 0013's trigger notifies."""
STOP_CHECK_S = 0.25
"""Longest a wait goes without looking at the stop event."""
RECONNECT_S = 5.0
"""Wait before listening again after the listening connection failed."""


def libpq_conninfo(database_url: str) -> str | None:
    """The libpq connection string of a PostgreSQL SQLAlchemy URL; None for other databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Wakeups:
    """One worker's listening connection (opened on the first wait, reopened after a failure).
    `wait` returns early when a job was queued; `notified` counts those wake-ups."""

    def __init__(self, database_url: str) -> None:
        self.conninfo = libpq_conninfo(database_url)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._next_connect = 0.0
        self.notified = 0

    @property
    def listening(self) -> bool:
        """True while a listening connection is open."""
        return self._conn is not None

    def _listen(self) -> bool:
        """Open the listening connection; True when it is open."""
        assert self.conninfo is not None
        try:
            self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            self._conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("not listening for queued jobs (%s); polling", exc.__class__.__name__)
            self.close()
            self._next_connect = time.monotonic() + RECONNECT_S
            return False
        return True

    def wait(
        self, seconds: float, stop: threading.Event, *, listening_seconds: float | None = None
    ) -> bool:
        """Wait up to `seconds` (`listening_seconds` instead while listening: a notification
        ends the wait, so the fallback poll can be rarer), or until a job is queued or `stop`
        is set; True when woken by a queued job (or just after listening again, when one may
        have been missed)."""
        if self.conninfo is None:
            stop.wait(seconds)
            return False
        if self._conn is not None and listening_seconds is not None:
            seconds = listening_seconds
        deadline = time.monotonic() + seconds
        if self._conn is None:
            if time.monotonic() < self._next_connect or not self._listen():
                stop.wait(seconds)
                return False
            return True  # nothing was heard while not listening: look at the queue now
        conn = self._conn
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                timeout = min(left, STOP_CHECK_S)
                heard = any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
                if heard:  # one claim answers every job queued so far: drop the rest
                    for _ in conn.notifies(timeout=0.0):
                        pass
            except psycopg.Error as exc:
                log.warning("listening connection lost (%s); polling", exc.__class__.__name__)
                self.close()
                self._next_connect = time.monotonic() + RECONNECT_S
                stop.wait(max(0.0, deadline - time.monotonic()))
                return False
            if heard:
                self.notified += 1
                return True
        return False

    def close(self) -> None:
        """Close the listening connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("closing the listening connection failed", exc_info=True)
