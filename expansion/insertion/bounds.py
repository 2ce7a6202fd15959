"""Statistics of the descent certificate and of the realized gain (torch-free: numpy, scipy).

The certificate (docs/design.md 1.3). From n per-batch gradients g_1..g_n (i.i.d. batches of equal
size, drawn from the data the claim is about),

    U = 1/(n(n-1)) sum_{i != j} <g_i, g_j> = |mean g|^2 - trace(Cov g)/n,

a U-statistic of order 2, unbiased for theta = |E g|^2. With psi_i = <g_i, mean_{j != i} g_j>,
U = mean(psi). The leave-one-out values are U_(-i) = (n U - 2 psi_i)/(n - 2), so the
jackknife standard error of U is

    se_jack = (n - 1)/(n - 2) * 2 sd(psi)/sqrt(n)        (n >= 3),

and the one-sided lower bound at confidence c is the Student-t bound

    LCB = U - t_{c, n-1} * se_jack,     p-value of H0: theta = 0: P(T_{n-1} >= U/se_jack).

The plain projection bound (without the (n-1)/(n-2) factor) covers only about half the time at
n = 2 when theta = 0; this one is defined from n = 3, and the verdict needs n >= MIN_BATCHES
(8) besides: below that the verdict is `undecided` whatever the bound says. The coverage and
power of this rule under Gaussian, anisotropic, heavy-tailed and skewed noise are measured by
benchmarks/certificate_coverage.py and tabulated in docs/science.md.

Numerical floor. Gradients are float32. A bound whose magnitude is below
max(FLOOR_RELATIVE * mean_i |g_i|^2, FLOOR_ABSOLUTE) is decided by rounding, not by data: the
verdict is then `undecided`.

Multiplicity: `holm` turns P p-values into family-wise decisions (Holm's step-down).
Realized gain: `two_level_bootstrap` resamples seeds, then test examples, of per-example loss
differences (control minus expanded) and gives a percentile interval of their mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from expansion.results.records import Verdict

MIN_BATCHES = 8
"""Fewest per-batch gradients for a decided verdict (the bound is computed from n = 3)."""
FLOOR_RELATIVE = 1e-5
"""Numerical floor relative to the mean per-batch squared gradient norm (float32 inner products
carry relative errors around 1e-6 of |g_i||g_j|)."""
FLOOR_ABSOLUTE = 1e-10
"""Absolute numerical floor of a squared W2-gradient norm: float32 resolves a softmax
probability near 1 only to ~6e-8, so a base that fits its batches has rounding-level gradients
(squared norms around 1e-13..1e-11 in a normalised network)."""
BOUND_METHOD = "jackknife_t"
"""Name of the bound: Student-t with n-1 degrees of freedom on U and its jackknife variance."""
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class UBound:
    """U, its lower bound and the verdict from one set of per-batch gradients."""

    n: int
    """Number of per-batch gradients."""
    u: float
    """Unbiased estimate of |E g|^2."""
    lcb: float | None
    """One-sided lower confidence bound of |E g|^2; None where n < 3 (no valid bound)."""
    std_error: float | None
    """Jackknife standard error of U; None where n < 3."""
    p_value: float
    """One-sided p-value of H0: |E g|^2 = 0 (1.0 where no bound exists)."""
    batch_mean: float
    """Mean per-batch squared norm, mean_i |g_i|^2."""
    floor: float
    """Numerical floor: a bound this close to 0 decides nothing."""
    verdict: Verdict
    reason: str


def numerical_floor(batch_mean: float) -> float:
    """The stated numerical floor for per-batch gradients of mean squared norm `batch_mean`."""
    return max(FLOOR_RELATIVE * batch_mean, FLOOR_ABSOLUTE)


def bound_arrays(
    grams: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(U, jackknife se, lower bound, mean |g_i|^2) for a stack of Gram matrices (..., n, n).

    se and the bound are NaN where n < 3.
    """
    grams = np.asarray(grams, dtype=np.float64)
    n = grams.shape[-1]
    if n < 2 or grams.shape[-2] != n:
        raise ValueError(f"need square Gram matrices of at least 2 gradients, got {grams.shape}")
    diag = np.diagonal(grams, axis1=-2, axis2=-1)
    psi = (grams.sum(axis=-1) - diag) / (n - 1)
    u = psi.mean(axis=-1)
    if n < 3:
        nan = np.full(u.shape, np.nan)
        return u, nan, nan.copy(), diag.mean(axis=-1)
    se = (n - 1) / (n - 2) * 2.0 * psi.std(axis=-1, ddof=1) / math.sqrt(n)
    lcb = u - float(stats.t.ppf(confidence, n - 1)) * se
    return u, se, lcb, diag.mean(axis=-1)


def decide(
    n: int, lcb: float | None, floor: float, confidence: float, min_batches: int = MIN_BATCHES
) -> tuple[Verdict, str]:
    """The three-valued verdict (and why) of a bound from n batches with numerical floor."""
    if n < max(min_batches, 3):
        return Verdict.UNDECIDED, f"{n} batches, fewer than the {min_batches} needed"
    if lcb is None or not math.isfinite(lcb):
        return Verdict.UNDECIDED, "no finite bound"
    if abs(lcb) <= floor:
        return Verdict.UNDECIDED, f"bound {lcb:.3g} within the numerical floor {floor:.3g}"
    if lcb > 0:
        return Verdict.HOLDS, f"bound {lcb:.3g} > 0 at confidence {confidence}"
    return Verdict.FAILS, f"bound {lcb:.3g} <= 0 at confidence {confidence}"


def lower_bound(gram: np.ndarray, confidence: float, min_batches: int = MIN_BATCHES) -> UBound:
    """U, its jackknife-t lower bound at `confidence` and the three-valued verdict."""
    u_a, se_a, lcb_a, mean_a = bound_arrays(np.asarray(gram)[None], confidence)
    n = int(np.asarray(gram).shape[0])
    u, batch_mean = float(u_a[0]), float(mean_a[0])
    lcb = None if np.isnan(lcb_a[0]) else float(lcb_a[0])
    se = None if np.isnan(se_a[0]) else float(se_a[0])
    p_value = 1.0
    if se is not None and se > 0:
        p_value = float(stats.t.sf(u / se, n - 1))
    elif se is not None and u > 0:  # identical gradients: U is exact
        p_value = 0.0
    floor = numerical_floor(batch_mean)
    verdict, reason = decide(n, lcb, floor, confidence, min_batches)
    return UBound(n, u, lcb, se, p_value, batch_mean, floor, verdict, reason)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections at family-wise level `alpha`, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    rejected = [False] * m
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def family_verdicts(
    verdicts: Sequence[Verdict], p_values: Sequence[float], alpha: float
) -> list[Verdict]:
    """Family-wise (Holm) verdicts over positions: `holds` needs the per-position verdict `holds`
    and a Holm rejection; undecided positions stay undecided and count in the family (p = 1)."""
    adjusted = [
        1.0 if v is Verdict.UNDECIDED else p for v, p in zip(verdicts, p_values, strict=True)
    ]
    rejected = holm(adjusted, alpha)
    out = []
    for verdict, reject in zip(verdicts, rejected, strict=True):
        if verdict is Verdict.UNDECIDED:
            out.append(Verdict.UNDECIDED)
        elif verdict is Verdict.HOLDS and reject:
            out.append(Verdict.HOLDS)
        else:
            out.append(Verdict.FAILS)
    return out


def two_level_bootstrap(
    diffs: np.ndarray,
    confidence: float,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of the mean of `diffs` (seeds x test examples).

    Each replicate resamples the seeds with replacement, then the test examples with
    replacement (one index set shared by the seeds: every arm was scored on the same test
    set, so the differences are paired by example). With one seed only the test examples are
    resampled.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    seeds, examples = d.shape
    rng = np.random.default_rng(seed)
    seed_counts = np.ones((resamples, 1))
    if seeds > 1:
        seed_counts = rng.multinomial(seeds, np.full(seeds, 1.0 / seeds), size=resamples).astype(
            np.float64
        )
    example_counts = rng.multinomial(examples, np.full(examples, 1.0 / examples), size=resamples)
    means = ((seed_counts @ d) * example_counts).sum(axis=1) / (seeds * examples)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def two_level_method(seeds: int) -> str:
    """The name of the interval `two_level_bootstrap` gives for this many seeds."""
    if seeds > 1:
        return "two_level_paired_bootstrap(seeds, test_examples)"
    return "paired_bootstrap(test_examples)"
