"""The worker: forked job processes, failures that never kill the worker, cancel, stop.

Runners here are plain functions (the child is forked, so nothing is pickled); each job's spec
`name` picks what its runner does.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from job_polling import read_job, wait_for_job
from sqlalchemy import select

from app import queue
from app.db.models import Artifact, Insertion, Job, Metric, Worker
from app.db.session import session_factory
from app.settings import Settings
from app.worker.loop import Worker as JobWorker
from app.worker.loop import crash_reason, start_in_process_worker
from expansion.progress import ProgressReporter, check_stop

WAIT_LIMIT_S = 60.0
"""Upper bound of every wait for a state change (a hang guard, not a timing assertion)."""


def scripted_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """Behaves as the spec's name says: ok, raise, nan, exit, slow, stubborn."""
    name = spec["name"]
    reporter.progress(0.1, "train", f"pid {os.getpid()}")
    reporter.metric(1, "train", "loss", 2.0)
    if name == "raise":
        raise ValueError("boom from the job")
    if name == "nan":
        reporter.metric(2, "train", "loss", float("nan"))
        raise FloatingPointError("non-finite training loss nan at step 2")
    if name == "exit":
        os._exit(137)
    if name in ("slow", "stubborn"):
        for _ in range(int(WAIT_LIMIT_S * 20)):
            time.sleep(0.05)
            if name == "slow":
                check_stop(reporter)
        raise AssertionError("never stopped")
    (out_dir / "model.ckpt").write_bytes(b"tiny weights")
    return {
        "kind": "train",
        "test_risk": 0.25,
        "test_error": 0.1,
        "pid": os.getpid(),
        "data_dir": str(data_dir),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "curves": {"train/loss": [[1, 2.0], [2, 1.0]]},
        "artifacts": ["model.ckpt"],
    }


def _settings(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "artifact_dir": tmp_path / "artifacts",
        "data_dir": tmp_path / "data",
        "device_lock_dir": tmp_path / "device-locks",  # GPU ownership is per test, not per host
        "lease_seconds": 5.0,
        "heartbeat_seconds": 0.2,
        "metrics_flush_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


def _enqueue(url: str, *names: str) -> list[int]:
    with session_factory(url)() as session:
        return [
            queue.enqueue_job(session, {"kind": "train", "name": name, "model": {"kind": "mlp"}}).id
            for name in names
        ]


_job = read_job
_wait_for = functools.partial(wait_for_job, limit_s=WAIT_LIMIT_S)


def test_failing_jobs_fail_with_their_reason_and_the_worker_goes_on(
    db_url: str, tmp_path: Path
) -> None:
    ids = _enqueue(db_url, "raise", "nan", "exit", "ok")
    worker = JobWorker(
        _settings(db_url, tmp_path), runner=scripted_runner, devices="3", poll_seconds=0.1
    )
    assert worker.run(max_jobs=4) == 4
    raised, nan, exited, ok = (_job(db_url, i) for i in ids)
    assert raised.status == "failed" and "ValueError: boom from the job" in (raised.error or "")
    assert "Traceback" in (raised.error or "")
    assert nan.status == "failed" and "non-finite loss" in (nan.error or "")
    assert exited.status == "failed" and "exited with code 137" in (exited.error or "")
    assert ok.status == "succeeded", ok.error
    assert ok.result is not None
    assert ok.result["test_risk"] == 0.25
    assert ok.result["pid"] != os.getpid()  # ran in a child process
    assert ok.result["cuda_visible_devices"] == "3"
    assert ok.result["data_dir"] == str(tmp_path / "data")
    with session_factory(db_url)() as session:
        artifact = session.scalars(select(Artifact).where(Artifact.job_id == ok.id)).one()
        assert artifact.sha256 == hashlib.sha256(b"tiny weights").hexdigest()
        assert (tmp_path / "artifacts" / str(ok.id) / artifact.path).is_file()
        nan_points = session.execute(
            select(Metric.step, Metric.value).where(Metric.job_id == nan.id).order_by(Metric.step)
        ).all()
        assert [tuple(p) for p in nan_points] == [(1, 2.0), (2, None)]
        assert session.get(Worker, worker.worker_id) is None  # unregistered on exit
    assert [o.status for _, o in worker.outcomes] == ["failed"] * 3 + ["succeeded"]


def test_cancel_queued_job_is_never_run(db_url: str, tmp_path: Path) -> None:
    cancelled, ok = _enqueue(db_url, "ok", "ok")
    with session_factory(db_url)() as session:
        queue.cancel_job(session, cancelled)
    worker = JobWorker(_settings(db_url, tmp_path), runner=scripted_runner, poll_seconds=0.1)
    assert worker.run(exit_when_idle=True) == 1
    assert _job(db_url, cancelled).status == "cancelled"
    assert _job(db_url, cancelled).started_at is None
    assert _job(db_url, ok).status == "succeeded"


@pytest.mark.parametrize("name", ["slow", "stubborn"])
def test_cancel_running_job_stops_it(db_url: str, tmp_path: Path, name: str) -> None:
    (job_id,) = _enqueue(db_url, name)
    handle = start_in_process_worker(
        _settings(db_url, tmp_path), runner=scripted_runner, poll_seconds=0.1
    )
    try:
        _wait_for(db_url, job_id, lambda j: j.stage == "train")
        with session_factory(db_url)() as session:
            row = session.get(Worker, handle.worker.worker_id)
            assert row is not None and row.current_job_id == job_id and row.pid == os.getpid()
            assert queue.cancel_job(session, job_id).cancel_requested
        job = _wait_for(db_url, job_id, lambda j: j.is_finished)
        assert job.status == "cancelled"
        assert not job.cancel_requested
    finally:
        handle.stop(timeout=WAIT_LIMIT_S)
    assert not handle.alive
    outcome = handle.worker.outcomes[0][1]
    assert (outcome.status, outcome.recorded) == ("cancelled", True)


def test_worker_that_lost_its_lease_discards_the_job(db_url: str, tmp_path: Path) -> None:
    (job_id,) = _enqueue(db_url, "slow")
    handle = start_in_process_worker(
        _settings(db_url, tmp_path), runner=scripted_runner, poll_seconds=0.1
    )
    try:
        _wait_for(db_url, job_id, lambda j: j.stage == "train")
        # Another party takes the job over (as after a lease expiry and a reclaim).
        sessions = session_factory(db_url)
        with sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.lease_token, job.lease_owner = "taken-over", "someone-else"
            session.commit()
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not handle.worker.outcomes and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        handle.stop(timeout=WAIT_LIMIT_S)
    outcome = handle.worker.outcomes[0][1]
    assert (outcome.status, outcome.recorded) == ("lost", False)
    job = _job(db_url, job_id)
    assert (job.status, job.lease_owner, job.error) == ("running", "someone-else", None)


def test_stop_with_hand_back_requeues_the_running_job(db_url: str, tmp_path: Path) -> None:
    (job_id,) = _enqueue(db_url, "slow")
    handle = start_in_process_worker(
        _settings(db_url, tmp_path), runner=scripted_runner, poll_seconds=0.1
    )
    _wait_for(db_url, job_id, lambda j: j.stage == "train")
    handle.stop(timeout=WAIT_LIMIT_S, hand_back=True)
    assert not handle.alive
    job = _job(db_url, job_id)
    assert (job.status, job.attempts, job.lease_token) == ("queued", 0, None)


def test_crash_reasons_name_the_signal() -> None:
    assert "SIGKILL" in crash_reason(-9)
    assert "code 3" in crash_reason(3)


def test_real_tiny_job_end_to_end(sqlite_url: str, tmp_path: Path) -> None:
    with session_factory(sqlite_url)() as session:
        job_id = queue.enqueue_job(
            session,
            {
                "kind": "train",
                "data": {"name": "digits"},
                "model": {"kind": "mlp", "width": 16, "depth": 1},
                "train": {"epochs": 1, "accelerator": "cpu"},
            },
        ).id
    worker = JobWorker(_settings(sqlite_url, tmp_path, lease_seconds=30.0), poll_seconds=0.1)
    assert worker.run(max_jobs=1) == 1
    import torch

    assert not torch.cuda.is_initialized()  # the worker parent never touches CUDA
    job = _job(sqlite_url, job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None and 0.0 < job.result["test_risk"] < 10.0
    with session_factory(sqlite_url)() as session:
        assert session.scalars(select(Metric).where(Metric.job_id == job_id)).first() is not None
        names = set(session.scalars(select(Artifact.name).where(Artifact.job_id == job_id)))
        assert "result.json" in names
        assert not session.scalars(select(Insertion)).first()


def duplicate_records_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """Returns two insertion records with the same (position, seed): the store refuses them."""
    if spec["name"] == "ok":
        return scripted_runner(spec, out_dir, reporter, data_dir=data_dir)
    record = {"position": 0, "seed": 0, "descent": {}, "realized": {}}
    return {"kind": "expand", "test_risk": 0.1, "insertions": [record, dict(record)]}


def test_result_the_database_refuses_fails_the_job_not_the_worker(
    db_url: str, tmp_path: Path
) -> None:
    bad, ok = _enqueue(db_url, "duplicate", "ok")
    worker = JobWorker(
        _settings(db_url, tmp_path), runner=duplicate_records_runner, poll_seconds=0.1
    )
    assert worker.run(max_jobs=2) == 2
    job = _job(db_url, bad)
    assert job.status == "failed" and "could not store" in (job.error or "")
    assert job.result is None
    assert _job(db_url, ok).status == "succeeded"
