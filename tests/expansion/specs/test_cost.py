"""The spec-only cost estimate against the real network, data and autograd memory it describes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from expansion.data.datasets import load_dataset
from expansion.models.network import build_model, count_parameters
from expansion.specs.cost import estimate_cost
from expansion.specs.parsing import parse_spec
from expansion.specs.sections import ModelSpec, input_shape


@pytest.mark.parametrize(
    "raw",
    [
        {"model": {"kind": "mlp", "width": 32, "depth": 3}},
        {"model": {"kind": "conv1d", "width": 16, "depth": 2, "norm": "batch"}},
        {"model": {"kind": "conv1d", "width": 8, "depth": 2, "scaling": "learnable"}},
        {
            "data": {"name": "digits"},
            "model": {"kind": "conv2d", "width": 16, "depth": 2, "stages": 2, "norm": "group"},
        },
        {"data": {"name": "teacher", "teacher_dim": 12}, "model": {"kind": "mlp", "width": 8}},
    ],
)
def test_parameter_count_matches_the_built_model(raw: dict[str, Any]) -> None:
    spec = parse_spec({"kind": "train", **raw})
    assert estimate_cost(spec).parameters == count_parameters(build_model(spec.model, spec.data))


def test_flops_scale_with_depth_and_expand_adds_continuation() -> None:
    shallow = estimate_cost(parse_spec({"model": {"depth": 2}}))
    deep = estimate_cost(parse_spec({"model": {"depth": 8}}))
    assert deep.flops_per_sample > 3 * shallow.flops_per_sample
    assert deep.activation_bytes_per_sample > shallow.activation_bytes_per_sample
    train = estimate_cost(parse_spec({"kind": "train", "model": {"depth": 2}}))
    expand = estimate_cost(
        parse_spec({"kind": "expand", "model": {"depth": 2}, "expand": {"grad_batch_size": 256}})
    )
    assert expand.train_flops > train.train_flops


def test_max_train_samples_caps_the_epoch() -> None:
    full = estimate_cost(parse_spec({}))
    capped = estimate_cost(parse_spec({"data": {"max_train_samples": 400}}))
    assert capped.train_samples == 360
    assert full.train_samples == 3600
    assert capped.train_flops < full.train_flops


def test_select_certified_is_costed_as_every_position() -> None:
    certified = parse_spec({"kind": "expand", "expand": {"select": "certified"}})
    every = parse_spec({"kind": "expand", "expand": {"select": "all"}})
    assert estimate_cost(certified).train_flops == estimate_cost(every).train_flops


@pytest.mark.parametrize(
    "raw",
    [
        {"data": {"name": "digits"}},
        {
            "data": {
                "name": "teacher",
                "teacher_dim": 12,
                "teacher_train_size": 100,
                "teacher_test_size": 50,
            }
        },
    ],
)
def test_data_bytes_match_the_loaded_tensors(raw: dict[str, Any]) -> None:
    spec = parse_spec({"kind": "train", **raw, "model": {"kind": "mlp", "width": 8}})
    bundle = load_dataset(spec.data, "mlp", torch.device("cpu"), None)
    tensors: tuple[torch.Tensor, ...] = (bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val)
    tensors += (bundle.x_test, bundle.y_test)
    loaded = sum(t.numel() * t.element_size() for t in tensors)
    assert estimate_cost(spec).data_bytes == loaded


def test_teacher_size_and_labelling_are_counted() -> None:
    data = {"name": "teacher", "teacher_dim": 16, "teacher_width": 24, "teacher_depth": 3}
    spec = parse_spec({"kind": "train", "data": data, "model": {"kind": "mlp", "width": 8}})
    teacher = build_model(ModelSpec(kind="mlp", width=24, depth=3, norm="layer"), spec.data, seed=0)
    cost = estimate_cost(spec)
    assert cost.teacher_parameters == count_parameters(teacher)
    samples = spec.data.teacher_train_size + spec.data.teacher_test_size
    # Labelling: one forward pass per sample, 2 FLOPs per weight (biases make the 5%).
    assert cost.data_flops == pytest.approx(2 * count_parameters(teacher) * samples, rel=0.05)
    wider = parse_spec(
        {
            "kind": "train",
            "data": {**data, "teacher_width": 2048},
            "model": {"kind": "mlp", "width": 8},
        }
    )
    assert estimate_cost(wider).train_flops > cost.train_flops
    assert estimate_cost(wider).parameters == cost.parameters  # the student is unchanged
    stored = estimate_cost(parse_spec({"kind": "train", "model": {"kind": "mlp", "width": 8}}))
    assert (stored.teacher_parameters, stored.data_flops) == (0, 0)


@pytest.mark.parametrize(
    "raw",
    [
        {"model": {"kind": "conv1d", "width": 16, "depth": 3}},
        {"model": {"kind": "mlp", "width": 32, "depth": 4}},
        {"model": {"kind": "conv1d", "width": 8, "depth": 6, "norm": "batch"}},
        {
            "data": {"name": "digits"},
            "model": {
                "kind": "conv2d",
                "width": 8,
                "depth": 2,
                "stages": 2,
                "norm": "group",
                "groups": 4,
            },
        },
    ],
)
def test_activation_memory_against_the_tensors_autograd_keeps(raw: dict[str, Any]) -> None:
    """The estimate (batch x width x length x depth, fp32) against the bytes autograd really
    saves for the backward pass of one training batch: same order, within a small factor."""
    batch = 32
    spec = parse_spec({"kind": "train", **raw, "train": {"batch_size": batch}})
    model = build_model(spec.model, spec.data).train()
    shape = input_shape(spec.data, "conv2d" if spec.model.kind == "conv2d" else "conv1d")
    saved: dict[tuple[int, tuple[int, ...]], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[(t.data_ptr(), tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(batch, *shape)).logsumexp(1).sum()
    measured = sum(saved.values())
    estimated = estimate_cost(spec).activation_bytes_per_step
    assert 0.5 * measured <= estimated <= 2.5 * measured, (estimated, measured)


def test_activation_memory_scales_with_batch_width_length_and_depth() -> None:
    def step_bytes(**model: int) -> int:
        spec = parse_spec(
            {
                "kind": "train",
                "model": {"kind": "conv1d", **{k: v for k, v in model.items() if k != "batch"}},
                "train": {"batch_size": model.get("batch", 64)},
            }
        )
        return estimate_cost(spec).activation_bytes_per_step

    base = step_bytes(width=16, depth=4)
    assert step_bytes(width=16, depth=4, batch=128) == 2 * base
    assert 1.9 * base < step_bytes(width=32, depth=4) <= 2 * base
    assert step_bytes(width=16, depth=8) > 1.8 * base
    expand = estimate_cost(
        parse_spec({"kind": "expand", "model": {"depth": 2}, "expand": {"grad_batch_size": 256}})
    )
    train = estimate_cost(parse_spec({"kind": "train", "model": {"depth": 2}}))
    # Expand runs the deeper network and the larger gradient batch (256 > 128).
    assert expand.activation_bytes_per_step > 2 * train.activation_bytes_per_step
