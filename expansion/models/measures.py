"""Per-network measures of a sweep point: input sensitivity, norm-based capacity, the gap.

Input sensitivity (the response function of 2305.07715): the mean over test inputs x of the
squared Frobenius norm of the input-logit Jacobian, S = E_x ||d f(x) / d x||_F^2. It is estimated
without forming the Jacobian: for a standard Gaussian v, E_v ||J v||^2 = ||J||_F^2 (Hutchinson),
and J v is one forward-mode product (torch.func.jvp); with u Gaussian over the logits,
E_u ||J^T u||^2 = ||J||_F^2 too (torch.func.vjp). Each input gets `projections` draws; the standard
error is that of the mean over inputs of the per-input averages, so it covers both the choice of
inputs and the projection noise.

Capacity measures follow the norm-based Rademacher bound of 2605.08297: the sum over blocks of
|alpha_l| ||W1_l||_F ||W2_l||_F (the branch's Lipschitz bound in Frobenius norms), next to the
sum of |alpha_l| and the squared norm of all weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import torch
from torch import nn
from torch.func import jvp, vjp

from expansion.models.network import PostNormResNet


class ProjectionMethod(StrEnum):
    """How the random projections of the Jacobian are taken."""

    JVP = "jvp"
    """Gaussian directions in input space, J v by forward mode."""
    VJP = "vjp"
    """Gaussian directions in logit space, J^T u by reverse mode."""


@dataclass(frozen=True)
class SensitivityEstimate:
    """An estimate of E_x ||d logits / d x||_F^2 over test inputs."""

    estimate: float
    """Mean over the inputs of the per-input projection averages."""
    standard_error: float
    """Standard error of `estimate` over the inputs (includes the projection noise)."""
    projections: int
    """Random projections per input."""
    samples: int
    """Inputs averaged over."""
    method: str
    """`jvp` or `vjp`."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the result record."""
        return asdict(self)


def _projection_norms(
    model: nn.Module,
    x: torch.Tensor,
    projections: int,
    method: ProjectionMethod,
    generator: torch.Generator,
) -> torch.Tensor:
    """(N, projections) squared norms ||J(x_i) v_ij||^2 (or ||J^T u_ij||^2).

    Every input is repeated `projections` times and all products are taken in one batched
    call: in eval mode the samples of a batch are independent, so row (i, j) of the product is
    exactly J(x_i) v_ij.
    """
    n = x.shape[0]
    repeated = x.repeat_interleave(projections, dim=0)  # (N * k, *input)

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = model(inputs)
        return logits

    if method is ProjectionMethod.JVP:
        v = torch.randn(repeated.shape, generator=generator, dtype=x.dtype).to(x.device)
        _, product = jvp(logits, (repeated,), (v,))[:2]
    else:
        out, pullback = vjp(logits, repeated)[:2]
        u = torch.randn(out.shape, generator=generator, dtype=out.dtype).to(x.device)
        (product,) = pullback(u)
    squares: torch.Tensor = product.detach().flatten(1).pow(2).sum(dim=1).reshape(n, projections)
    return squares


def input_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    *,
    projections: int = 16,
    seed: int = 0,
    method: ProjectionMethod | str = ProjectionMethod.JVP,
    max_rows: int = 1024,
) -> SensitivityEstimate:
    """Estimate E_x ||d model(x) / d x||_F^2 over the inputs `x` (model in eval mode); at most
    `max_rows` (inputs x projections) go through the model at once."""
    if projections < 1:
        raise ValueError(f"projections must be at least 1 (got {projections})")
    if len(x) < 2:
        raise ValueError("input sensitivity needs at least 2 inputs for a standard error")
    method = ProjectionMethod(method)
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    per_input = []
    try:
        batch_size = max(1, max_rows // projections)
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            norms = _projection_norms(model, batch, projections, method, generator)
            per_input.append(norms.mean(dim=1).detach().double().cpu())
    finally:
        model.train(was_training)
    means = torch.cat(per_input)
    n = len(means)
    return SensitivityEstimate(
        estimate=float(means.mean()),
        standard_error=float(means.std(unbiased=True) / math.sqrt(n)),
        projections=projections,
        samples=n,
        method=method.value,
    )


def exact_input_sensitivity(model: nn.Module, x: torch.Tensor) -> float:
    """E_x ||d model(x) / d x||_F^2 from the full per-input Jacobians (small models only)."""
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for i in range(len(x)):
            jac = torch.autograd.functional.jacobian(lambda inp: model(inp), x[i : i + 1])
            total += float(jac.pow(2).sum())
    finally:
        model.train(was_training)
    return total / len(x)


def capacity_measures(model: PostNormResNet) -> dict[str, float]:
    """Norm-based capacity measures of a post-norm ResNet (see the module docstring)."""
    branch_norm_sum = 0.0
    alpha_sum = 0.0
    for block in model.blocks():
        alpha = abs(float(block.alpha.detach()))
        w1 = float(block.w1.weight.detach().norm())
        w2 = float(block.w2.weight.detach().norm())
        branch_norm_sum += alpha * w1 * w2
        alpha_sum += alpha
    weight_sq = sum(
        float(p.detach().pow(2).sum()) for name, p in model.named_parameters() if p.dim() >= 2
    )
    return {
        "branch_norm_sum": branch_norm_sum,
        "alpha_sum": alpha_sum,
        "weight_frobenius_sq": weight_sq,
    }


CAPACITY_DESCRIPTIONS = {
    "branch_norm_sum": "sum over blocks of |alpha_l| * ||W1_l||_F * ||W2_l||_F",
    "alpha_sum": "sum over blocks of |alpha_l|",
    "weight_frobenius_sq": "sum of squared Frobenius norms of every weight matrix/kernel",
}
"""What each capacity measure is (stored next to the numbers in a sweep result)."""


def generalization_gap(risks: Mapping[str, float | None]) -> dict[str, float | None]:
    """Test minus train risk (cross-entropy) and error (0-1) of one network."""

    def gap(name: str) -> float | None:
        test, train = risks.get(f"test_{name}"), risks.get(f"train_{name}")
        if test is None or train is None:
            return None
        return test - train

    return {"generalization_gap_risk": gap("risk"), "generalization_gap_error": gap("error")}
