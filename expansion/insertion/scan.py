"""The exact single-pass scan of every insertion position (docs/design.md 1.4).

A zero block inserted at position p leaves the forward pass unchanged, so the gradient that
reaches its output is dL/dh_p of the ORIGINAL network. One forward pass that keeps every
boundary h_p and one backward pass to all of them give every candidate's W2/b2 gradient:

    u   = J_Norm(h_p)^T dL/dh_p                 (closed form, `norm_input_gradient`)
    dW2 = alpha * sum_batch u (x) act(W1 h_p)     (conv: a convolution's weight gradient)
    db2 = alpha * sum u

The new blocks' W1 come from `model.new_block(stage, seed)`, exactly what `insert_block`
uses, so these gradients equal autograd on the explicitly expanded network. For norms with
parameters or batch statistics the shortcut is not exact and the scan inserts, back-propagates
and removes each block instead (`per_position_autograd`). Gradients are of the mean
cross-entropy, with the model in eval mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import grad as nn_grad

from expansion.insertion.insert import insert_block, remove_block
from expansion.models.network import PostNormResNet, ResidualBlock
from expansion.models.norms import (
    PARAMETER_FREE_NORMS,
    ChannelPositionLayerNorm,
    ChannelPositionRMSNorm,
    norm_input_gradient,
)

logger = logging.getLogger(__name__)

Key = tuple[int, int]
"""(position, seed) of one candidate insertion."""


@dataclass
class PositionGradient:
    """W2/b2 gradients (flattened, W2 first) of one candidate insertion."""

    position: int
    seed: int
    train: torch.Tensor
    """Gradient of the mean training cross-entropy over all scanned training samples."""
    val: torch.Tensor
    """Gradient of the mean validation cross-entropy."""
    batches: torch.Tensor
    """(n, dim): per-batch training gradients (equal-size batches) for the unbiased estimate."""


@dataclass
class ScanGradients:
    """Every candidate's gradients and how they were computed."""

    method: str
    """`single_pass` or `per_position_autograd`."""
    reason: str
    gradients: dict[Key, PositionGradient] = field(default_factory=dict)
    train_samples: int = 0
    batch_size: int = 0


def scan_method(model: PostNormResNet) -> tuple[str, str]:
    """Which scan is exact for this network, and why."""
    norm = model.arch.norm
    if norm in PARAMETER_FREE_NORMS:
        return "single_pass", f"parameter-free {norm} norm: J_Norm has a closed form at W2 = 0"
    return (
        "per_position_autograd",
        f"{norm} norm has parameters or batch statistics, so the inserted block is not an exact "
        "identity and the boundary-gradient shortcut does not apply",
    )


def new_blocks(
    model: PostNormResNet, positions: Sequence[int], seeds: Sequence[int]
) -> dict[Key, ResidualBlock]:
    """The blocks `insert_block(model, p, seed)` would insert, keyed by (p, seed), in eval mode."""
    blocks: dict[Key, ResidualBlock] = {}
    by_stage: dict[tuple[int, int], ResidualBlock] = {}
    for p in positions:
        stage, _ = model.position_to_stage_index(p)
        for seed in seeds:
            # W1 depends only on (stage, seed): share the module between positions of a stage.
            if (stage, seed) not in by_stage:
                by_stage[(stage, seed)] = model.new_block(stage, seed).eval()
            blocks[(p, seed)] = by_stage[(stage, seed)]
    return blocks


def _weight_gradient(block: ResidualBlock, act: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gradient of sum(u * W2(act)) w.r.t. W2's weight and bias, flattened (W2 first)."""
    w2 = block.w2
    if isinstance(w2, nn.Linear):
        dw = u.t() @ act
    elif isinstance(w2, nn.Conv1d):
        dw = nn_grad.conv1d_weight(act, w2.weight.shape, u, padding=w2.padding)
    else:
        dw = nn_grad.conv2d_weight(act, w2.weight.shape, u, padding=w2.padding)
    db = u.sum(dim=0) if u.dim() == 2 else u.sum(dim=(0, *range(2, u.dim())))
    return torch.cat([dw.reshape(-1), db.reshape(-1)])


def _norm_eps(block: ResidualBlock) -> float:
    """The eps of a block's parameter-free norm (the only norms the single-pass scan handles)."""
    norm = block.norm
    if not isinstance(norm, ChannelPositionLayerNorm | ChannelPositionRMSNorm):
        raise TypeError(f"the single-pass scan needs a parameter-free norm, not {norm!r}")
    return norm.eps


def norm_backward(kind: str, z: torch.Tensor, grad_out: torch.Tensor, eps: float) -> torch.Tensor:
    """J_Norm(z)^T grad_out for a parameter-free norm at z.

    The layer norm back-propagates through `F.layer_norm`, so it runs the very fused kernel
    autograd runs on the explicitly expanded network (one pass instead of a dozen elementwise
    ones); the RMS norm uses the closed form of `norm_input_gradient`.
    """
    if kind == "layer":
        with torch.enable_grad():
            zf = z.detach().float().requires_grad_(True)
            normed = F.layer_norm(zf, list(z.shape[1:]), eps=eps)
            (grad,) = torch.autograd.grad(normed, zf, grad_out.float())
        return grad.to(z.dtype)
    return norm_input_gradient(kind, z, grad_out).to(z.dtype)


def single_pass_gradients(
    model: PostNormResNet,
    x: torch.Tensor,
    y: torch.Tensor,
    blocks: dict[Key, ResidualBlock],
) -> dict[Key, torch.Tensor]:
    """Every candidate's gradient of the batch's mean cross-entropy from one forward+backward."""
    positions = sorted({p for p, _ in blocks})
    boundaries: list[torch.Tensor] = []
    loss = F.cross_entropy(model(x, boundaries=boundaries), y)
    grads = dict(
        zip(positions, torch.autograd.grad(loss, [boundaries[p] for p in positions]), strict=True)
    )
    # MLP candidates sharing a block module (same stage and seed) are stacked into one batch,
    # positions as extra batch entries: their small ops are launch-bound. Convolutions are
    # compute-bound and skip the copies.
    groups: dict[int, tuple[ResidualBlock, list[Key]]] = {}
    for key, block in blocks.items():
        groups.setdefault(id(block), (block, []))[1].append(key)
    stack = model.arch.kind == "mlp"
    out: dict[Key, torch.Tensor] = {}
    n = x.shape[0]
    with torch.no_grad():
        for block, keys in groups.values():
            chunks = [keys] if stack else [[k] for k in keys]
            for chunk in chunks:
                if len(chunk) == 1:
                    h, g = boundaries[chunk[0][0]].detach(), grads[chunk[0][0]]
                else:  # (P*N, C, *spatial)
                    h = torch.cat([boundaries[p].detach() for p, _ in chunk])
                    g = torch.cat([grads[p] for p, _ in chunk])
                u = norm_backward(model.arch.norm, h, g, _norm_eps(block))
                act = block.branch_input(h)
                for i, key in enumerate(chunk):
                    part = slice(i * n, (i + 1) * n)
                    grad = _weight_gradient(block, act[part], u[part])
                    out[key] = grad * block.alpha
    return out


def autograd_gradients(
    model: PostNormResNet,
    x: torch.Tensor,
    y: torch.Tensor,
    keys: Sequence[Key],
) -> dict[Key, torch.Tensor]:
    """Every candidate's gradient by inserting its block, back-propagating and removing it."""
    out: dict[Key, torch.Tensor] = {}
    for p, seed in keys:
        block = insert_block(model, p, seed)
        try:
            loss = F.cross_entropy(model(x), y)
            dw, db = torch.autograd.grad(loss, block.w2_parameters())
            out[(p, seed)] = torch.cat([dw.reshape(-1), db.reshape(-1)]).detach()
        finally:
            remove_block(model, p)
    return out


def _batch_gradients(
    model: PostNormResNet,
    method: str,
    blocks: dict[Key, ResidualBlock],
    x: torch.Tensor,
    y: torch.Tensor,
) -> dict[Key, torch.Tensor]:
    if method == "single_pass":
        return single_pass_gradients(model, x, y, blocks)
    return autograd_gradients(model, x, y, list(blocks))


def scan_positions(
    model: PostNormResNet,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    positions: Sequence[int],
    seeds: Sequence[int],
    *,
    batch_size: int,
    max_batches: int | None = None,
    shuffle_seed: int = 0,
    on_batch: Callable[[float], None] | None = None,
    force_method: str | None = None,
) -> ScanGradients:
    """g_train, g_val and per-batch training gradients of every (position, seed) candidate.

    Training batches come from a seeded permutation (so they are random subsamples); the last,
    smaller batch counts towards g_train but not towards the per-batch gradients.
    `on_batch(fraction)` is called after each batch (progress, stop checks).
    """
    method, reason = scan_method(model)
    if force_method is not None:
        method, reason = force_method, f"{force_method} requested"
    was_training = model.training
    model.eval()
    blocks = new_blocks(model, positions, seeds)
    tx, ty = train
    n = tx.shape[0]
    gen = torch.Generator().manual_seed(shuffle_seed)
    order = torch.randperm(n, generator=gen).to(tx.device)
    starts = list(range(0, n, batch_size))
    if max_batches is not None:
        starts = starts[:max_batches]
    vx, vy = val
    val_starts = list(range(0, vx.shape[0], batch_size))
    total_steps = len(starts) + len(val_starts)
    sums: dict[Key, torch.Tensor] = {}
    per_batch: dict[Key, list[torch.Tensor]] = {k: [] for k in blocks}
    seen = 0
    try:
        for i, start in enumerate(starts):
            idx = order[start : start + batch_size]
            grads = _batch_gradients(model, method, blocks, tx[idx], ty[idx])
            for k, g in grads.items():
                sums[k] = sums.get(k, 0) + g * idx.numel()
                if idx.numel() == batch_size:
                    per_batch[k].append(g)
            seen += idx.numel()
            if on_batch is not None:
                on_batch((i + 1) / total_steps)
        val_sums: dict[Key, torch.Tensor] = {}
        for j, start in enumerate(val_starts):
            bx, by = vx[start : start + batch_size], vy[start : start + batch_size]
            for k, g in _batch_gradients(model, method, blocks, bx, by).items():
                val_sums[k] = val_sums.get(k, 0) + g * bx.shape[0]
            if on_batch is not None:
                on_batch((len(starts) + j + 1) / total_steps)
    finally:
        model.train(was_training)
    result = ScanGradients(method, reason, train_samples=seen, batch_size=batch_size)
    for k in blocks:
        batches = per_batch[k]
        if len(batches) < 2:
            raise ValueError(
                f"the unbiased estimate needs at least 2 full training batches of "
                f"grad_batch_size={batch_size}, got {len(batches)} from {seen} samples: "
                "lower expand.grad_batch_size or raise expand.grad_batches"
            )
        result.gradients[k] = PositionGradient(
            position=k[0],
            seed=k[1],
            train=sums[k] / seen,
            val=val_sums[k] / vx.shape[0],
            batches=torch.stack(batches),
        )
    logger.info(
        "scanned %d positions x %d seeds over %d training samples (%s)",
        len(set(positions)),
        len(seeds),
        seen,
        method,
    )
    return result
