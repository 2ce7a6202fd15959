"""The post-norm residual family: every kind x norm x scaling rule builds, runs and learns."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from expansion.models.network import (
    Architecture,
    branch_scale,
    build_model,
    count_parameters,
    model_from_architecture,
)
from expansion.models.norms import ChannelPositionLayerNorm, is_channels_last
from expansion.specs.sections import DataSpec, ModelSpec

KINDS = ("mlp", "conv1d", "conv2d")
NORMS = ("layer", "rms", "group", "batch")
SCALINGS = ("constant", "inv_sqrt_depth", "inv_depth", "learnable")


def tiny(
    kind: str, norm: str = "layer", scaling: str = "constant", **kw: Any
) -> tuple[ModelSpec, DataSpec]:
    data = DataSpec(name="digits" if kind == "conv2d" else "mnist1d")
    spec = ModelSpec(
        kind=kind,
        width=8,
        depth=2,
        stages=2 if kind == "conv2d" else 1,
        kernel_size=3,
        norm=norm,
        groups=4,
        scaling=scaling,
        alpha=0.5,
        **kw,
    )
    return spec, data


@pytest.mark.parametrize(
    ("kind", "norm", "scaling"), list(itertools.product(KINDS, NORMS, SCALINGS))
)
def test_shapes_and_gradients_reach_every_parameter(kind: str, norm: str, scaling: str) -> None:
    spec, data = tiny(kind, norm, scaling)
    model = build_model(spec, data, seed=0)
    x = torch.randn(5, *(1, 8, 8) if kind == "conv2d" else (1, 40))
    logits = model(x)
    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(5)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []
    assert model.total_blocks == spec.total_blocks
    assert model.num_positions == spec.num_positions
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("kind", "norm"), list(itertools.product(KINDS, NORMS)))
def test_zero_init_last_makes_the_branch_output_zero(kind: str, norm: str) -> None:
    spec, data = tiny(kind, norm)
    model = build_model(spec, data, seed=1)
    block = model.stage_blocks(0)[0]
    h = torch.randn(4, 8, *(8, 8) if kind == "conv2d" else (40,) if kind == "conv1d" else ())
    assert block.w2(block.branch_input(h)).abs().max() > 0
    block.zero_init_last()
    assert torch.equal(block.w2(block.branch_input(h)), torch.zeros_like(h))
    assert block.w1.weight.abs().sum() > 0  # only one factor of the branch is zero


def test_branch_scale_rules() -> None:
    assert branch_scale("constant", 0.3, 9) == 0.3
    assert branch_scale("inv_sqrt_depth", 1.0, 9) == pytest.approx(1 / 3)
    assert branch_scale("inv_depth", 1.0, 8) == pytest.approx(0.125)
    assert branch_scale("learnable", 0.0, 4) == pytest.approx(0.5)
    spec, data = tiny("conv1d", scaling="inv_sqrt_depth")
    model = build_model(spec, data)
    assert [float(b.alpha) for b in model.blocks()] == pytest.approx([1 / math.sqrt(2)] * 2)


def test_learnable_scale_is_a_parameter_and_others_are_buffers() -> None:
    learn = build_model(*tiny("mlp", scaling="learnable"))
    fixed = build_model(*tiny("mlp"))
    assert any(n.endswith("alpha") for n, _ in learn.named_parameters())
    assert not any(n.endswith("alpha") for n, _ in fixed.named_parameters())
    assert any(n.endswith("alpha") for n, _ in fixed.named_buffers())


def test_seed_fixes_the_initialisation_and_leaves_the_global_rng() -> None:
    spec, data = tiny("conv1d")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(spec, data, seed=7)
    after = torch.rand(1)
    b = build_model(spec, data, seed=7)
    c = build_model(spec, data, seed=8)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_inserting_a_new_block_keeps_the_function(norm: str) -> None:
    spec, data = tiny("conv1d", norm)
    model = build_model(spec, data, seed=0).eval()
    x = torch.randn(6, 1, 40)
    before = model(x)
    model.stage_modules(0).insert(1, model.new_block(0, seed=3))
    model.arch.block_scales[0].insert(1, float(model.stage_blocks(0)[1].alpha))
    assert model.total_blocks == 3
    assert (model(x) - before).abs().max() < 1e-4


def test_architecture_round_trips_and_positions() -> None:
    model = build_model(*tiny("conv2d"))
    arch = Architecture.from_dict(model.arch.to_dict())
    assert arch == model.arch
    rebuilt = model_from_architecture(arch.to_dict())
    assert [len(rebuilt.stage_modules(s)) for s in range(len(rebuilt.stages))] == [2, 2]
    assert model.position_to_stage_index(0) == (0, 0)
    assert model.position_to_stage_index(2) == (0, 2)
    assert model.position_to_stage_index(3) == (1, 0)
    with pytest.raises(ValueError, match="out of range"):
        model.position_to_stage_index(6)
    boundaries: list[torch.Tensor] = []
    model(torch.randn(2, 1, 8, 8), boundaries)
    assert len(boundaries) == model.num_positions


def test_layer_norm_of_a_channels_last_activation_keeps_its_layout_and_values() -> None:
    z = torch.randn(4, 8, 5, 6, generator=torch.Generator().manual_seed(0))
    norm = ChannelPositionLayerNorm()
    nhwc = norm(z.contiguous(memory_format=torch.channels_last))
    assert is_channels_last(nhwc)
    # Independent check: standardise each sample over all its C*H*W values by hand.
    flat = z.reshape(4, -1).double()
    mean = flat.mean(dim=1, keepdim=True)
    var = flat.var(dim=1, unbiased=False, keepdim=True)
    expected = ((flat - mean) / torch.sqrt(var + 1e-8)).reshape(z.shape).float()
    torch.testing.assert_close(nhwc, expected, rtol=1e-5, atol=1e-5)
