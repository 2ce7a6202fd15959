"""The records of one candidate insertion: its gradient statistics with the test of a non-zero
expected gradient, its certificate in nats, and its jumpboard model (docs/design.md 1.3, 5).

Three sets of data enter, each used for one job only. The training batches give g_train, the
jumpboard model's direction, and the `*_train` statistics (optimization, not the population).
Validation data chooses the jumpboard model's step. The certificate data (the held-out
certificate split, or fresh teacher samples) chose neither, so on it

- the per-batch gradients give U, unbiased for |E g|^2, and the |E g|^2 = 0 test, whose only
  outcomes are "shown" and "not shown" (`descent`);
- the fixed jumpboard model's per-example risk decrease against the base is unbiased for its
  population risk decrease: the certificate in nats, with a two-sided interval and a verdict
  against `expand.min_effect` (`certificate`).

The statistics live in the torch-free `expansion.insertion.bounds` (U, the test, Holm) and
`expansion.insertion.risk_interval` (the interval of a mean loss difference, the verdict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from expansion.insertion.bounds import MIN_BATCHES, TEST_METHOD, GradientTest, nonzero_gradient_test
from expansion.insertion.jumpboard import (
    BaseLosses,
    JumpboardFit,
    base_losses,
    fit_jumpboard,
    jumpboard_model,
    loss_differences,
    per_sample_losses,
)
from expansion.insertion.risk_interval import MEAN_INTERVAL_METHOD, effect_verdict, mean_interval
from expansion.insertion.scan import PositionGradient
from expansion.models.network import PostNormResNet
from expansion.results.records import (
    CertificateRecord,
    CertificateSource,
    DescentRecord,
    PositionCertificate,
    Verdict,
    verdict_counts,
)

TEST_DELTA_METHOD = f"{MEAN_INTERVAL_METHOD} over test examples (one fixed model)"
"""The interval of the jumpboard model's test-risk change."""


@dataclass
class CertificateBatches:
    """Per-batch W2/b2 gradients (n, dim) of one candidate on the certificate data."""

    batches: torch.Tensor
    source: CertificateSource


@dataclass(frozen=True)
class CertificateData:
    """The certificate examples and the base's per-example losses on them (computed once)."""

    x: torch.Tensor
    y: torch.Tensor
    source: CertificateSource
    base_losses: torch.Tensor


def certificate_data(
    model: PostNormResNet, x: torch.Tensor, y: torch.Tensor, source: CertificateSource
) -> CertificateData:
    """The certificate examples with the base's per-example losses on them."""
    return CertificateData(x, y, source, per_sample_losses(model, x, y)[0])


def gradient_test(
    batches: torch.Tensor, confidence: float, min_batches: int = MIN_BATCHES
) -> GradientTest:
    """U, the test's limit and its outcome from per-batch gradients (n, dim), in float64."""
    b = batches.detach().double()
    return nonzero_gradient_test((b @ b.t()).cpu().numpy(), confidence, min_batches)


def unbiased_norm_sq(batches: torch.Tensor, confidence: float) -> tuple[float, float]:
    """(U, the test's jackknife-t limit at `confidence`) from per-batch gradients (n, dim).

    The limit is NaN where n < 3 (no limit exists).
    """
    result = gradient_test(batches, confidence)
    return result.u, math.nan if result.limit is None else result.limit


def descent_record(
    grad: PositionGradient,
    certificate: CertificateBatches,
    confidence: float,
    min_batches: int = MIN_BATCHES,
) -> DescentRecord:
    """The `descent` fields that need no model: norms, U and the |E g|^2 test (certificate and
    training batches), cosine."""
    gt, gv = grad.train.double(), grad.val.double()
    cert = gradient_test(certificate.batches, confidence, min_batches)
    train = gradient_test(grad.batches, confidence, min_batches)
    nt, nv = float(gt.norm()), float(gv.norm())
    cosine = float(gt @ gv) / (nt * nv) if nt > 0 and nv > 0 else 0.0
    return {
        "grad_norm_sq_train": nt**2,
        "grad_norm_sq_val": nv**2,
        "grad_norm_sq_unbiased": cert.u,
        "grad_norm_sq_test_limit": cert.limit,
        "grad_norm_sq_batch_mean": cert.batch_mean,
        "certificate_source": certificate.source,
        "certificate_batches": cert.n,
        "confidence": confidence,
        "nonzero_gradient_method": TEST_METHOD,
        "numerical_floor": cert.floor,
        "nonzero_gradient_p_value": cert.p_value,
        "nonzero_gradient": cert.outcome,
        "nonzero_gradient_reason": cert.reason,
        "grad_norm_sq_unbiased_train": train.u,
        "grad_norm_sq_test_limit_train": train.limit,
        "train_batches": train.n,
        "nonzero_gradient_train": train.outcome,
        "cosine_train_val": cosine,
    }


def certificate_record(
    diffs: np.ndarray,
    source: CertificateSource,
    base_risk: float,
    *,
    confidence: float,
    min_effect: float,
) -> CertificateRecord:
    """The certificate in nats from per-example risk decreases (base minus jumpboard loss) on
    the certificate examples."""
    interval = mean_interval(diffs, confidence)
    verdict, reason = effect_verdict(interval, min_effect)
    return {
        "risk_decrease": interval.mean,
        "risk_decrease_ci": [interval.low, interval.high],
        "interval_method": MEAN_INTERVAL_METHOD,
        "confidence": confidence,
        "min_effect": min_effect,
        "p_value": interval.p_above(min_effect),
        "verdict": verdict,
        "verdict_reason": reason,
        "examples": interval.n,
        "source": source,
        "base_risk": base_risk,
    }


def position_certificate(
    per_seed: list[np.ndarray],
    verdicts: list[Verdict],
    *,
    confidence: float,
    min_effect: float,
) -> tuple[PositionCertificate, float]:
    """The certificate of one position over its seeds from each seed's per-example risk
    decreases on the same certificate examples (their mean over seeds, example by example),
    with the one-sided p-value of "decrease >= min_effect" for the family's `fails`.

    The seeds' blocks are held fixed: the interval is of the mean population risk decrease of
    these jumpboard models, its noise the certificate examples. `family_verdict` is left
    `undecided` for the caller, which sees every position.
    """
    interval = mean_interval(np.mean(np.stack(per_seed), axis=0), confidence)
    verdict, _ = effect_verdict(interval, min_effect)
    certificate: PositionCertificate = {
        "risk_decrease": interval.mean,
        "risk_decrease_ci": [interval.low, interval.high],
        "interval_method": MEAN_INTERVAL_METHOD,
        "p_value": interval.p_above(min_effect),
        "verdict": verdict,
        "verdict_counts": verdict_counts(verdicts),
        "family_verdict": Verdict.UNDECIDED,
        "min_effect": min_effect,
        "examples": interval.n,
    }
    return certificate, interval.p_below(min_effect)


def jumpboard_record(
    model: PostNormResNet,
    grad: PositionGradient,
    fit: JumpboardFit,
    test: tuple[torch.Tensor, torch.Tensor],
    base: BaseLosses,
    confidence: float,
) -> dict[str, Any]:
    """The `jumpboard` record: the chosen step, its validation change (optimistic: chosen on
    that data) and its test-risk change with an interval (docs/design.md 5)."""
    record: dict[str, Any] = {"step": fit.step, "val_risk_delta": fit.val_risk_delta}
    if fit.step == 0.0:  # a zero gradient: the jumpboard model is the base itself
        record |= {"test_risk_delta": 0.0, "test_risk_delta_ci": [0.0, 0.0]}
        record["test_error_delta"] = 0.0
    else:
        jumped = jumpboard_model(model, grad.position, grad.seed, grad.train, fit.step)
        losses, errors = per_sample_losses(jumped, *test)
        interval = mean_interval((losses.double() - base.test.double()).cpu().numpy(), confidence)
        record["test_risk_delta"] = interval.mean
        record["test_risk_delta_ci"] = [interval.low, interval.high]
        record["test_error_delta"] = float((errors - base.test_errors).double().mean())
    record["test_risk_delta_ci_method"] = TEST_DELTA_METHOD
    record["line_search"] = fit.tried
    return record


@dataclass(frozen=True)
class Certified:
    """Every record of one candidate insertion that needs the model."""

    descent: DescentRecord
    certificate: CertificateRecord
    jumpboard: dict[str, Any]
    certificate_diffs: np.ndarray
    """Per-example base minus jumpboard loss on the certificate examples."""


def certify(
    model: PostNormResNet,
    grad: PositionGradient,
    batches: CertificateBatches,
    data: CertificateData,
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    confidence: float,
    line_search_points: int,
    min_effect: float = 0.0,
    min_batches: int = MIN_BATCHES,
    base: BaseLosses | None = None,
    fit: JumpboardFit | None = None,
) -> Certified:
    """The `descent`, `certificate` and `jumpboard` records of one candidate insertion.

    `base`: `base_losses(model, val, test)` when the caller has it; `fit`: the line search's
    choice when the caller made it (both computed here otherwise).
    """
    if base is None:
        base = base_losses(model, val, test)
    if fit is None:
        fit = fit_jumpboard(model, grad, val, line_search_points, base.val)
    descent = descent_record(grad, batches, confidence, min_batches)
    descent["step"] = fit.step
    descent["predicted_val_risk_delta"] = fit.predicted_val_risk_delta
    diffs = loss_differences(model, grad, fit, (data.x, data.y), data.base_losses)
    certificate = certificate_record(
        diffs,
        data.source,
        float(data.base_losses.double().mean()),
        confidence=confidence,
        min_effect=min_effect,
    )
    jump = jumpboard_record(model, grad, fit, test, base, confidence)
    return Certified(descent, certificate, jump, diffs)
