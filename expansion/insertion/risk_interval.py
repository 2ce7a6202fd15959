"""Intervals for the mean of per-example loss differences, and the certificate's verdict in
nats (torch-free: numpy, scipy; docs/science.md 2).

Per-example cross-entropy differences between two fixed models are skewed and heavy tailed: a
few held-out examples the base gets badly wrong can carry most of the mean (on digits, five of
~650 examples carried 60% of the absolute sum). A plain Student-t interval then misses in the
tail the rare examples sit in: measured at 287 examples, 0.88 instead of 0.95 on a digits-like
population, 0.83 on a 3% rare-event mixture (benchmarks/interval_coverage.py). `mean_interval`
takes the envelope (the lower of the two lower limits, the higher of the two upper limits) of

- a Student-t interval whose degrees of freedom are cut for the sample's excess kurtosis
  kappa: s^2 has variance sigma^4 (2/(n-1) + kappa/n), so it is matched to a chi-square with
  nu = 2 / (2/(n-1) + kappa/n) degrees of freedom (nu = n - 1 for normal data); and
- Hall's (1992) skewness-removing transformation of the same studentised mean,
  g(T) = T + a T^2 + a^2 T^3 / 3 + b with a = gamma/(3 sqrt(n)), b = gamma/(6 sqrt(n)) and the
  sample skewness gamma, inverted at the t_nu quantiles (g is monotone, so the interval and
  its p-values agree).

The first covers where the sample's own skewness misleads (rare extremes that a sample may
or may not contain), the second where ordinary skewness shifts the mean's distribution; their
envelope covered at least 0.95 in every case measured, each tail missing at most 0.048.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from expansion.results.records import Verdict

MEAN_INTERVAL_METHOD = "envelope(kurtosis_t, hall_skew_t)"
"""Name of the interval `mean_interval` gives."""


@dataclass(frozen=True)
class MeanInterval:
    """A two-sided interval of a population mean from n i.i.d. values, with its p-values."""

    n: int
    mean: float
    low: float | None
    """Lower limit at the confidence asked for; None where n < 2."""
    high: float | None
    std_error: float
    """s / sqrt(n) (0 where every value is equal or n < 2)."""
    df: float
    """Degrees of freedom of the t quantile (n - 1 cut for excess kurtosis)."""
    skewness: float
    """Sample skewness (the third standardised moment; 0 where undefined)."""

    def _transformed(self, threshold: float) -> tuple[float, float]:
        """(T, g(T)) of the studentised mean at a hypothesised population mean."""
        t = (self.mean - threshold) / self.std_error
        a = self.skewness / (3.0 * math.sqrt(self.n))
        b = self.skewness / (6.0 * math.sqrt(self.n))
        return t, t + a * t * t + a * a * t**3 / 3.0 + b

    def p_above(self, threshold: float) -> float:
        """One-sided p-value of H0: mean <= threshold (small: the mean is above it)."""
        if self.low is None:
            return 1.0
        if self.std_error == 0.0:
            return 0.0 if self.mean > threshold else 1.0
        t, g = self._transformed(threshold)
        return float(max(stats.t.sf(t, self.df), stats.t.sf(g, self.df)))

    def p_below(self, threshold: float) -> float:
        """One-sided p-value of H0: mean >= threshold (small: the mean is below it)."""
        if self.high is None:
            return 1.0
        if self.std_error == 0.0:
            return 0.0 if self.mean < threshold else 1.0
        t, g = self._transformed(threshold)
        return float(max(stats.t.cdf(t, self.df), stats.t.cdf(g, self.df)))


def _hall_inverse(u: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """T with g(T) = u for g(T) = T + a T^2 + a^2 T^3 / 3 + b (elementwise)."""
    v = u - b
    small = np.abs(a) < 1e-12
    safe = np.where(small, 1.0, a)
    inverse: np.ndarray = np.where(small, v, (np.cbrt(1.0 + 3.0 * safe * v) - 1.0) / safe)
    return inverse


def _intervals(
    x: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, se, df, skewness, low, high) along the last axis of `x` (n >= 2)."""
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    centred = x - mean[..., None]
    m2 = np.mean(centred**2, axis=-1)
    # spread at the level of float rounding: every value is the same
    constant = m2 <= (1e-12 * np.max(np.abs(x), axis=-1)) ** 2
    safe = np.where(constant, 1.0, m2)
    se = np.where(constant, 0.0, np.sqrt(m2 / (n - 1)))
    skew = np.where(constant, 0.0, np.mean(centred**3, axis=-1) / safe**1.5)
    excess = np.where(constant, 0.0, np.mean(centred**4, axis=-1) / safe**2 - 3.0)
    df = 2.0 / (2.0 / (n - 1) + np.maximum(excess, 0.0) / n)
    q = stats.t.ppf(0.5 + confidence / 2.0, df)
    a, b = skew / (3.0 * math.sqrt(n)), skew / (6.0 * math.sqrt(n))
    low = np.minimum(mean - q * se, mean - se * _hall_inverse(q, a, b))
    high = np.maximum(mean + q * se, mean - se * _hall_inverse(-q, a, b))
    return mean, se, df, skew, low, high


def mean_intervals(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """`mean_interval`'s limits along the last axis of `values` (..., n), n >= 2, vectorized
    over the leading axes: (lows, highs)."""
    x = np.asarray(values, dtype=np.float64)
    if x.shape[-1] < 2:
        raise ValueError(f"mean_intervals needs at least 2 values per row, got shape {x.shape}")
    _, _, _, _, low, high = _intervals(x, confidence)
    return low, high


def mean_interval(values: np.ndarray, confidence: float) -> MeanInterval:
    """Two-sided interval at `confidence` of the population mean of i.i.d. `values` (1-D),
    robust to skewed, heavy-tailed values (the module docstring says how)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    n = int(x.size)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    if n < 2 or not np.all(np.isfinite(x)):  # a non-finite loss: no interval, no verdict
        return MeanInterval(n, float(x.mean()), None, None, 0.0, 0.0, 0.0)
    mean, se, df, skew, low, high = _intervals(x, confidence)
    return MeanInterval(n, float(mean), float(low), float(high), float(se), float(df), float(skew))


def effect_verdict(interval: MeanInterval, min_effect: float) -> tuple[Verdict, str]:
    """The certificate's verdict (and why) for an interval of a risk decrease: holds above
    `min_effect`, fails below it, undecided when the interval contains it or does not exist."""
    low, high = interval.low, interval.high
    if low is None or high is None:
        return Verdict.UNDECIDED, f"{interval.n} certificate example(s): no interval"
    shown = f"[{low:.3g}, {high:.3g}] nats"
    if low > min_effect:
        return Verdict.HOLDS, f"interval {shown} above min_effect {min_effect:g}"
    if high < min_effect:
        return Verdict.FAILS, f"interval {shown} below min_effect {min_effect:g}"
    return Verdict.UNDECIDED, f"interval {shown} contains min_effect {min_effect:g}"
