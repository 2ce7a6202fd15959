"""`mean_interval`: the certificate's interval of a mean loss difference, and its verdict.

Per-example loss differences are skewed and heavy tailed. Simulated at the size of digits'
certificate split (287 examples) with a known mean, in the regimes where a plain Student-t
interval misses in one tail (coverage 0.83-0.89): rare large differences (3% of the examples)
of either sign, and lognormal differences of either sign. The interval must cover at least 0.93
there, and miss in neither tail much more than half of what is left.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from expansion.insertion.risk_interval import (
    MeanInterval,
    effect_verdict,
    mean_interval,
    mean_intervals,
)
from expansion.results.records import Verdict

EXAMPLES = 287
REPLICATIONS = 4000

Law = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def rare_large(sign: float) -> Law:
    """Small noise everywhere, and on 3% of the examples a large lognormal difference."""

    def draw(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        rare = (rng.random(shape) < 0.03) * rng.lognormal(0.0, 1.0, shape) * 0.3
        return rng.normal(0.0, 0.02, shape) + sign * rare

    return draw


def lognormal(sign: float) -> Law:
    """Lognormal differences (sigma 1.5), right- or left-skewed."""

    def draw(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return sign * rng.lognormal(0.0, 1.5, shape)

    return draw


LAWS: dict[str, Law] = {
    "rare large gains": rare_large(1.0),
    "rare large losses": rare_large(-1.0),
    "lognormal, right skew": lognormal(1.0),
    "lognormal, left skew": lognormal(-1.0),
}


def t_intervals(x: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The plain Student-t interval along the last axis (what the interval must beat)."""
    n = x.shape[-1]
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(axis=-1, ddof=1) / np.sqrt(n)
    return x.mean(axis=-1) - half, x.mean(axis=-1) + half


@pytest.mark.parametrize("law", list(LAWS))
def test_interval_covers_where_the_t_interval_misses(law: str) -> None:
    rng = np.random.default_rng(len(law))
    mean = float(LAWS[law](rng, (4_000_000,)).mean())  # the population mean, to +-0.3% sd
    x = LAWS[law](rng, (REPLICATIONS, EXAMPLES))
    t_low, t_high = t_intervals(x, 0.95)
    assert float(np.mean((t_low <= mean) & (mean <= t_high))) < 0.90, "the t interval misses"
    low, high = mean_intervals(x, 0.95)
    assert float(np.mean((low <= mean) & (mean <= high))) >= 0.93
    assert max(float(np.mean(low > mean)), float(np.mean(high < mean))) <= 0.055


def test_normal_values_get_about_the_t_interval() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.3, 1.0, EXAMPLES)
    result = mean_interval(x, 0.95)
    t_low, t_high = t_intervals(x, 0.95)
    assert result.low is not None and result.high is not None
    assert result.high - result.low == pytest.approx(float(t_high - t_low), rel=0.06)
    assert result.mean == pytest.approx(float(x.mean()))


def test_p_values_agree_with_the_interval() -> None:
    """The lower limit at confidence c is above a threshold exactly when the one-sided p-value
    of "mean <= threshold" is below (1 - c) / 2; the same for the upper limit and p_below."""
    rng = np.random.default_rng(6)
    x = 0.05 + rng.lognormal(0.0, 1.0, 200) * 0.1 - 0.1 * np.exp(0.5)
    result = mean_interval(x, 0.9)
    assert result.low is not None and result.high is not None
    for threshold in np.linspace(result.low - 0.05, result.high + 0.05, 41):
        assert (result.low > threshold) == (result.p_above(threshold) < 0.05)
        assert (result.high < threshold) == (result.p_below(threshold) < 0.05)
    assert result.p_above(result.low) == pytest.approx(0.05, abs=1e-6)
    assert result.p_below(result.high) == pytest.approx(0.05, abs=1e-6)


def test_degenerate_samples() -> None:
    zeros = mean_interval(np.zeros(50), 0.95)  # a zero gradient: the jumpboard model is the base
    assert (zeros.low, zeros.high, zeros.p_above(0.0), zeros.p_below(0.0)) == (0, 0, 1.0, 1.0)
    same = mean_interval(np.full(20, 0.3), 0.95)
    assert same.low == pytest.approx(0.3) and same.p_above(0.0) == 0.0
    one = mean_interval(np.array([0.2]), 0.95)
    assert one.low is None and one.high is None and one.p_above(0.0) == 1.0
    overflow = mean_interval(np.array([0.1, 0.2, np.inf, 0.3]), 0.95)  # a loss overflowed
    assert overflow.low is None and overflow.p_above(0.0) == overflow.p_below(0.0) == 1.0
    assert effect_verdict(overflow, 0.0)[0] is Verdict.UNDECIDED
    with pytest.raises(ValueError, match="at least one"):
        mean_interval(np.zeros(0), 0.95)


def test_the_verdict_compares_the_interval_with_min_effect() -> None:
    def interval(low: float | None, high: float | None) -> MeanInterval:
        return MeanInterval(100, 0.0, low, high, 0.1, 99.0, 0.0)

    assert effect_verdict(interval(0.01, 0.03), 0.0)[0] is Verdict.HOLDS
    assert effect_verdict(interval(0.01, 0.03), 0.02)[0] is Verdict.UNDECIDED
    assert effect_verdict(interval(0.01, 0.03), 0.05)[0] is Verdict.FAILS
    assert effect_verdict(interval(-0.03, -0.01), 0.0)[0] is Verdict.FAILS
    assert effect_verdict(interval(-0.01, 0.01), 0.0)[0] is Verdict.UNDECIDED
    verdict, reason = effect_verdict(interval(None, None), 0.0)
    assert verdict is Verdict.UNDECIDED and "no interval" in reason
