"""The worker under faults (issue 13): filesystem errors outside the job's process, a worker
loop that dies under `serve`, a slow fork server, dead workers' rows."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from app import queue
from app.artifacts import LocalArtifactStore, StoredArtifact
from app.db.enums import JobStatus
from app.db.models import Job
from app.db.models import Worker as WorkerRow
from app.db.session import session_factory
from app.settings import Settings
from app.worker import registry as worker_registry
from app.worker.loop import Worker, start_in_process_worker
from expansion.progress import ProgressReporter

WAIT_LIMIT_S = 60.0
"""Upper bound of every wait for a state change (a hang guard, not a timing assertion)."""


def quick_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """Reports one point and finishes."""
    reporter.metric(1, "train", "loss", 1.0)
    return {"kind": "train", "test_risk": 0.5}


def _settings(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "artifact_dir": tmp_path / "artifacts",
        "data_dir": tmp_path / "data",
        "lease_seconds": 5.0,
        "heartbeat_seconds": 0.2,
        "metrics_flush_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


def _enqueue(url: str, n: int) -> list[int]:
    with session_factory(url)() as session:
        return [
            queue.enqueue_job(session, {"kind": "train", "model": {"kind": "mlp"}}).id
            for _ in range(n)
        ]


def _job(url: str, job_id: int) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _wait_for(predicate: Any, what: str, limit: float = WAIT_LIMIT_S) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_job_folder_that_cannot_be_made_fails_the_job_not_the_worker(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 13.3: an OSError outside the child (artifact folder not writable) killed the
    worker and left the job `running`."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the artifact folder should be")
    first, second = _enqueue(sqlite_url, 2)
    worker = Worker(
        _settings(sqlite_url, tmp_path, artifact_dir=blocked),
        runner=quick_runner,
        poll_seconds=0.1,
    )
    assert worker.run(max_jobs=2) == 2
    for job_id in (first, second):
        job = _job(sqlite_url, job_id)
        assert job.status == JobStatus.FAILED
        assert "could not start the job" in (job.error or "")
        assert "Error" in (job.error or "")  # names the OSError subclass
    assert [o.status for _, o in worker.outcomes] == ["failed", "failed"]


def test_disk_error_while_storing_the_result_fails_the_job_not_the_worker(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.3: describing the artifacts (the artifact store hashing them) reads the disk in
    the worker; its OSError fails the job and the worker runs the next one."""
    first, second = _enqueue(sqlite_url, 2)
    calls = [0]
    original = LocalArtifactStore.publish

    def disk_full_once(
        store: LocalArtifactStore, job_id: int, attempt: int, folder: Path, names: Any
    ) -> list[StoredArtifact]:
        calls[0] += 1
        if calls[0] == 1:
            raise OSError(28, "No space left on device")
        return original(store, job_id, attempt, folder, names)

    monkeypatch.setattr(LocalArtifactStore, "publish", disk_full_once)
    worker = Worker(_settings(sqlite_url, tmp_path), runner=quick_runner, poll_seconds=0.1)
    assert worker.run(max_jobs=2) == 2
    job = _job(sqlite_url, first)
    assert job.status == JobStatus.FAILED and "No space left" in (job.error or "")
    assert _job(sqlite_url, second).status == JobStatus.SUCCEEDED


def test_in_process_worker_that_dies_is_restarted(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.3: under `serve` the worker thread died silently (here: the database refused
    its registration) and jobs waited forever; the supervisor restarts it after a backoff."""
    (job_id,) = _enqueue(sqlite_url, 1)
    failures = [1]
    original = worker_registry.register_worker

    def fails_once(*args: Any, **kwargs: Any) -> None:
        if failures[0]:
            failures[0] -= 1
            raise OSError("database file not reachable")
        original(*args, **kwargs)

    monkeypatch.setattr(worker_registry, "register_worker", fails_once)
    handle = start_in_process_worker(
        _settings(sqlite_url, tmp_path), runner=quick_runner, poll_seconds=0.1
    )
    try:
        _wait_for(lambda: _job(sqlite_url, job_id).status == JobStatus.SUCCEEDED, "the job")
        assert handle.alive
        assert handle.restarts == 1
        assert handle.last_error is not None and "not reachable" in handle.last_error
    finally:
        handle.stop(timeout=WAIT_LIMIT_S)
    assert not handle.alive


SLOW_PRELOAD = textwrap.dedent(
    """
    import os, time
    time.sleep(float(os.environ["SLOW_PRELOAD_SECONDS"]))
    with open(os.environ["SLOW_PRELOAD_MARK"], "w") as handle:
        handle.write(repr(time.time()))
    """
)

SLOW_START_WORKER = textwrap.dedent(
    """
    import sys
    import app.worker.loop
    from app.settings import Settings
    from app.worker.loop import Worker

    def runner(spec, out_dir, reporter, *, data_dir=None):
        reporter.metric(1, "train", "loss", 1.0)
        return {"kind": "train", "test_risk": 0.5}

    if __name__ == "__main__":
        app.worker.loop.JOB_PRELOAD = ["slow_preload"]
        settings = Settings(
            database_url=sys.argv[1], artifact_dir=sys.argv[2], data_dir=sys.argv[2],
            lease_seconds=30, heartbeat_seconds=0.2, metrics_flush_seconds=0.2,
        )
        print("ran", Worker(settings, runner=runner, poll_seconds=0.1).run(max_jobs=1))
    """
)


def test_worker_claims_only_after_its_fork_server_finished_importing(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 13.6: the worker claimed while its fork server still imported the training stack,
    so the first job's lease ran while no heartbeat could be sent."""
    (job_id,) = _enqueue(sqlite_url, 1)
    (tmp_path / "slow_preload.py").write_text(SLOW_PRELOAD)
    script = tmp_path / "slow_start_worker.py"
    script.write_text(SLOW_START_WORKER)
    mark = tmp_path / "preload-done"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "SLOW_PRELOAD_SECONDS": "2",
        "SLOW_PRELOAD_MARK": str(mark),
    }
    done = subprocess.run(
        [sys.executable, str(script), sqlite_url, str(tmp_path / "artifacts")],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT_S,
    )
    assert done.returncode == 0, done.stderr
    job = _job(sqlite_url, job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.started_at is not None
    assert job.started_at.timestamp() >= float(mark.read_text())


def test_dead_workers_are_removed_and_live_ones_kept(sqlite_url: str, tmp_path: Path) -> None:
    """Issue 13.10: a killed worker's row stayed listed as alive for ever."""
    sessions = session_factory(sqlite_url)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with sessions() as session:
        session.add(
            WorkerRow(
                id="host:1:dead",
                host="host",
                pid=1,
                devices="",
                started_at=long_ago,
                last_seen=long_ago,
            )
        )
        session.commit()
    worker = Worker(_settings(sqlite_url, tmp_path), runner=quick_runner, poll_seconds=0.1)
    worker_registry.register_worker(sessions, "host:2:live", "host", 2, "")
    with sessions() as session:
        assert worker_registry.count_live_workers(session, dt.timedelta(seconds=5)) == (1, 1)
    assert worker.run(exit_when_idle=True) == 0
    with sessions() as session:
        assert session.get(WorkerRow, "host:1:dead") is None
        assert session.get(WorkerRow, "host:2:live") is not None
