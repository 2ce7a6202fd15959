"""Means over training seeds measured on one shared test set: intervals and tests (torch-free).

A sweep trains S seeds of a network and scores each on the SAME test set. Its seed-mean
m = mu + a + b has two sources of noise: the seeds' training randomness a (its variance is
estimated by the spread of the seeds, s^2 / S) and the test set's own sampling noise b, which
every seed shares and which the spread of the seeds therefore never shows. For a 0-1 error
measured on n test examples, Var(b) <= m (1 - m) / n: the per-example seed-mean error lies in
[0, 1] with mean m, so its variance is at most m (1 - m) (`binomial_variance`). For an estimate
that carries its own standard error (the input sensitivity), the shared part is at most the
square of the seeds' mean standard error (`shared_variance`).

The interval and the test treat that shared variance v as known (it is estimated from n >> S
examples) and the seed variance as estimated with S - 1 degrees of freedom: the generalized
pivotal quantity m - Z sqrt(s^2 (S - 1) / (S U) + v), Z standard normal, U chi-square with S - 1
degrees of freedom. With v = 0 this is exactly the Student-t interval over seeds; as s^2 / S
becomes small against v it tends to the normal interval of the test-set noise. A plug-in
Satterthwaite degree of freedom under-covers here (about 0.87-0.92 at S = 2-3 when the seeds
dominate: it grows whenever s^2 is small by chance), so it is not used. The difference of two
cells adds their seed terms (two independent chi-squares, as in Welch's problem) and their
shared variances; adding the latter assumes the two networks' per-example errors are not
negatively correlated on the common test set (networks trained on the same data err on the
same hard examples), under which the sum bounds the variance of the difference.
Coverage by simulation: tests/expansion/results/test_seed_means.py, docs/science.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

NODES = 64
"""Gauss-Legendre nodes per chi-square integral (with no shared variance the interval matches
Student's t to a relative 1e-4)."""
CONFIDENCE = 0.95
"""Default confidence of intervals."""


@dataclass(frozen=True)
class SeedMean:
    """A measure's mean over seeds and the pieces of its noise."""

    mean: float
    n_seeds: int
    seed_variance: float
    """s^2 of the per-seed values (0 for a single seed, which has no estimate: see `n_seeds`)."""
    shared_variance: float
    """Variance of the part every seed shares (the test set's sampling noise); 0 if unknown."""

    @property
    def degrees_of_freedom(self) -> int:
        """Degrees of freedom of the seed variance, S - 1."""
        return self.n_seeds - 1


def binomial_variance(error: float, test_examples: int) -> float:
    """Upper bound on the test-set sampling variance of a seed-mean 0-1 error on n examples."""
    p = min(max(error, 0.0), 1.0)
    return p * (1.0 - p) / test_examples


def shared_variance(standard_errors: Sequence[float]) -> float:
    """Upper bound on the variance of the shared part of a seed-mean whose per-seed estimates
    carry standard errors (attained when the seeds' estimation errors are fully correlated)."""
    if not standard_errors:
        return 0.0
    return float(np.mean(standard_errors)) ** 2


def seed_mean(values: Sequence[float], shared: float = 0.0) -> SeedMean:
    """The SeedMean of per-seed values with shared variance `shared`."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no values")
    variance = float(np.var(data, ddof=1)) if data.size > 1 else 0.0
    return SeedMean(float(np.mean(data)), int(data.size), variance, max(shared, 0.0))


@functools.lru_cache(maxsize=64)
def _chi2_nodes(df: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (chi-square quantiles) and weights of E[f(U)], U ~ chi2(df), by Gauss-Legendre in
    the probability scale (smooth for the integrands used here)."""
    x, w = np.polynomial.legendre.leggauss(NODES)
    u = (x + 1.0) / 2.0
    return stats.chi2.ppf(u, df), w / 2.0


def _scales(terms: Sequence[SeedMean], shared: float) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviations of the pivot on the grid of the seed terms' chi-squares, and the
    grid's weights. A term with seed variance 0 and S > 1 contributes nothing."""
    scale_sq = np.full(1, shared)
    weights = np.ones(1)
    for term in terms:
        if term.n_seeds < 2:
            raise ValueError("a seed term needs at least two seeds")
        k = term.seed_variance * term.degrees_of_freedom / term.n_seeds
        if k == 0.0:
            continue
        nodes, w = _chi2_nodes(term.degrees_of_freedom)
        scale_sq = (scale_sq[:, None] + k / nodes[None, :]).ravel()
        weights = (weights[:, None] * w[None, :]).ravel()
    return np.sqrt(scale_sq), weights


def _two_sided_tail(distance: float, scales: np.ndarray, weights: np.ndarray) -> float:
    """P(|pivot| >= distance)."""
    if distance == 0.0:
        return 1.0
    with np.errstate(divide="ignore"):
        z = np.where(scales > 0, distance / np.where(scales > 0, scales, 1.0), math.inf)
    return float(np.clip(np.sum(weights * special.erfc(z / math.sqrt(2.0))), 0.0, 1.0))


def _half_width(scales: np.ndarray, weights: np.ndarray, confidence: float, start: float) -> float:
    """c with P(|pivot| <= c) = confidence (the tail is monotone in c); `start` is a guess of
    the order of the answer."""
    alpha = 1.0 - confidence
    if float(np.max(scales)) == 0.0:
        return 0.0
    high = start
    while _two_sided_tail(high, scales, weights) > alpha:
        high *= 2.0
    return float(
        optimize.brentq(
            lambda c: _two_sided_tail(c, scales, weights) - alpha, 0.0, high, xtol=high * 1e-8
        )
    )


def _guess(terms: Sequence[SeedMean], shared: float, confidence: float) -> float:
    """A half-width at least of the answer's order: Student's t at the fewest degrees of
    freedom times the total standard error."""
    df = min(t.degrees_of_freedom for t in terms)
    total = shared + sum(t.seed_variance / t.n_seeds for t in terms)
    return float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(total) or 1e-12


def interval(
    cell: SeedMean,
    confidence: float = CONFIDENCE,
    limits: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float] | None:
    """Interval of the population mean (seeds and test set), cut to the measure's `limits`
    (an error lies in [0, 1]); None with fewer than two seeds."""
    if cell.n_seeds < 2:
        return None
    scales, weights = _scales([cell], cell.shared_variance)
    guess = _guess([cell], cell.shared_variance, confidence)
    half = _half_width(scales, weights, confidence, guess)
    return max(cell.mean - half, limits[0]), min(cell.mean + half, limits[1])


@dataclass(frozen=True)
class Comparison:
    """A two-sided test of `difference == null`; `interval()` gives its confidence interval."""

    difference: float
    """Estimate (first minus second, or the mean paired difference)."""
    null: float
    p_value: float
    method: str
    terms: tuple[SeedMean, ...]
    """The seed terms of the pivot (one per cell; one for a paired difference)."""
    shared: float
    """The shared variance of the difference."""

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """Confidence interval of the difference (seeds and test set)."""
        scales, weights = _scales(self.terms, self.shared)
        half = _half_width(scales, weights, confidence, _guess(self.terms, self.shared, confidence))
        return self.difference - half, self.difference + half


def _compare(
    difference: float, terms: tuple[SeedMean, ...], shared: float, null: float, method: str
) -> Comparison:
    scales, weights = _scales(terms, shared)
    p = _two_sided_tail(abs(difference - null), scales, weights)
    return Comparison(difference, null, p, method, terms, shared)


def compare_independent(
    first: SeedMean, second: SeedMean, *, null: float = 0.0
) -> Comparison | None:
    """Welch-type test of mean(first) - mean(second) == null for two cells with their own seeds
    on one shared test set; None when either cell has fewer than two seeds."""
    if first.n_seeds < 2 or second.n_seeds < 2:
        return None
    return _compare(
        first.mean - second.mean,
        (first, second),
        first.shared_variance + second.shared_variance,
        null,
        "generalized Welch test over seeds + shared test-set variance",
    )


def compare_paired(
    differences: Sequence[float], shared: float, *, null: float = 0.0
) -> Comparison | None:
    """Paired test of the mean per-seed difference == null, with the test-set variance `shared`
    of the difference of the two seed-means; None with fewer than two pairs."""
    if len(differences) < 2:
        return None
    cell = seed_mean(differences, shared)
    return _compare(cell.mean, (cell,), shared, null, "paired test over seeds + test-set variance")
