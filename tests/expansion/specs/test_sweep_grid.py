"""Sweep specs: the grid expands row-major into point specs; validation lists every problem."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from expansion.specs.budget import ComputeLimits, budget_problems
from expansion.specs.cost import estimate_cost
from expansion.specs.experiments import (
    MAX_GRID_POINTS,
    SweepExperiment,
    SweepPointExperiment,
    TrainExperiment,
)
from expansion.specs.grid import expand_sweep
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError


def sweep_raw(**grid: list[Any]) -> dict[str, Any]:
    return {
        "kind": "sweep",
        "name": "grid test",
        "model": {"kind": "mlp", "width": 8},
        "train": {"epochs": 2},
        "grid": grid
        or {
            "model.scaling": ["constant", "inv_sqrt_depth", "inv_depth"],
            "model.depth": [2, 4],
            "train.seed": [0, 1],
        },
    }


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return info.value.problems


def test_grid_expands_row_major_into_point_specs() -> None:
    sweep = parse_spec(sweep_raw())
    assert isinstance(sweep, SweepExperiment) and sweep.grid_size == 12
    points = expand_sweep(sweep)
    assert [p.sweep_index for p in points] == list(range(12))
    assert all(isinstance(p, SweepPointExperiment) for p in points)
    seen = [(p.model.scaling, p.model.depth, p.train.seed) for p in points]
    assert seen[:4] == [
        ("constant", 2, 0),
        ("constant", 2, 1),
        ("constant", 4, 0),
        ("constant", 4, 1),
    ]
    assert len(set(seen)) == 12
    assert points[5].coordinates == {
        "model.scaling": "inv_sqrt_depth",
        "model.depth": 2,
        "train.seed": 1,
    }
    # Fields off the grid come from the base; each point runs a train experiment.
    assert all(p.model.width == 8 and p.train.epochs == 2 for p in points)
    assert isinstance(points[0].experiment_spec(), TrainExperiment)
    # A point spec round-trips through parse_spec (the queue stores it as a job of its own).
    assert parse_spec(points[7].model_dump(mode="json")) == points[7]


def test_every_problem_of_the_grid_is_listed_at_once_with_its_path() -> None:
    grid: dict[str, list[Any]] = {
        "model.depth": [2, 300],
        "train.lr": [-1.0, 0.1],
        "model.nonsense": [1],
        "model.depth.deeper": [1],
        "kind": ["train"],
        "train.seed": [0, 0],
    }
    raw = sweep_raw(**grid)
    problems = problems_of(raw)
    text = "\n".join(problems)
    assert "grid.model.depth.deeper: model.depth is a value, not a section" in problems
    assert "grid.kind: a sweep cannot vary 'kind'" in problems
    assert "grid.train.seed: values must be distinct" in problems
    assert any(p.startswith("points.4.model.depth: ") and "256" in p for p in problems), text
    assert any(p.startswith("points.0.train.lr: ") and "greater than 0" in p for p in problems)
    assert any(p.startswith("points.0.model.nonsense: unknown key") for p in problems), text
    # One bad value crossed with the other axes is one line, with its count.
    assert sum(".model.depth: " in p for p in problems) == 1
    assert "points in all" in next(p for p in problems if ".model.depth: " in p)


def test_grid_size_is_bounded() -> None:
    big = sweep_raw(**{"model.depth": list(range(1, 41)), "train.seed": list(range(20))})
    assert problems_of(big) == [f"spec: grid has 800 points; at most {MAX_GRID_POINTS} are allowed"]


def test_grow_points_are_checked_by_the_grow_rules() -> None:
    raw = sweep_raw(**{"grow.target_depth": [1, 4]})
    raw["grow"] = {"at_epochs": [1], "target_depth": 4}
    raw["model"]["depth"] = 2
    problems = problems_of(raw)
    assert len(problems) == 1 and problems[0].startswith(
        "points.0.grow.target_depth: target_depth 1"
    )
    raw["grid"] = {"grow.target_depth": [3, 4]}
    sweep = parse_spec(raw)
    assert isinstance(sweep, SweepExperiment)
    points = expand_sweep(sweep)
    assert [p.experiment_spec().kind for p in points] == ["grow", "grow"]


def test_each_points_budget_is_checked_and_the_sweep_costs_the_sum() -> None:
    sweep = parse_spec(sweep_raw(**{"model.depth": [2, 64], "model.width": [8, 256]}))
    assert isinstance(sweep, SweepExperiment)
    costs = [estimate_cost(p.experiment_spec()) for p in expand_sweep(sweep)]
    limit = sorted(c.train_flops for c in costs)[1]  # the two widest points are over it
    over = [i for i, c in enumerate(costs) if c.train_flops > limit]
    assert over == [1, 3]
    limits = ComputeLimits(
        max_parameters=10**12, max_train_flops=limit, max_data_bytes=1e15, max_activation_bytes=1e15
    )
    problems = budget_problems(sweep, limits)
    assert [p.split(":")[0] for p in problems] == ["points.1.train", "points.3.train"]
    assert "model.depth=2, model.width=256" in problems[0]
    total = estimate_cost(sweep)
    assert total.train_flops == sum(c.train_flops for c in costs)
    assert total.parameters == max(c.parameters for c in costs)


def test_sweep_specs_stay_torch_free() -> None:
    code = (
        "import sys\n"
        "from expansion.specs.parsing import parse_spec\n"
        "from expansion.specs.grid import expand_sweep\n"
        "from expansion.results import sweep_summary\n"
        f"expand_sweep(parse_spec({sweep_raw()!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
