"""Spearman's rank correlation over columns, and its intervals when the points come in jobs.

The calibration's points cluster: the positions of one job share its level of gain and of
every predictor. Intervals therefore treat JOBS as the independent units, never points: the
mean of per-job values gets a Student-t interval over jobs, the pooled correlation a cluster
bootstrap over jobs (expansion.results.calibration, docs/science.md "Calibration"). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

Interval = tuple[float | None, float | None]
MIN_JOBS_WITHIN_INTERVAL = 3
MIN_JOBS_POOLED_INTERVAL = 5
"""Fewer clusters than this give no pooled interval (a bootstrap over 3-4 jobs has a handful of
distinct resamples)."""


def column_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman per column of (n, B) arrays; rows with a NaN in a column are left out there."""
    out = np.full(x.shape[1], np.nan)
    if x.shape[0] < 3:
        return out
    complete = ~(np.isnan(x) | np.isnan(y))
    if complete.all():
        rx = stats.rankdata(x, axis=0)
        ry = stats.rankdata(y, axis=0)
        rx -= rx.mean(axis=0)
        ry -= ry.mean(axis=0)
        denom = np.sqrt((rx**2).sum(axis=0) * (ry**2).sum(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, (rx * ry).sum(axis=0) / denom, np.nan)
    for b in range(x.shape[1]):
        keep = complete[:, b]
        if keep.sum() >= 3:
            out[b] = column_spearman(x[keep, b : b + 1], y[keep, b : b + 1])[0]
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation of paired values (None: fewer than 3 pairs or no variation)."""
    rho = column_spearman(
        np.asarray(x, dtype=float).reshape(-1, 1), np.asarray(y, dtype=float).reshape(-1, 1)
    )[0]
    return None if math.isnan(rho) else float(rho)


def t_interval_over_jobs(
    values: Sequence[float], confidence: float, limit: float = 1.0
) -> Interval:
    """Student-t interval of the mean of per-job values, cut to [-limit, limit] (a correlation
    lies in [-1, 1], a difference of two in [-2, 2]); (None, None) with fewer than
    MIN_JOBS_WITHIN_INTERVAL jobs."""
    if len(values) < MIN_JOBS_WITHIN_INTERVAL:
        return None, None
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * sd / math.sqrt(len(values))
    return max(-limit, mean - half), min(limit, mean + half)


def cluster_bootstrap_interval(
    points: Sequence[tuple[np.ndarray, np.ndarray]],
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> Interval:
    """Interval of the pooled Spearman over clusters (jobs) of (x, y) points: bootstrap the
    clusters, take the standard deviation of Fisher's z of the resampled statistic (scaled by
    sqrt(J / (J - 1))), and use Student's t with J - 1 degrees of freedom around the observed z."""
    count = len(points)
    if count < MIN_JOBS_POOLED_INTERVAL or resamples <= 0:
        return None, None
    xs = np.concatenate([x for x, _ in points])
    ys = np.concatenate([y for _, y in points])
    observed = spearman(xs.tolist(), ys.tolist())
    if observed is None:
        return None, None
    sizes = np.array([len(x) for x, _ in points])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    draws = rng.integers(0, count, size=(resamples, count))
    if np.all(sizes == sizes[0]):
        # Equal clusters: every resample is a column of one (points, resamples) array.
        index = (starts[draws][:, :, None] + np.arange(sizes[0])[None, None, :]).reshape(
            resamples, -1
        )
        rho = column_spearman(xs[index].T, ys[index].T)
    else:
        rho = np.full(resamples, np.nan)
        for b in range(resamples):
            chosen = np.concatenate([np.arange(starts[c], starts[c] + sizes[c]) for c in draws[b]])
            rho[b] = column_spearman(xs[chosen].reshape(-1, 1), ys[chosen].reshape(-1, 1))[0]
    z = np.arctanh(np.clip(rho, -0.9999, 0.9999))
    # The bootstrap variance of a statistic over J clusters is about (J - 1) / J of its
    # variance (as for a mean): scale it back, as a jackknife or ddof=1 would.
    spread = float(np.nanstd(z, ddof=1)) * math.sqrt(count / (count - 1))
    if not math.isfinite(spread):
        return None, None
    center = float(np.arctanh(np.clip(observed, -0.9999, 0.9999)))
    half = float(stats.t.ppf(0.5 + confidence / 2, count - 1)) * spread
    return float(np.tanh(center - half)), float(np.tanh(center + half))
