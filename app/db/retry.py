"""One retry policy for a worker's database calls: exponential backoff on connection errors, and
one log line when an outage begins and one when it ends (not one per attempt).

A worker calls the database at every moment of its life: at start-up (the schema check), when it
registers, while it is idle (claims, housekeeping, its registry row), while a job runs
(heartbeats), when the job ends (the outcome) and when it stops (unregistering). Every one of
these goes through `call_with_retry`, so a database that goes away for seconds or minutes makes
the worker wait and carry on where it was, never exit with a traceback. Only connection errors
are retried (`is_connection_error`); a refused statement is raised at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_never,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from app.db.session import reset_pools

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.1
"""First wait after a connection error (then about doubled, with jitter)."""

MAX_DELAY_S = 5.0
"""Longest wait between two tries: how late a worker notices that the database is back."""


PERMANENT_CONNECT_FAILURES = (
    "does not exist",  # database or role
    "password authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
)
"""Phrases of a refused connection that waiting does not cure (the server answered: wrong
database, role or password). The driver gives no SQLSTATE for a failed connect, only text."""


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` says the database connection failed (dropped, refused, server restarting,
    SQLite busy): the write did not happen, or did not certainly happen, and may be tried again.
    A refused statement (constraint, bad data) is not one, nor a connection the server refused
    for good (`PERMANENT_CONNECT_FAILURES`)."""
    if not isinstance(exc, DBAPIError):
        return False
    if any(phrase in str(exc.orig or exc) for phrase in PERMANENT_CONNECT_FAILURES):
        return False
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError | InterfaceError)


def _reason(exc: BaseException) -> str:
    """The driver's one-line reason for a connection error."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


class OutageLog:
    """This process's view of the database: up, or down since a moment. Logs one line when an
    outage begins (the first failed call, whichever it was) and one when it ends (the first
    call that worked again), however many calls and tries fall in between. Thread-safe: the
    embedded worker shares the process with the API. `on_recovery` runs when an outage ends
    (closing the pooled connections that died with it, so none fails once more later)."""

    def __init__(self, on_recovery: Callable[[], None] | None = None) -> None:
        self._on_recovery = on_recovery
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failed_tries = 0
        self.outages = 0
        """Outages seen by this process so far."""

    @property
    def down(self) -> bool:
        """True between a failed call and the next call that worked."""
        return self._down_since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        """A call failed with a connection error while doing `what`."""
        with self._lock:
            self._failed_tries += 1
            if self._down_since is not None:
                log.debug("database still unreachable while %s: %s", what, _reason(exc))
                return
            self._down_since = time.monotonic()
            self.outages += 1
        log.error(
            "cannot reach the database while %s (%s); retrying with backoff until it is back",
            what,
            _reason(exc),
        )

    def succeeded(self) -> None:
        """A call worked: ends the outage, if there was one."""
        if self._down_since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._down_since is None:
                return
            lasted = time.monotonic() - self._down_since
            tries, self._failed_tries = self._failed_tries, 0
            self._down_since = None
        log.warning("database reachable again after %.1f s (%d failed tries)", lasted, tries)
        if self._on_recovery is not None:
            self._on_recovery()


DATABASE = OutageLog(on_recovery=reset_pools)
"""The process-wide outage log every retried call reports to."""


class _StopWhen(stop_base):
    """Give up once `stop()` is true (checked after each failed try)."""

    def __init__(self, stop: Callable[[], bool]) -> None:
        self._stop = stop

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._stop()


def call_with_retry(
    call: Callable[[bool], T],
    what: str,
    *,
    give_up: Callable[[], bool] | None = None,
    wake: threading.Event | None = None,
    outage: OutageLog = DATABASE,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """Run `call(retried)` until it returns, retrying connection errors with exponential backoff
    (from `first_delay_s` up to `max_delay_s`); `retried` is True from the second try on (the
    first may have committed before its connection dropped).

    Gives up, raising the last connection error, once `give_up()` is true (checked after each
    failed try); without it, retries for as long as the outage lasts. Setting `wake` cuts a
    wait short (a worker asked to stop checks `give_up` at once). Other errors are raised at
    once. Reports to `outage`, which logs the outage's first and last moments."""
    tries = 0

    def attempt() -> T:
        nonlocal tries
        tries += 1
        result = call(tries > 1)
        outage.succeeded()
        return result

    def note_failure(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if exc is not None:
                outage.failed(what, exc)

    def sleep(seconds: float) -> None:
        if wake is None:
            time.sleep(seconds)
        else:
            wake.wait(seconds)

    retrying = Retrying(
        retry=retry_if_exception(is_connection_error),
        wait=wait_exponential_jitter(
            multiplier=first_delay_s, max=max_delay_s, jitter=first_delay_s
        ),
        stop=stop_never if give_up is None else _StopWhen(give_up),
        after=note_failure,
        sleep=sleep,
        reraise=True,
    )
    return retrying(attempt)
