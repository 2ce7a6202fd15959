"""The jobs API: submit, list with pagination and filters, get, cancel, auth and request limits.

Runs against fresh migrated databases (SQLite, and PostgreSQL where marked) through the real
app; no part of the service is replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_client import TINY_SPEC, Api, make_api
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.settings import Settings


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh SQLite database."""
    yield from make_api(sqlite_url, tmp_path)


@pytest.fixture
def db_api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh SQLite and a fresh PostgreSQL database."""
    yield from make_api(db_url, tmp_path)


def test_submit_get_and_list_a_job(db_api: Api) -> None:
    response = db_api.client.post(
        "/api/v1/jobs", json={"spec": TINY_SPEC, "priority": 5}, headers=db_api.auth
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["status"], job["kind"], job["name"], job["priority"]) == (
        "queued",
        "train",
        "tiny",
        5,
    )
    assert job["progress"] == 0.0
    assert job["spec"]["model"]["width"] == 8
    assert job["links"] == {
        "self": f"/api/v1/jobs/{job['id']}",
        "page": f"/jobs/{job['id']}",
        "events": f"/api/v1/jobs/{job['id']}/events",
        "metrics": f"/api/v1/jobs/{job['id']}/metrics",
        "insertions": f"/api/v1/jobs/{job['id']}/insertions",
        "artifacts": f"/api/v1/jobs/{job['id']}/artifacts",
    }
    fetched = db_api.client.get(job["links"]["self"]).json()
    assert fetched == job
    listed = db_api.client.get("/api/v1/jobs").json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    assert listed["next_cursor"] is None


def test_bare_spec_with_priority_is_accepted(api: Api) -> None:
    job = api.submit(priority=-3)
    assert job["priority"] == -3
    assert "priority" not in job["spec"]


def test_mutations_need_a_valid_token(api: Api) -> None:
    job = api.submit()
    cases = [
        ("/api/v1/jobs", {}),
        ("/api/v1/jobs", {"Authorization": "Bearer jb_not-a-real-token"}),
        ("/api/v1/jobs", {"Authorization": f"Basic {api.token}"}),
        (f"/api/v1/jobs/{job['id']}/cancel", {}),
    ]
    for path, headers in cases:
        response = api.client.post(path, json=TINY_SPEC, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "queued"
    assert len(api.client.get("/api/v1/jobs").json()["items"]) == 1


def test_reads_can_require_a_token(sqlite_url: str, tmp_path: Path) -> None:
    for api in make_api(sqlite_url, tmp_path, require_token_for_reads=True):
        job = api.submit()
        for path in ("/api/v1/jobs", f"/api/v1/jobs/{job['id']}", "/api/v1/results"):
            assert api.client.get(path).status_code == 401, path
            assert api.client.get(path, headers=api.auth).status_code == 200, path


def test_oversized_bodies_are_refused(api: Api) -> None:
    limit = api.settings.max_body_bytes
    padded = {**TINY_SPEC, "name": "x" * (limit + 10)}
    response = api.client.post("/api/v1/jobs", json=padded, headers=api.auth)
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
        yield b'{"name": "'
        for _ in range(limit // 1024 + 2):
            yield b"y" * 1024
        yield b'"}'

    headers = {**api.auth, "Content-Type": "application/json"}
    response = api.client.post("/api/v1/jobs", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert api.client.get("/api/v1/jobs").json()["items"] == []


def test_api_bodies_must_be_json(api: Api) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = api.client.post(
            "/api/v1/jobs",
            content=b'{"kind": "train"}',
            headers={**api.auth, "Content-Type": content_type},
        )
        assert response.status_code == 415, content_type
    response = api.client.post(
        "/api/v1/jobs",
        content=b"not json",
        headers={**api.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_invalid_spec_names_every_field(api: Api) -> None:
    bad = {
        "kind": "expand",
        "model": {"width": 0, "kernel_size": 4},
        "train": {"lr": -1},
        "expand": {"seeds": [1, 1]},
        "colour": "blue",
    }
    response = api.client.post("/api/v1/jobs", json=bad, headers=api.auth)
    assert response.status_code == 422
    locs = {tuple(item["loc"]) for item in response.json()["detail"]}
    assert {
        ("body", "model", "width"),
        ("body", "model", "kernel_size"),
        ("body", "train", "lr"),
        ("body", "expand", "seeds"),  # a cross-field problem names its field
        ("body", "colour"),
    } <= locs
    for item in response.json()["detail"]:
        assert set(item) == {"loc", "msg", "type"} and item["msg"]
    response = api.client.post(
        "/api/v1/jobs", json={"spec": TINY_SPEC, "priority": 10**6}, headers=api.auth
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "priority"]
    response = api.client.post("/api/v1/jobs", json=[TINY_SPEC], headers=api.auth)
    assert response.status_code == 422


def test_compute_budget_names_estimate_and_limit(api: Api) -> None:
    huge = {"kind": "train", "model": {"kind": "conv1d", "width": 4096, "depth": 64}}
    response = api.client.post("/api/v1/jobs", json=huge, headers=api.auth)
    assert response.status_code == 422
    detail = response.json()["detail"]
    model_problem = next(d for d in detail if d["loc"] == ["body", "model"])
    assert "parameters exceeds the limit 5.0e7" in model_problem["msg"]
    assert model_problem["msg"].startswith("estimated ")
    assert api.client.get("/api/v1/jobs").json()["items"] == []


def test_unknown_jobs_are_404(api: Api) -> None:
    for suffix in ("", "/metrics", "/insertions", "/artifacts", "/artifacts/base.ckpt", "/events"):
        response = api.client.get(f"/api/v1/jobs/424242{suffix}")
        assert response.status_code == 404, suffix
    response = api.client.post("/api/v1/jobs/424242/cancel", headers=api.auth)
    assert response.status_code == 404


def test_cursor_pagination_walks_every_job_once(db_api: Api) -> None:
    ids = [db_api.submit(name=f"job-{i}")["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = db_api.client.get("/api/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert pages == 3
    assert db_api.client.get("/api/v1/jobs", params={"cursor": "garbage!"}).status_code == 422
    assert db_api.client.get("/api/v1/jobs", params={"limit": 100000}).status_code == 422


def test_filters_by_status_and_kind(api: Api) -> None:
    first = api.submit()
    second = api.submit({**TINY_SPEC, "kind": "expand", "expand": {"top_k": 1, "seeds": [0]}})
    api.client.post(f"/api/v1/jobs/{first['id']}/cancel", headers=api.auth)
    by_status = api.client.get("/api/v1/jobs", params={"status": "cancelled"}).json()["items"]
    assert [j["id"] for j in by_status] == [first["id"]]
    by_kind = api.client.get("/api/v1/jobs", params={"kind": "expand"}).json()["items"]
    assert [j["id"] for j in by_kind] == [second["id"]]
    assert api.client.get("/api/v1/jobs", params={"status": "sleeping"}).status_code == 422


def test_cancel_a_queued_job(db_api: Api) -> None:
    job = db_api.submit()
    response = db_api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=db_api.auth)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = db_api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=db_api.auth)
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]


def test_health_probes_and_docs(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    assert api.client.get("/readyz").json() == {"status": "ok", "database": "ok", "detail": ""}
    assert api.client.get("/docs").status_code == 200
    schema = api.client.get("/openapi.json").json()
    assert "/api/v1/jobs" in schema["paths"]
    assert "ExperimentSpec" in schema["components"]["schemas"]


def test_readyz_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    # Port 9 (discard) has no PostgreSQL: connecting fails at once.
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2"
    app = create_app(Settings(database_url=url, artifact_dir=tmp_path))
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["database"] == "unavailable"
        assert client.get("/healthz").status_code == 200
        response = client.get("/api/v1/jobs")
        assert response.status_code == 503
        assert response.json() == {"detail": "database unavailable"}
