"""Statistics of the test of a non-zero expected gradient, Holm, and the realized-gain interval
(torch-free: numpy, scipy).

The |E g|^2 test (docs/design.md 1.3). From n per-batch gradients g_1..g_n (i.i.d. batches of
equal size, drawn from the data the claim is about),

    U = 1/(n(n-1)) sum_{i != j} <g_i, g_j> = |mean g|^2 - trace(Cov g)/n,

a U-statistic of order 2, unbiased for theta = |E g|^2. With psi_i = <g_i, mean_{j != i} g_j>,
U = mean(psi). The leave-one-out values are U_(-i) = (n U - 2 psi_i)/(n - 2), so the
jackknife standard error of U is

    se_jack = (n - 1)/(n - 2) * 2 sd(psi)/sqrt(n)        (n >= 3),

and the test's limit at confidence c is the Student-t limit

    limit = U - t_{c, n-1} * se_jack,     p-value of H0: theta = 0: P(T_{n-1} >= U/se_jack).

The test shows |E g|^2 > 0 when the limit is above the numerical floor and n >= MIN_BATCHES
(8); otherwise it shows nothing. Its null is almost never exactly true for a random W1, so the
test has two outcomes, shown or not shown, and "not shown" never means "no descent
direction". The limit is a test statistic, not a lower confidence bound of theta: with the
signal along a left-skewed noise direction and theta = 10-50 x trace(Cov)/n it lies above theta
in up to 14% of draws at n = 8 (docs/science.md 5), while at theta = 0, where the test's level
is decided, it errs in at most 1.5%.

Numerical floor. Gradients are float32. A limit whose magnitude is below
max(FLOOR_RELATIVE * mean_i |g_i|^2, FLOOR_ABSOLUTE) is decided by rounding, not by data: the
test then shows nothing.

Multiplicity: `holm` turns P p-values into family-wise decisions (Holm's step-down).

Realized gain: `gain_interval` gives every realized-gain interval the service shows, from a
seeds x test-examples array of per-example loss differences (control minus expanded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from expansion.insertion.risk_interval import mean_interval, mean_intervals
from expansion.results.records import TestOutcome, Verdict

MIN_BATCHES = 8
"""Fewest per-batch gradients for the test to show anything (the limit exists from n = 3)."""
FLOOR_RELATIVE = 1e-5
"""Numerical floor relative to the mean per-batch squared gradient norm (float32 inner products
carry relative errors around 1e-6 of |g_i||g_j|)."""
FLOOR_ABSOLUTE = 1e-10
"""Absolute numerical floor of a squared W2-gradient norm: float32 resolves a softmax
probability near 1 only to ~6e-8, so a base that fits its batches has rounding-level gradients
(squared norms around 1e-13..1e-11 in a normalised network)."""
TEST_METHOD = "jackknife_t"
"""Name of the test: Student-t with n-1 degrees of freedom on U and its jackknife variance."""


@dataclass(frozen=True)
class GradientTest:
    """U, the test's limit and its outcome from one set of per-batch gradients."""

    n: int
    """Number of per-batch gradients."""
    u: float
    """Unbiased estimate of |E g|^2."""
    limit: float | None
    """The jackknife-t limit U - t se (the test statistic); None where n < 3."""
    std_error: float | None
    """Jackknife standard error of U; None where n < 3."""
    p_value: float
    """One-sided p-value of H0: |E g|^2 = 0 (1.0 where no limit exists)."""
    batch_mean: float
    """Mean per-batch squared norm, mean_i |g_i|^2."""
    floor: float
    """Numerical floor: a limit this close to 0 shows nothing."""
    outcome: TestOutcome
    reason: str


def numerical_floor(batch_mean: float) -> float:
    """The stated numerical floor for per-batch gradients of mean squared norm `batch_mean`."""
    return max(FLOOR_RELATIVE * batch_mean, FLOOR_ABSOLUTE)


def limit_arrays(
    grams: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(U, jackknife se, test limit, mean |g_i|^2) for a stack of Gram matrices (..., n, n).

    se and the limit are NaN where n < 3.
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
    limit = u - float(stats.t.ppf(confidence, n - 1)) * se
    return u, se, limit, diag.mean(axis=-1)


def gradient_test_outcome(
    n: int, limit: float | None, floor: float, confidence: float, min_batches: int = MIN_BATCHES
) -> tuple[TestOutcome, str]:
    """Whether a limit from n batches with numerical floor shows |E g|^2 > 0, and why."""
    if n < max(min_batches, 3):
        return TestOutcome.NOT_SHOWN, f"{n} batches, fewer than the {min_batches} needed"
    if limit is None or not math.isfinite(limit):
        return TestOutcome.NOT_SHOWN, "no finite limit"
    if abs(limit) <= floor:
        return TestOutcome.NOT_SHOWN, f"limit {limit:.3g} within the numerical floor {floor:.3g}"
    if limit > 0:
        return TestOutcome.SHOWN, f"limit {limit:.3g} > 0 at confidence {confidence}"
    return TestOutcome.NOT_SHOWN, f"limit {limit:.3g} <= 0 at confidence {confidence}"


def nonzero_gradient_test(
    gram: np.ndarray, confidence: float, min_batches: int = MIN_BATCHES
) -> GradientTest:
    """U, its jackknife-t limit at `confidence` and whether it shows |E g|^2 > 0."""
    u_a, se_a, limit_a, mean_a = limit_arrays(np.asarray(gram)[None], confidence)
    n = int(np.asarray(gram).shape[0])
    u, batch_mean = float(u_a[0]), float(mean_a[0])
    limit = None if np.isnan(limit_a[0]) else float(limit_a[0])
    se = None if np.isnan(se_a[0]) else float(se_a[0])
    p_value = 1.0
    if se is not None and se > 0:
        p_value = float(stats.t.sf(u / se, n - 1))
    elif se is not None and u > 0:  # identical gradients: U is exact
        p_value = 0.0
    floor = numerical_floor(batch_mean)
    outcome, reason = gradient_test_outcome(n, limit, floor, confidence, min_batches)
    return GradientTest(n, u, limit, se, p_value, batch_mean, floor, outcome, reason)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections at family-wise level `alpha`, in the order given (a
    non-finite p-value counts as 1: it rejects nothing)."""
    m = len(p_values)
    p_values = [p if math.isfinite(p) else 1.0 for p in p_values]
    order = sorted(range(m), key=lambda i: p_values[i])
    rejected = [False] * m
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def family_outcomes(
    outcomes: Sequence[TestOutcome], p_values: Sequence[float], alpha: float
) -> list[TestOutcome]:
    """Family-wise (Holm) outcomes over positions: shown where the position's test shows it
    and Holm rejects at level `alpha` (positions that show nothing count with p = 1)."""
    adjusted = [
        p if o is TestOutcome.SHOWN else 1.0 for o, p in zip(outcomes, p_values, strict=True)
    ]
    return [
        TestOutcome.SHOWN if reject else TestOutcome.NOT_SHOWN for reject in holm(adjusted, alpha)
    ]


def family_verdicts(
    verdicts: Sequence[Verdict],
    p_above: Sequence[float],
    p_below: Sequence[float],
    confidence: float,
) -> list[Verdict]:
    """Family-wise (Holm) certificate verdicts over positions. `holds` needs the position's
    verdict `holds` and a Holm rejection of "decrease <= min_effect" at level
    (1 - confidence)/2 over the positions' `p_above`; `fails` the same with `p_below` against
    "decrease >= min_effect". A position wrongly said to hold, or wrongly said to fail, occurs
    in a family with probability at most (1 - confidence)/2 each."""
    alpha = (1.0 - confidence) / 2.0
    above = holm(list(p_above), alpha)
    below = holm(list(p_below), alpha)
    out = []
    for verdict, up, down in zip(verdicts, above, below, strict=True):
        if verdict is Verdict.HOLDS and up:
            out.append(Verdict.HOLDS)
        elif verdict is Verdict.FAILS and down:
            out.append(Verdict.FAILS)
        else:
            out.append(Verdict.UNDECIDED)
    return out


GAIN_INTERVAL_METHOD = "crossed_random_effects_t(seeds, test_examples)"
"""`gain_interval` over two or more seeds."""
ONE_SEED_METHOD = "test_examples_only(one seed)"
"""`gain_interval` over one seed: the test set's noise for that trained pair alone."""


def gain_interval_method(seeds: int) -> str:
    """The name of the interval `gain_interval` gives for this many seeds."""
    return GAIN_INTERVAL_METHOD if seeds > 1 else ONE_SEED_METHOD


def crossed_intervals(diffs: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """`gain_interval` for a stack of seeds x examples arrays (..., S, N) with S, N >= 2,
    vectorized over the leading axes: (lows, highs)."""
    d = np.asarray(diffs, dtype=np.float64)
    seeds, examples = d.shape[-2], d.shape[-1]
    if seeds < 2 or examples < 2:
        raise ValueError(f"crossed_intervals needs S, N >= 2, got shape {d.shape}")
    mean = d.mean(axis=(-2, -1))
    seed_means = d.mean(axis=-1)
    example_means = d.mean(axis=-2)
    ms_seeds = examples * np.sum((seed_means - mean[..., None]) ** 2, axis=-1) / (seeds - 1)
    centred = example_means - mean[..., None]
    ms_examples = seeds * np.sum(centred**2, axis=-1) / (examples - 1)
    residual = d - seed_means[..., :, None] - example_means[..., None, :] + mean[..., None, None]
    ms_residual = np.sum(residual**2, axis=(-2, -1)) / ((seeds - 1) * (examples - 1))
    # The example stratum: `mean_interval` of the per-example means (its kurtosis-cut t and
    # Hall's skew correction), rescaled from MS_I to MS_I - MS_E, the shared part's variance.
    ex_low, ex_high = mean_intervals(example_means, confidence)
    shared = np.maximum(ms_examples - ms_residual, 0.0)
    scale = np.sqrt(
        np.where(ms_examples > 0, shared / np.where(ms_examples > 0, ms_examples, 1.0), 0.0)
    )
    q_seeds = float(stats.t.ppf(0.5 + confidence / 2.0, seeds - 1))
    seed_part = q_seeds**2 * ms_seeds / (seeds * examples)
    low = mean - np.sqrt(seed_part + (scale * (mean - ex_low)) ** 2)
    high = mean + np.sqrt(seed_part + (scale * (ex_high - mean)) ** 2)
    return low, high


def gain_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided interval at `confidence` of the expected realized gain from a seeds x
    test-examples array of paired differences (control minus expanded per-example loss).

    The estimand is E over seeds (training randomness: the new block's W1, the data order) and
    over the test distribution of the gain. Every seed's arms are scored on the same test
    examples, so the design is crossed: d_si = mu + a_s + b_i + e_si, with a seed effect a,
    a per-example effect b shared by the seeds and an interaction e. The mean's variance is
    E[MS_S]/(SN) + (E[MS_I] - E[MS_E])/(SN) in the two-way ANOVA mean squares (seeds, examples,
    residual). Each stratum gets its own quantile and the two are added in quadrature:

        half-width^2 = t_{S-1}^2 MS_S / (S N) + h_examples^2,

    where h_examples is the half-width (on its side) of `mean_interval` of the N per-example
    means, rescaled from their variance MS_I/(SN) to the shared part's (MS_I - MS_E)/(SN): the
    t_nu quantile with nu = N - 1 cut for kurtosis, and Hall's skew correction, which makes the
    interval asymmetric where the per-example effects are skewed. Without skew this is
    t_nu^2 max(MS_I - MS_E, 0)/(SN), and with a single stratum the exact t interval. A
    Satterthwaite t on the summed variance covered only 0.92 at S = 3 (0.89-0.90 at S = 2) where
    a seed effect meets a shared per-example effect, because its estimated degrees of freedom
    grow exactly when MS_S comes out small, and 0.91 with a heavy-tailed shared effect
    (docs/science.md 4 has the measured coverage of both).

    What the number of seeds allows:

    - S >= 3: coverage >= 0.93 measured where examples dominate, where seeds dominate (seed
      sd 3-10x the per-seed example standard error) and with a shared per-example effect.
    - S = 2: still valid (0.945 or more in the same regimes), but the seed stratum has one
      degree of freedom: its quantile is t_1 = 12.7 at 95%, so wherever seeds vary the
      interval is about 6x wider than with known seed variance and rarely excludes 0; the
      normality of the seed effect, which the interval leans on, cannot be checked from two.
    - S = 1: the seed variance cannot be estimated at all. The interval (`mean_interval` over
      the test examples) covers the test set's noise for this one trained pair; it says
      nothing about another seed, so it is not an interval of the expected gain.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"gain_interval needs a seeds x examples array, got shape {d.shape}")
    seeds, examples = d.shape
    if seeds == 1 or examples == 1:  # one stratum: the examples of one seed, or seeds alone
        one = mean_interval(d[0] if seeds == 1 else d[:, 0], confidence)
        if one.low is None or one.high is None:
            return math.nan, math.nan
        return one.low, one.high
    low, high = crossed_intervals(d, confidence)
    return float(low), float(high)
