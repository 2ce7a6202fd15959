"""A queued job that no live worker can run is flagged (issue 24): `warning` in the API's job
resource, in `jobs list` and on the pages, as soon as the live workers' rows say so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app import queue
from app.api.main import create_app
from app.commands.job_display import describe_job
from app.db.models import Job, Worker
from app.db.session import session_factory
from app.settings import Settings
from app.worker import registry as worker_registry

SPEC: dict[str, Any] = {"kind": "train", "model": {"kind": "mlp"}}


def _job_needing(url: str, devices: int) -> int:
    with session_factory(url)() as session:
        job = queue.enqueue_job(session, dict(SPEC))
        # The device count is what the claim and the warning read (the spec's train.devices).
        session.execute(update(Job).where(Job.id == job.id).values(devices=devices))
        session.commit()
        return job.id


def _get(client: TestClient, job_id: int) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
    return body


def test_job_needing_more_devices_than_any_live_worker_is_flagged(
    sqlite_url: str, tmp_path: Path
) -> None:
    sessions = session_factory(sqlite_url)
    big, small = _job_needing(sqlite_url, 4), _job_needing(sqlite_url, 2)
    app = create_app(Settings(database_url=sqlite_url, artifact_dir=tmp_path, lease_seconds=60))
    with TestClient(app) as client:
        assert _get(client, big)["warning"] is None  # no live worker: nothing to compare with

        worker_registry.register_worker(sessions, "host:1:a", "host", 1, "cpu:2")
        warning = _get(client, big)["warning"]
        assert warning is not None and "needs 4 devices" in warning and "offers is 2" in warning
        assert _get(client, small)["warning"] is None
        listed = {j["id"]: j["warning"] for j in client.get("/api/v1/jobs").json()["items"]}
        assert listed == {big: warning, small: None}
        assert f"warning: {warning}" in describe_job(_get(client, big))
        assert warning in client.get(f"/jobs/{big}").text
        assert warning in client.get("/jobs").text

        # A worker offering enough starts: the warning goes with its first row.
        worker_registry.register_worker(sessions, "host:2:b", "host", 2, "cpu:4")
        assert _get(client, big)["warning"] is None
        assert "needs 4 devices" not in client.get(f"/jobs/{big}").text

        # ... and comes back once that worker is silent for a lease (dead).
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        with sessions() as session:
            session.execute(
                update(Worker).where(Worker.id == "host:2:b").values(last_seen=long_ago)
            )
            session.commit()
        assert _get(client, big)["warning"] == warning


def test_a_discarded_result_note_is_shown_with_the_job(sqlite_url: str, tmp_path: Path) -> None:
    job_id = _job_needing(sqlite_url, 1)
    note = "the result of attempt 1 was discarded: another attempt had started"
    with session_factory(sqlite_url)() as session:
        session.execute(update(Job).where(Job.id == job_id).values(warning=note))
        session.commit()
    app = create_app(Settings(database_url=sqlite_url, artifact_dir=tmp_path))
    with TestClient(app) as client:
        assert _get(client, job_id)["warning"] == note
        assert note in client.get(f"/jobs/{job_id}").text
