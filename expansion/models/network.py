"""The post-norm residual network family (docs/design.md 1.1).

    h_{l+1} = Norm(h_l + alpha_l * F_l(h_l)),    F_l(h) = W2 act(W1 h)

Three kinds share one skeleton: stem (-> Norm), stages of residual blocks (conv2d only:
several stages, width doubling and resolution halving between them), head (pool + linear).
Each block's branch scale alpha_l is fixed at construction (a buffer; a parameter under the
`learnable` rule) so that inserting a block never rescales the others.

Insertion positions are numbered stage by stage: within a stage of depth d, position i in
0..d means "before block i" (d = after the last block); a model with stage depths
(d_0, d_1, ...) has sum(d_s + 1) positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import nn

from expansion.models.norms import make_norm
from expansion.specs.sections import DataSpec, ModelSpec, input_shape, num_classes


@dataclass
class Architecture:
    """Everything needed to rebuild a network of any depth, expanded ones included (JSON-able)."""

    kind: str
    in_shape: tuple[int, ...]
    num_classes: int
    widths: list[int]
    """Block width of each stage."""
    block_scales: list[list[float]]
    """Per stage, per block: the branch scale alpha at construction."""
    norm: str = "layer"
    groups: int = 8
    scaling: str = "constant"
    alpha: float = 1.0
    activation: str = "relu"
    kernel_size: int = 5
    hidden_mult: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def depths(self) -> list[int]:
        """Blocks per stage."""
        return [len(s) for s in self.block_scales]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and results."""
        d = asdict(self)
        d["in_shape"] = list(self.in_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        """Inverse of `to_dict`."""
        d = dict(d)
        d["in_shape"] = tuple(d["in_shape"])
        return cls(**d)


def branch_scale(scaling: str, alpha: float, total_blocks: int) -> float:
    """The branch scale a block gets under `scaling` in a network of `total_blocks` blocks.

    `learnable` starts at `alpha`; with alpha = 0 (ReZero-style) a *new* block would have both
    factors of its branch zero and no gradient, so it then starts at 1/sqrt(L) instead.
    """
    if scaling == "constant":
        return alpha
    if scaling == "inv_sqrt_depth":
        return 1.0 / math.sqrt(total_blocks)
    if scaling == "inv_depth":
        return 1.0 / total_blocks
    if scaling == "learnable":
        return alpha if alpha > 0 else 1.0 / math.sqrt(total_blocks)
    raise ValueError(f"unknown scaling rule {scaling!r}")


def _spatial_dims(kind: str) -> int:
    return {"mlp": 0, "conv1d": 1, "conv2d": 2}[kind]


LinearMap = nn.Linear | nn.Conv1d | nn.Conv2d
"""The affine maps of a block (W1, W2) and of the stem/transitions, by network kind."""


def _linear_map(kind: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> LinearMap:
    if kind == "mlp":
        return nn.Linear(c_in, c_out)
    conv = nn.Conv1d if kind == "conv1d" else nn.Conv2d
    return conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


class ResidualBlock(nn.Module):
    """One post-norm block: Norm(h + alpha * W2 act(W1 h))."""

    w1: LinearMap
    w2: LinearMap
    norm: nn.Module
    alpha: torch.Tensor
    """A parameter (scaling `learnable`) or a buffer: the branch scale."""

    def __init__(self, arch: Architecture, width: int, scale: float) -> None:
        super().__init__()
        hidden = width * arch.hidden_mult
        self.w1 = _linear_map(arch.kind, width, hidden, arch.kernel_size)
        self.act = nn.ReLU() if arch.activation == "relu" else nn.GELU()
        self.w2 = _linear_map(arch.kind, hidden, width, arch.kernel_size)
        self.norm = make_norm(arch.norm, width, _spatial_dims(arch.kind), arch.groups)
        if arch.scaling == "learnable":
            self.alpha = nn.Parameter(torch.tensor(float(scale)))
        else:
            self.register_buffer("alpha", torch.tensor(float(scale)))

    def branch_input(self, h: torch.Tensor) -> torch.Tensor:
        """act(W1 h): what W2 sees (the factor of W2's gradient that comes from below)."""
        out: torch.Tensor = self.act(self.w1(h))
        return out

    def w2_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W2's weight and bias: the parameters the scan and the certificate are about."""
        bias = self.w2.bias
        if bias is None:  # every block's W2 is built with a bias
            raise ValueError("this block's W2 has no bias")
        return self.w2.weight, bias

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Norm(h + alpha * F(h))."""
        out: torch.Tensor = self.norm(h + self.alpha * self.w2(self.branch_input(h)))
        return out

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Zero W2 and its bias: the branch outputs zero, W1 keeps its random init."""
        self.w2.weight.zero_()
        if self.w2.bias is not None:
            self.w2.bias.zero_()


class PostNormResNet(nn.Module):
    """A post-norm residual network of kind mlp, conv1d or conv2d, rebuilt from Architecture."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        kind, k = arch.kind, arch.kernel_size
        sd = _spatial_dims(kind)
        in_ch = arch.in_shape[0]
        stem_k = k if kind == "conv1d" else 3
        self.stem = nn.Sequential(
            _linear_map(kind, in_ch, arch.widths[0], stem_k),
            make_norm(arch.norm, arch.widths[0], sd, arch.groups),
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(ResidualBlock(arch, w, a) for a in scales)
            for w, scales in zip(arch.widths, arch.block_scales, strict=True)
        )
        self.transitions = nn.ModuleList(
            nn.Sequential(
                _linear_map(kind, arch.widths[s], arch.widths[s + 1], 3, stride=2),
                make_norm(arch.norm, arch.widths[s + 1], sd, arch.groups),
            )
            for s in range(len(arch.widths) - 1)
        )
        self.head = nn.Linear(arch.widths[-1], arch.num_classes)

    # ---- structure -------------------------------------------------------------------------
    @property
    def total_blocks(self) -> int:
        """Number of residual blocks over all stages."""
        return sum(len(self.stage_modules(s)) for s in range(len(self.stages)))

    @property
    def num_positions(self) -> int:
        """Number of insertion positions (depth + 1 per stage)."""
        return sum(len(self.stage_modules(s)) + 1 for s in range(len(self.stages)))

    def position_to_stage_index(self, position: int) -> tuple[int, int]:
        """Global insertion position -> (stage, index within the stage)."""
        if position < 0:
            raise ValueError(f"position {position} must be >= 0")
        p = position
        for s in range(len(self.stages)):
            depth = len(self.stage_modules(s))
            if p <= depth:
                return s, p
            p -= depth + 1
        raise ValueError(f"position {position} out of range 0..{self.num_positions - 1}")

    def stage_modules(self, stage: int) -> nn.ModuleList:
        """The ModuleList that holds stage `stage`'s blocks (insertions edit it in place)."""
        # __init__ builds every stage as a ModuleList; nn.Module indexing is typed as Module.
        return cast(nn.ModuleList, self.stages[stage])

    def stage_blocks(self, stage: int) -> list[ResidualBlock]:
        """Stage `stage`'s residual blocks in forward order."""
        return [cast(ResidualBlock, b) for b in self.stage_modules(stage)]

    def blocks(self) -> list[ResidualBlock]:
        """All residual blocks in forward order."""
        return [b for s in range(len(self.stages)) for b in self.stage_blocks(s)]

    def new_block(self, stage: int, seed: int, scale: float | None = None) -> ResidualBlock:
        """A block for `stage` with W1 from `seed` and W2 = 0 (the global RNG is untouched)."""
        if scale is None:
            scale = branch_scale(self.arch.scaling, self.arch.alpha, self.total_blocks + 1)
        ref = next(self.parameters())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            block = ResidualBlock(self.arch, self.arch.widths[stage], scale)
        block.zero_init_last()
        return block.to(device=ref.device, dtype=ref.dtype)

    # ---- forward ---------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, boundaries: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits (N, classes). With `boundaries`, append h_p at every position in order."""
        h = self.stem(x.reshape(x.shape[0], *self.arch.in_shape))  # (N, C, *spatial)
        for s in range(len(self.stages)):
            if boundaries is not None:
                boundaries.append(h)
            for block in self.stage_modules(s):
                h = block(h)
                if boundaries is not None:
                    boundaries.append(h)
            if s < len(self.transitions):
                h = self.transitions[s](h)
        pooled = h if h.dim() == 2 else h.flatten(2).mean(dim=2)  # (N, C)
        logits: torch.Tensor = self.head(pooled)
        return logits


def build_architecture(model: ModelSpec, data: DataSpec) -> Architecture:
    """The architecture a spec describes, with each block's scale fixed by the scaling rule."""
    total = model.total_blocks
    scale = branch_scale(model.scaling, model.alpha, total)
    if model.scaling == "learnable":
        scale = model.alpha  # at construction learnable scales start at alpha, even 0
    return Architecture(
        kind=model.kind,
        in_shape=input_shape(data, model.kind),
        num_classes=num_classes(data),
        widths=[model.width * 2**s for s in range(model.stages)],
        block_scales=[[scale] * model.depth for _ in range(model.stages)],
        norm=model.norm,
        groups=model.groups,
        scaling=model.scaling,
        alpha=model.alpha,
        activation=model.activation,
        kernel_size=model.kernel_size,
        hidden_mult=model.hidden_mult,
    )


def build_model(model: ModelSpec, data: DataSpec, seed: int = 0) -> PostNormResNet:
    """A freshly initialised network for the spec, initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PostNormResNet(build_architecture(model, data))


def model_from_architecture(arch: Architecture | dict[str, Any]) -> PostNormResNet:
    """A network with the given architecture (weights to be loaded by the caller)."""
    if isinstance(arch, dict):
        arch = Architecture.from_dict(arch)
    return PostNormResNet(arch)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
