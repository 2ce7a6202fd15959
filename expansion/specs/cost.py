"""Compute-cost estimate of an experiment from its spec alone (no torch, no model built).

Used by `jumpboard validate` and by the API's compute budget. Counts are exact for the
parameters of the base network (and of a `teacher` data set's labelling network) and
first-order for FLOPs (2 per multiply-add, a backward pass counted as twice the forward),
activation memory (fp32 tensors kept for backward: batch x width x length x depth) and the
data set held in memory (fp32 inputs, int64 labels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from expansion.specs.experiments import (
    AnyExperiment,
    ExpandExperiment,
    GrowExperiment,
    SweepExperiment,
    SweepPointExperiment,
    TrainExperiment,
)
from expansion.specs.grid import expand_sweep
from expansion.specs.sections import DataSpec, ModelSpec, input_shape, num_classes
from expansion.specs.split_sizes import TEST_SIZES as _TEST_SIZES
from expansion.specs.split_sizes import TRAIN_POOL_SIZES as _TRAIN_SIZES

_BYTES_PER_FLOAT = 4
_BYTES_PER_LABEL = 8


@dataclass(frozen=True)
class CostEstimate:
    """Size and compute of an experiment."""

    parameters: int
    """Trainable scalars of the base network."""
    flops_per_sample: int
    """Forward FLOPs for one sample."""
    activation_bytes_per_sample: int
    """Activation memory kept for the backward pass, per sample (fp32)."""
    train_samples: int
    """Training samples seen per epoch."""
    train_flops: int
    """Total FLOPs of the experiment (training, plus scan and continuation for expand/grow,
    plus labelling the samples with the teacher network for `teacher` data)."""
    teacher_parameters: int = 0
    """Scalars of the teacher network that labels `teacher` data (0 for other data sets)."""
    data_flops: int = 0
    """FLOPs of generating the data set (the teacher's forward passes; 0 for stored data)."""
    data_bytes: int = 0
    """Memory of the data set (train + test inputs in fp32 and int64 labels)."""
    activation_bytes_per_step: int = 0
    """Activation memory of the largest training step: batch x per-sample activations of the
    deepest network the experiment trains (expanded or grown included)."""

    def to_dict(self) -> dict[str, int]:
        """Plain dict."""
        return asdict(self)


def _layer(c_in: int, c_out: int, taps: int, positions: int) -> tuple[int, int]:
    """(parameters, forward FLOPs) of a linear map / convolution with bias."""
    weights = c_in * c_out * taps
    return weights + c_out, 2 * weights * positions


def _network_cost(
    spec: TrainExperiment | ExpandExperiment | GrowExperiment, depth: int
) -> tuple[int, int, int]:
    m = spec.model
    shape = input_shape(spec.data, m.kind)
    spatial_dims = {"mlp": 0, "conv1d": 1, "conv2d": 2}[m.kind]
    taps = m.kernel_size**spatial_dims
    positions = 1
    for n in shape[1:]:
        positions *= n
    if m.kind == "mlp":
        positions = 1
    norm_params = 2 if m.norm in ("group", "batch") else 0
    params = flops = act = 0
    p, f = _layer(shape[0], m.width, 9 if m.kind == "conv2d" else taps, positions)
    params += p + norm_params * m.width
    flops += f
    act += 2 * m.width * positions
    width = m.width
    per_stage = max(1, depth // m.stages)
    for s in range(m.stages):
        hidden = width * m.hidden_mult
        for _ in range(per_stage):
            p1, f1 = _layer(width, hidden, taps, positions)
            p2, f2 = _layer(hidden, width, taps, positions)
            params += p1 + p2 + norm_params * width + (m.scaling == "learnable")
            flops += f1 + f2
            act += (2 * hidden + 3 * width) * positions
        if s < m.stages - 1:
            positions = max(1, positions // (2**spatial_dims))
            p, f = _layer(width, 2 * width, 9, positions)
            width *= 2
            params, flops = params + p + norm_params * width, flops + f
            act += 2 * width * positions
    p, f = _layer(width, num_classes(spec.data), 1, 1)
    return params + p, flops + f, act * _BYTES_PER_FLOAT


def _teacher_cost(data: DataSpec) -> tuple[int, int]:
    """(parameters, forward FLOPs per sample) of the network that labels `teacher` data."""
    # The teacher of expansion.data.datasets: a layer-norm mlp of the teacher's width and depth.
    teacher = TrainExperiment.model_validate(
        {
            "data": data,
            "model": ModelSpec.model_validate(
                {"kind": "mlp", "width": data.teacher_width, "depth": data.teacher_depth}
            ),
        }
    )
    params, flops, _ = _network_cost(teacher, teacher.model.total_blocks)
    return params, flops


def _data_cost(data: DataSpec) -> tuple[int, int, int]:
    """(teacher parameters, data-generation FLOPs, bytes in memory) of the data set."""
    if data.name == "teacher":
        samples = data.teacher_train_size + data.teacher_test_size
        features = data.teacher_dim
        teacher_params, teacher_flops = _teacher_cost(data)
        data_flops = teacher_flops * samples
    else:
        if data.train_size is not None and data.test_size is not None:  # your own data
            samples = data.train_size + data.test_size
        else:
            samples = _TRAIN_SIZES[data.name] + _TEST_SIZES[data.name]
        features = input_shape(data, "mlp")[0]  # the flattened sample
        teacher_params = data_flops = 0
    data_bytes = samples * (features * _BYTES_PER_FLOAT + _BYTES_PER_LABEL)
    return teacher_params, data_flops, data_bytes


def estimate_cost(spec: AnyExperiment) -> CostEstimate:
    """Parameters, per-sample FLOPs and memory, data and activation memory, and total FLOPs.

    A sweep point costs what its train/grow experiment costs; a sweep, its base network's
    sizes with the total FLOPs of all its points.
    """
    if isinstance(spec, SweepPointExperiment):
        return estimate_cost(spec.experiment_spec())
    if isinstance(spec, SweepExperiment):
        base = estimate_cost(
            TrainExperiment.model_validate(spec.model_dump(include={"data", "model", "train"}))
        )
        largest, total = sweep_cost_totals(spec)
        return CostEstimate(
            parameters=largest,
            flops_per_sample=base.flops_per_sample,
            activation_bytes_per_sample=base.activation_bytes_per_sample,
            train_samples=base.train_samples,
            train_flops=total,
            teacher_parameters=base.teacher_parameters,
            data_flops=base.data_flops,
            data_bytes=base.data_bytes,
            activation_bytes_per_step=base.activation_bytes_per_step,
        )
    d = spec.data
    if d.name == "teacher":
        samples = d.teacher_train_size
    else:
        samples = d.train_size if d.train_size is not None else _TRAIN_SIZES[d.name]
    if d.max_train_samples is not None:
        samples = min(samples, d.max_train_samples)
    samples = int(samples * (1 - d.val_fraction - (d.certify_fraction or 0.0)))
    params, flops, act = _network_cost(spec, spec.model.total_blocks)
    train_step_flops = 3 * flops  # forward + backward (about twice the forward)
    total = train_step_flops * samples * spec.train.epochs
    # The deepest network trained and the largest batch pushed through it.
    step_act, step_batch = act, spec.train.batch_size
    if isinstance(spec, ExpandExperiment):
        e = spec.expand
        n_pos = {
            "all": spec.model.num_positions,
            "explicit": len(e.positions),
            "top_k": min(e.top_k, spec.model.num_positions),
            "certified": spec.model.num_positions,  # not known before the scan: at most all
        }[e.select]
        total += 2 * train_step_flops * samples  # scan and certificates
        total += (
            2 * len(e.seeds) * n_pos * e.continue_steps * spec.train.batch_size * (train_step_flops)
        )
        _, _, expanded_act = _network_cost(spec, spec.model.total_blocks + 1)
        step_act, step_batch = expanded_act, max(step_batch, spec.grad_batch_size)
    if isinstance(spec, GrowExperiment):
        _, grown_flops, grown_act = _network_cost(spec, spec.grow.target_depth)
        # grown network for the whole run is an upper bound; controls add two more runs
        runs = 3 if spec.grow.controls else 1
        total = runs * 3 * grown_flops * samples * spec.train.epochs
        step_act = grown_act
    teacher_params, data_flops, data_bytes = _data_cost(d)
    return CostEstimate(
        parameters=params,
        flops_per_sample=flops,
        activation_bytes_per_sample=act,
        train_samples=samples,
        train_flops=int(total + data_flops),
        teacher_parameters=teacher_params,
        data_flops=data_flops,
        data_bytes=data_bytes,
        activation_bytes_per_step=step_act * step_batch,
    )


def sweep_cost_totals(sweep: SweepExperiment) -> tuple[int, int]:
    """(largest point's parameters, total training FLOPs over all points)."""
    largest, total = 0, 0
    for point in expand_sweep(sweep):
        cost = estimate_cost(point.experiment_spec())
        largest, total = max(largest, cost.parameters), total + cost.train_flops
    return largest, total
