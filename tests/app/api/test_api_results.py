"""A finished job's data through the API: metrics, insertions, artifacts (confined to the job's
folder), results across jobs as JSON and CSV, and the live server-sent event stream.

Jobs are claimed and finished through the real queue functions, as a worker would.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.api.main import create_app
from app.api.schemas import RESULT_FIELDS
from app.db.models import Artifact
from app.queue import ClaimedJob, claim_next_job, complete_job, heartbeat
from app.settings import Settings
from app.tokens import create_token

EXPAND_SPEC: dict[str, Any] = {
    "kind": "expand",
    "name": "expand-tiny",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 8, "depth": 2},
    "train": {"epochs": 1},
    "expand": {"select": "all", "seeds": [0, 1], "continue_steps": 2},
}


def insertion_record(position: int, seed: int) -> dict[str, Any]:
    """An insertion record with the stable field names (values made up for the test)."""
    return {
        "position": position,
        "depth_before": 2,
        "depth_after": 3,
        "seed": seed,
        "function_drift_eval": 0.0,
        "function_drift_train": 1e-7,
        "descent": {
            "grad_norm_sq_train": 0.5 + position,
            "grad_norm_sq_val": 0.4,
            "grad_norm_sq_unbiased": 0.3 - position,
            "grad_norm_sq_test_limit": 0.1 - position,
            "confidence": 0.95,
            "nonzero_gradient": "shown" if position == 0 else "not_shown",
            "cosine_train_val": 0.9,
            "step": 0.01,
            "predicted_val_risk_delta": -0.004,
        },
        "certificate": {
            "risk_decrease": 0.004 - 0.002 * position,
            "risk_decrease_ci": [0.001 - 0.002 * position, 0.007 - 0.002 * position],
            "p_value": 0.01 if position == 0 else 0.4,
            "verdict": "holds" if position == 0 else "undecided",
            "min_effect": 0.0,
            "examples": 287,
        },
        "jumpboard": {
            "step": 0.01,
            "val_risk_delta": -0.003,
            "test_risk_delta": -0.002,
            "test_risk_delta_ci": [-0.01, 0.005],
        },
        "realized": {
            "steps": 2,
            "base_test_risk": 1.0,
            "base_test_error": 0.3,
            "expanded_test_risk": 0.9,
            "expanded_test_error": 0.28,
            "control_test_risk": 0.95,
            "control_test_error": 0.29,
            "gain_vs_control": 0.05 * (position + 1) + 0.001 * seed,
            "gain_ci": [0.04 * (position + 1), 0.06 * (position + 1) + 0.002],
        },
    }


class Env:
    """The app, a test client, a token and the settings, over one fresh SQLite database."""

    def __init__(self, sqlite_url: str, tmp_path: Path) -> None:
        self.settings = Settings(database_url=sqlite_url, artifact_dir=tmp_path / "artifacts")
        self.app = create_app(self.settings)
        self.app.state.sse_poll_seconds = 0.02
        self.factory = self.app.state.session_factory
        with self.factory() as session:
            _, token = create_token(session, "tests")
            session.commit()
        self.auth = {"Authorization": f"Bearer {token}"}
        self.client = TestClient(self.app)

    def submit(self, spec: dict[str, Any] = EXPAND_SPEC) -> int:
        """Queue a job through the API; returns its id."""
        response = self.client.post("/api/v1/jobs", json=spec, headers=self.auth)
        assert response.status_code == 201, response.text
        job_id: int = response.json()["id"]
        return job_id

    def claim(self) -> ClaimedJob:
        """Claim the next job as a worker would."""
        claim = claim_next_job(self.factory, "test-worker", lease_seconds=60)
        assert claim is not None
        return claim

    def finish(self, claim: ClaimedJob, positions: tuple[int, ...] = (0, 1, 2)) -> Path:
        """Complete a claimed job with curves, insertion records and one checkpoint file."""
        job_dir = self.settings.job_dir(claim.job_id)
        job_dir.mkdir(parents=True)
        (job_dir / "base.ckpt").write_bytes(b"checkpoint-bytes-" + bytes(range(256)))
        result = {
            "kind": "expand",
            "test_risk": 0.9,
            "test_error": 0.25,
            "parameters": 1234,
            "curves": {
                "train/loss": [[1, 2.0], [2, 1.5], [3, 1.2]],
                "val/loss": [[3, 1.4]],
                "val/accuracy": [[3, 0.6]],
            },
            "artifacts": ["base.ckpt"],
            "insertions": [insertion_record(p, s) for p in positions for s in (0, 1)],
        }
        assert complete_job(self.factory, claim, result, job_dir=job_dir)
        return job_dir


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path) -> Iterator[Env]:
    """A fresh app over a fresh SQLite database."""
    environment = Env(sqlite_url, tmp_path)
    with environment.client:
        yield environment


def test_metrics_grouped_by_split_and_name(env: Env) -> None:
    job_id = env.submit()
    env.finish(env.claim())
    series = env.client.get(f"/api/v1/jobs/{job_id}/metrics").json()["series"]
    by_key = {(s["split"], s["name"]): s["points"] for s in series}
    assert by_key[("train", "loss")] == [[1, 2.0], [2, 1.5], [3, 1.2]]
    assert by_key[("val", "accuracy")] == [[3, 0.6]]
    only_loss = env.client.get(f"/api/v1/jobs/{job_id}/metrics", params={"name": "loss"}).json()
    assert {(s["split"], s["name"]) for s in only_loss["series"]} == {
        ("train", "loss"),
        ("val", "loss"),
    }
    job = env.client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["summary"]["test_error"] == 0.25


def test_insertions_of_a_job(env: Env) -> None:
    job_id = env.submit()
    env.finish(env.claim())
    items = env.client.get(f"/api/v1/jobs/{job_id}/insertions").json()["items"]
    assert [(i["position"], i["seed"]) for i in items] == [
        (p, s) for p in (0, 1, 2) for s in (0, 1)
    ]
    first = items[0]
    assert first["certificate_verdict"] == "holds" and first["nonzero_gradient"] == "shown"
    assert first["record"]["certificate"]["risk_decrease"] == pytest.approx(0.004)
    assert first["record"]["jumpboard"]["test_risk_delta_ci"] == [-0.01, 0.005]
    assert first["gain_vs_control"] == pytest.approx(0.05)


def test_artifacts_list_and_download(env: Env) -> None:
    job_id = env.submit()
    job_dir = env.finish(env.claim())
    listed = env.client.get(f"/api/v1/jobs/{job_id}/artifacts").json()["items"]
    names = [a["name"] for a in listed]
    assert "base.ckpt" in names
    entry = listed[names.index("base.ckpt")]
    response = env.client.get(entry["url"])
    assert response.status_code == 200
    assert response.content == (job_dir / "base.ckpt").read_bytes()
    assert response.headers["content-type"] == "application/octet-stream"
    assert entry["size"] == len(response.content)


def test_artifact_names_cannot_leave_the_job_folder(env: Env, tmp_path: Path) -> None:
    job_id = env.submit()
    job_dir = env.finish(env.claim())
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (job_dir / "unregistered.bin").write_bytes(b"on disk but not registered")
    base = f"/api/v1/jobs/{job_id}/artifacts/"
    refused = [
        "%2E%2E",
        "..%2Fsecret.txt",
        "a%2Fb",
        "a%5Cb",
        "%2Fetc%2Fpasswd",
        "x%00y",
        "C:%5Cwin",
    ]
    for name in refused:
        response = env.client.get(base + name)
        assert response.status_code == 400, name
        assert "do not serve" not in response.text
    assert env.client.get(base + "unregistered.bin").status_code == 404
    # A row whose stored path escapes the folder (a corrupted or hostile row) is not served.
    with env.factory() as session:
        session.execute(
            insert(Artifact).values(
                job_id=job_id, name="escape.txt", path="../../secret.txt", size=12, sha256="0" * 64
            )
        )
        session.commit()
    assert (job_dir / "../../secret.txt").resolve() == secret.resolve()
    response = env.client.get(base + "escape.txt")
    assert response.status_code == 404
    assert "do not serve" not in response.text


def test_results_across_jobs_as_json_and_csv(env: Env) -> None:
    first = env.submit()
    env.finish(env.claim(), positions=(0, 1))
    second = env.submit({**EXPAND_SPEC, "name": "second"})
    env.finish(env.claim(), positions=(2,))
    rows = env.client.get("/api/v1/results").json()["items"]
    assert len(rows) == 6
    assert {r["job_id"] for r in rows} == {first, second}
    held = env.client.get("/api/v1/results", params={"certificate_verdict": "holds"}).json()
    assert {(r["job_id"], r["position"]) for r in held["items"]} == {(first, 0)}
    shown = env.client.get("/api/v1/results", params={"nonzero_gradient": "shown"}).json()
    assert {(r["job_id"], r["position"]) for r in shown["items"]} == {(first, 0)}
    bad = env.client.get("/api/v1/results", params={"certificate_verdict": "true"})
    assert bad.status_code == 422 and "certificate_verdict" in bad.text
    at_two = env.client.get("/api/v1/results", params={"position": 2}).json()["items"]
    assert [r["job_name"] for r in at_two] == ["second", "second"]
    of_second = env.client.get("/api/v1/results", params={"job_id": second}).json()["items"]
    assert len(of_second) == 2
    assert env.client.get("/api/v1/results", params={"kind": "train"}).json()["items"] == []
    page = env.client.get("/api/v1/results", params={"limit": 4}).json()
    rest = env.client.get("/api/v1/results", params={"limit": 4, "cursor": page["next_cursor"]})
    assert len(page["items"]) + len(rest.json()["items"]) == 6

    response = env.client.get("/api/v1/results", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(csv.reader(io.StringIO(response.text)).__next__()) == RESULT_FIELDS
    assert len(table) == 6
    row = next(r for r in table if r["job_id"] == str(first) and r["position"] == "1")
    assert float(row["gain_vs_control"]) == pytest.approx(0.1, abs=2e-3)
    assert row["certificate_verdict"] == "undecided" and row["nonzero_gradient"] == "not_shown"
    assert float(row["certificate_risk_decrease"]) == pytest.approx(0.002)
    assert float(row["certificate_risk_decrease_low"]) == pytest.approx(-0.001)
    assert float(row["gain_ci_low"]) == pytest.approx(0.08)  # this seed's interval
    assert float(row["gain_ci_high"]) == pytest.approx(0.122)
    for field in ("position", "seed", "grad_norm_sq_test_limit", "gain_vs_control"):
        assert field in RESULT_FIELDS
    assert not {"condition_holds", "verdict", "grad_norm_sq_lcb"} & set(RESULT_FIELDS)


def _parse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture
def live_server(env: Env) -> Iterator[str]:
    """The env's app served by uvicorn on a free loopback port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(env.app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_event_stream_follows_a_job_to_its_end(env: Env, live_server: str) -> None:
    job_id = env.submit()
    claim = env.claim()
    seen: list[tuple[str, dict[str, Any]]] = []
    with (
        httpx.Client(base_url=live_server, timeout=30) as client,
        client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()

        def next_event() -> tuple[str, dict[str, Any]]:
            block: dict[str, str] = {}
            for line in lines:
                if not line:
                    if "event" in block:
                        return block["event"], json.loads(block["data"])
                    block = {}
                    continue
                key, _, value = line.partition(": ")
                block[key] = value
            raise AssertionError("stream ended early")

        seen.append(next_event())
        assert seen[-1][0] == "status" and seen[-1][1]["status"] == "running"
        assert heartbeat(env.factory, claim, 0.5, "train")
        seen.append(next_event())
        assert seen[-1][0] == "progress"
        assert (seen[-1][1]["progress"], seen[-1][1]["stage"]) == (0.5, "train")
        env.finish(claim)
        seen.append(next_event())
        assert seen[-1][0] == "status" and seen[-1][1]["status"] == "succeeded"
        seen.append(next_event())
        assert seen[-1] == ("end", seen[-2][1])
        assert list(lines) == []  # the server closed the stream


def test_event_stream_has_a_bounded_lifetime(env: Env) -> None:
    env.app.state.sse_max_seconds = 0.0
    job_id = env.submit()
    response = env.client.get(f"/api/v1/jobs/{job_id}/events")
    events = _parse_events(response.text)
    assert [name for name, _ in events] == ["status", "timeout"]
    assert events[0][1]["status"] == "queued"
