"""The first-order descent certificate of one candidate insertion (docs/design.md 1.3).

At W2 = 0 only the gradient w.r.t. the new block's W2 (and bias) is non-zero. From the scan's
gradients this module computes the `descent` record (train/val squared norms, the unbiased
estimate of |E g|^2 and its lower confidence bound, the three-valued verdict, transfer) and
the `jumpboard` record (the expanded model with W2 = -t g_train at a line-searched step t,
evaluated on validation and test data).

Two sets of per-batch gradients enter. The *certificate* batches come from data the base
never trained on (the held-out certificate split, or fresh teacher samples): U and its bound
on them estimate |E g|^2 of the data distribution, and they alone decide `verdict`. The
*training* batches are the data the base was fitted on; the same statistics on them
(`*_train`) describe optimization (they are biased low against fresh data for a trained
base) and are kept under their own names. The statistics themselves (U, the jackknife-t bound,
the numerical floor, the verdict rule) live in `expansion.insertion.bounds`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from expansion.insertion.bounds import BOUND_METHOD, MIN_BATCHES, UBound, lower_bound
from expansion.insertion.insert import insert_block
from expansion.insertion.scan import PositionGradient
from expansion.models.network import PostNormResNet
from expansion.results.records import CertificateSource, DescentRecord

EVAL_CHUNK = 2048
BOOTSTRAP_RESAMPLES = 2000
CI_METHOD = "paired percentile bootstrap of per-sample cross-entropy differences"
STEP_RANGE = (1e-4, 1.0)
"""Line-search steps move W2 by this range of the stage's mean existing W2 norm."""


@dataclass
class CertificateBatches:
    """Per-batch W2/b2 gradients (n, dim) of one candidate on the certificate data."""

    batches: torch.Tensor
    source: CertificateSource


def gradient_bound(
    batches: torch.Tensor, confidence: float, min_batches: int = MIN_BATCHES
) -> UBound:
    """U, its lower bound and the verdict from per-batch gradients (n, dim), in float64."""
    b = batches.detach().double()
    return lower_bound((b @ b.t()).cpu().numpy(), confidence, min_batches)


def unbiased_norm_sq(batches: torch.Tensor, confidence: float) -> tuple[float, float]:
    """(U, lower bound at `confidence`) of |E g|^2 from per-batch gradients (n, dim).

    The bound is NaN where n < 3 (no valid bound exists).
    """
    result = gradient_bound(batches, confidence)
    return result.u, math.nan if result.lcb is None else result.lcb


def descent_record(
    grad: PositionGradient,
    certificate: CertificateBatches,
    confidence: float,
    min_batches: int = MIN_BATCHES,
) -> DescentRecord:
    """The `descent` fields that need no model: norms, U and bound (certificate and training
    batches), the verdict, cosine."""
    gt, gv = grad.train.double(), grad.val.double()
    cert = gradient_bound(certificate.batches, confidence, min_batches)
    train = gradient_bound(grad.batches, confidence, min_batches)
    nt, nv = float(gt.norm()), float(gv.norm())
    cosine = float(gt @ gv) / (nt * nv) if nt > 0 and nv > 0 else 0.0
    return {
        "grad_norm_sq_train": nt**2,
        "grad_norm_sq_val": nv**2,
        "grad_norm_sq_unbiased": cert.u,
        "grad_norm_sq_lcb": cert.lcb,
        "grad_norm_sq_batch_mean": cert.batch_mean,
        "certificate_source": certificate.source,
        "certificate_batches": cert.n,
        "confidence": confidence,
        "bound_method": BOUND_METHOD,
        "numerical_floor": cert.floor,
        "p_value": cert.p_value,
        "verdict": cert.verdict,
        "verdict_reason": cert.reason,
        "condition_holds": cert.verdict == "holds",
        "grad_norm_sq_unbiased_train": train.u,
        "grad_norm_sq_lcb_train": train.lcb,
        "train_batches": train.n,
        "verdict_train": train.verdict,
        "cosine_train_val": cosine,
    }


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
    """The base network's per-sample losses that every candidate of `certify` is compared
    with: computed once per job, not once per (position, seed)."""

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


def bootstrap_mean_ci(
    diffs: torch.Tensor, confidence: float, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Two-sided percentile bootstrap interval of the mean of paired differences."""
    gen = torch.Generator().manual_seed(seed)
    d = diffs.detach().double().cpu()
    idx = torch.randint(0, d.numel(), (resamples, d.numel()), generator=gen)
    means = d[idx].mean(dim=1)
    alpha = (1.0 - confidence) / 2
    q = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return float(q[0]), float(q[1])


def certify(
    model: PostNormResNet,
    grad: PositionGradient,
    certificate: CertificateBatches,
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    confidence: float,
    line_search_points: int,
    min_batches: int = MIN_BATCHES,
    base: BaseLosses | None = None,
) -> tuple[DescentRecord, dict[str, Any]]:
    """(`descent`, `jumpboard`) records of one candidate insertion (docs/design.md 5).

    `base`: `base_losses(model, val, test)` when the caller has it (computed here otherwise).
    """
    descent = descent_record(grad, certificate, confidence, min_batches)
    vx, vy = val
    tx, ty = test
    if base is None:
        base = base_losses(model, val, test)
    base_val, base_test, base_test_err = base.val, base.test, base.test_errors
    best_step, best_val = 0.0, float(base_val.mean())
    best_model: PostNormResNet | None = None
    tried: list[list[float]] = []
    for t in line_search_steps(model, grad.position, grad.train, line_search_points):
        candidate = jumpboard_model(model, grad.position, grad.seed, grad.train, t)
        v = risk(candidate, vx, vy)
        tried.append([t, v - float(base_val.mean())])
        if best_model is None or v < best_val:
            best_step, best_val, best_model = t, v, candidate
    inner = float(grad.train.double() @ grad.val.double())
    descent["step"] = best_step
    descent["predicted_val_risk_delta"] = -best_step * inner
    jump: dict[str, Any]
    if best_model is None:  # zero gradient: the jumpboard model is the base itself
        jump = {"step": 0.0, "val_risk_delta": 0.0, "test_risk_delta": 0.0}
        jump |= {"test_risk_delta_ci": [0.0, 0.0], "test_error_delta": 0.0}
    else:
        jt, jt_err = per_sample_losses(best_model, tx, ty)
        diffs = jt - base_test
        jump = {
            "step": best_step,
            "val_risk_delta": best_val - float(base_val.mean()),
            "test_risk_delta": float(diffs.mean()),
            "test_risk_delta_ci": list(bootstrap_mean_ci(diffs, confidence)),
            "test_error_delta": float((jt_err - base_test_err).mean()),
        }
    jump["test_risk_delta_ci_method"] = CI_METHOD
    jump["line_search"] = tried
    return descent, jump
