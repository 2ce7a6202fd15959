"""The client side of the CLI against a real `jumpboard serve`: the embedded default (SQLite,
migrations at start, the local token, an in-process worker running a real tiny job), `submit
--wait`, `status`, and errors reported as one line without a traceback."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from local_server import Served, free_port

from app.cli import main

TINY_SPEC_YAML = """\
kind: train
name: cli-tiny
data: {name: digits}
model: {kind: mlp, width: 8, depth: 1}
train: {epochs: 1, batch_size: 128, accelerator: cpu}
"""


@pytest.mark.slow
def test_serve_prints_its_url_and_keeps_a_private_local_token(served: Served) -> None:
    first_lines = (served.home / "serve.log").read_text()
    assert f"Jumpboard at {served.url}/" in first_lines
    token_file = served.home / "local-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    response = httpx.post(
        f"{served.url}/api/v1/jobs/999999/cancel", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404  # authenticated: the job is unknown, not the token


@pytest.mark.slow
def test_submit_wait_runs_a_real_job_with_the_local_token(
    cli_env: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC_YAML)
    assert main(["submit", str(spec), "--wait"]) == 0  # no --server, no --token: local default
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("job ") and "queued" in out[0]
    job_id = int(out[0].split()[1])
    assert f"job {job_id} cli-tiny (train): succeeded" in out[-1]
    assert "test_error" in out[-1]
    assert main(["status", str(job_id)]) == 0
    assert "succeeded" in capsys.readouterr().out
    metrics = httpx.get(f"{cli_env.url}/api/v1/jobs/{job_id}/metrics").json()["series"]
    assert metrics, "a finished job has time series"


@pytest.mark.slow
def test_token_create_then_submit_with_explicit_token(
    cli_env: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "--name", "ci"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    spec = tmp_path / "tiny.json"
    spec.write_text('{"kind": "train", "name": "json-spec", "train": {"epochs": 1}}')
    args = ["submit", str(spec), "--server", cli_env.url, "--token", token, "--priority", "-5"]
    assert main(args) == 0
    job_id = int(capsys.readouterr().out.split()[1])
    job = httpx.get(f"{cli_env.url}/api/v1/jobs/{job_id}").json()
    assert (job["name"], job["priority"]) == ("json-spec", -5)
    httpx.post(
        f"{cli_env.url}/api/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {token}"}
    )


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.slow
def test_http_errors_are_one_line(
    cli_env: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("kind: train\nmodel: {width: 0, depth: 999}\nflavour: mint\n")
    assert main(["submit", str(spec)]) == 1
    err = _one_line_error(capsys)
    assert "HTTP 422" in err
    for field in ("model.width", "model.depth", "flavour"):
        assert field in err
    assert main(["status", "987654"]) == 1
    assert "HTTP 404" in _one_line_error(capsys)
    good = tmp_path / "good.yaml"
    good.write_text(TINY_SPEC_YAML)
    assert main(["submit", str(good), "--token", "jb_wrong"]) == 1
    assert "HTTP 401" in _one_line_error(capsys)


def test_connection_failures_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC_YAML)
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["submit", str(spec), "--server", server, "--token", "jb_x"]) == 3
    assert "cannot connect" in _one_line_error(capsys)
    assert main(["status", "1", "--server", server]) == 3
    assert "cannot connect" in _one_line_error(capsys)


def test_bad_spec_files_and_missing_tokens_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUMPBOARD_TOKEN", raising=False)
    server = ["--server", "http://127.0.0.1:9", "--token", "jb_x"]
    assert main(["submit", str(tmp_path / "missing.yaml"), *server]) == 2
    assert "cannot read" in _one_line_error(capsys)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [train\n")
    assert main(["submit", str(broken), *server]) == 2
    assert "not valid YAML" in _one_line_error(capsys)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert main(["submit", str(listed), *server]) == 2
    assert "must be a mapping" in _one_line_error(capsys)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC_YAML)
    assert main(["submit", str(spec), "--server", "http://127.0.0.1:9"]) == 2
    assert "no API token" in _one_line_error(capsys)
