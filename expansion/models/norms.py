"""Normalisation layers of the post-norm residual family (docs/design.md 1.1).

`layer` and `rms` are parameter-free and idempotent: Norm(Norm(z)) = Norm(z) up to float
rounding. That is what makes a block with W2 = 0 an exact identity, and it needs a tiny eps:
with eps = 1e-5 a second normalisation rescales by (1 + O(eps)), which shows up as ~1e-5
drift in the logits. `group` is affine and `batch` keeps running statistics; for those an
inserted block is not an identity and Jumpboard measures the drift instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PARAMETER_FREE_NORMS = frozenset({"layer", "rms"})
NORM_EPS = 1e-8


def is_channels_last(z: torch.Tensor) -> bool:
    """True for a 4-D tensor laid out channels-last (and not also plainly contiguous)."""
    return (
        z.dim() == 4
        and z.is_contiguous(memory_format=torch.channels_last)
        and not z.is_contiguous()
    )


class ChannelPositionLayerNorm(nn.Module):
    """Parameter-free layer norm over every non-batch dimension (channels and positions)."""

    def __init__(self, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Normalise each sample to zero mean and unit variance over (C, *positions)."""
        if is_channels_last(z):
            # Each sample's (H, W, C) block is contiguous and the norm is over all of it:
            # normalising that view keeps the layout (no copy to NCHW and back).
            nhwc = z.permute(0, 2, 3, 1)
            out = F.layer_norm(nhwc.float(), nhwc.shape[1:], eps=self.eps).to(z.dtype)
            return out.permute(0, 3, 1, 2)
        return F.layer_norm(z.float(), z.shape[1:], eps=self.eps).to(z.dtype)


class ChannelPositionRMSNorm(nn.Module):
    """Parameter-free RMS norm over every non-batch dimension."""

    def __init__(self, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Scale each sample to unit root-mean-square over (C, *positions)."""
        zf = z.float()
        dims = tuple(range(1, z.dim()))
        return (zf * torch.rsqrt(zf.pow(2).mean(dim=dims, keepdim=True) + self.eps)).to(z.dtype)


def make_norm(kind: str, channels: int, spatial_dims: int, groups: int = 8) -> nn.Module:
    """A norm layer of `kind` for activations with `channels` and `spatial_dims` (0, 1 or 2)."""
    if kind == "layer":
        return ChannelPositionLayerNorm()
    if kind == "rms":
        return ChannelPositionRMSNorm()
    if kind == "group":
        return nn.GroupNorm(min(groups, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels) if spatial_dims == 2 else nn.BatchNorm1d(channels)
    raise ValueError(f"unknown norm {kind!r}")


def norm_input_gradient(kind: str, z: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """J_Norm(z)^T grad_out for a parameter-free norm, in closed form (docs/design.md 1.4).

    For layer norm with y = (z - mean)/sd: (g - mean(g) - y * mean(g * y)) / sd.
    For RMS norm with y = z/r: (g - y * mean(g * y)) / r. Means are per sample over (C, *).
    """
    dims = tuple(range(1, z.dim()))
    z = z.float()
    g = grad_out.float()
    if kind == "layer":
        mean = z.mean(dim=dims, keepdim=True)
        var = z.var(dim=dims, unbiased=False, keepdim=True)
        sd = torch.sqrt(var + NORM_EPS)
        y = (z - mean) / sd
        return (g - g.mean(dim=dims, keepdim=True) - y * (g * y).mean(dim=dims, keepdim=True)) / sd
    if kind == "rms":
        r = torch.sqrt(z.pow(2).mean(dim=dims, keepdim=True) + NORM_EPS)
        y = z / r
        return (g - y * (g * y).mean(dim=dims, keepdim=True)) / r
    raise ValueError(f"no closed-form Jacobian for norm {kind!r}")
