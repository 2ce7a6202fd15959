"""A network's risk and error on a data set: mean cross-entropy and 0-1 risk, in eval mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EVAL_BATCH_SIZE = 2048


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[float, float]:
    """(risk, error) of `model` on (x, y) in eval mode: mean cross-entropy and 0-1 risk."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, wrong = 0.0, 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model(xb).float()
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        wrong += int((logits.argmax(dim=1) != yb).sum())
    model.train(was_training)
    n = max(1, len(y))
    return loss_sum / n, wrong / n
