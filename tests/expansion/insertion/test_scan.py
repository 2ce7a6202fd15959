"""The single-pass scan equals autograd on the explicitly expanded network, at every position."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_networks import KINDS, inputs, labels, tiny_model

from expansion.insertion.insert import insert_block
from expansion.insertion.scan import new_blocks, scan_positions, single_pass_gradients
from expansion.models.network import PostNormResNet


def expanded_autograd(
    model: PostNormResNet, position: int, seed: int, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """W2/b2 gradient by explicit insertion and a full backward pass (the reference)."""
    import copy

    expanded = copy.deepcopy(model).eval()
    block = insert_block(expanded, position, seed)
    F.cross_entropy(expanded(x), y).backward()
    weight_grad, bias = block.w2.weight.grad, block.w2.bias
    assert weight_grad is not None and bias is not None and bias.grad is not None
    return torch.cat([weight_grad.reshape(-1), bias.grad.reshape(-1)])


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a - b| / |b|."""
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("norm", ["layer", "rms"])
@pytest.mark.parametrize("scaling", ["inv_sqrt_depth", "learnable"])
def test_single_pass_equals_autograd_at_every_position(kind: str, norm: str, scaling: str) -> None:
    model = tiny_model(kind, norm, scaling).eval()
    x, y = inputs(model, 40), labels(40)
    positions = list(range(model.num_positions))
    grads = single_pass_gradients(model, x, y, new_blocks(model, positions, [0, 7]))
    for (position, seed), g in grads.items():
        reference = expanded_autograd(model, position, seed, x, y)
        assert reference.norm() > 0
        assert relative_error(g, reference) <= 1e-4, (position, seed)


@pytest.mark.parametrize("kind", list(KINDS))
def test_scan_totals_and_per_batch_gradients(kind: str) -> None:
    model = tiny_model(kind)
    x, y = inputs(model, 50), labels(50)
    vx, vy = inputs(model, 20, seed=5), labels(20, seed=5)
    scan = scan_positions(model, (x, y), (vx, vy), [0, 2], [1], batch_size=16, shuffle_seed=3)
    assert scan.method == "single_pass" and scan.train_samples == 50
    for (position, seed), pg in scan.gradients.items():
        assert pg.batches.shape[0] == 3  # three full batches of 16; the last 2 samples only in g
        assert relative_error(pg.train, expanded_autograd(model, position, seed, x, y)) <= 1e-4
        assert relative_error(pg.val, expanded_autograd(model, position, seed, vx, vy)) <= 1e-4


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_norms_without_closed_form_fall_back_to_per_position_autograd(norm: str) -> None:
    model = tiny_model("conv1d", norm).eval()
    x, y = inputs(model, 32), labels(32)
    scan = scan_positions(model, (x, y), (x[:8], y[:8]), [0, 1, 2], [4], batch_size=16)
    assert scan.method == "per_position_autograd"
    assert norm in scan.reason
    assert model.total_blocks == 2  # every temporary insertion was removed
    for (position, seed), pg in scan.gradients.items():
        assert relative_error(pg.train, expanded_autograd(model, position, seed, x, y)) <= 1e-4


def test_too_few_batches_is_a_clear_error() -> None:
    model = tiny_model("mlp")
    x, y = inputs(model, 20), labels(20)
    with pytest.raises(ValueError, match="grad_batch_size"):
        scan_positions(model, (x, y), (x, y), [0], [0], batch_size=16)
