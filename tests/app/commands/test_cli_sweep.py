"""`jumpboard submit --wait` of a sweep against a real `jumpboard serve` (embedded default):
the in-process worker runs the sweep's points as jobs of their own, and the sweep succeeds."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from local_server import Served

from app.cli import main

TINY_SWEEP_YAML = """\
kind: sweep
name: cli sweep
data: {name: digits, max_train_samples: 200}
model: {kind: mlp, width: 8, depth: 1}
train: {epochs: 1, batch_size: 64, accelerator: cpu}
measures: {projections: 2, samples: 16}
grid:
  model.scaling: [constant, inv_depth]
"""


@pytest.mark.slow
def test_submit_wait_of_a_sweep_runs_its_points_as_jobs(
    cli_env: Served,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(TINY_SWEEP_YAML)
    assert main(["submit", str(spec), "--wait"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    sweep_id = int(out[0].split()[1])
    assert "succeeded" in out[-1]
    body = httpx.get(f"{cli_env.url}/api/v1/jobs/{sweep_id}/sweep").json()
    assert body["status"] == "succeeded"
    assert [row["status"] for row in body["rows"]] == ["succeeded", "succeeded"]
    assert {row["scaling"] for row in body["rows"]} == {"constant", "inv_depth"}
    assert all(row["input_sensitivity"] > 0 for row in body["rows"])
    page = httpx.get(f"{cli_env.url}/jobs/{sweep_id}/sweep")
    assert page.status_code == 200 and "sweep-error-chart" in page.text
