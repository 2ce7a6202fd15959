"""Whether a spec fits a compute budget: every limit it exceeds, one line each (torch-free)."""

from __future__ import annotations

from expansion.specs.cost import estimate_cost
from expansion.specs.experiments import SweepExperiment
from expansion.specs.grid import _describe, expand_sweep


def budget_problems(
    sweep: SweepExperiment, *, max_parameters: float, max_train_flops: float
) -> list[str]:
    """Every grid point whose estimated size or compute (expansion.specs.cost) exceeds the
    limits."""
    problems = []
    for point in expand_sweep(sweep):
        cost = estimate_cost(point.experiment_spec())
        where = f"points.{point.sweep_index}"
        at = f"(grid point {_describe(point.coordinates)})"
        if cost.parameters > max_parameters:
            problems.append(
                f"{where}.model: estimated {cost.parameters:.1e} parameters exceeds the limit "
                f"{max_parameters:.1e} {at}"
            )
        if cost.train_flops > max_train_flops:
            problems.append(
                f"{where}.train: estimated {cost.train_flops:.1e} training FLOPs exceeds the "
                f"limit {max_train_flops:.1e} {at}"
            )
    return problems
