"""Claim verdicts from a sweep's rows: decided only when the t-intervals separate."""

from __future__ import annotations

import random
from typing import Any

from expansion.results.findings import Verdict, judge_claims, judge_growth


def _rows(errors: dict[tuple[str, int], list[float]], sens: dict[str, float]) -> list[dict]:
    rows: list[dict[str, Any]] = []
    for (scaling, depth), values in errors.items():
        for seed, value in enumerate(values):
            rows.append(
                {
                    "status": "succeeded",
                    "arm": "scratch",
                    "scaling": scaling,
                    "depth": depth,
                    "seed": seed,
                    "test_error": value,
                    "input_sensitivity": sens[scaling] + 0.01 * seed,
                }
            )
    return rows


def test_separated_intervals_decide_and_overlapping_ones_do_not() -> None:
    tight = [0.0, 0.001, 0.002]
    errors = {
        ("constant", 2): [0.10 + d for d in tight],
        ("constant", 32): [0.40 + d for d in tight],
        ("inv_sqrt_depth", 2): [0.09 + d for d in tight],
        ("inv_sqrt_depth", 32): [0.08 + d for d in tight],
        ("inv_depth", 2): [0.11 + d for d in tight],
        ("inv_depth", 32): [0.05, 0.20, 0.12],  # wide: no decision against 1/sqrt(L)
    }
    sens = {"constant": 10.0, "inv_sqrt_depth": 3.0, "inv_depth": 1.0}
    findings = {f.claim.split(":")[0].split(" (")[0]: f for f in judge_claims(_rows(errors, sens))}
    assert findings["constant branch scale"].verdict is Verdict.REPRODUCED
    assert findings["1/sqrt(L) and 1/L keep deep networks trainable"].verdict is (
        Verdict.REPRODUCED
    )
    assert findings["1/sqrt(L) more accurate than 1/L"].verdict is Verdict.INCONCLUSIVE
    # Sensitivity peaks at constant, but the lowest error is elsewhere at both depths.
    assert findings["input sensitivity peaks at the best scaling"].verdict is Verdict.REFUTED


def test_single_seeds_are_inconclusive() -> None:
    errors = {("constant", 2): [0.1], ("constant", 8): [0.5]}
    findings = judge_claims(_rows(errors, {"constant": 1.0}))
    assert findings[0].verdict is Verdict.INCONCLUSIVE


def _grow_rows(scaling: str, grown: list[float], scratch: list[float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for seed, (g, s) in enumerate(zip(grown, scratch, strict=True)):
        for arm, value in (("grown", g), ("scratch", s), ("start", 0.5)):
            rows.append(
                {"status": "succeeded", "arm": arm, "scaling": scaling, "depth": 8, "seed": seed}
                | {"test_error": value}
            )
    return rows


def test_growth_claim_pairs_seeds_and_uses_the_margin() -> None:
    # Scratch varies a lot between seeds, grown tracks it: only pairing by seed decides.
    scratch = [0.05, 0.15, 0.25]
    matched = _grow_rows("inv_sqrt_depth", [s + 0.002 for s in scratch], scratch)
    worse = _grow_rows("constant", [s + 0.05 + 0.001 * i for i, s in enumerate(scratch)], scratch)
    undecided = _grow_rows(
        "inv_depth", [s + d for s, d in zip(scratch, (-0.1, 0.0, 0.1), strict=True)], scratch
    )
    by_scaling = {
        f.claim.split("(")[-1].rstrip(")"): f for f in judge_growth(matched + worse + undecided)
    }
    assert by_scaling["inv_sqrt_depth"].verdict is Verdict.REPRODUCED
    assert by_scaling["constant"].verdict is Verdict.REFUTED
    assert by_scaling["inv_depth"].verdict is Verdict.INCONCLUSIVE
    assert "paired by seed" in by_scaling["constant"].evidence


def test_growth_claim_needs_grown_rows_and_two_seeds() -> None:
    scratch_only = [
        r for r in _grow_rows("constant", [0.1, 0.1], [0.2, 0.2]) if r["arm"] != "grown"
    ]
    assert judge_growth(scratch_only) == []
    (single,) = judge_growth(_grow_rows("constant", [0.1], [0.2]))
    assert single.verdict is Verdict.INCONCLUSIVE


def _growth_verdicts(true_difference: float, noise: float, reps: int, seed: int) -> list[Verdict]:
    """Claim 5's verdict on simulated grow sweeps whose grown-minus-scratch difference is known."""
    rng = random.Random(seed)
    verdicts = []
    for _ in range(reps):
        scratch = [0.2 + rng.gauss(0.0, 0.05) for _ in range(3)]
        grown = [s + true_difference + rng.gauss(0.0, noise) for s in scratch]
        (finding,) = judge_growth(_grow_rows("constant", grown, scratch))
        verdicts.append(finding.verdict)
    return verdicts


def test_growth_verdict_error_rates_by_simulation() -> None:
    """With 3 seeds (the grow sweep's size): equal networks are called worse, and networks worse
    than the margin are called matching, at most at the one-sided 2.5% of the t-interval."""
    equal = _growth_verdicts(0.0, noise=0.05, reps=2000, seed=1)
    assert equal.count(Verdict.REFUTED) / len(equal) <= 0.04
    worse = _growth_verdicts(0.05, noise=0.05, reps=2000, seed=2)
    assert worse.count(Verdict.REPRODUCED) / len(worse) <= 0.04
    # The verdict is reachable: with little seed-to-seed noise, equal networks match.
    precise = _growth_verdicts(0.0, noise=0.002, reps=200, seed=3)
    assert precise.count(Verdict.REPRODUCED) / len(precise) >= 0.9
