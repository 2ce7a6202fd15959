"""docs/calibration.md from two suites with a known answer: the default chosen on the design suite
with its selection-adjusted p-value, reported on the replicate suite against the baseline."""

from __future__ import annotations

import random

import pytest

from expansion.results.calibration import Baseline, CalibrationRecord
from expansion.results.calibration_report import (
    SuiteResults,
    calibration_markdown,
    replicate,
    selection_adjusted_p,
)
from expansion.specs.predictor_names import PREDICTOR_NAMES, SELECTABLE_PREDICTORS

INFORMATIVE = SELECTABLE_PREDICTORS[1]
"""The one predictor that carries information in the simulated suites."""


def suite_records(
    prefix: str, jobs: int, depth: int, informative: bool, seed: int
) -> list[CalibrationRecord]:
    """Jobs whose realized gains have a reproducible ranking over positions; INFORMATIVE follows
    it (when `informative`), every other predictor is noise. Job levels differ."""
    rng = random.Random(seed)
    out = []
    for j in range(jobs):
        level = rng.gauss(0, 3)
        dataset = ("digits", "mnist1d", "teacher")[j % 3]
        truth = [rng.gauss(0, 1) for _ in range(depth + 1)]
        for p, true in enumerate(truth):
            for s in range(4):
                predictors = {name: rng.gauss(0, 1) for name in PREDICTOR_NAMES}
                predictors[INFORMATIVE] = (true if informative else 0.0) + rng.gauss(0, 0.3)
                out.append(
                    CalibrationRecord(
                        job=f"{prefix}{j}",
                        config={
                            "dataset": dataset,
                            "model": "mlp",
                            "norm": "layer",
                            "scaling": "inv_sqrt_depth",
                            "depth": str(depth),
                        },
                        position=p,
                        seed=s,
                        gain=0.01 * (level + true + rng.gauss(0, 0.2)),
                        predictors=predictors,
                    )
                )
    return out


def suite(name: str, records: list[CalibrationRecord]) -> SuiteResults:
    jobs = sorted({r.job for r in records})
    return SuiteResults(
        name=name,
        folder=f"examples/{name}/",
        specs=jobs,
        records=records,
        walls=dict.fromkeys(jobs, 30.0),
        totals={"continuation_s": 100.0, "predictors_s": 8.0},
        loads=[1.5, 3.0],
    )


def test_the_default_is_chosen_on_design_and_replicates() -> None:
    design = suite("design", suite_records("d", 12, 3, True, 1))
    replicate_suite = suite("replicate", suite_records("r", 12, 4, True, 2))
    text = calibration_markdown(
        design, replicate_suite, command="cmd", machine="test", resamples=200, permutations=999
    )
    assert f"- Design suite: `{INFORMATIVE}`, +0." in text
    assert "the selection survives" in text
    assert "(played no part in the choice)" in text
    assert "it ranks positions better than chance there" in text
    assert "above the baseline" in text
    assert "## Design suite" in text and "## Replicate suite" in text
    assert "| *random (no information)* | 0 [-0." in text
    assert "ceiling" in text and "load average (1 min) 1.5 to 3.0" in text
    assert "8% of the continuation" in text
    assert f"`{Baseline.POSITION_INDEX_REVERSED.value}`" in text


def test_a_default_that_does_not_replicate_is_said_plainly() -> None:
    design = suite("design", suite_records("d", 12, 3, True, 3))
    noise = suite("replicate", suite_records("r", 12, 4, False, 4))
    text = calibration_markdown(
        design, noise, command="cmd", machine="test", resamples=100, permutations=500
    )
    assert "it does NOT rank positions better than chance there" in text
    assert "not shown above the baseline" in text
    missing = suite("replicate", [])
    text = calibration_markdown(
        design, missing, command="cmd", machine="test", resamples=0, permutations=200
    )
    assert "- Replicate suite: not measured yet." in text


def test_selection_adjusted_p_is_larger_than_the_best_ones_own() -> None:
    """Pure noise suite: the best of the selectable predictors looks better alone than it is."""
    records = suite_records("n", 12, 3, False, 5)
    adjusted = selection_adjusted_p(records, SELECTABLE_PREDICTORS, 2000)
    assert adjusted is not None and adjusted > 0.05
    rep = replicate(records, INFORMATIVE, Baseline.POSITION_INDEX.value)
    assert rep is not None and rep.difference_jobs == 12
    assert rep.row.predictor == INFORMATIVE and rep.baseline.predictor == "position_index"
    assert rep.p_one_sided is not None and 0.0 < rep.p_one_sided <= 1.0
    low, high = rep.difference_ci
    assert low is not None and high is not None and -2.0 <= low < high <= 2.0
    assert rep.difference == pytest.approx(
        (rep.row.spearman or 0.0) - (rep.baseline.spearman or 0.0)
    )
