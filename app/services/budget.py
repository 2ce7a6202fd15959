"""The compute budget a submitted spec must fit, from its cost estimate and the settings."""

from __future__ import annotations

from typing import Any

from app.settings import Settings
from expansion.specs.cost import estimate_cost


def _sci(value: float) -> str:
    """Scientific notation without the exponent's plus sign and padding: 3.2e9, 5.0e7."""
    mantissa, _, exponent = f"{value:.1e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def budget_problems(spec: Any, settings: Settings) -> list[str]:
    """One `field: reason` line per limit the spec exceeds: parameters of the network and of a
    teacher, bytes of the data set in memory, activation memory of one training step, and total
    FLOPs (teacher labelling included)."""
    if spec.kind == "sweep":  # every grid point within the limits, every problem listed
        from expansion.specs.budget import budget_problems as sweep_budget_problems

        return sweep_budget_problems(
            spec, max_parameters=settings.max_parameters, max_train_flops=settings.max_train_flops
        )
    cost = estimate_cost(spec)
    problems = []
    if cost.parameters > settings.max_parameters:
        problems.append(
            f"model: estimated {_sci(cost.parameters)} parameters exceeds the limit "
            f"{_sci(settings.max_parameters)}"
        )
    if cost.teacher_parameters > settings.max_parameters:
        problems.append(
            f"data.teacher_width: the teacher network has {_sci(cost.teacher_parameters)} "
            f"parameters, over the limit {_sci(settings.max_parameters)}"
        )
    if cost.data_bytes > settings.max_data_bytes:
        problems.append(
            f"data: estimated {_sci(cost.data_bytes)} bytes of data in memory exceeds the "
            f"limit {_sci(settings.max_data_bytes)}"
        )
    if cost.activation_bytes_per_step > settings.max_activation_bytes:
        problems.append(
            f"train.batch_size: estimated {_sci(cost.activation_bytes_per_step)} bytes of "
            f"activations per step (batch x width x length x depth) exceeds the limit "
            f"{_sci(settings.max_activation_bytes)}"
        )
    if cost.train_flops > settings.max_train_flops:
        problems.append(
            f"train: estimated {_sci(cost.train_flops)} training FLOPs exceeds the limit "
            f"{_sci(settings.max_train_flops)}"
        )
    return problems
