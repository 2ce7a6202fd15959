"""Wake-ups instead of polling: on PostgreSQL a queued job (submitted, a sweep's points, handed
back) notifies listening workers through migration 0013's trigger, a listening connection that
is cut falls back to polling and listens again; SQLite polls. An idle worker whose poll interval
is a minute still starts a submitted job: only the notification can have woken it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from job_polling import wait_for_job
from sqlalchemy import create_engine, text

from app import queue
from app.db.session import session_factory
from app.queue import wakeups as wakeups_module
from app.queue.wakeups import Wakeups
from app.settings import Settings
from app.worker.loop import Worker
from expansion.progress import ProgressReporter

SPEC = {"kind": "train", "model": {"kind": "mlp"}}
LONG_S = 60.0
"""A wait no notified test reaches (a hang guard, not a timing assertion)."""


def _enqueue_later(url: str, delay_s: float = 0.2) -> threading.Thread:
    def submit() -> None:
        threading.Event().wait(delay_s)
        with session_factory(url)() as session:
            queue.enqueue_job(session, SPEC)

    thread = threading.Thread(target=submit)
    thread.start()
    return thread


@pytest.mark.postgres
def test_a_submitted_job_wakes_a_listener(postgres_url: str) -> None:
    wakeups = Wakeups(postgres_url)
    stop = threading.Event()
    try:
        assert wakeups.wait(LONG_S, stop) is True  # just listening: look at the queue first
        assert wakeups.listening
        submitter = _enqueue_later(postgres_url)
        assert wakeups.wait(LONG_S, stop) is True
        submitter.join()
        assert wakeups.notified == 1
        # A claim and a finish notify nothing; handing the job back queues it again.
        claim = queue.claim_next_job(session_factory(postgres_url), "w", 30.0)
        assert claim is not None
        assert wakeups.wait(0.3, stop) is False
        assert queue.release_job(session_factory(postgres_url), claim)
        assert wakeups.wait(LONG_S, stop) is True
    finally:
        wakeups.close()


@pytest.mark.postgres
def test_stop_ends_the_wait_and_a_cut_connection_falls_back_to_polling(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wakeups_module, "RECONNECT_S", 0.0)
    wakeups = Wakeups(postgres_url)
    stop = threading.Event()
    assert wakeups.wait(LONG_S, stop)
    stop.set()
    assert wakeups.wait(LONG_S, stop) is False
    stop.clear()
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    engine.dispose()
    assert wakeups.wait(0.5, stop) is False  # the cut is noticed; this wait polls
    assert not wakeups.listening
    assert wakeups.wait(LONG_S, stop) is True  # listening again, the queue is looked at
    submitter = _enqueue_later(postgres_url)
    assert wakeups.wait(LONG_S, stop) is True
    submitter.join()
    wakeups.close()


def test_sqlite_polls(sqlite_url: str) -> None:
    wakeups = Wakeups(sqlite_url)
    assert wakeups.wait(0.05, threading.Event()) is False
    assert not wakeups.listening


def quick_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """A job that ends at once."""
    return {"kind": "train", "test_risk": 0.5}


@pytest.mark.postgres
def test_an_idle_worker_polling_once_a_minute_starts_a_submitted_job(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=postgres_url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        device_lock_dir=tmp_path / "locks",
        lease_seconds=10.0,
        heartbeat_seconds=0.5,
    )
    worker = Worker(settings, runner=quick_runner, poll_seconds=LONG_S)
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 1})
    thread.start()
    try:
        pause = threading.Event()
        while not worker.wakeups.listening and thread.is_alive():
            pause.wait(0.05)  # until it listens; then it waits out its minute
        with session_factory(postgres_url)() as session:
            job_id = queue.enqueue_job(session, SPEC).id
        # Sooner than the worker's next poll: a notification woke it.
        job = wait_for_job(postgres_url, job_id, lambda j: j.status == "succeeded", LONG_S / 2)
        assert job.result == {"kind": "train", "test_risk": 0.5}
    finally:
        worker.request_stop()
        thread.join(LONG_S)
