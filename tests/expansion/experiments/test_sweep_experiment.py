"""`jumpboard run` of a tiny sweep: every point trained and measured in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from expansion.experiments.sweep import run_sweep_point
from expansion.results.sweep_summary import series, table
from expansion.specs.experiments import SweepExperiment, SweepPointExperiment

TINY_SWEEP = """\
kind: sweep
name: tiny sweep
data: {name: digits, max_train_samples: 200}
model: {kind: mlp, width: 8}
train: {epochs: 1, batch_size: 64, accelerator: cpu}
measures: {projections: 4, samples: 32}
grid:
  model.scaling: [constant, inv_depth]
  model.depth: [1, 3]
  train.seed: [0, 1]
"""


def test_jumpboard_run_of_a_sweep_writes_every_point_with_its_measures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(TINY_SWEEP)
    out = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "inv_depth" in printed and "include the test set's noise" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["kind"] == "sweep" and result["succeeded"] == 8 and result["failed"] == 0
    points = result["points"]
    assert [p["sweep_index"] for p in points] == list(range(8))
    for point in points:
        (arm,) = point["arms"]
        assert arm["depth"] == point["coordinates"]["model.depth"]
        assert arm["generalization_gap_risk"] == pytest.approx(arm["test_risk"] - arm["train_risk"])
        assert arm["input_sensitivity"]["projections"] == 4
        assert arm["input_sensitivity"]["samples"] == 32
        assert arm["input_sensitivity"]["estimate"] > 0
        assert arm["input_sensitivity"]["standard_error"] > 0
        assert arm["capacity"]["branch_norm_sum"] > 0
        assert (out / point["result_file"]).is_file()
    # Curves live in each point's own result file.
    first = json.loads((out / points[0]["result_file"]).read_text())
    assert first["curves"]["train/loss"]
    # 1/L scaling at depth 3 gives alpha 1/3 per block; constant gives 1.
    alphas = {
        (p["coordinates"]["model.scaling"], p["coordinates"]["model.depth"]): p["arms"][0][
            "capacity"
        ]["alpha_sum"]
        for p in points
    }
    assert alphas[("inv_depth", 3)] == pytest.approx(1.0)
    assert alphas[("constant", 3)] == pytest.approx(3.0)
    # Two seeds per (scaling, depth): a mean with an interval that includes the test set's
    # binomial noise (every row says how many test examples scored it).
    assert {row["test_examples"] for row in result["rows"]} == {
        points[0]["arms"][0]["test_examples"]
    }
    errors = series(result["rows"], "test_error")
    assert len(errors) == 4 and all(p.n == 2 and p.low is not None for p in errors)
    assert all(p.shared_variance > 0 and "test-set" in p.method for p in errors)


def test_a_failed_point_fails_only_itself(tmp_path: Path) -> None:
    from expansion.experiments.sweep import run_sweep
    from expansion.specs.parsing import parse_spec

    sweep = parse_spec(
        {
            "kind": "sweep",
            "data": {"name": "digits", "max_train_samples": 200},
            "model": {"kind": "mlp", "width": 8, "depth": 1},
            "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
            "measures": {"projections": 2, "samples": 16},
            # No CIFAR-10 archive in the data folder: that point cannot load its data.
            "grid": {"data.name": ["cifar10", "digits"]},
        }
    )
    assert isinstance(sweep, SweepExperiment)
    result = run_sweep(sweep, tmp_path / "out", data_dir=tmp_path / "data")
    failed, succeeded = result["points"]
    assert failed["status"] == "failed" and "DataError" in failed["error"]
    assert failed["coordinates"] == {"data.name": "cifar10"}
    assert succeeded["status"] == "succeeded" and succeeded["test_error"] is not None
    assert (result["succeeded"], result["failed"]) == (1, 1)
    assert [row["status"] for row in result["rows"]] == ["failed", "succeeded"]


def test_a_point_runs_from_its_own_spec(tmp_path: Path) -> None:
    point = SweepPointExperiment.model_validate(
        {
            "data": {"name": "digits", "max_train_samples": 200},
            "model": {"kind": "mlp", "width": 8, "depth": 2, "scaling": "inv_sqrt_depth"},
            "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
            "measures": {"projections": 3, "samples": 20},
            "sweep_index": 5,
            "coordinates": {"model.depth": 2},
        }
    )
    result = run_sweep_point(point, tmp_path)
    assert result["kind"] == "sweep_point" and result["sweep_index"] == 5
    assert result["test_error"] == result["arms"][0]["test_error"]
    assert (tmp_path / "result.json").is_file()


def test_a_grow_point_reports_grown_and_from_scratch_arms(tmp_path: Path) -> None:
    point = SweepPointExperiment.model_validate(
        {
            "data": {"name": "digits", "max_train_samples": 200},
            "model": {"kind": "mlp", "width": 8, "depth": 1, "scaling": "inv_sqrt_depth"},
            "train": {"epochs": 2, "batch_size": 64, "accelerator": "cpu"},
            "grow": {"at_epochs": [1], "policy": "stack", "target_depth": 2},
            "measures": {"projections": 2, "samples": 16},
        }
    )
    result = run_sweep_point(point, tmp_path)
    arms = {arm["arm"]: arm for arm in result["arms"]}
    assert set(arms) == {"grown", "scratch", "start"}
    assert arms["grown"]["depth"] == arms["scratch"]["depth"] == 2
    assert arms["start"]["depth"] == 1
    for arm in arms.values():
        assert arm["generalization_gap_risk"] == pytest.approx(arm["test_risk"] - arm["train_risk"])
    rows = {row["arm"]: row for row in table([{**result, "status": "succeeded"}])}
    assert rows["grown"]["depth"] == 2 and rows["grown"]["status"] == "succeeded"
