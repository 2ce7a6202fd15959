"""One job on two CPU processes (DDP over gloo) through a real worker and PostgreSQL.

Parity: the same seed on one device and on two gives the same final training loss and the
same trained network up to float summation order; the tolerance is rel 1e-4 (docs/specs.md,
`train.devices`). The spec's last global batch is short (300 samples, batch 64), so the
weighting of unequal shards is part of what is checked; augmentation is on (every rank draws
the whole global batch's augmentation, so it agrees too).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from job_polling import read_job, wait_for_job
from recording_reporter import RecordingReporter
from sqlalchemy import select

from app import queue
from app.db.models import Artifact, Metric
from app.db.session import session_factory
from app.settings import Settings
from app.worker.loop import Worker
from expansion.distributed.launch import RANK_PIDS_FILE
from expansion.experiments import run_experiment

pytestmark = pytest.mark.postgres

WAIT_LIMIT_S = 240.0
"""Upper bound of every wait for a state change (a hang guard, not a timing assertion)."""
PARITY_REL = 1e-4
"""Relative tolerance of one-device vs two-device results (float summation order only)."""


def _spec(devices: int, epochs: int = 2, name: str = "ddp") -> dict[str, Any]:
    return {
        "kind": "train",
        "name": name,
        "data": {"name": "digits", "max_train_samples": 300, "augment": True},
        "model": {"kind": "mlp", "width": 16, "depth": 1},
        "train": {
            "epochs": epochs,
            "batch_size": 64,
            "accelerator": "cpu",
            "devices": devices,
            "seed": 3,
        },
    }


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        device_lock_dir=tmp_path / "locks",
        lease_seconds=30.0,
        heartbeat_seconds=0.5,
        metrics_flush_seconds=0.5,
    )


def _enqueue(url: str, spec: dict[str, Any]) -> int:
    with session_factory(url)() as session:
        return queue.enqueue_job(session, spec).id


_job = read_job
_wait_for = functools.partial(wait_for_job, limit_s=WAIT_LIMIT_S)


@pytest.mark.slow  # 40-70 s on a loaded 2-core machine: two rank interpreters plus the reference
def test_two_process_job_matches_one_process_and_is_recorded_once(
    postgres_url: str, tmp_path: Path
) -> None:
    job_id = _enqueue(postgres_url, _spec(devices=2))
    worker = Worker(_settings(postgres_url, tmp_path), devices="cpu:2", poll_seconds=0.1)
    assert worker.run(max_jobs=1) == 1
    job = _job(postgres_url, job_id)
    assert job.status == "succeeded", job.error
    assert job.devices == 2
    assert job.result is not None

    single = RecordingReporter()
    reference = run_experiment(_spec(devices=1), tmp_path / "single", single)

    job_dir = tmp_path / "artifacts" / str(job_id)
    written = json.loads((job_dir / "result.json").read_text())
    ddp_loss = written["curves"]["train/loss"][-1]
    one_loss = reference["curves"]["train/loss"][-1]
    assert ddp_loss[0] == one_loss[0] == reference["steps"] == job.result["steps"] == 10
    assert ddp_loss[1] == pytest.approx(one_loss[1], rel=PARITY_REL)
    for key in ("train_risk", "val_risk", "test_risk", "final_lr"):
        assert job.result[key] == pytest.approx(reference[key], rel=PARITY_REL), key

    with session_factory(postgres_url)() as session:
        rows = session.execute(
            select(Metric.step, Metric.split, Metric.name, Metric.value).where(
                Metric.job_id == job_id
            )
        ).all()
        artifacts = session.scalars(select(Artifact.path).where(Artifact.job_id == job_id)).all()
    keys = Counter((step, split, name) for step, split, name, _ in rows)
    assert max(keys.values()) == 1, "a metric point was written twice"
    assert set(keys) == {(step, split, name) for step, split, name, _ in single.metrics}
    values = {(step, split, name): value for step, split, name, value in rows}
    for step, split, name, value in single.metrics:
        assert values[(step, split, name)] == pytest.approx(value, rel=PARITY_REL)
    assert sorted(artifacts) == ["base.ckpt", "result.json"]  # once, and nothing of rank 1
    assert not (job_dir / RANK_PIDS_FILE).exists()


def test_a_killed_rank_fails_the_job_and_the_worker_runs_the_next(
    postgres_url: str, tmp_path: Path
) -> None:
    long_job = _enqueue(postgres_url, _spec(devices=2, epochs=2000, name="long"))
    next_job = _enqueue(postgres_url, _spec(devices=1, name="next"))
    worker = Worker(_settings(postgres_url, tmp_path), devices="cpu:2", poll_seconds=0.1)
    running = threading.Thread(target=worker.run, kwargs={"max_jobs": 2})
    running.start()
    try:
        pids_file = tmp_path / "artifacts" / str(long_job) / RANK_PIDS_FILE
        _wait_for(postgres_url, long_job, lambda j: j.stage == "train" and j.progress > 0.0)
        pids = json.loads(pids_file.read_text())
        os.kill(pids["1"], signal.SIGKILL)
        failed = _wait_for(postgres_url, long_job, lambda j: j.status != "running")
        assert failed.status == "failed"
        assert "rank 1: killed by SIGKILL" in (failed.error or "")
        done = _wait_for(postgres_url, next_job, lambda j: j.status != "queued" and j.is_finished)
        assert done.status == "succeeded", done.error
    finally:
        worker.request_stop(hand_back=True)
        running.join(WAIT_LIMIT_S)
    _assert_ranks_end(pids.values())


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "zombie" not in state


def _assert_ranks_end(pids: Iterable[int]) -> None:
    """No rank outlives its job: each ends at once when the launcher terminates it, or within
    its parent-watch poll when a slow stop made the worker kill the launcher itself."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.2)
    assert not [pid for pid in pids if _running(pid)], "a rank outlived its job"


def test_cancel_stops_every_rank(postgres_url: str, tmp_path: Path) -> None:
    job_id = _enqueue(postgres_url, _spec(devices=2, epochs=2000, name="cancelled"))
    worker = Worker(_settings(postgres_url, tmp_path), devices="cpu:2", poll_seconds=0.1)
    running = threading.Thread(target=worker.run, kwargs={"max_jobs": 1})
    running.start()
    try:
        pids_file = tmp_path / "artifacts" / str(job_id) / RANK_PIDS_FILE
        _wait_for(postgres_url, job_id, lambda j: j.stage == "train" and j.progress > 0.0)
        pids = json.loads(pids_file.read_text())
        with session_factory(postgres_url)() as session:
            queue.cancel_job(session, job_id)
        cancelled = _wait_for(postgres_url, job_id, lambda j: j.is_finished)
        assert cancelled.status == "cancelled"
    finally:
        worker.request_stop(hand_back=True)
        running.join(WAIT_LIMIT_S)
    _assert_ranks_end(pids.values())
