"""Calibration statistics (torch-free): Spearman, bootstrap intervals, noise ceiling, tables."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from expansion.results.calibration import (
    CalibrationRecord,
    _job_matrix,
    best_predictor,
    calibration_markdown,
    calibration_rows,
    noise_ceiling,
    parse_group_by,
    records_from_result,
    spearman,
)
from expansion.specs.predictor_names import PREDICTOR_NAMES


def job_records(
    job: str, dataset: str, gains: list[float], noise: float, seeds: int, rng: random.Random
) -> list[CalibrationRecord]:
    """Positions with true gains `gains`; `certificate_u` = true gain, `cosine` = reversed."""
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
                        "depth": "4",
                    },
                    position=p,
                    seed=s,
                    gain=true + rng.gauss(0.0, noise),
                    predictors={"certificate_u": true, "cosine_train_val": -true},
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


def test_noise_ceiling_is_high_for_clear_gains_and_low_for_pure_noise() -> None:
    rng = random.Random(0)
    clear = _job_matrix(job_records("a", "d", [0.0, 0.01, 0.02, 0.03, 0.04], 1e-4, 4, rng))
    assert noise_ceiling(clear) == pytest.approx(1.0)
    noise = _job_matrix(job_records("b", "d", [0.0] * 12, 1.0, 6, rng))
    ceiling = noise_ceiling(noise, splits=200)
    assert ceiling is not None and ceiling < 0.3  # no reproducible ranking
    # by hand for one split of 2 seeds: halves {0}, {1}, Spearman-Brown 2r/(1+r)
    two = _job_matrix(job_records("c", "d", [0.0, 0.0, 0.0], 0.0, 2, rng))
    two.gains[:, 0] = [1.0, 2.0, 3.0]
    two.gains[:, 1] = [1.0, 3.0, 2.0]
    assert noise_ceiling(two) == pytest.approx(2 * 0.5 / 1.5)


def test_rows_group_by_dataset_with_intervals_around_the_truth() -> None:
    rng = random.Random(2)
    records = []
    for j in range(3):
        records += job_records(f"m{j}", "mnist1d", [0.0, 0.01, 0.02, 0.03], 0.002, 4, rng)
    records += job_records("t0", "teacher", [0.03, 0.0, 0.01, 0.02], 0.002, 4, rng)
    rows = calibration_rows(records, ("dataset",), resamples=300)
    by = {(r.group["dataset"], r.predictor): r for r in rows}
    assert len(rows) == 2 * len(PREDICTOR_NAMES)
    u = by[("mnist1d", "certificate_u")]
    assert u.n_jobs == 3 and u.n_points == 12
    assert u.spearman is not None and u.spearman > 0.7
    lo, hi = u.spearman_ci
    assert lo is not None and hi is not None and lo <= u.spearman <= hi and lo > 0
    cos = by[("mnist1d", "cosine_train_val")]
    assert cos.spearman == pytest.approx(-u.spearman)
    assert by[("mnist1d", "probe_val_gain")].spearman is None
    # the job mean is the mean of per-job Spearman values, each checked against scipy
    per_job = []
    for j in range(3):
        recs = [r for r in records if r.job == f"m{j}"]
        xs = [r.predictors["certificate_u"] for r in recs if r.seed == 0]
        ys = [np.mean([r.gain for r in recs if r.position == p]) for p in range(4)]
        per_job.append(stats.spearmanr(xs, ys).statistic)
    assert u.spearman == pytest.approx(float(np.mean(per_job)))
    pooled = calibration_rows(records, (), resamples=0)
    assert best_predictor(pooled).predictor == "certificate_u"  # type: ignore[union-attr]  # rows exist


def test_group_by_parsing_names_the_unknown_part() -> None:
    assert parse_group_by("dataset") == ("dataset",)
    assert parse_group_by("norm, depth") == ("norm", "depth")
    assert parse_group_by("configuration") == ("dataset", "model", "norm", "scaling", "depth")
    assert parse_group_by("all") == ()
    with pytest.raises(ValueError, match="'colour'"):
        parse_group_by("dataset,colour")


def test_records_from_result_and_markdown() -> None:
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
                "predictors": {"certificate_u": float(p), "early_gain_5pct": float("nan")},
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
    assert records[0].predictors["early_gain_5pct"] is None  # NaN is not a measurement
    text = calibration_markdown(
        records,
        suite=["j1", "j2"],
        walls={"j1": 60.0},
        totals={"continuation_s": 50.0, "predictors_s": 5.0},
        command="python benchmarks/calibration.py",
        machine="test",
        resamples=100,
    )
    assert "NOT measured: j2" in text
    assert "| `certificate_u` | +1.00" in text
    assert "10% of the continuation" in text


def test_module_is_torch_free() -> None:
    code = "import sys, expansion.results.calibration, expansion.specs.predictor_names; "
    code += "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
