"""benchmarks/gpu.py --smoke runs on the CPU and prints every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_benchmark_smoke_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_WAIT_POLICY": "PASSIVE",
        "JUMPBOARD_DATA_DIR": str(tmp_path / "data"),
    }
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--smoke", "--threads", "2", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,  # about 30 s of CPU time; the wall time grows with the machine's load
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["smoke"] is True
    assert "SMOKE" in run.stdout
    assert figures["flops_per_example"] > 0
    rows = {row["config"]: row for row in figures["throughput"]}
    assert {"fp32", "bf16-mixed", "channels_last"} <= set(rows)
    assert all(row["examples_per_s"] > 0 for row in rows.values())
    assert rows["fp32"]["ratio_to_fp32"] == 1.0
    if figures["device"] == "cpu":
        # No peak for a CPU: MFU is not reported, and the table says so.
        assert all(row["mfu"] is None for row in rows.values())
        assert "n/a" in run.stdout
        assert set(figures["skipped"]) == {"compile", "bf16+channels_last+compile"}
    assert figures["expand"]["seconds"] > 0
    assert figures["scan"] and all(r["single_pass_ratio"] > 0 for r in figures["scan"])
