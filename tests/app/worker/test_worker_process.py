"""Worker processes: killed with SIGKILL mid-job (the job is reclaimed and finished once by
another worker), and stopped with SIGTERM (finish the job; a second SIGTERM hands it back)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app import queue
from app.db.models import Artifact, Insertion, Job, Metric
from app.db.session import session_factory
from app.settings import Settings
from app.worker.loop import Worker
from expansion.progress import ProgressReporter

WAIT_LIMIT_S = 60.0

WORKER_SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    from app.settings import Settings
    from app.worker.loop import Worker
    from expansion.progress import check_stop

    STEPS = int(sys.argv[3])

    def runner(spec, out_dir, reporter, *, data_dir=None):
        reporter.progress(0.0, "train", "")
        for step in range(1, STEPS + 1):
            reporter.metric(step, "train", "loss", 1.0 / step)
            reporter.progress(step / STEPS, "train", "")
            time.sleep(0.05)
            check_stop(reporter)
        return {"kind": "train", "test_risk": 0.5, "steps": STEPS}

    # Jobs run in children of a fork server, which imports this script to find `runner`.
    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO)
        settings = Settings(
            database_url=sys.argv[1], artifact_dir=sys.argv[2], data_dir=sys.argv[2],
            lease_seconds=1.5, heartbeat_seconds=0.2, metrics_flush_seconds=0.2,
        )
        worker = Worker(settings, runner=runner, poll_seconds=0.1, stop_grace_seconds=5)
        worker.install_signal_handlers(hand_back_first=sys.argv[4] == "hand-back")
        print("ran", worker.run(), flush=True)
    """
)


def _start_worker(
    url: str, tmp_path: Path, steps: int, on_sigterm: str = "finish"
) -> subprocess.Popen[str]:
    script = tmp_path / "worker_script.py"
    script.write_text(WORKER_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), url, str(tmp_path / "artifacts"), str(steps), on_sigterm],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: SIGKILL reaches worker and job child
    )


def _enqueue(url: str, n: int) -> list[int]:
    with session_factory(url)() as session:
        return [
            queue.enqueue_job(session, {"kind": "train", "model": {"kind": "mlp"}}).id
            for _ in range(n)
        ]


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _job(url: str, job_id: int) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _metric_attempts(url: str, job_id: int) -> list[int]:
    with session_factory(url)() as session:
        return list(session.scalars(select(Metric.attempt).where(Metric.job_id == job_id)))


def finishing_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """Finishes at once with two insertion records, a curve and one artifact."""
    reporter.metric(1, "train", "loss", 0.9)
    (out_dir / "base.ckpt").write_bytes(b"w")
    records = [
        {"position": p, "seed": 0, "descent": {"grad_norm_sq_unbiased": 0.1}, "realized": {}}
        for p in (0, 1)
    ]
    return {
        "kind": "expand",
        "test_risk": 0.4,
        "curves": {"train/loss": [[1, 0.9], [2, 0.8], [3, 0.7]]},
        "artifacts": ["base.ckpt"],
        "insertions": records,
    }


def test_sigkilled_worker_job_is_reclaimed_and_finished_once(db_url: str, tmp_path: Path) -> None:
    (job_id,) = _enqueue(db_url, 1)
    proc = _start_worker(db_url, tmp_path, steps=10_000)
    try:
        _wait(lambda: len(_metric_attempts(db_url, job_id)) >= 3, "the first attempt's metrics")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(WAIT_LIMIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert _job(db_url, job_id).status == "running"  # nobody knows yet
    assert set(_metric_attempts(db_url, job_id)) == {1}

    settings = Settings(
        database_url=db_url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        lease_seconds=5.0,
        heartbeat_seconds=0.2,
        metrics_flush_seconds=0.2,
    )
    rescuer = Worker(settings, runner=finishing_runner, poll_seconds=0.1)
    assert rescuer.run(max_jobs=1) == 1  # waits for the lease to expire, reclaims, runs
    job = _job(db_url, job_id)
    assert (job.status, job.attempts, job.lease_owner) == ("succeeded", 2, rescuer.worker_id)
    assert _metric_attempts(db_url, job_id) == [2, 2, 2]
    with session_factory(db_url)() as session:
        positions = session.scalars(select(Insertion.position).order_by(Insertion.position)).all()
        assert positions == [0, 1]
        assert session.scalar(select(func.count()).select_from(Artifact)) == 1


@pytest.mark.parametrize(
    ("signals", "on_sigterm"), [(1, "finish"), (2, "finish"), (1, "hand-back")]
)
def test_sigterm_finishes_the_job_and_a_second_hands_it_back(
    sqlite_url: str, tmp_path: Path, signals: int, on_sigterm: str
) -> None:
    first, second = _enqueue(sqlite_url, 2)
    proc = _start_worker(sqlite_url, tmp_path, steps=40, on_sigterm=on_sigterm)
    try:
        _wait(lambda: _job(sqlite_url, first).stage == "train", "the job to start")
        for _ in range(signals):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        output, _ = proc.communicate(timeout=WAIT_LIMIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    job = _job(sqlite_url, first)
    if signals == 1 and on_sigterm == "finish":
        assert job.status == "succeeded"
        assert job.result == {"kind": "train", "test_risk": 0.5, "steps": 40}
    else:
        assert (job.status, job.attempts, job.lease_token) == ("queued", 0, None)
    assert _job(sqlite_url, second).status == "queued"  # stopped claiming after the signal
