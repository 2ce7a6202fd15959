"""Done means for the object store (issue 24): with `JUMPBOARD_ARTIFACT_URL` at the test's
S3-compatible server, a real job's artifacts are written by a `jumpboard worker` (a process of
its own, as on another host), listed and downloaded through `jumpboard serve` and `jumpboard
jobs download` with matching sha256, and nothing is written to the local artifact folder.

About 15 s on an idle 2-core machine and 50 s at a load average of 6, over the suite's 20 s
guide: it starts a real `serve` and a real worker (whose fork server imports torch) and trains
a real tiny job, because that is what the issue's "done means" names."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from local_server import Served, free_port, serving
from object_store import ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TINY_TRAIN = """\
kind: train
name: s3-train
data: {name: digits, max_train_samples: 200}
model: {kind: mlp, width: 8, depth: 1}
train: {epochs: 1, batch_size: 64, accelerator: cpu}
"""


@pytest.fixture
def served(
    tmp_path: Path, postgres_url: str, object_store: ObjectStore
) -> Iterator[tuple[Served, subprocess.Popen[bytes]]]:
    """`jumpboard serve --no-worker` and one `jumpboard worker`, both on PostgreSQL with their
    artifacts in the test's bucket."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPBOARD_")}
    env.update(object_store.env())
    env.update(
        HOME=str(home),
        JUMPBOARD_DATABASE_URL=postgres_url,
        JUMPBOARD_ARTIFACT_DIR=str(home / "artifacts"),
        JUMPBOARD_DATA_DIR=str(home / "data"),
        JUMPBOARD_SCRATCH_DIR=str(tmp_path / "scratch"),
        JUMPBOARD_HEARTBEAT_SECONDS="1",
    )
    with (home / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--poll-seconds", "0.5"],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with serving(["--port", str(port), "--no-worker"], env, home, port, cwd=home) as s:
                token = cli(s, "token", "create", "--scope", "submit")
                assert isinstance(token, dict)
                s.env = {**s.env, "JUMPBOARD_TOKEN": token["token"]}
                yield s, worker
        finally:
            worker.terminate()
            worker.wait(60)


def cli(served: Served, *args: str) -> object:
    """`jumpboard ARGS --json` as the user would type it; its parsed output."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args, "--json"],
        env=served.env,
        cwd=served.home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_workers_artifacts_round_trip_through_the_object_store(
    served: tuple[Served, subprocess.Popen[bytes]], object_store: ObjectStore, tmp_path: Path
) -> None:
    server, worker = served
    spec = tmp_path / "train.yaml"
    spec.write_text(TINY_TRAIN)
    job = cli(server, "submit", str(spec), "--wait")
    assert isinstance(job, dict) and job["status"] == "succeeded", job
    job_id = job["id"]

    listing = httpx.get(f"{server.url}/api/v1/jobs/{job_id}/artifacts").json()["items"]
    names = {a["name"] for a in listing}
    assert {"base.ckpt", "result.json"} <= names
    assert sorted(object_store.keys()) == sorted(f"runs/{job_id}/attempt-1/{n}" for n in names)

    folder = tmp_path / "downloaded"
    written = cli(server, "jobs", "download", str(job_id), "--dir", str(folder))
    assert isinstance(written, list) and {w["name"] for w in written} == names
    for artifact in listing:
        body = (folder / artifact["name"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
    assert json.loads((folder / "result.json").read_text())["kind"] == "train"

    local = server.home / "artifacts"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*")), "written locally"
    assert not any((tmp_path / "scratch").iterdir()), "scratch folder left behind"
    assert worker.poll() is None, "the worker is still running"
