"""A worker keeping artifacts in an object store: the job writes into a scratch folder that is
uploaded and removed, and an outage of the store delays the job instead of failing it (the
worker retries while holding the lease, then hands the job back; it succeeds once the store is
back)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from job_polling import wait_for_job
from object_store import ObjectStore

from app import queue
from app.db.session import session_factory
from app.settings import Settings
from app.worker.loop import OutcomeStatus, Worker
from expansion.progress import ProgressReporter

LIMIT_S = 60.0
"""Hang guard of every wait (not a timing assertion)."""


def writing_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """A job that writes one checkpoint and its result file."""
    (out_dir / "model.ckpt").write_bytes(b"tiny weights")
    (out_dir / "result.json").write_text('{"kind": "train"}')
    return {"kind": "train", "test_risk": 0.5, "artifacts": ["model.ckpt"]}


@pytest.mark.postgres
def test_a_store_outage_hands_the_job_back_and_it_succeeds_later(
    postgres_url: str, tmp_path: Path, object_store: ObjectStore
) -> None:
    settings = Settings(
        database_url=postgres_url,
        artifact_dir=tmp_path / "artifacts",
        data_dir=tmp_path / "data",
        device_lock_dir=tmp_path / "locks",
        artifact_url=object_store.url,
        artifact_endpoint=object_store.endpoint,
        scratch_dir=tmp_path / "scratch",
        artifact_upload_patience_seconds=0.5,
        lease_seconds=5.0,
        heartbeat_seconds=0.2,
    )
    worker = Worker(settings, runner=writing_runner, poll_seconds=0.2)
    thread = threading.Thread(target=worker.run)
    thread.start()
    client = object_store.client()
    try:
        pause = threading.Event()
        while not worker.wakeups.listening and thread.is_alive():
            pause.wait(0.05)  # started: the store was checked
        client.delete_bucket(Bucket=object_store.bucket)
        with session_factory(postgres_url)() as session:
            job_id = queue.enqueue_job(session, {"kind": "train", "model": {"kind": "mlp"}}).id
        while not any(o.status is OutcomeStatus.RELEASED for _, o in worker.outcomes):
            assert thread.is_alive() and pause.wait(0.05) is False
        handed_back = next(o for _, o in worker.outcomes if o.status is OutcomeStatus.RELEASED)
        assert "artifact store" in handed_back.reason and "NoSuchBucket" in handed_back.reason
        client.create_bucket(Bucket=object_store.bucket)
        job = wait_for_job(postgres_url, job_id, lambda j: j.status == "succeeded", LIMIT_S)
    finally:
        worker.request_stop()
        thread.join(LIMIT_S)
    assert job.attempts == 1, "hand-backs are not counted as attempts"
    assert sorted(object_store.keys()) == [
        f"runs/{job_id}/attempt-1/model.ckpt",
        f"runs/{job_id}/attempt-1/result.json",
    ]
    assert not any((tmp_path / "scratch").iterdir()), "scratch folders are removed"
    assert not (tmp_path / "artifacts").exists() or not any(
        (tmp_path / "artifacts").rglob("*.ckpt")
    )
