"""Optimizer plumbing shared by base training, growth and controlled continuation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch


def is_decayed(p: torch.Tensor) -> bool:
    """Weight decay applies to weight matrices and kernels only: biases and scales are exempt."""
    return p.dim() >= 2


def weight_decay_groups(
    params: Iterable[torch.nn.Parameter], weight_decay: float, **options: Any
) -> list[dict[str, Any]]:
    """Parameter groups for `params`: the decayed ones with `weight_decay`, the rest with none.

    `options` (a learning rate, a role tag) go into both groups; an empty group is left out.
    """
    params = list(params)
    decayed = [p for p in params if is_decayed(p)]
    other = [p for p in params if not is_decayed(p)]
    return [
        {"params": subset, "weight_decay": wd, **options}
        for subset, wd in ((decayed, weight_decay), (other, 0.0))
        if subset
    ]


def clone_parameter_state(
    state: Mapping[str, Any], device: torch.device | None = None
) -> dict[str, Any]:
    """A detached copy of one parameter's optimizer state (tensors cloned).

    With `device`, tensors move there, except scalar ones ("step"), which stay where the
    optimizers keep them (the CPU unless capturable).
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        if torch.is_tensor(value):
            value = value.detach().clone()
            if device is not None and value.dim():
                value = value.to(device)
        out[key] = value
    return out
