"""Sweep jobs: submitted through the API they become point jobs that two workers share; the
sweep's status follows its points; cancelling the sweep cancels its queued points; the sweep
route and CSV list every point. Against SQLite and a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_client import Api, make_api
from sqlalchemy import select

from app import queue
from app.db.models import Job
from app.db.session import session_factory
from app.worker.loop import start_in_process_worker
from expansion.progress import ProgressReporter

WAIT_LIMIT_S = 300.0
"""Upper bound of every wait for a state change (a hang guard, not a timing assertion)."""

SWEEP: dict[str, Any] = {
    "kind": "sweep",
    "name": "api sweep",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 8, "depth": 2},
    "train": {"epochs": 1, "batch_size": 64},
    "grid": {
        "model.scaling": ["constant", "inv_depth"],
        "model.depth": [1, 2],
        "train.seed": [0, 1],
    },
}


SHARED_SWEEP: dict[str, Any] = {
    **SWEEP,
    "grid": {"model.scaling": ["constant", "inv_depth"], "train.seed": [0, 1]},
}
"""Four points: small, so that the test stays quick on a busy machine."""


def fake_point_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """A sweep point's result shape without training; 1/L with seed 1 fails."""
    coords = spec["coordinates"]
    reporter.progress(0.5, "train", f"pid {os.getpid()}")
    time.sleep(0.3)  # long enough that both workers hold points at once
    if coords == {"model.scaling": "inv_depth", "train.seed": 1}:
        raise FloatingPointError("non-finite training loss at step 3")
    depth = spec["model"]["depth"]
    error = 0.1 * depth + 0.01 * spec["train"]["seed"]  # the base depth is 2
    arm = {
        "arm": "scratch",
        "depth": depth,
        "train_risk": 0.2,
        "train_error": 0.05,
        "test_risk": 0.3,
        "test_error": error,
        "input_sensitivity": {"estimate": 2.0, "standard_error": 0.1, "projections": 4},
        "capacity": {"branch_norm_sum": 1.5, "alpha_sum": 1.0},
    }
    return {
        "kind": "sweep_point",
        "spec": spec,
        "sweep_index": spec["sweep_index"],
        "coordinates": coords,
        "test_error": error,
        "arms": [arm],
        "curves": {"train/loss": [[1, 1.0]]},
        "pid": os.getpid(),
    }


@pytest.fixture
def db_api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from make_api(db_url, tmp_path, data_dir=tmp_path / "data")


def _jobs(url: str, parent_id: int) -> list[Job]:
    with session_factory(url)() as session:
        return list(session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.id)))


def _job(url: str, job_id: int) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _wait_finished(url: str, job_id: int) -> Job:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        job = _job(url, job_id)
        if job.is_finished:
            return job
        time.sleep(0.1)
    raise AssertionError(f"sweep {job_id} never finished: {job.status} {job.message}")


@pytest.mark.postgres
def test_a_sweeps_points_are_shared_by_two_workers(postgres_url: str, tmp_path: Path) -> None:
    api_iter = make_api(postgres_url, tmp_path, data_dir=tmp_path / "data")
    api = next(api_iter)
    try:
        sweep = api.submit(SHARED_SWEEP)
        assert sweep["kind"] == "sweep" and sweep["status"] == "running"
        points = _jobs(postgres_url, sweep["id"])
        assert len(points) == 4 and all(p.status == "queued" for p in points)
        assert [p.spec["sweep_index"] for p in points] == list(range(4))
        assert all(p.kind == "sweep_point" for p in points)
        child = api.client.get(f"/api/v1/jobs/{points[0].id}").json()
        assert child["parent_id"] == sweep["id"] and child["kind"] == "sweep_point"

        settings = api.settings.model_copy(
            update={"lease_seconds": 30.0, "heartbeat_seconds": 0.2, "metrics_flush_seconds": 0.2}
        )
        workers = [
            start_in_process_worker(settings, runner=fake_point_runner, poll_seconds=0.1)
            for _ in range(2)
        ]
        try:
            done = _wait_finished(postgres_url, sweep["id"])
        finally:
            for handle in workers:
                handle.stop(hand_back=False)
        points = _jobs(postgres_url, sweep["id"])
        statuses = [p.status for p in points]
        # One failed point fails only itself; the sweep succeeds with it counted.
        assert statuses == ["succeeded", "succeeded", "succeeded", "failed"]
        assert done.status == "succeeded"
        assert "3 succeeded, 1 failed" in done.message
        assert done.result is not None and done.result["failed"] == 1
        owners = {p.lease_owner for p in points}
        assert len(owners) == 2, owners  # both workers ran points
        # The sweep itself never ran in a worker.
        assert done.lease_owner is None and done.attempts == 0

        body = api.client.get(f"/api/v1/jobs/{sweep['id']}/sweep").json()
        assert len(body["rows"]) == 4
        failed = [r for r in body["rows"] if r["status"] == "failed"]
        assert len(failed) == 1 and "non-finite" in (failed[0]["error"] or "")
        means = {m["scaling"]: m for m in body["means"]["test_error"]}
        # constant: seeds 0 and 1 -> 0.20 and 0.21; a t-interval around 0.205.
        assert means["constant"]["mean"] == pytest.approx(0.205)
        assert means["constant"]["low"] < 0.205 < means["constant"]["high"]
        assert means["inv_depth"]["n"] == 1 and means["inv_depth"]["low"] is None

        response = api.client.get(body["csv"])
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 4
        assert {r["scaling"] for r in rows} == {"constant", "inv_depth"}
        assert rows[0]["coordinates"] == "model.scaling=constant;train.seed=0"
        assert rows[3]["status"] == "failed" and rows[3]["test_error"] == ""
    finally:
        api_iter.close()


def test_cancel_of_a_sweep_cancels_its_queued_points(db_api: Api, db_url: str) -> None:
    sweep = db_api.submit(SWEEP)
    # One point is running (claimed), the rest are queued.
    claim = queue.claim_next_job(session_factory(db_url), "w1", 30.0)
    assert claim is not None
    response = db_api.client.post(f"/api/v1/jobs/{sweep['id']}/cancel", headers=db_api.auth)
    assert response.status_code in (200, 202), response.text
    points = _jobs(db_url, sweep["id"])
    running = [p for p in points if p.id == claim.job_id]
    assert running[0].status == "running" and running[0].cancel_requested
    assert all(p.status == "cancelled" for p in points if p.id != claim.job_id)
    assert _job(db_url, sweep["id"]).status == "running"  # waits for its running point
    # The worker stops the running point; the sweep then ends cancelled.
    assert queue.mark_cancelled(session_factory(db_url), claim)
    from app.queue.sweeps import refresh_parent_of

    refresh_parent_of(session_factory(db_url), claim.job_id)
    done = _job(db_url, sweep["id"])
    assert done.status == "cancelled" and done.finished_at is not None
    assert queue.claim_next_job(session_factory(db_url), "w2", 30.0) is None


def test_a_sweep_is_validated_as_a_whole(db_api: Api) -> None:
    bad = {**SWEEP, "grid": {"model.depth": [2, 999], "train.lr": [-1.0], "model.bogus": [1]}}
    response = db_api.client.post("/api/v1/jobs", json=bad, headers=db_api.auth)
    assert response.status_code == 422
    locs = [tuple(d["loc"]) for d in response.json()["detail"]]
    assert ("body", "points", 1, "model", "depth") in locs
    assert ("body", "points", 0, "train", "lr") in locs
    assert ("body", "points", 0, "model", "bogus") in locs
    with session_factory(db_api.settings.database_url)() as session:
        assert session.scalars(select(Job)).first() is None  # nothing was queued


def test_each_points_compute_budget_is_checked(sqlite_url: str, tmp_path: Path) -> None:
    api_iter = make_api(sqlite_url, tmp_path, max_train_flops=10**9)
    api = next(api_iter)
    try:
        big = {**SWEEP, "grid": {"model.width": [8, 512]}}
        response = api.client.post("/api/v1/jobs", json=big, headers=api.auth)
        assert response.status_code == 422, response.text
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body", "points", 1, "train"]
        assert "model.width=512" in detail["msg"]
    finally:
        api_iter.close()


def test_a_real_tiny_sweep_runs_through_a_worker(sqlite_url: str, tmp_path: Path) -> None:
    from app.settings import Settings
    from app.worker.loop import Worker

    settings = Settings(
        database_url=sqlite_url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        lease_seconds=120.0,
    )
    tiny = {
        **SWEEP,
        "data": {"name": "digits", "max_train_samples": 200},
        "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
        "measures": {"projections": 2, "samples": 16},
        "grid": {"model.scaling": ["constant", "inv_depth"]},
    }
    with session_factory(sqlite_url)() as session:
        sweep_id = queue.enqueue_job(session, tiny).id
    assert Worker(settings, poll_seconds=0.1).run(max_jobs=2) == 2
    done = _job(sqlite_url, sweep_id)
    assert done.status == "succeeded", done.message
    for point in _jobs(sqlite_url, sweep_id):
        assert point.status == "succeeded", point.error
        assert point.result is not None and "curves" not in point.result
        (arm,) = point.result["arms"]
        assert arm["input_sensitivity"]["projections"] == 2
        assert arm["capacity"]["alpha_sum"] == pytest.approx(
            2.0 if point.spec["model"]["scaling"] == "constant" else 1.0
        )
