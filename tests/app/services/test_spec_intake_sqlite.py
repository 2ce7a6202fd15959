"""A submission on SQLite is one writer transaction from the intake's first read to the job's
insert: a worker committing in between would otherwise make the insert fail with "database is
locked" (a WAL read snapshot cannot become a write after another connection wrote), which the
API answers with 503. Seen in CI as a flaky CLI submission on an uploaded data set."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from user_data_files import write_npz

from app.db.session import session_factory
from app.queue import enqueue_job
from app.services.datasets import store_upload
from app.services.spec_intake import accept_spec
from app.settings import Settings


def _other_write(path: Path) -> None:
    """A worker's write (a registry touch, say) from another connection, waiting 0.2 s at most."""
    with sqlite3.connect(path, timeout=0.2) as conn:
        conn.execute("UPDATE jobs SET message = message")


def test_the_intake_holds_the_write_lock_until_the_job_is_queued(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    settings = Settings(database_url=sqlite_url, artifact_dir=tmp_path / "artifacts")
    factory = session_factory(sqlite_url)
    with factory() as session, (write_npz(tmp_path / "a.npz")).open("rb") as handle:
        dataset_id = store_upload(session, settings, handle, "a.npz").dataset.id
    raw = {"kind": "train", "data": {"name": "uploaded", "id": str(dataset_id)}}
    with factory() as submitting:
        spec = accept_spec(raw, settings, submitting)  # reads the data set's row
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _other_write(path)  # no commit can slip in between the read and the insert
        job = enqueue_job(submitting, spec, max_attempts=1)
    _other_write(path)  # the lock went with the job's commit
    assert job.id is not None
