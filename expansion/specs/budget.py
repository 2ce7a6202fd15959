"""Whether a spec fits a compute budget: every limit it exceeds, one line each (torch-free).

One check for every job: a sweep is checked point by point against all the limits, since each
point runs as a job of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from expansion.specs.cost import CostEstimate, estimate_cost
from expansion.specs.experiments import AnyExperiment, SweepExperiment
from expansion.specs.grid import describe_point, expand_sweep


@dataclass(frozen=True)
class ComputeLimits:
    """The largest job a service accepts (its settings say; `jumpboard run` has none)."""

    max_parameters: float
    """Parameters of the network, and of a teacher data set's labelling network."""
    max_train_flops: float
    """Training FLOPs of the whole job (teacher labelling included)."""
    max_data_bytes: float
    """Bytes of the data set held in memory."""
    max_activation_bytes: float
    """Bytes of activations kept for the backward pass of one training step."""


def _sci(value: float) -> str:
    """Scientific notation without the exponent's plus sign and padding: 3.2e9, 5.0e7."""
    mantissa, _, exponent = f"{value:.1e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def cost_problems(cost: CostEstimate, limits: ComputeLimits) -> list[str]:
    """One `field: reason` line per limit the estimated cost exceeds."""
    problems = []
    if cost.parameters > limits.max_parameters:
        problems.append(
            f"model: estimated {_sci(cost.parameters)} parameters exceeds the limit "
            f"{_sci(limits.max_parameters)}"
        )
    if cost.teacher_parameters > limits.max_parameters:
        problems.append(
            f"data.teacher_width: the teacher network has {_sci(cost.teacher_parameters)} "
            f"parameters, over the limit {_sci(limits.max_parameters)}"
        )
    if cost.data_bytes > limits.max_data_bytes:
        problems.append(
            f"data: estimated {_sci(cost.data_bytes)} bytes of data in memory exceeds the "
            f"limit {_sci(limits.max_data_bytes)}"
        )
    if cost.activation_bytes_per_step > limits.max_activation_bytes:
        problems.append(
            f"train.batch_size: estimated {_sci(cost.activation_bytes_per_step)} bytes of "
            f"activations per step (batch x width x length x depth) exceeds the limit "
            f"{_sci(limits.max_activation_bytes)}"
        )
    if cost.train_flops > limits.max_train_flops:
        problems.append(
            f"train: estimated {_sci(cost.train_flops)} training FLOPs exceeds the limit "
            f"{_sci(limits.max_train_flops)}"
        )
    return problems


def budget_problems(spec: AnyExperiment, limits: ComputeLimits) -> list[str]:
    """Every limit the job exceeds, one line each naming the field; for a sweep, each point's
    index, field and grid coordinates (`points.3.data: ... (grid point data.teacher_width=64)`)."""
    if not isinstance(spec, SweepExperiment):
        return cost_problems(estimate_cost(spec), limits)
    problems = []
    for point in expand_sweep(spec):
        where = f"points.{point.sweep_index}"
        for line in cost_problems(estimate_cost(point.experiment_spec()), limits):
            problems.append(f"{where}.{line} {describe_point(point)}")
    return problems
