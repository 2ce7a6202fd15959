"""`scripts/main-job.sh`, the README's one command for the main job: it sets up, starts the
service on the embedded default, submits a spec, prints the job's answer as its last line of
the job, and leaves the service serving its pages (shrunk here: a tiny expand job)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from local_server import free_port

ROOT = Path(__file__).resolve().parents[1]

TINY_EXPAND_YAML = """\
kind: expand
name: main-job-tiny
data: {name: digits, certify_fraction: 0.2}
model: {kind: mlp, width: 16, depth: 2}
train: {epochs: 2, batch_size: 64, accelerator: cpu}
expand: {select: all, seeds: [0, 1], continue_steps: 5, continue_lr: 0.001, line_search_points: 3}
"""


@pytest.mark.slow
def test_main_job_script_prints_the_answer_last_and_leaves_the_service_up(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_EXPAND_YAML)
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "JUMPBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'jumpboard.db'}",
        "JUMPBOARD_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "JUMPBOARD_DATA_DIR": str(tmp_path / "data"),
        "JUMPBOARD_PORT": str(port),
        "JUMPBOARD_HEARTBEAT_SECONDS": "1",
    }
    for key in ("JUMPBOARD_TOKEN", "JUMPBOARD_SERVER"):
        env.pop(key, None)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "main-job.sh"), str(spec)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    lines = done.stdout.strip().splitlines()
    stop = [line for line in lines if "stop the service with: kill " in line]
    pid = int(stop[-1].rsplit(" ", 1)[1]) if stop else None
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert any(f"service started at http://127.0.0.1:{port}" in line for line in lines)
        assert lines[-2].startswith("answer: "), lines[-6:]
        assert pid is not None
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
