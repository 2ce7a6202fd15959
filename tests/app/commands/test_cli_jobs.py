"""The CLI as a complete client of a `jumpboard serve` started on a non-default port with no
`JUMPBOARD_*` variable set: the client commands find the server and its local token through
the file `serve` writes, and drive submit / jobs list / show / cancel / results / download /
wait, each with `--json` output and the README's exit codes; the token commands (create / list
/ revoke) reach the same database as that `serve` with no variable either.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_server import Served, free_port, serving

pytestmark = pytest.mark.slow

TINY_EXPAND = """\
kind: expand
name: cli-expand
data: {name: digits, max_train_samples: 400}
model: {kind: mlp, width: 8, depth: 1}
train: {epochs: 1, batch_size: 64, accelerator: cpu}
expand: {select: all, seeds: [0, 1], continue_steps: 3, grad_batch_size: 16}
"""
LONG_TRAIN = """\
kind: train
name: cli-long
data: {name: digits}
model: {kind: mlp, width: 8, depth: 1}
train: {epochs: 5000, batch_size: 16, accelerator: cpu}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("cli-home")
    port = free_port()
    assert port != 8000
    # A fresh user: HOME holds ~/.jumpboard; not one JUMPBOARD_ variable.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUMPBOARD_")}
    env["HOME"] = str(home)
    with serving(["--port", str(port)], env, home, port, cwd=home) as served:
        yield served
    assert not (home / ".jumpboard" / "local-server.json").exists(), "serve cleans up its file"


def cli(served: Served, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`jumpboard ARGS` as the user would type it (no --server, no --token unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=served.env,
        cwd=served.home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_local_server_file_names_the_port(served: Served) -> None:
    announced = json.loads((served.home / ".jumpboard" / "local-server.json").read_text())
    assert announced["url"] == served.url


def test_submit_list_show_results_download_wait(served: Served, tmp_path: Path) -> None:
    spec = tmp_path / "expand.yaml"
    spec.write_text(TINY_EXPAND)
    job = as_json(cli(served, "submit", str(spec), "--wait", "--json"))
    assert isinstance(job, dict) and job["status"] == "succeeded", job
    job_id = job["id"]

    listed = as_json(cli(served, "jobs", "list", "--json"))
    assert [j["id"] for j in listed] == [job_id]
    assert as_json(cli(served, "jobs", "list", "--status", "failed", "--json")) == []
    assert as_json(cli(served, "jobs", "list", "--kind", "expand", "--name", "cli-", "--json"))
    table = cli(served, "jobs", "list")
    assert table.returncode == 0 and "cli-expand" in table.stdout and "succeeded" in table.stdout

    shown = as_json(cli(served, "jobs", "show", str(job_id), "--json"))
    assert shown["summary"]["test_error"] is not None
    text = cli(served, "jobs", "show", str(job_id))
    assert f"{served.url}/jobs/{job_id}" in text.stdout
    answer = shown["answer"]
    assert answer["positions_continued"] == [0, 1]
    assert text.stdout.strip().splitlines()[-1].startswith("answer: ")
    table_text = cli(served, "jobs", "results", str(job_id)).stdout
    assert "adjusted CI" in table_text and "per seed:" in table_text
    assert table_text.strip().splitlines()[-1].startswith("answer: ")

    results = as_json(cli(served, "jobs", "results", str(job_id), "--format", "json"))
    rows = results["items"]
    assert len(rows) == 2 * 2  # positions 0 and 1, seeds 0 and 1
    assert {(r["position"], r["seed"]) for r in rows} == {(p, s) for p in (0, 1) for s in (0, 1)}
    out_csv = tmp_path / "results.csv"
    done = cli(served, "jobs", "results", str(job_id), "--format", "csv", "-o", str(out_csv))
    assert done.returncode == 0, done.stderr
    parsed = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(parsed) == 4 and {r["job_id"] for r in parsed} == {str(job_id)}

    folder = tmp_path / "artifacts"
    written = as_json(cli(served, "jobs", "download", str(job_id), "--dir", str(folder), "--json"))
    names = {w["name"] for w in written}
    assert {"base.ckpt", "result.json"} <= names
    listing = httpx.get(f"{served.url}/api/v1/jobs/{job_id}/artifacts").json()["items"]
    for artifact in listing:
        body = (folder / artifact["name"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
    assert json.loads((folder / "result.json").read_text())["kind"] == "expand"
    missing = cli(served, "jobs", "download", str(job_id), "nothing.bin", "--dir", str(folder))
    assert missing.returncode == 1 and "no artifact nothing.bin" in missing.stderr

    waited = cli(served, "jobs", "wait", str(job_id), "--json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["status"] == "succeeded"
    waited_text = cli(served, "jobs", "wait", str(job_id)).stdout.strip().splitlines()
    assert waited_text[-1].startswith("answer: ") and "succeeded" in waited_text[-2]


def test_cancel_and_wait_report_through_exit_codes(served: Served, tmp_path: Path) -> None:
    spec = tmp_path / "long.yaml"
    spec.write_text(LONG_TRAIN)
    job_id = as_json(cli(served, "submit", str(spec), "--json"))["id"]
    # An explicit --server naming the same local server keeps the local token.
    cancelled = cli(served, "jobs", "cancel", str(job_id), "--server", served.url, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert (
        json.loads(cancelled.stdout)["cancel_requested"]
        or json.loads(cancelled.stdout)["status"] == "cancelled"
    )
    waited = cli(served, "jobs", "wait", str(job_id), "--timeout", "120", "--json")
    assert waited.returncode == 1  # the job ended, but not successfully
    assert json.loads(waited.stdout)["status"] == "cancelled"
    again = cli(served, "jobs", "cancel", str(job_id))
    assert again.returncode == 1 and "HTTP 409" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_token_create_list_revoke_against_the_same_database(served: Served) -> None:
    created = as_json(cli(served, "token", "create", "--scope", "read", "--name", "x", "--json"))
    assert isinstance(created, dict)
    token_id, plain = created["id"], created["token"]
    assert created["scope"] == "read" and created["name"] == "x" and not created["revoked"]
    listed = as_json(cli(served, "token", "list", "--json"))
    assert isinstance(listed, list)
    mine = [t for t in listed if t["id"] == token_id]
    assert len(mine) == 1 and mine[0]["name"] == "x" and mine[0]["revoked"] is False
    assert all("token" not in t for t in listed), "a listing never shows a token"
    headers = {"Authorization": f"Bearer {plain}"}
    # The server knows the token: a read token is valid but too small to list tokens (403).
    assert httpx.get(f"{served.url}/api/v1/tokens", headers=headers).status_code == 403
    revoked = as_json(cli(served, "token", "revoke", str(token_id), "--json"))
    assert isinstance(revoked, dict) and revoked["id"] == token_id and revoked["revoked"] is True
    refused = httpx.get(f"{served.url}/api/v1/tokens", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    relisted = as_json(cli(served, "token", "list", "--json"))
    assert isinstance(relisted, list)
    assert [t["revoked"] for t in relisted if t["id"] == token_id] == [True]


def test_errors_are_one_line_with_their_exit_code(served: Served) -> None:
    unknown = cli(served, "jobs", "show", "987654")
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = cli(served, "jobs", "list", "--server", nowhere)
    assert unreachable.returncode == 3 and "cannot connect" in unreachable.stderr
    # Another server gets no local token: a write there is refused, not silently authorized.
    other = cli(served, "jobs", "cancel", "1", "--server", nowhere)
    assert other.returncode == 3
    bad = cli(served, "jobs", "list", "--limit", "0")
    assert bad.returncode == 2 and "--limit" in bad.stderr


def test_access_log_leaves_out_polling_reads(served: Served) -> None:
    httpx.get(f"{served.url}/api/v1/jobs")
    httpx.post(f"{served.url}/api/v1/jobs/1/cancel")  # 401: a refused change is logged
    log = (served.home / "serve.log").read_text()
    assert '"POST /api/v1/jobs/1/cancel HTTP/1.1" 401' in log
    assert '"GET /api/v1/jobs HTTP/1.1" 200' not in log
