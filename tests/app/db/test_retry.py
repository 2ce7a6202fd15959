"""The worker's one retry policy (issue 25): backoff on connection errors only, one log line when
an outage begins and one when it ends, giving up on request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypedDict

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app.db.retry import OutageLog, call_with_retry, is_connection_error


class Delays(TypedDict):
    """The backoff keywords of `call_with_retry`."""

    first_delay_s: float
    max_delay_s: float


FAST: Delays = {"first_delay_s": 0.001, "max_delay_s": 0.002}


def _refused(text: str = "connection refused") -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(text))


def _failing(times: int, error: Exception) -> tuple[list[bool], Callable[[bool], str]]:
    calls: list[bool] = []

    def call(retried: bool) -> str:
        calls.append(retried)
        if len(calls) <= times:
            raise error
        return "done"

    return calls, call


def test_an_outage_is_retried_and_logged_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    outage = OutageLog()
    calls, call = _failing(5, _refused())
    with caplog.at_level(logging.DEBUG, logger="app.db.retry"):
        assert call_with_retry(call, "claiming", outage=outage, **FAST) == "done"
        assert call_with_retry(call, "claiming", outage=outage, **FAST) == "done"
    assert calls == [False, True, True, True, True, True, False]
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in lines] == ["ERROR", "WARNING"], caplog.text
    assert "cannot reach the database while claiming" in lines[0].getMessage()
    assert "reachable again" in lines[1].getMessage() and "5 failed tries" in lines[1].getMessage()
    assert outage.outages == 1 and not outage.down


def test_a_refused_statement_is_raised_at_once() -> None:
    refused = IntegrityError("INSERT", {}, Exception("duplicate key"))
    calls, call = _failing(1, refused)
    with pytest.raises(IntegrityError):
        call_with_retry(call, "storing", outage=OutageLog(), **FAST)
    assert calls == [False]


@pytest.mark.parametrize(
    "text",
    [
        'FATAL:  database "jumpboard" does not exist',
        'FATAL:  password authentication failed for user "jumpboard"',
    ],
)
def test_a_connection_refused_for_good_is_not_waited_for(text: str) -> None:
    assert not is_connection_error(_refused(text))
    assert is_connection_error(_refused("FATAL:  the database system is starting up"))


def test_give_up_ends_the_wait_with_the_connection_error() -> None:
    stop = threading.Event()
    calls, call = _failing(1_000, _refused())

    def give_up() -> bool:
        if len(calls) >= 3:
            stop.set()
        return stop.is_set()

    outage = OutageLog()
    with pytest.raises(OperationalError):
        call_with_retry(call, "registering", give_up=give_up, wake=stop, outage=outage, **FAST)
    assert len(calls) == 3 and outage.down
