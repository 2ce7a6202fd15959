"""Device ownership: what a worker offers decides what it claims, and a GPU has one owner.

Runners here are plain module functions (pickled by reference into the fork server's child).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app import queue
from app.db.models import Job
from app.db.models import Worker as WorkerRow
from app.db.session import session_factory
from app.devices import DeviceBusy, DeviceLocks, parse_devices
from app.settings import Settings
from app.worker.loop import Worker
from expansion.progress import ProgressReporter

WAIT_LIMIT_S = 60.0
"""Upper bound of every wait for a state change (a hang guard, not a timing assertion)."""


def environment_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """Reports which GPUs the job was given; a job named `gated` first waits for the file
    `data_dir/open` (so that its worker stays busy while the test looks)."""
    if spec["name"] == "gated":
        assert data_dir is not None
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not (data_dir / "open").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return {"kind": "train", "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        device_lock_dir=tmp_path / "locks",
        lease_seconds=5.0,
        heartbeat_seconds=0.2,
        metrics_flush_seconds=0.2,
    )


def _enqueue(url: str, devices: int, name: str = "") -> int:
    spec = {
        "kind": "train",
        "name": name or f"needs-{devices}",
        "model": {"kind": "mlp"},
        "train": {"devices": devices, "batch_size": 64},
    }
    with session_factory(url)() as session:
        return queue.enqueue_job(session, spec).id


def _job(url: str, job_id: int) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _wait_registered(url: str, worker: Worker) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        with session_factory(url)() as session:
            if session.get(WorkerRow, worker.worker_id) is not None:
                return
        time.sleep(0.05)
    raise AssertionError(f"worker {worker.worker_id} never registered")


def test_offers_parse_into_counts_and_job_environments() -> None:
    assert (parse_devices("").count, parse_devices("").cuda_visible_devices) == (1, None)
    assert (parse_devices(" 2, 0 ").count, parse_devices("2,0").cuda_visible_devices) == (2, "2,0")
    assert (parse_devices("cpu:3").count, parse_devices("cpu:3").cuda_visible_devices) == (3, "")
    for bad in ("gpu0", "0,0", "cpu:0", "cpu:x", "1;2"):
        with pytest.raises(ValueError):
            parse_devices(bad)


@pytest.mark.postgres
def test_a_one_device_worker_leaves_a_two_device_job_queued(
    postgres_url: str, tmp_path: Path
) -> None:
    two = _enqueue(postgres_url, 2)  # older and first in line
    one = _enqueue(postgres_url, 1)
    assert _job(postgres_url, two).devices == 2 and _job(postgres_url, one).devices == 1
    worker = Worker(
        _settings(postgres_url, tmp_path), runner=environment_runner, devices="0", poll_seconds=0.1
    )
    assert worker.run(exit_when_idle=True) == 1
    assert _job(postgres_url, one).status == "succeeded"
    assert _job(postgres_url, two).status == "queued"
    big = Worker(
        _settings(postgres_url, tmp_path),
        runner=environment_runner,
        devices="0,1",
        poll_seconds=0.1,
    )
    assert big.run(exit_when_idle=True) == 1
    done = _job(postgres_url, two)
    assert done.status == "succeeded" and done.result is not None
    assert done.result["cuda_visible_devices"] == "0,1"


@pytest.mark.postgres
def test_sweep_points_record_the_devices_they_need(postgres_url: str) -> None:
    sweep = {
        "kind": "sweep",
        "name": "grid",
        "model": {"kind": "mlp"},
        "train": {"batch_size": 64},
        "grid": {"train.devices": [1, 2]},
    }
    with session_factory(postgres_url)() as session:
        parent = queue.enqueue_job(session, sweep)
        points = session.scalars(select(Job).where(Job.parent_id == parent.id)).all()
        assert sorted((p.spec["train"]["devices"], p.devices) for p in points) == [(1, 1), (2, 2)]


@pytest.mark.postgres
def test_a_gpu_has_one_owner_per_host_and_workers_pin_their_own(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = _settings(postgres_url, tmp_path)
    gated = _enqueue(postgres_url, 1, "gated")
    first = Worker(settings, runner=environment_runner, devices="0", poll_seconds=0.05)
    running = threading.Thread(target=first.run, kwargs={"max_jobs": 1})
    running.start()
    try:
        _wait_registered(postgres_url, first)
        same = Worker(settings, runner=environment_runner, devices="1,0", poll_seconds=0.05)
        with pytest.raises(DeviceBusy, match="GPU 0 is already owned by worker"):
            same.run(exit_when_idle=True)
        with session_factory(postgres_url)() as session:
            assert session.get(WorkerRow, same.worker_id) is None  # never listed
        # The refused worker kept nothing: GPU 1 is free, GPU 0 still owned.
        free = DeviceLocks(parse_devices("1"), settings.device_lock_dir)
        free.acquire("probe")
        free.release()
        with pytest.raises(DeviceBusy):
            DeviceLocks(parse_devices("0"), settings.device_lock_dir).acquire("probe")
        deadline = time.monotonic() + WAIT_LIMIT_S
        while _job(postgres_url, gated).status != "running":  # the first worker is busy
            assert time.monotonic() < deadline, "the gated job never started"
            time.sleep(0.05)
        plain = _enqueue(postgres_url, 1)
        other = Worker(settings, runner=environment_runner, devices="2", poll_seconds=0.05)
        assert other.run(exit_when_idle=True) == 1
    finally:
        (settings.data_dir / "open").parent.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / "open").touch()
        running.join(WAIT_LIMIT_S)
    results = {j: _job(postgres_url, j).result or {} for j in (gated, plain)}
    assert results[gated]["cuda_visible_devices"] == "0"
    assert results[plain]["cuda_visible_devices"] == "2"
    # Once the first worker stopped, its GPU is free again.
    DeviceLocks(parse_devices("0"), settings.device_lock_dir).acquire("after")


@pytest.mark.postgres
def test_the_worker_command_refuses_a_gpu_another_worker_owns(
    postgres_url: str, tmp_path: Path
) -> None:
    locks = tmp_path / "locks"
    owner = DeviceLocks(parse_devices("0"), locks)
    owner.acquire("host-a:123:abc")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPBOARD_")}
    env["JUMPBOARD_DEVICE_LOCK_DIR"] = str(locks)
    argv = [sys.executable, "-m", "app.cli", "worker", "--devices", "1,0"]
    proc = subprocess.run(
        [*argv, "--database-url", postgres_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT_S,
        check=False,
    )
    owner.release()
    assert proc.returncode == 2, proc.stderr
    assert "jumpboard worker: --devices: GPU 0 is already owned by worker host-a:123:abc" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
