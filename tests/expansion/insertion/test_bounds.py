"""The certificate's statistics: U, the jackknife-t bound, verdicts, Holm, the bootstrap.

The coverage test is a simulation with synthetic per-batch gradients of known mean (no
training): wherever the verdict is not `undecided`, the one-sided 95% bound must cover the true
|E g|^2 in at least 93% of the replications.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from expansion.insertion.bounds import (
    FLOOR_ABSOLUTE,
    MIN_BATCHES,
    bound_arrays,
    decide,
    family_verdicts,
    holm,
    lower_bound,
    numerical_floor,
    two_level_bootstrap,
)
from expansion.results.records import Verdict

REPLICATIONS = 1500
DIM = 200


def _noise(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    d = shape[-1]
    if kind == "gaussian":
        return rng.standard_normal(shape)
    if kind == "anisotropic":  # variance of coordinate k ~ 1/k
        scale = 1.0 / np.sqrt(np.arange(1, d + 1))
        return rng.standard_normal(shape) * scale * math.sqrt(d / float((scale**2).sum()))
    if kind == "heavy":
        return rng.standard_t(3, shape) / math.sqrt(3.0)
    return rng.exponential(1.0, shape) - 1.0  # skewed


@pytest.mark.parametrize("kind", ["gaussian", "anisotropic", "heavy", "skewed"])
@pytest.mark.parametrize("theta_rel", [0.0, 0.5])
def test_decided_bounds_cover_the_true_value(kind: str, theta_rel: float) -> None:
    rng = np.random.default_rng([len(kind), ord(kind[0]), int(theta_rel * 10)])
    for n in (2, 4, 8, 16, 32):
        theta = theta_rel * DIM / n  # zero, and small against the noise of the mean
        mu = np.zeros(DIM)
        mu[0] = math.sqrt(theta)  # along the noisiest coordinate
        g = _noise(kind, rng, (REPLICATIONS, n, DIM)) + mu
        grams = np.einsum("rid,rjd->rij", g, g)
        _, _, lcb, batch_mean = bound_arrays(grams, 0.95)
        covered, decided = 0, 0
        for bound, mean in zip(lcb, batch_mean, strict=True):
            b = None if math.isnan(bound) else float(bound)
            verdict, _ = decide(n, b, numerical_floor(float(mean)), 0.95)
            if verdict is not Verdict.UNDECIDED:
                decided += 1
                covered += b is not None and b <= theta
        if n < MIN_BATCHES:
            assert decided == 0, f"n = {n} must be undecided"
        else:
            assert decided > 0.9 * REPLICATIONS
            assert covered / decided >= 0.93, (kind, n, theta_rel, covered / decided)


def test_u_and_the_jackknife_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    g = rng.standard_normal((9, 25)) + 0.4
    n = g.shape[0]
    result = lower_bound(g @ g.T, 0.9)
    mean = g.mean(axis=0)
    expected_u = mean @ mean - g.var(axis=0, ddof=1).sum() / n
    assert result.u == pytest.approx(expected_u, rel=1e-10)

    def u_of(rows: np.ndarray) -> float:  # the average over ordered pairs i != j
        m = rows.shape[0]
        return sum(rows[i] @ rows[j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))

    leave_one_out = np.array([u_of(np.delete(g, i, axis=0)) for i in range(n)])
    jack_var = (n - 1) / n * ((leave_one_out - leave_one_out.mean()) ** 2).sum()
    assert result.std_error == pytest.approx(math.sqrt(jack_var), rel=1e-9)
    assert result.lcb == pytest.approx(expected_u - stats.t.ppf(0.9, n - 1) * math.sqrt(jack_var))
    assert result.p_value == pytest.approx(stats.t.sf(expected_u / math.sqrt(jack_var), n - 1))
    assert result.verdict is Verdict.HOLDS and result.lcb > 0
    assert lower_bound(g @ g.T, 0.99).lcb < result.lcb  # more confidence, lower bound


def test_few_batches_are_undecided_whatever_the_bound() -> None:
    g = np.ones((4, 10)) + 1e-3 * np.arange(40).reshape(4, 10)  # a huge, certain mean
    result = lower_bound(g @ g.T, 0.95)
    assert result.lcb is not None and result.lcb > 0
    assert result.verdict is Verdict.UNDECIDED and "fewer than" in result.reason
    two = lower_bound(g[:2] @ g[:2].T, 0.95)
    assert two.lcb is None and two.verdict is Verdict.UNDECIDED and two.p_value == 1.0


def test_rounding_level_gradients_are_undecided() -> None:
    rng = np.random.default_rng(0)
    g = 1e-6 * (rng.standard_normal((16, 50)) + 3.0)  # |E g|^2 ~ 5e-10 but a sure bound
    result = lower_bound(g @ g.T, 0.95)
    assert result.lcb is not None and 0 < result.lcb < 10 * FLOOR_ABSOLUTE
    assert result.floor == pytest.approx(max(FLOOR_ABSOLUTE, 1e-5 * result.batch_mean))
    if abs(result.lcb) <= result.floor:
        assert result.verdict is Verdict.UNDECIDED
    big = lower_bound((g * 1e3) @ (g * 1e3).T, 0.95)  # the same data, far above the floor
    assert big.verdict is Verdict.HOLDS


def test_decide_is_three_valued() -> None:
    assert decide(8, 1.0, 0.1, 0.95)[0] is Verdict.HOLDS
    assert decide(8, -1.0, 0.1, 0.95)[0] is Verdict.FAILS
    assert decide(8, 0.05, 0.1, 0.95)[0] is Verdict.UNDECIDED
    assert decide(8, -0.05, 0.1, 0.95)[0] is Verdict.UNDECIDED
    assert decide(7, 1.0, 0.1, 0.95)[0] is Verdict.UNDECIDED
    assert decide(8, None, 0.1, 0.95)[0] is Verdict.UNDECIDED


def test_holm_step_down() -> None:
    # alpha 0.05, m = 4: thresholds 0.0125, 0.0167, 0.025, 0.05 in p order
    assert holm([0.01, 0.04, 0.015, 0.03], 0.05) == [True, False, True, False]
    assert holm([0.001, 0.2], 0.05) == [True, False]
    assert holm([0.03, 0.03], 0.05) == [False, False]  # 0.03 > 0.05/2: stops at once
    assert holm([], 0.05) == []
    verdicts = [Verdict.HOLDS, Verdict.HOLDS, Verdict.UNDECIDED, Verdict.FAILS]
    family = family_verdicts(verdicts, [0.001, 0.03, 0.0, 0.5], 0.05)
    # the undecided position counts in the family with p = 1: 0.03 > 0.05/3
    assert family == [Verdict.HOLDS, Verdict.FAILS, Verdict.UNDECIDED, Verdict.FAILS]


def test_two_level_bootstrap_widens_with_seed_noise() -> None:
    rng = np.random.default_rng(5)
    examples = rng.standard_normal(400) * 0.1
    same = np.stack([examples + 0.02] * 3)
    spread = np.stack([examples + 0.02 + shift for shift in (-0.05, 0.0, 0.05)])
    low, high = two_level_bootstrap(same, 0.95, seed=1)
    assert low < 0.02 + examples.mean() < high
    # one seed: the example-only percentile interval ~ mean +- 1.96 sd / sqrt(N)
    half = 1.96 * examples.std(ddof=1) / math.sqrt(400)
    one_low, one_high = two_level_bootstrap(same[0], 0.95, seed=1)
    assert one_high - one_low == pytest.approx(2 * half, rel=0.15)
    wide_low, wide_high = two_level_bootstrap(spread, 0.95, seed=1)
    assert wide_high - wide_low > 2 * (high - low)


@pytest.mark.parametrize("seeds", [3, 5])
def test_two_level_bootstrap_covers_the_expected_gain(seeds: int) -> None:
    """Simulation with a known answer: per-example gains = 0.01 + seed effect (sd 0.01) +
    example noise (sd 0.2, 300 test examples); the 95% interval must cover 0.01."""
    rng = np.random.default_rng(0)
    replications, hits = 200, 0
    for _ in range(replications):
        gains = 0.01 + rng.normal(0, 0.01, (seeds, 1)) + rng.normal(0, 0.2, (seeds, 300))
        lo, hi = two_level_bootstrap(gains, 0.95)
        hits += lo <= 0.01 <= hi
    assert hits / replications >= 0.93
