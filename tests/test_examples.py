"""Every shipped example in examples/ is a valid spec within the default compute budget, and
runs end to end once shrunk (fewer samples, epochs and steps; same data, model and kind)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from expansion.specs.budget import budget_problems
from expansion.specs.parsing import parse_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.y*ml"))


def shrink(raw: dict[str, Any]) -> dict[str, Any]:
    """The example with the same kind, data and model but a few seconds of compute."""
    spec = copy.deepcopy(raw)
    spec["data"] = {**spec.get("data", {}), "max_train_samples": 512}
    train = spec.setdefault("train", {})
    train.update(epochs=1, accelerator="cpu", warmup_steps=0)
    if spec["kind"] == "expand":
        spec["expand"].update(
            seeds=[0], continue_steps=2, grad_batch_size=16, grad_batches=4, line_search_points=2
        )
    if spec["kind"] == "sweep":  # one grid point per axis value, no more
        spec["grid"] = {path: values[:1] for path, values in spec["grid"].items()}
    if spec.get("grow"):  # a grow example, or a sweep of grow points
        train["epochs"] = 2
        depth = spec["model"]["depth"]
        spec["grow"].update(at_epochs=[1], target_depth=depth + 1, blocks_per_event=1)
    return spec


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "mnist1d.yaml",
        "mnist1d-expand.yaml",
        "mnist1d-grow.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_spec_within_the_default_budget(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = parse_spec(raw)
    assert spec.kind == raw["kind"]
    assert budget_problems(spec, Settings().compute_limits()) == [], (
        "the service would refuse this example"
    )
    assert f"jumpboard run examples/{path.name}" in path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("example-data")


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first run also generates MNIST-1D (about a minute on 2 cores)
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_when_shrunk(path: Path, data_dir: Path, tmp_path: Path) -> None:
    from expansion.experiments import run_experiment

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    shrunk = shrink(raw)
    result = run_experiment(shrunk, tmp_path / "run", data_dir=data_dir)
    assert result["kind"] == raw["kind"]
    assert result["spec"]["model"] == parse_spec(raw).model.model_dump(mode="json")
    if raw["kind"] == "sweep":
        assert result["failed"] == 0 and len(result["points"]) == 1
    else:
        assert math.isfinite(result["test_risk"]) and 0.0 <= result["test_error"] <= 1.0
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == result
    for name in result["artifacts"]:
        assert (tmp_path / "run" / name).is_file(), name
    if raw["kind"] == "expand":
        assert result["insertions"] and result["positions"]
    if raw["kind"] == "grow":
        assert result["grow"]["final_depths"] == [raw["model"]["depth"] + 1]
