"""Calibration statistics (torch-free): Spearman, exact permutation p-values, intervals that
resample jobs, the selection-adjusted p-value of the best predictor, reliability, baselines.

The simulated suites are the regime the issue names: 12 jobs of 4 positions and 3 seeds, each
job with its own level of gain and of predictor (job effects), predictors that carry no
information about which position gains more.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from expansion.results.calibration import (
    BASELINE_NAMES,
    Baseline,
    CalibrationRecord,
    RowKind,
    best_predictor,
    calibration_rows,
    gain_reliability,
    job_matrix,
    parse_group_by,
    records_from_result,
)
from expansion.results.rank_correlation import (
    cluster_bootstrap_interval,
    column_spearman,
    spearman,
    t_interval_over_jobs,
)
from expansion.results.rank_permutation import (
    max_mean_spearman,
    max_t_adjusted,
    mean_spearman_null,
    observed_mean_spearman,
)
from expansion.specs.predictor_names import PREDICTOR_NAMES

GOOD, BACKWARD, UNMEASURED = PREDICTOR_NAMES[0], PREDICTOR_NAMES[3], PREDICTOR_NAMES[6]
"""Roles for three of the stored predictors (whatever they are named)."""
JOBS, POSITIONS, SEEDS = 12, 4, 3


def job_records(
    job: str, dataset: str, gains: list[float], noise: float, seeds: int, rng: random.Random
) -> list[CalibrationRecord]:
    """Positions with true gains `gains`; GOOD = true gain, BACKWARD = reversed."""
    out = []
    for p, true in enumerate(gains):
        for s in range(seeds):
            out.append(
                CalibrationRecord(
                    job=job,
                    config={
                        "dataset": dataset,
                        "model": "mlp",
                        "norm": "layer",
                        "scaling": "constant",
                        "depth": str(len(gains) - 1),
                    },
                    position=p,
                    seed=s,
                    gain=true + rng.gauss(0.0, noise),
                    predictors={GOOD: true, BACKWARD: -true},
                )
            )
    return out


def test_spearman_matches_scipy_with_ties_and_is_undefined_when_flat() -> None:
    rng = random.Random(1)
    for _ in range(20):
        n = rng.randint(3, 12)
        x = [float(rng.randint(0, 4)) for _ in range(n)]
        y = [rng.random() for _ in range(n)]
        expected = stats.spearmanr(x, y).statistic
        got = spearman(x, y)
        if np.isnan(expected):
            assert got is None
        else:
            assert got == pytest.approx(expected)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_gain_reliability_is_high_for_clear_gains_and_low_for_pure_noise() -> None:
    rng = random.Random(0)
    clear = job_matrix(job_records("a", "d", [0.0, 0.01, 0.02, 0.03, 0.04], 1e-4, 4, rng))
    assert gain_reliability(clear) == pytest.approx(1.0)
    noise = job_matrix(job_records("b", "d", [0.0] * 12, 1.0, 6, rng))
    reliability = gain_reliability(noise, splits=200)
    assert reliability is not None and reliability < 0.3  # no reproducible ranking
    # by hand for one split of 2 seeds: halves {0}, {1}, Spearman-Brown 2r/(1+r)
    two = job_matrix(job_records("c", "d", [0.0, 0.0, 0.0], 0.0, 2, rng))
    two.gains[:, 0] = [1.0, 2.0, 3.0]
    two.gains[:, 1] = [1.0, 3.0, 2.0]
    assert gain_reliability(two) == pytest.approx(2 * 0.5 / 1.5)


def test_rows_by_dataset_with_baselines_reliability_and_its_ceiling() -> None:
    rng = random.Random(2)
    records = []
    for j in range(4):
        records += job_records(f"m{j}", "mnist1d", [0.0, 0.01, 0.02, 0.03], 0.004, 4, rng)
    records += job_records("t0", "teacher", [0.03, 0.0, 0.01, 0.02], 0.002, 4, rng)
    rows = calibration_rows(records, ("dataset",), resamples=300, permutations=500)
    by = {(r.group["dataset"], r.predictor): r for r in rows}
    assert len(rows) == 2 * (len(PREDICTOR_NAMES) + len(BASELINE_NAMES))
    good = by[("mnist1d", GOOD)]
    assert good.kind is RowKind.PREDICTOR and good.n_jobs == 4 and good.n_points == 16
    assert good.spearman == pytest.approx(1.0)
    # 4 jobs of 4 positions all ranked right: the exact two-sided p is 2 x (1/24)^4.
    assert good.p_value == pytest.approx(2 / 24**4)
    assert good.p_value_adjusted is not None and good.p_value_adjusted <= 2 / 501
    backward = by[("mnist1d", BACKWARD)]
    assert backward.spearman == pytest.approx(-1.0) and backward.p_value == good.p_value
    assert by[("mnist1d", UNMEASURED)].spearman is None
    assert by[("mnist1d", UNMEASURED)].n_jobs == 0
    # On mnist1d the gain grows with the position: the position index baseline ranks it too.
    index = by[("mnist1d", Baseline.POSITION_INDEX.value)]
    assert index.kind is RowKind.BASELINE and index.spearman == pytest.approx(1.0)
    assert index.p_value_adjusted is None
    assert by[("teacher", Baseline.POSITION_INDEX_REVERSED.value)].spearman == pytest.approx(0.2)
    # Random band: the central 95% of the mean of 4 independent 4-position Spearman values.
    low, high = good.random_band
    assert low is not None and high is not None and -0.6 < low < -0.3 and 0.3 < high < 0.6
    reliability = good.gain_reliability
    assert reliability is not None and 0.5 < reliability <= 1.0
    assert good.correlation_ceiling == pytest.approx(np.sqrt(reliability), abs=0.05)
    pooled = calibration_rows(records, (), resamples=0, permutations=0)
    assert best_predictor(pooled) is not None
    assert best_predictor(pooled).predictor == GOOD  # type: ignore[union-attr]  # rows exist


def test_exact_permutation_p_value_matches_every_ordering() -> None:
    """Three jobs of 3, 4 and 5 positions (ties in one): the p-value from the convolution
    equals the share of all 3! x 4! x 5! joint orderings whose mean Spearman (scipy) is at
    least as extreme."""
    rng = np.random.default_rng(0)
    jobs = [
        (rng.normal(size=3), rng.normal(size=3)),
        (rng.normal(size=4), np.array([1.0, 1.0, 2.0, 3.0])),
        (np.array([1.0, 2.0, 2.0, 3.0, 4.0]), rng.normal(size=5)),
    ]
    null = mean_spearman_null(jobs)
    observed = observed_mean_spearman(jobs)
    per_job = []
    for x, y in jobs:
        values = [
            stats.spearmanr(x, y[list(order)]).statistic
            for order in itertools.permutations(range(len(y)))
        ]
        per_job.append(np.array(values))
    grid = np.meshgrid(*per_job, indexing="ij")
    means = sum(grid) / len(jobs)
    assert null.p_two_sided(observed) == pytest.approx(
        np.mean(np.abs(means) >= abs(observed) - 1e-9)
    )
    assert null.p_greater(observed) == pytest.approx(np.mean(means >= observed - 1e-9))
    assert null.exact
    assert null.quantiles([0.5]) == pytest.approx([float(np.quantile(means, 0.5))], abs=0.01)


def _null_suite(
    rng: np.random.Generator, jobs: int, predictors: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seed-mean gains (jobs, P) and predictors (jobs, P, K) that carry no information: job
    effects in both, reproducible position effects in the gains, a factor shared by the
    predictors (they agree with each other, not with the gains)."""
    gains = rng.normal(0, 3, (jobs, 1)) + rng.normal(0, 1, (jobs, POSITIONS))
    gains += rng.normal(0, 0.5, (jobs, POSITIONS, SEEDS)).mean(axis=2)
    shared = rng.normal(0, 1, (jobs, POSITIONS, 1))
    values = (
        rng.normal(0, 3, (jobs, 1, predictors))
        + shared
        + rng.normal(0, 1, (jobs, POSITIONS, predictors))
    )
    return gains, values


def test_exact_permutation_p_value_holds_its_level() -> None:
    rng = np.random.default_rng(1)
    reps, rejected = 500, 0
    for _ in range(reps):
        gains, values = _null_suite(rng, 5, 1)
        null = mean_spearman_null([(values[j, :, 0], gains[j]) for j in range(5)])
        rejected += (
            null.p_two_sided(
                observed_mean_spearman([(values[j, :, 0], gains[j]) for j in range(5)])
            )
            <= 0.05
        )
    assert 0.02 <= rejected / reps <= 0.075


def _point_bootstrap_interval(
    x: np.ndarray, y: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """The wrong method: percentile bootstrap over the points as if they were independent."""
    picks = rng.integers(0, x.size, size=(x.size, resamples))
    low, high = np.quantile(column_spearman(x[picks], y[picks]), [0.025, 0.975])
    return float(low), float(high)


def test_pooled_interval_resamples_jobs_not_points() -> None:
    """A null predictor over 12 jobs with job effects: the cluster interval excludes 0 in about
    5% of simulated suites; a bootstrap over the 48 points, in far more."""
    rng = np.random.default_rng(2)
    reps, cluster, points = 600, 0, 0
    for _ in range(reps):
        gains, values = _null_suite(rng, JOBS, 1)
        pairs = [(values[j, :, 0], gains[j]) for j in range(JOBS)]
        low, high = cluster_bootstrap_interval(pairs, 400, 0.95, rng)
        assert low is not None and high is not None
        cluster += low > 0 or high < 0
        p_low, p_high = _point_bootstrap_interval(values[:, :, 0].ravel(), gains.ravel(), 400, rng)
        points += p_low > 0 or p_high < 0
    assert cluster / reps <= 0.075
    assert points / reps >= 0.14


def test_pooled_interval_covers_an_association_between_networks() -> None:
    """Job levels of predictor and gain correlated (between networks) plus a within-job effect:
    the cluster interval covers the population pooled Spearman."""
    rng = np.random.default_rng(3)

    def suite(jobs: int) -> tuple[np.ndarray, np.ndarray]:
        u = rng.normal(0, 1, jobs)
        w = 0.5 * u + np.sqrt(0.75) * rng.normal(0, 1, jobs)
        x = w[:, None] + rng.normal(0, 0.5, (jobs, POSITIONS))
        y = u[:, None] + 0.3 * x + rng.normal(0, 0.5, (jobs, POSITIONS))
        return x, y

    big_x, big_y = suite(50000)
    truth = spearman(big_x.ravel().tolist(), big_y.ravel().tolist())
    assert truth is not None
    reps, covered = 500, 0
    for _ in range(reps):
        x, y = suite(JOBS)
        low, high = cluster_bootstrap_interval([(x[j], y[j]) for j in range(JOBS)], 400, 0.95, rng)
        assert low is not None and high is not None
        covered += low <= truth <= high
    assert covered / reps >= 0.93


def test_within_network_interval_covers_over_jobs() -> None:
    """Each job: gain = 0.7 x predictor + noise over 4 positions. The Student-t interval over
    12 jobs covers the population mean within-job Spearman."""
    rng = np.random.default_rng(4)

    def per_job(count: int) -> np.ndarray:
        x = rng.normal(size=(count, POSITIONS))
        y = 0.7 * x + rng.normal(size=(count, POSITIONS))
        return column_spearman(x.T, y.T)

    truth = float(np.mean(per_job(200000)))
    reps = 2000
    covered = 0
    rhos = per_job(reps * JOBS).reshape(reps, JOBS)
    for row in rhos:
        low, high = t_interval_over_jobs(row.tolist(), 0.95)
        assert low is not None and high is not None
        covered += low <= truth <= high
    assert covered / reps >= 0.92
    assert t_interval_over_jobs([0.5, 0.5], 0.95) == (None, None)


def test_naming_the_best_of_13_needs_the_selection_adjusted_p_value() -> None:
    """13 predictors, none informative: the best one's unadjusted interval excludes 0 in many
    simulated suites; the max-T p-value of the best is <= 0.05 in about 5%."""
    rng = np.random.default_rng(5)
    reps, naive, adjusted = 300, 0, 0
    for _ in range(reps):
        gains, values = _null_suite(rng, JOBS, 13)
        xs = [values[j] for j in range(JOBS)]
        ys = [gains[j] for j in range(JOBS)]
        masks = [np.ones(13, dtype=bool)] * JOBS
        observed, permuted = max_mean_spearman(xs, ys, masks, 400, seed=int(rng.integers(1 << 30)))
        best = int(np.nanargmax(observed))
        per_job = [
            spearman(values[j, :, best].tolist(), gains[j].tolist()) or 0.0 for j in range(JOBS)
        ]
        low, _ = t_interval_over_jobs(per_job, 0.95)
        naive += low is not None and low > 0
        adjusted += max_t_adjusted(observed, permuted, one_sided=True)[best] <= 0.05
    assert naive / reps >= 0.1
    assert adjusted / reps <= 0.075


def test_max_t_of_one_predictor_is_its_permutation_p_value() -> None:
    rng = np.random.default_rng(6)
    gains, values = _null_suite(rng, 6, 1)
    values[:, :, 0] += 0.8 * gains  # informative
    pairs = [(values[j, :, 0], gains[j]) for j in range(6)]
    exact = mean_spearman_null(pairs).p_two_sided(observed_mean_spearman(pairs))
    observed, permuted = max_mean_spearman(
        [values[j] for j in range(6)],
        [gains[j] for j in range(6)],
        [np.ones(1, dtype=bool)] * 6,
        20000,
    )
    assert max_t_adjusted(observed, permuted)[0] == pytest.approx(exact, abs=0.005)


def test_group_by_parsing_names_the_unknown_part() -> None:
    assert parse_group_by("dataset") == ("dataset",)
    assert parse_group_by("norm, depth") == ("norm", "depth")
    assert parse_group_by("configuration") == ("dataset", "model", "norm", "scaling", "depth")
    assert parse_group_by("all") == ()
    with pytest.raises(ValueError, match="'colour'"):
        parse_group_by("dataset,colour")


def test_records_from_result_keep_every_named_predictor() -> None:
    result = {
        "spec": {
            "data": {"name": "digits"},
            "model": {"kind": "mlp", "norm": "rms", "scaling": "inv_depth", "depth": 2},
        },
        "insertions": [
            {
                "position": p,
                "seed": s,
                "realized": {"gain_vs_control": 0.01 * p + 0.001 * s},
                "predictors": {GOOD: float(p), PREDICTOR_NAMES[-1]: float("nan")},
            }
            for p in range(3)
            for s in range(3)
        ],
    }
    records = records_from_result("j1", result)
    assert records[0].config == {
        "dataset": "digits",
        "model": "mlp",
        "norm": "rms",
        "scaling": "inv_depth",
        "depth": "2",
    }
    assert set(records[0].predictors) == set(PREDICTOR_NAMES)
    assert records[0].predictors[PREDICTOR_NAMES[-1]] is None  # NaN is not a measurement
    matrix = job_matrix(records)
    assert matrix.values[Baseline.POSITION_INDEX.value][:, 0].tolist() == [0.0, 0.5, 1.0]


def test_modules_are_torch_free() -> None:
    code = (
        "import sys, expansion.results.calibration, expansion.results.calibration_report, "
        "expansion.results.rank_permutation, expansion.results.findings, "
        "expansion.specs.predictor_names; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
