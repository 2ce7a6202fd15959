"""Inserting a zero-initialised residual block into a trained network (docs/design.md 1.2).

The new block has W2 = 0 (bias 0) and W1 at its usual initialisation from a recorded seed,
its branch scale set by the model's rule at the new depth; the other blocks are untouched.
The block goes into `model.stages[s]` and its scale into `model.arch.block_scales[s]`, so a
checkpoint of the expanded network rebuilds the expanded shape.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from expansion.models.network import PostNormResNet, ResidualBlock

DRIFT_CHUNK = 2048


def _calibrate_batch_norm(block: ResidualBlock) -> None:
    """Make a fresh batch norm the identity in eval mode (running_var + eps = 1, mean 0)."""
    norm = block.norm
    if not isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d):  # what `make_norm` builds
        return
    if norm.running_mean is not None and norm.running_var is not None:
        with torch.no_grad():
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)


def insert_block(model: PostNormResNet, position: int, seed: int) -> ResidualBlock:
    """Insert a new block (W2 = 0, W1 from `seed`) before existing block `position`; return it.

    Positions are numbered stage by stage (see `PostNormResNet.position_to_stage_index`).
    A batch-norm block is calibrated to the identity in eval mode; in train mode it is not.
    """
    stage, index = model.position_to_stage_index(position)
    block = model.new_block(stage, seed)
    _calibrate_batch_norm(block)
    block.train(model.training)
    model.stage_modules(stage).insert(index, block)
    model.arch.block_scales[stage].insert(index, float(block.alpha.detach()))
    return block


def remove_block(model: PostNormResNet, position: int) -> ResidualBlock:
    """Undo `insert_block(model, position, ...)`: take out the block now at `position`."""
    stage, index = model.position_to_stage_index(position)
    blocks = model.stage_blocks(stage)
    if index >= len(blocks):
        raise ValueError(f"no block at position {position} to remove")
    del model.stage_modules(stage)[index]
    del model.arch.block_scales[stage][index]
    return blocks[index]


def expanded_copy(model: PostNormResNet, positions: list[int] | int, seed: int) -> PostNormResNet:
    """A deep copy of `model` with new blocks inserted (positions refer to the base network).

    Several positions are inserted from the highest down, so each keeps its base meaning.
    """
    expanded = copy.deepcopy(model)
    plist = [positions] if isinstance(positions, int) else list(positions)
    for p in sorted(plist, reverse=True):
        insert_block(expanded, p, seed)
    return expanded


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(chunk) for chunk in torch.split(x, DRIFT_CHUNK)])


def mode_independent(model: nn.Module) -> bool:
    """Whether `model` computes the same function in train and eval mode (no batch norm, no
    dropout)."""
    mode_dependent = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    return not any(isinstance(m, mode_dependent) for m in model.modules())


def reference_logits(base: PostNormResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """`base`'s logits on `x` in eval and in train mode (on a copy): what `function_drift`
    compares every expanded network with; one pass where the modes compute the same."""
    eval_logits = _logits(copy.deepcopy(base).eval(), x)
    if mode_independent(base):
        return {"eval": eval_logits, "train": eval_logits}
    return {"eval": eval_logits, "train": _logits(copy.deepcopy(base).train(), x)}


def function_drift(
    base: PostNormResNet | dict[str, torch.Tensor], expanded: PostNormResNet, x: torch.Tensor
) -> dict[str, float]:
    """Max |logits_expanded - logits_base| over `x`, in eval and in train mode.

    `base` is the base network or its `reference_logits` on `x`. Train mode runs on copies, so
    batch-norm running statistics of the caller's models are not changed; both models see the
    same chunks (batch statistics depend on the chunk). Where neither network depends on the
    mode, one pass serves both.
    """
    reference = reference_logits(base, x) if isinstance(base, PostNormResNet) else base
    eval_logits = _logits(copy.deepcopy(expanded).eval(), x)
    drift = {"eval": float((eval_logits - reference["eval"]).abs().max())}
    if mode_independent(expanded) and reference["train"] is reference["eval"]:
        drift["train"] = drift["eval"]
    else:
        train_logits = _logits(copy.deepcopy(expanded).train(), x)
        drift["train"] = float((train_logits - reference["train"]).abs().max())
    return drift
