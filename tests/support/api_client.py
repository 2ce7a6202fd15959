"""A test client of a fresh app over a given database, with a valid token's headers."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.api.main import create_app
from app.settings import Settings
from app.tokens import create_token

TINY_SPEC: dict[str, Any] = {
    "kind": "train",
    "name": "tiny",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 8, "depth": 1},
    "train": {"epochs": 1, "batch_size": 64},
}


class Api:
    """A test client of a fresh app plus a valid token's headers."""

    def __init__(self, client: TestClient, token: str, settings: Settings) -> None:
        self.client, self.token, self.settings = client, token, settings
        self.auth = {"Authorization": f"Bearer {token}"}

    def submit(self, spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Submit a spec (the tiny one by default) and return the created job."""
        response = self.client.post(
            "/api/v1/jobs", json={**(spec or TINY_SPEC), **extra}, headers=self.auth
        )
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job


def make_api(url: str, tmp_path: Path, **overrides: Any) -> Generator[Api, None, None]:
    """An `Api` over the database at `url`, artifacts under `tmp_path`."""
    settings = Settings(database_url=url, artifact_dir=tmp_path / "artifacts", **overrides)
    app = create_app(settings)
    with app.state.session_factory() as session:
        _, token = create_token(session, "tests")
        session.commit()
    with TestClient(app) as client:
        yield Api(client, token, settings)
