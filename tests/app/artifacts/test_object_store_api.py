"""The artifact routes over an object store: a completed job's files listed and streamed with
their sha256, a redirect to a presigned URL when configured, a tampered object cut short, and
503 (not a stack trace) when the store is down."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_client import TINY_SPEC, Api, make_api
from local_server import free_port
from object_store import ObjectStore

from app import queue
from app.artifacts import artifact_store
from app.db.session import session_factory
from app.settings import ArtifactServing

FILES = {"base.ckpt": b"\x00weights" * 300_000, "result.json": b'{"kind": "train"}'}


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path, object_store: ObjectStore) -> Iterator[Api]:
    """The API over SQLite with artifacts in the test's bucket."""
    yield from make_api(
        sqlite_url,
        tmp_path,
        artifact_url=object_store.url,
        artifact_endpoint=object_store.endpoint,
        scratch_dir=tmp_path / "scratch",
    )


def _completed_job(api: Api) -> int:
    """A job claimed and completed through the queue, its files published to the store."""
    sessions = session_factory(api.settings.database_url)
    with sessions() as session:
        job_id = queue.enqueue_job(session, TINY_SPEC).id
    claim = queue.claim_next_job(sessions, "tests", 60.0)
    assert claim is not None and claim.job_id == job_id
    store = artifact_store(api.settings)
    folder = store.scratch_dir(job_id, claim.attempt)
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in FILES.items():
        (folder / name).write_bytes(body)
    rows = [r.as_row() for r in store.publish(job_id, claim.attempt, folder, list(FILES))]
    store.release_scratch(folder)
    assert queue.complete_job(sessions, claim, {"kind": "train"}, artifacts=rows)
    return job_id


def test_listed_and_streamed_with_matching_sha256(api: Api, tmp_path: Path) -> None:
    job_id = _completed_job(api)
    listing = api.client.get(f"/api/v1/jobs/{job_id}/artifacts").json()["items"]
    assert {a["name"] for a in listing} == set(FILES)
    for artifact in listing:
        response = api.client.get(artifact["url"])
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
        assert response.content == FILES[artifact["name"]]
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").rglob("*"))


def test_redirect_to_a_presigned_url(api: Api) -> None:
    job_id = _completed_job(api)
    api.settings.artifact_serve = ArtifactServing.REDIRECT
    response = api.client.get(f"/api/v1/jobs/{job_id}/artifacts/base.ckpt", follow_redirects=False)
    assert response.status_code == 307
    fetched = httpx.get(response.headers["location"])
    assert fetched.status_code == 200 and fetched.content == FILES["base.ckpt"]


def test_a_tampered_object_never_arrives_whole(api: Api, object_store: ObjectStore) -> None:
    job_id = _completed_job(api)
    object_store.client().put_object(
        Bucket=object_store.bucket,
        Key=f"runs/{job_id}/attempt-1/base.ckpt",
        Body=b"\x01weights" * 300_000,
    )
    received = bytearray()
    with (
        pytest.raises(Exception, match="sha256"),
        api.client.stream("GET", f"/api/v1/jobs/{job_id}/artifacts/base.ckpt") as response,
    ):
        for chunk in response.iter_bytes():
            received.extend(chunk)
    assert len(received) < len(FILES["base.ckpt"])


def test_a_store_that_is_down_answers_503(api: Api) -> None:
    job_id = _completed_job(api)
    api.settings.artifact_endpoint = f"http://127.0.0.1:{free_port()}"
    response = api.client.get(f"/api/v1/jobs/{job_id}/artifacts/base.ckpt")
    assert response.status_code == 503
    assert "artifact store is unavailable" in response.json()["detail"]
