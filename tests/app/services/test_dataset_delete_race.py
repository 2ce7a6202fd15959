"""The delete/submit race on PostgreSQL: a job being queued on a data set share-locks its row
until the job is committed, so a concurrent delete waits and then sees the job (409) instead
of deleting the file under it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from user_data_files import write_npz

from app.db.session import session_factory
from app.queue import enqueue_job
from app.services.datasets import DatasetRefused, delete_dataset, store_upload
from app.services.spec_intake import accept_spec
from app.settings import Settings


@pytest.mark.postgres
def test_delete_waits_for_a_job_being_queued_and_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=postgres_url, artifact_dir=tmp_path / "artifacts")
    factory = session_factory(postgres_url)
    with factory() as session, (write_npz(tmp_path / "a.npz")).open("rb") as handle:
        dataset_id = store_upload(session, settings, handle, "a.npz").dataset.id
    outcome: list[BaseException | None] = []

    def delete() -> None:
        with factory() as other:
            try:
                delete_dataset(other, settings, dataset_id)
                outcome.append(None)
            except DatasetRefused as exc:
                outcome.append(exc)

    raw = {"kind": "train", "data": {"name": "uploaded", "id": str(dataset_id)}}
    with factory() as submitting:
        spec = accept_spec(raw, settings, submitting)  # the row is share-locked from here
        deleter = threading.Thread(target=delete)
        deleter.start()
        deleter.join(timeout=1.0)
        assert deleter.is_alive(), "the delete must wait for the job being queued"
        enqueue_job(submitting, spec, max_attempts=1)  # commits: the lock is released
    deleter.join(timeout=30.0)
    assert len(outcome) == 1 and isinstance(outcome[0], DatasetRefused)
    assert outcome[0].status == 409
    assert any(settings.dataset_dir.glob("*.npz")), "the file stays while the job needs it"
