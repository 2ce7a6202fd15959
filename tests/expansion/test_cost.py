"""The spec-only cost estimate against the real network it describes."""

from __future__ import annotations

import pytest

from expansion.cost import estimate_cost
from expansion.models.network import build_model, count_parameters
from expansion.specs import parse_spec


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
def test_parameter_count_matches_the_built_model(raw: dict) -> None:
    spec = parse_spec({"kind": "train", **raw})
    assert estimate_cost(spec).parameters == count_parameters(build_model(spec.model, spec.data))


def test_flops_scale_with_depth_and_expand_adds_continuation() -> None:
    shallow = estimate_cost(parse_spec({"model": {"depth": 2}}))
    deep = estimate_cost(parse_spec({"model": {"depth": 8}}))
    assert deep.flops_per_sample > 3 * shallow.flops_per_sample
    assert deep.activation_bytes_per_sample > shallow.activation_bytes_per_sample
    train = estimate_cost(parse_spec({"kind": "train", "model": {"depth": 2}}))
    expand = estimate_cost(parse_spec({"kind": "expand", "model": {"depth": 2}}))
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
