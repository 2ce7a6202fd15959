"""`/status`: live workers and the queue's depth (issue 13); 503 without a database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi.testclient import TestClient

from app import queue
from app.api.main import create_app
from app.db.models import Worker
from app.db.session import session_factory
from app.settings import Settings
from app.worker import registry as worker_registry

SPEC = {"kind": "train", "model": {"kind": "mlp"}}


def test_status_counts_live_workers_and_queued_jobs(sqlite_url: str, tmp_path: Path) -> None:
    sessions = session_factory(sqlite_url)
    with sessions() as session:
        for _ in range(3):
            queue.enqueue_job(session, dict(SPEC))
    assert queue.claim_next_job(sessions, "host:2:live", 60) is not None
    worker_registry.register_worker(sessions, "host:2:live", "host", 2, "")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with sessions() as session:
        session.add(
            Worker(
                id="host:1:killed",
                host="host",
                pid=1,
                devices="",
                started_at=long_ago,
                last_seen=long_ago,
            )
        )
        session.commit()
    app = create_app(Settings(database_url=sqlite_url, artifact_dir=tmp_path, lease_seconds=60))
    with TestClient(app) as client:
        response = client.get("/status")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert (body["workers_alive"], body["workers_dead"]) == (1, 1)  # the killed one is not alive
    assert (body["queued"], body["running"]) == (2, 1)
    assert body["oldest_queued_seconds"] is not None and body["oldest_queued_seconds"] >= 0


def test_status_of_an_empty_queue(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=sqlite_url, artifact_dir=tmp_path))
    with TestClient(app) as client:
        body = client.get("/status").json()
    assert (body["workers_alive"], body["queued"], body["oldest_queued_seconds"]) == (0, 0, None)


def test_status_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2"
    app = create_app(Settings(database_url=url, artifact_dir=tmp_path))
    with TestClient(app) as client:
        response = client.get("/status")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"
