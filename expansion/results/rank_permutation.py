"""Permutation nulls of within-network rank correlations (torch-free).

A calibration job ranks its P positions twice: by a predictor's seed-mean value and by the
seed-mean realized gain. Under the null that the predictor carries no information about which
position gains more, every assignment of the gains to the positions is equally likely, so the
within-job Spearman correlation has an exact permutation distribution over the P! orderings; jobs
are independent, so the mean over J jobs has the convolution of the J distributions
(`MeanSpearmanNull`). With 3-5 positions per job this is cheap and exact: no large-sample
approximation is made. Ties keep their average ranks.

When the best of several predictors is named, the question is whether the BEST is better than
chance: `max_mean_spearman` draws one permutation per job and applies it to every predictor at
once (keeping the predictors' dependence), so the maximum over predictors has its null
distribution too (a max-T permutation test; single-step adjusted p-values).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal, stats

EXACT_MAX_POSITIONS = 8
"""Jobs with more positions use `SAMPLED_ORDERINGS` random orderings instead of all P!."""
SAMPLED_ORDERINGS = 20000
RESOLUTION = 10_000
"""Where the exact support grows too large, each job's Spearman values are rounded to
1/RESOLUTION and convolved on that grid."""
SPARSE_MAX_SUPPORT = 200_000
"""Distinct sums kept exactly; past this (many jobs with tied values) the sums are rounded."""
EXACT_MAX_JOBS = 100
"""Above this many jobs the mean's null is the normal law with the exact permutation mean and
variance (the convolution would grow long; the law is close to normal by then)."""


def normalized_ranks(values: np.ndarray) -> np.ndarray | None:
    """Average ranks, centred and scaled to unit norm (their dot product is Spearman's rho);
    None when all values are equal."""
    ranks = stats.rankdata(values).astype(float)
    ranks -= ranks.mean()
    norm = float(np.sqrt(np.sum(ranks**2)))
    return None if norm == 0.0 else ranks / norm


def normalized_rank_columns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`normalized_ranks` of every column of a (P, K) array at once, and which columns have one
    (a constant column gets zeros)."""
    ranks = stats.rankdata(values, axis=0).astype(float)
    ranks -= ranks.mean(axis=0, keepdims=True)
    norms = np.sqrt(np.sum(ranks**2, axis=0))
    ok = norms > 0
    return np.where(ok, ranks / np.where(ok, norms, 1.0), 0.0), ok


@functools.lru_cache(maxsize=16)
def _orderings(positions: int) -> np.ndarray:
    """Every ordering of `positions` items, (P!, P)."""
    return np.array(list(itertools.permutations(range(positions))), dtype=np.int64)


def _job_orderings(positions: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(orderings, exact): all of them, or SAMPLED_ORDERINGS random ones for long jobs."""
    if positions <= EXACT_MAX_POSITIONS:
        return _orderings(positions), True
    return np.argsort(rng.random((SAMPLED_ORDERINGS, positions)), axis=1), False


@dataclass(frozen=True)
class MeanSpearmanNull:
    """The permutation distribution of the mean within-job Spearman over a set of jobs."""

    values: np.ndarray
    """Support of the mean (ascending); empty when the law is the normal approximation."""
    probabilities: np.ndarray
    mean: float
    variance: float
    exact: bool
    """False where a job had more than EXACT_MAX_POSITIONS positions, where tied values made the
    jobs' values too many to keep apart (rounded to 1/RESOLUTION), or above EXACT_MAX_JOBS."""
    jobs: int
    floor: float
    """Probability of the observed orderings alone (the identity in every job): no p-value is
    smaller; the rounded convolution drops probabilities below 1e-15."""
    exact_support: bool = False
    """True when the support holds every distinct mean (to 1e-9); False when each job's values
    were rounded to 1/RESOLUTION first."""

    @property
    def _tolerance(self) -> float:
        """How close a value of the support must be to count as equal to the observed one."""
        if self.exact_support:
            return 1e-9
        # Rounding moves the mean by up to 0.5 / RESOLUTION: count such neighbours as equal
        # (conservative).
        return 0.5 / RESOLUTION

    def p_two_sided(self, observed: float) -> float:
        """P(|T - mean| >= |observed - mean|) under the null."""
        if self.values.size == 0:
            z = abs(observed - self.mean) / math.sqrt(self.variance) if self.variance else math.inf
            return float(math.erfc(z / math.sqrt(2.0)))
        far = np.abs(self.values - self.mean) >= abs(observed - self.mean) - self._tolerance
        return float(min(1.0, max(self.floor, np.sum(self.probabilities[far]))))

    def p_greater(self, observed: float) -> float:
        """P(T >= observed) under the null (one-sided: the predictor ranks gains the right way)."""
        if self.values.size == 0:
            z = (observed - self.mean) / math.sqrt(self.variance) if self.variance else math.inf
            return float(0.5 * math.erfc(z / math.sqrt(2.0)))
        above = self.values >= observed - self._tolerance
        return float(min(1.0, max(self.floor, np.sum(self.probabilities[above]))))

    def quantiles(self, levels: Sequence[float]) -> list[float]:
        """Quantiles of the null law (the range a predictor carrying no information reaches)."""
        if self.values.size == 0:
            sd = math.sqrt(self.variance)
            return [self.mean + sd * float(stats.norm.ppf(q)) for q in levels]
        cumulative = np.cumsum(self.probabilities)
        return [
            float(self.values[min(int(np.searchsorted(cumulative, q)), self.values.size - 1)])
            for q in levels
        ]


def job_null_values(
    predictor: np.ndarray, gains: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """Spearman of the job's predictor with every ordering of its gains (exact: all P!),
    as normalized-rank dot products. Both vectors must have a normalized rank."""
    x, y = normalized_ranks(predictor), normalized_ranks(gains)
    if x is None or y is None:
        raise ValueError("a constant vector has no rank correlation")
    orderings, exact = _job_orderings(len(y), rng)
    return y[orderings] @ x, exact


def mean_spearman_null(
    jobs: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0
) -> MeanSpearmanNull:
    """The null law of the mean over `jobs` (predictor, gains) of the within-job Spearman."""
    rng = np.random.default_rng(seed)
    per_job = [job_null_values(x, y, rng) for x, y in jobs]
    if not per_job:
        raise ValueError("no jobs")
    exact = all(flag for _, flag in per_job)
    means = [float(np.mean(v)) for v, _ in per_job]
    variances = [float(np.var(v)) for v, _ in per_job]
    count = len(per_job)
    mean, variance = sum(means) / count, sum(variances) / count**2
    floor = math.exp(-sum(math.log(v.size) for v, _ in per_job))
    if count > EXACT_MAX_JOBS:
        return MeanSpearmanNull(np.empty(0), np.empty(0), mean, variance, False, count, floor)
    sparse = _sparse_sum([v for v, _ in per_job])
    if sparse is not None:
        support, probabilities = sparse
        return MeanSpearmanNull(
            support / count, probabilities, mean, variance, exact, count, floor, exact_support=True
        )
    total = np.ones(1)
    offset = 0
    for values, _ in per_job:
        keys = np.rint(values * RESOLUTION).astype(np.int64)
        low = int(keys.min())
        histogram = np.bincount(keys - low).astype(float) / keys.size
        total = signal.fftconvolve(total, histogram)
        offset += low
    total = np.clip(total, 0.0, None)
    keep = total > 1e-15
    support = (np.nonzero(keep)[0] + offset) / (RESOLUTION * count)
    probabilities = total[keep] / total[keep].sum()
    return MeanSpearmanNull(support, probabilities, mean, variance, False, count, floor)


def _distinct(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (to 1e-9) and their summed weights."""
    keys, inverse = np.unique(np.round(values, 9), return_inverse=True)
    return keys, np.bincount(inverse.ravel(), weights=weights.ravel())


def _sparse_sum(per_job: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact law of the sum of the jobs' values (each ordering equally likely), kept as
    distinct sums; None when the support would grow past SPARSE_MAX_SUPPORT (ties can make every
    sum distinct), where the caller convolves on the 1/RESOLUTION grid instead."""
    support, weights = np.zeros(1), np.ones(1)
    for values in per_job:
        keys, counts = _distinct(values, np.full(values.shape, 1.0 / values.size))
        if support.size * keys.size > SPARSE_MAX_SUPPORT * 50:
            return None
        support, weights = _distinct(
            support[:, None] + keys[None, :], weights[:, None] * counts[None, :]
        )
        if support.size > SPARSE_MAX_SUPPORT:
            return None
    return support, weights


def observed_mean_spearman(jobs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The mean within-job Spearman, as the null law computes it (normalized-rank dot products)."""
    values = []
    for x, y in jobs:
        rx, ry = normalized_ranks(x), normalized_ranks(y)
        if rx is None or ry is None:
            raise ValueError("a constant vector has no rank correlation")
        values.append(float(rx @ ry))
    return float(np.mean(values))


def max_mean_spearman(
    predictors: Sequence[np.ndarray],
    gains: Sequence[np.ndarray],
    usable: Sequence[np.ndarray],
    draws: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and permuted mean within-job Spearman of K predictors at once.

    Per job: `predictors[j]` (P_j, K) seed-mean values, `gains[j]` (P_j,) seed-mean gains,
    `usable[j]` (K,) whether predictor k counts in job j. Each draw permutes each job's gains
    once for every predictor. Returns (observed (K,), permuted (draws, K)); a predictor with no
    usable job is NaN."""
    rng = np.random.default_rng(seed)
    k = predictors[0].shape[1] if predictors else 0
    totals = np.zeros((draws, k))
    observed = np.zeros(k)
    counts = np.zeros(k)
    for x, y, mask in zip(predictors, gains, usable, strict=True):
        ry = normalized_ranks(y)
        if ry is None or not mask.any():
            continue
        rx, ranked = normalized_rank_columns(np.where(mask[None, :], x, 0.0))
        mask = mask & ranked
        rx[:, ~mask] = 0.0
        orderings = np.argsort(rng.random((draws, len(ry))), axis=1)
        totals += ry[orderings] @ rx
        observed += ry @ rx
        counts += mask
    with np.errstate(invalid="ignore", divide="ignore"):
        return observed / np.where(counts > 0, counts, np.nan), totals / np.where(
            counts > 0, counts, np.nan
        )


def max_t_adjusted(
    observed: np.ndarray, permuted: np.ndarray, *, one_sided: bool = False
) -> np.ndarray:
    """Single-step max-T adjusted p-values: P(max over predictors of the permuted statistic
    >= the observed one), with the observed draw counted ((1 + hits) / (1 + draws)). Two-sided
    uses absolute values; NaN predictors stay NaN."""
    valid = ~np.isnan(observed)
    stat = permuted[:, valid] if one_sided else np.abs(permuted[:, valid])
    top = np.max(stat, axis=1) if stat.size else np.full(permuted.shape[0], -np.inf)
    out = np.full(observed.shape, np.nan)
    target = observed if one_sided else np.abs(observed)
    tolerance = 1e-12
    for i in np.nonzero(valid)[0]:
        hits = int(np.sum(top >= target[i] - tolerance))
        out[i] = (1 + hits) / (1 + permuted.shape[0])
    return out
