"""A tiny `grow` experiment end to end through `run_experiment`: result fields, the growth
events, the two controls, `result.json` and the grown checkpoint."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from network_checkpoints import load_checkpoint
from recording_reporter import RecordingReporter

from expansion.data.datasets import load_dataset
from expansion.experiments import run_experiment
from expansion.specs.sections import DataSpec

GrowRun = tuple[dict[str, Any], Path, RecordingReporter]
SUMMARY_FIELDS = ("test_risk", "test_error", "val_risk", "val_error", "train_risk", "train_error")


def tiny_grow_spec() -> dict[str, Any]:
    """Start at 2 blocks, insert at the best certified position after epochs 1 and 2, up to 4."""
    return {
        "kind": "grow",
        "data": {"name": "digits"},
        "model": {"kind": "mlp", "width": 16, "depth": 2},
        "train": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "accelerator": "cpu"},
        "grow": {"at_epochs": [1, 2], "policy": "best", "target_depth": 4, "controls": True},
    }


@pytest.fixture(scope="module")
def grow_run(tmp_path_factory: pytest.TempPathFactory) -> GrowRun:
    out = tmp_path_factory.mktemp("grow")
    reporter = RecordingReporter()
    return run_experiment(tiny_grow_spec(), out, reporter), out, reporter


def test_result_fields_and_file(grow_run: GrowRun) -> None:
    result, out, _ = grow_run
    assert result["kind"] == "grow"
    assert result["spec"]["grow"]["target_depth"] == 4
    assert result["device"] == "cpu" and result["torch_version"] == torch.__version__
    for key in SUMMARY_FIELDS:
        assert math.isfinite(result[key]), key
    assert 0.0 <= result["test_error"] <= 1.0
    assert result["curves"]["train/loss"], "no training curve"
    assert result["timings"]["total_s"] >= result["timings"]["train_s"] > 0
    assert json.loads((out / "result.json").read_text()) == result


def test_growth_events_and_controls(grow_run: GrowRun) -> None:
    result, _, _ = grow_run
    grow = result["grow"]
    assert grow["policy"] == "best"
    assert [event["position"] for event in grow["events"]] and len(grow["events"]) == 2
    assert grow["final_depths"] == [4]
    runs = grow["runs"]
    assert runs["grown"]["depths"] == [4]
    assert runs["control_target"]["depths"] == [4]  # the target depth from scratch
    assert runs["control_start"]["depths"] == [2]  # the starting depth, never grown
    assert runs["grown"]["parameters"] == runs["control_target"]["parameters"]
    assert runs["grown"]["parameters"] > runs["control_start"]["parameters"]
    assert result["parameters"] == runs["grown"]["parameters"]
    assert result["test_risk"] == runs["grown"]["test_risk"]


def test_grown_checkpoint_reproduces_the_reported_test_risk(grow_run: GrowRun) -> None:
    result, out, _ = grow_run
    assert result["artifacts"][0] == "grown.ckpt"  # then one per control run
    model, payload = load_checkpoint(out / "grown.ckpt")
    assert model.arch.depths == [4] and model.total_blocks == 4
    assert payload["spec"]["kind"] == "grow"
    # Independent of `evaluate`: the mean cross-entropy over the whole test split at once.
    bundle = load_dataset(DataSpec(name="digits"), "mlp")
    model.eval()
    with torch.no_grad():
        risk = float(F.cross_entropy(model(bundle.x_test), bundle.y_test))
    assert risk == pytest.approx(result["test_risk"], rel=1e-4, abs=1e-6)


def test_progress_reaches_done(grow_run: GrowRun) -> None:
    _, _, reporter = grow_run
    fractions = [event[0] for event in reporter.events]
    assert fractions and fractions[-1] == 1.0
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(fractions))
