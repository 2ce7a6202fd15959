"""`expand.base_job`: a train job, then an expand job naming it that trains no base, answers,
and keeps its expanded network, which `jumpboard run --base` accepts; bad base jobs are 422s
before any training. Real PostgreSQL, the real worker and experiment runner."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.cli import main
from app.db.session import session_factory
from app.settings import Settings
from app.tokens import create_token
from app.worker.loop import Worker
from expansion.progress import ProgressReporter

TRAIN_SPEC: dict[str, Any] = {
    "kind": "train",
    "name": "base",
    "data": {"name": "digits", "certify_fraction": 0.2},
    "model": {"kind": "mlp", "width": 16, "depth": 2},
    "train": {"epochs": 2, "batch_size": 64, "accelerator": "cpu"},
}
EXPAND_SECTION: dict[str, Any] = {
    "select": "all",
    "seeds": [0, 1],
    "continue_steps": 5,
    "continue_lr": 1e-3,
    "line_search_points": 3,
}

Api = tuple[TestClient, dict[str, str], Settings]
"""(client, auth header, settings) of the service under test."""


@pytest.fixture
def api(postgres_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(
        database_url=postgres_url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        device_lock_dir=tmp_path / "device-locks",
        lease_seconds=30.0,
        heartbeat_seconds=0.5,
    )
    with session_factory(postgres_url)() as session:
        _, token = create_token(session, "base-job-test")
        session.commit()
    with TestClient(create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {token}"}, settings


def submit(api: Api, spec: dict[str, Any]) -> Any:
    client, auth, _ = api
    return client.post("/api/v1/jobs", json=spec, headers=auth)


def run_one_job(api: Api) -> None:
    assert Worker(api[2], poll_seconds=0.1).run(max_jobs=1) == 1


def test_an_expand_job_expands_a_finished_train_job(api: Api, tmp_path: Path) -> None:
    client, auth, settings = api
    created = submit(api, TRAIN_SPEC)
    assert created.status_code == 201, created.text
    base_id = created.json()["id"]

    # Before the base has finished: refused, naming the field.
    early = submit(api, {"kind": "expand", "expand": {**EXPAND_SECTION, "base_job": base_id}})
    assert early.status_code == 422
    assert '"expand","base_job"' in early.text and "queued" in early.text
    run_one_job(api)

    missing = submit(api, {"kind": "expand", "expand": {"base_job": 9999}})
    assert missing.status_code == 422 and "no job 9999" in missing.text
    wider = {"kind": "expand", "model": {**TRAIN_SPEC["model"], "width": 32}}
    wider["data"] = TRAIN_SPEC["data"]
    wider["expand"] = {**EXPAND_SECTION, "base_job": base_id}
    mismatch = submit(api, wider)
    assert mismatch.status_code == 422 and "model.width 16 (spec: 32)" in mismatch.text
    seeded = {**wider, "model": TRAIN_SPEC["model"], "data": {"name": "digits", "seed": 1}}
    assert "data.seed 0 (spec: 1)" in submit(api, seeded).text

    bare = {"kind": "expand", "expand": {**EXPAND_SECTION, "base_job": base_id}}
    accepted = submit(api, bare)
    assert accepted.status_code == 201, accepted.text
    expand_id = accepted.json()["id"]
    run_one_job(api)

    job = client.get(f"/api/v1/jobs/{expand_id}", headers=auth).json()
    assert job["status"] == "succeeded", job["error"]
    assert (
        job["spec"]["model"]
        == client.get(f"/api/v1/jobs/{base_id}", headers=auth).json()["spec"]["model"]
    )
    answer = job["answer"]
    assert answer["positions_continued"] == [0, 1, 2]
    listed = client.get(f"/api/v1/jobs/{expand_id}/artifacts", headers=auth).json()["items"]
    artifacts = {a["name"] for a in listed}
    assert "expanded.ckpt" in artifacts and "base.ckpt" not in artifacts
    job_dir = settings.job_dir(expand_id)
    result = yaml.safe_load((job_dir / "result.json").read_text())
    assert result["timings"]["train_s"] == 0.0
    assert result["expanded_checkpoint"]["position"] == answer["best_position"]

    # The expanded network is a base `jumpboard run --base` accepts, with a spec one deeper.
    deeper = copy.deepcopy(job["spec"])
    deeper["model"]["depth"] += 1
    deeper["expand"] = {**EXPAND_SECTION, "seeds": [0], "continue_steps": 2, "base_job": None}
    spec_file = tmp_path / "deeper.yaml"
    spec_file.write_text(yaml.safe_dump(deeper))
    out = tmp_path / "from-expanded"
    args = ["run", str(spec_file), "--out", str(out), "--base", str(job_dir / "expanded.ckpt")]
    assert main([*args, "--data-dir", str(settings.data_dir)]) == 0
    rerun = yaml.safe_load((out / "result.json").read_text())
    assert rerun["timings"]["train_s"] == 0.0
    assert len(rerun["scan"]["positions"]) == 4


def base_then_failure(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """Trains a 'base' (writes base.ckpt), then fails as a late problem would."""
    (out_dir / "base.ckpt").write_bytes(b"trained weights")
    raise ValueError("failed after training")


def test_a_job_failing_after_training_keeps_its_base(api: Api) -> None:
    client, auth, settings = api
    job_id = submit(api, {"kind": "expand", "data": {"name": "digits"}}).json()["id"]
    assert Worker(settings, runner=base_then_failure, poll_seconds=0.1).run(max_jobs=1) == 1
    job = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
    assert job["status"] == "failed" and "failed after training" in job["error"]
    listed = client.get(f"/api/v1/jobs/{job_id}/artifacts", headers=auth).json()["items"]
    assert [a["name"] for a in listed] == ["base.ckpt"]
