"""Tiny networks and inputs shared by the insertion, scan, certificate and growth tests."""

from __future__ import annotations

import torch

from expansion.models.network import PostNormResNet, build_model
from expansion.specs.sections import DataSpec, ModelSpec

KINDS = {"mlp": "mnist1d", "conv1d": "mnist1d", "conv2d": "digits"}


def tiny_model(kind: str, norm: str = "layer", scaling: str = "inv_sqrt_depth") -> PostNormResNet:
    """A small network whose existing blocks all have non-zero branches."""
    spec = ModelSpec(
        kind=kind,
        width=8,
        depth=2,
        stages=2 if kind == "conv2d" else 1,
        norm=norm,
        groups=4,
        kernel_size=3,
        scaling=scaling,
    )
    return build_model(spec, DataSpec(name=KINDS[kind]), seed=0)


def inputs(model: PostNormResNet, n: int = 48, seed: int = 0) -> torch.Tensor:
    """Gaussian inputs in the model's input shape."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model.arch.in_shape, generator=gen)


def labels(n: int, seed: int = 0) -> torch.Tensor:
    """Random class labels."""
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))
