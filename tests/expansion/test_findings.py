"""Claim verdicts from a sweep's rows: decided only when the t-intervals separate."""

from __future__ import annotations

from typing import Any

from expansion.findings import Verdict, judge_claims


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
