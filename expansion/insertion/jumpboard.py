"""The jumpboard model of one candidate insertion and its per-example losses (docs/design.md 1.3).

The jumpboard model is the base expanded at a position with the new block's W1 from a seed and
W2, b2 = -t g_train: its direction comes from the training batches, its step t from a line
search on validation data. Once both are chosen it is a fixed model, so its per-example losses
on the certificate split (which chose neither) estimate its population risk without bias.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from expansion.insertion.insert import insert_block
from expansion.insertion.scan import PositionGradient
from expansion.models.network import PostNormResNet

EVAL_CHUNK = 2048
STEP_RANGE = (1e-4, 1.0)
"""Line-search steps move W2 by this range of the stage's mean existing W2 norm."""


@torch.no_grad()
def per_sample_losses(
    model: PostNormResNet, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-entropy and 0-1 loss of `model` in eval mode."""
    was_training = model.training
    model.eval()
    losses, errors = [], []
    for bx, by in zip(torch.split(x, EVAL_CHUNK), torch.split(y, EVAL_CHUNK), strict=True):
        logits = model(bx)
        losses.append(F.cross_entropy(logits, by, reduction="none"))
        errors.append((logits.argmax(dim=1) != by).to(logits.dtype))
    model.train(was_training)
    return torch.cat(losses), torch.cat(errors)


@dataclass(frozen=True)
class BaseLosses:
    """The base network's per-sample losses that every candidate is compared with: computed
    once per job, not once per (position, seed)."""

    val: torch.Tensor
    test: torch.Tensor
    test_errors: torch.Tensor


def base_losses(
    model: PostNormResNet,
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
) -> BaseLosses:
    """`model`'s per-sample validation losses and test losses and errors (eval mode)."""
    base_val, _ = per_sample_losses(model, *val)
    base_test, base_test_err = per_sample_losses(model, *test)
    return BaseLosses(base_val, base_test, base_test_err)


def risk(model: PostNormResNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of `model` (eval mode) on (x, y)."""
    return float(per_sample_losses(model, x, y)[0].mean())


def jumpboard_model(
    model: PostNormResNet, position: int, seed: int, gradient: torch.Tensor, step: float
) -> PostNormResNet:
    """A copy of `model` expanded at `position` (W1 from `seed`) with W2, b2 = -step * gradient."""
    expanded = copy.deepcopy(model)
    block = insert_block(expanded, position, seed)
    weight, bias = block.w2_parameters()
    nw = weight.numel()
    with torch.no_grad():
        weight.copy_(-step * gradient[:nw].view_as(weight))
        bias.copy_(-step * gradient[nw:].view_as(bias))
    return expanded


def _stage_w2_norm(model: PostNormResNet, position: int) -> float:
    stage, _ = model.position_to_stage_index(position)
    norms = [
        torch.cat([p.reshape(-1) for p in b.w2_parameters()]).detach().norm()
        for b in model.stage_blocks(stage)
    ]
    return float(torch.stack(norms).mean()) if norms else 1.0


def line_search_steps(
    model: PostNormResNet, position: int, grad: torch.Tensor, points: int
) -> list[float]:
    """Geometric step sizes t whose moves |t g| span STEP_RANGE x the stage's W2 norm."""
    gnorm = float(grad.norm())
    if gnorm == 0.0:
        return []
    scale = _stage_w2_norm(model, position) / gnorm
    lo, hi = STEP_RANGE
    return [scale * lo * (hi / lo) ** (k / (points - 1)) for k in range(points)]


@dataclass(frozen=True)
class JumpboardFit:
    """The line search's choice for one (position, seed): the step and what validation saw."""

    position: int
    seed: int
    step: float
    """The chosen t (0: a zero gradient, the jumpboard model is the base itself)."""
    val_risk_delta: float
    """Validation risk of the chosen model minus the base's: the minimum over the steps tried
    on the same data that chose it, so optimistic by construction."""
    predicted_val_risk_delta: float
    """-t <g_train, g_val>: the first-order validation change at the chosen step."""
    tried: list[list[float]] = field(default_factory=list)
    """[t, validation risk change] of every step tried."""


def fit_jumpboard(
    model: PostNormResNet,
    grad: PositionGradient,
    val: tuple[torch.Tensor, torch.Tensor],
    points: int,
    base_val: torch.Tensor,
) -> JumpboardFit:
    """The step of the jumpboard model W2 = -t g_train with the lowest validation risk among
    `points` geometric steps (`base_val`: the base's per-sample validation losses)."""
    base_risk = float(base_val.mean())
    best_step, best_delta = 0.0, 0.0
    tried: list[list[float]] = []
    for t in line_search_steps(model, grad.position, grad.train, points):
        delta = risk(jumpboard_model(model, grad.position, grad.seed, grad.train, t), *val)
        delta -= base_risk
        tried.append([t, delta])
        if len(tried) == 1 or delta < best_delta:
            best_step, best_delta = t, delta
    inner = float(grad.train.double() @ grad.val.double())
    return JumpboardFit(
        position=grad.position,
        seed=grad.seed,
        step=best_step,
        val_risk_delta=best_delta,
        predicted_val_risk_delta=-best_step * inner,
        tried=tried,
    )


def loss_differences(
    model: PostNormResNet,
    grad: PositionGradient,
    fit: JumpboardFit,
    data: tuple[torch.Tensor, torch.Tensor],
    base: torch.Tensor,
) -> np.ndarray:
    """Per-example base minus jumpboard cross-entropy on `data` (float64; positive = the
    jumpboard model is better), with `base` the base's per-sample losses on it."""
    if fit.step == 0.0:  # a zero gradient: the jumpboard model is the base
        return np.zeros(len(data[1]))
    jumped = jumpboard_model(model, grad.position, grad.seed, grad.train, fit.step)
    losses, _ = per_sample_losses(jumped, *data)
    return (base.double() - losses.double()).cpu().numpy()
