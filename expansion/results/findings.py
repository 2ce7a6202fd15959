"""The sources' claims about branch scaling and depth, judged on a sweep's rows (torch-free).

Every claim is decided by a test with a p-value, and the claims a page decides form one family:
Holm's step-down (expansion.results.multiplicity) at family-wise level `ALPHA` turns the
p-values into verdicts. A comparison is `reproduced` or `refuted` only when Holm rejects its
null, in the direction its estimate points; otherwise it is `inconclusive`.

Every seed is scored on the same test set, so each test adds the test set's sampling noise to
the seeds' spread (expansion.results.seed_means): cells with their own seeds are compared with
the generalized Welch test, grown and scratch networks of one seed with the paired test. The
claims, as each rule decides them:

1. constant branch scale: test error at the deepest L differs from the shallowest (two-sided);
   `reproduced` when it is higher.
2. 1/sqrt(L) AND 1/L have lower test error than constant at the deepest L: an
   intersection-union test (p = the larger of the two p-values); `refuted` when either is
   shown higher (p = twice the smaller p-value of those above constant).
3. 1/sqrt(L) has lower test error than 1/L at the deepest L (two-sided).
4. per depth: the rule with the highest mean input sensitivity is shown above every other rule
   AND either (a) it is also the rule with the lowest mean test error, shown below every other
   rule (`reproduced`), or (b) its test error is shown above the lowest-error rule's
   (`refuted`); p = the largest p-value of the comparisons it needs.
5. per scaling: NON-INFERIORITY of growing by insertion against the same depth trained from
   scratch: the paired difference of test error (grown minus scratch) is tested against the
   margin `GROWTH_MARGIN`; `reproduced` = shown below the margin (grown is not worse by the
   margin or more), `refuted` = shown above it. It never says that grown beats scratch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from expansion.results.multiplicity import holm_adjusted
from expansion.results.seed_means import (
    Comparison,
    SeedMean,
    binomial_variance,
    compare_independent,
    compare_paired,
    interval,
    seed_mean,
    shared_variance,
)
from expansion.results.sweep_summary import LIMITS, Arm

ALPHA = 0.05
"""Family-wise error rate of the page's decisions (Holm)."""
GROWTH_MARGIN = 0.01
"""Non-inferiority margin of claim 5 in test error (one percentage point)."""


class Verdict(StrEnum):
    """What the data say about a claim."""

    REPRODUCED = "reproduced"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Finding:
    """One decided comparison: the claim as its rule tests it, the p-value and the verdict."""

    claim: str
    """The claim, worded as the rule decides it."""
    number: int
    """Which of the page's claims (1-5) it belongs to."""
    evidence: str
    """The estimates behind the test, with 95% intervals (seeds and test set)."""
    p_value: float | None
    """Two-sided p-value of the comparison (None: not testable, e.g. one seed)."""
    if_rejected: Verdict
    """The verdict a rejection gives (the direction the estimate points)."""
    rule: str = ""
    p_adjusted: float | None = None
    """Holm-adjusted p-value over the family the verdict was decided in."""
    verdict: Verdict = Verdict.INCONCLUSIVE
    family: int = 0
    """Number of comparisons in that family."""


def decide(findings: Sequence[Finding], alpha: float = ALPHA) -> list[Finding]:
    """Verdicts by Holm's step-down over every testable finding (the family); untestable
    findings stay inconclusive and do not count in the family."""
    testable = [i for i, f in enumerate(findings) if f.p_value is not None]
    adjusted = holm_adjusted([findings[i].p_value or 1.0 for i in testable])
    out = [replace(f, p_adjusted=None, verdict=Verdict.INCONCLUSIVE, family=0) for f in findings]
    for i, p in zip(testable, adjusted, strict=True):
        verdict = findings[i].if_rejected if p <= alpha else Verdict.INCONCLUSIVE
        out[i] = replace(out[i], p_adjusted=p, verdict=verdict, family=len(testable))
    return out


def _cells(
    rows: Sequence[dict[str, Any]], measure: str, test_examples: int | None
) -> dict[tuple[str, str, int], SeedMean]:
    """Seed means of the succeeded rows per (arm, scaling, depth), with their shared variance."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") != "succeeded" or row.get(measure) is None:
            continue
        key = (str(row["arm"]), str(row["scaling"]), int(row["depth"]))
        groups.setdefault(key, []).append(row)
    cells = {}
    for key, members in groups.items():
        values = [float(r[measure]) for r in members]
        mean = sum(values) / len(values)
        shared = 0.0
        if measure == "test_error":
            n = _test_examples(members, test_examples)
            shared = binomial_variance(mean, n) if n else 0.0
        elif measure == "input_sensitivity":
            errors = [float(r.get("input_sensitivity_se") or 0.0) for r in members]
            shared = shared_variance(errors)
        cells[key] = seed_mean(values, shared)
    return cells


def _test_examples(members: Sequence[dict[str, Any]], default: int | None) -> int | None:
    sizes = [int(r["test_examples"]) for r in members if r.get("test_examples") not in (None, "")]
    return min(sizes) if sizes else default


def _fmt(cell: SeedMean | None, measure: str = "test_error") -> str:
    """`mean [95% interval] (n=seeds)`, the interval cut to the measure's range."""
    if cell is None:
        return "missing"
    bounds = interval(cell, limits=LIMITS.get(measure, (-math.inf, math.inf)))
    spec = ".4f" if measure == "test_error" else ".4g"
    if bounds is None:
        return f"{cell.mean:{spec}} (n={cell.n_seeds}, no interval)"
    return f"{cell.mean:{spec}} [{bounds[0]:{spec}}, {bounds[1]:{spec}}] (n={cell.n_seeds})"


def _diff(c: Comparison) -> str:
    """`difference [95% interval]` of two test errors (cut to [-1, 1], where it lies)."""
    low, high = c.interval()
    return f"{c.difference:+.4f} [{max(low, -1.0):+.4f}, {min(high, 1.0):+.4f}]"


def _two_sided(
    claim: str,
    number: int,
    first: SeedMean | None,
    second: SeedMean | None,
    labels: tuple[str, str],
    lower_is_claim: bool,
) -> Finding:
    """A claim that `first` is below (or above) `second`, by the generalized Welch test."""
    evidence = f"{labels[0]} {_fmt(first)}; {labels[1]} {_fmt(second)}"
    test = None if first is None or second is None else compare_independent(first, second)
    if test is None:
        return Finding(claim, number, evidence, None, Verdict.REPRODUCED, rule="not testable")
    claimed = (test.difference < 0) == lower_is_claim
    return Finding(
        claim,
        number,
        f"{evidence}; difference {_diff(test)}",
        test.p_value,
        Verdict.REPRODUCED if claimed else Verdict.REFUTED,
        rule=test.method,
    )


def judge_claims(
    rows: Sequence[dict[str, Any]], test_examples: int | None = None, alpha: float = ALPHA
) -> list[Finding]:
    """Claims 1-4 from a train sweep over scaling x depth x seed, decided by Holm over them.

    `test_examples`: the test set's size where the rows do not carry it."""
    errors = {
        k: v for k, v in _cells(rows, "test_error", test_examples).items() if k[0] == "scratch"
    }
    sensitivity = {
        k: v for k, v in _cells(rows, "input_sensitivity", None).items() if k[0] == "scratch"
    }
    depths = sorted({k[2] for k in errors})
    if len(depths) < 2:
        return [
            Finding("all claims", 0, "fewer than two depths in the grid", None, Verdict.REPRODUCED)
        ]
    shallow, deep = depths[0], depths[-1]

    def at(cells: dict[tuple[str, str, int], SeedMean], scaling: str, depth: int) -> Any:
        return cells.get(("scratch", scaling, depth))

    findings = [
        _two_sided(
            f"constant branch scale: test error higher at L={deep} than at L={shallow}",
            1,
            at(errors, "constant", deep),
            at(errors, "constant", shallow),
            (f"constant at L={deep}", f"at L={shallow}"),
            lower_is_claim=False,
        ),
        _claim_two(errors, deep),
        _two_sided(
            f"1/sqrt(L) has lower test error than 1/L at L={deep}",
            3,
            at(errors, "inv_sqrt_depth", deep),
            at(errors, "inv_depth", deep),
            (f"1/sqrt(L) at L={deep}", "1/L"),
            lower_is_claim=True,
        ),
    ]
    findings += [sensitivity_peak_finding(errors, sensitivity, depth) for depth in depths]
    return decide(findings, alpha)


def _claim_two(errors: dict[tuple[str, str, int], SeedMean], deep: int) -> Finding:
    claim = f"1/sqrt(L) and 1/L both have lower test error than constant at L={deep}"
    constant = errors.get(("scratch", "constant", deep))
    tests: list[tuple[str, Comparison]] = []
    evidence = [f"constant {_fmt(constant)}"]
    for rule in ("inv_sqrt_depth", "inv_depth"):
        cell = errors.get(("scratch", rule, deep))
        test = None if cell is None or constant is None else compare_independent(cell, constant)
        evidence.append(
            f"{rule} {_fmt(cell)}" + (f", minus constant {_diff(test)}" if test else "")
        )
        if test is not None:
            tests.append((rule, test))
    text = "; ".join(evidence)
    rule = "intersection-union of two generalized Welch tests"
    if len(tests) < 2:
        return Finding(claim, 2, text, None, Verdict.REPRODUCED, rule="not testable")
    if all(t.difference < 0 for _, t in tests):
        p = max(t.p_value for _, t in tests)
        return Finding(claim, 2, text, p, Verdict.REPRODUCED, rule=rule)
    above = [t.p_value for _, t in tests if t.difference >= 0]
    return Finding(claim, 2, text, min(1.0, 2 * min(above)), Verdict.REFUTED, rule=rule)


def sensitivity_peak_finding(
    errors: dict[tuple[str, str, int], SeedMean],
    sensitivity: dict[tuple[str, str, int], SeedMean],
    depth: int,
) -> Finding:
    """Claim 4 at one depth from the scratch cells (keys (arm, scaling, depth)) of test error
    and input sensitivity (module docstring, rule 4)."""
    claim = f"input sensitivity peaks at the lowest-error scaling (L={depth})"
    rules = sorted(
        s
        for (_, s, d) in errors
        if d == depth
        and ("scratch", s, d) in sensitivity
        and errors[("scratch", s, d)].n_seeds >= 2
        and sensitivity[("scratch", s, d)].n_seeds >= 2
    )
    if len(rules) < 2:
        return Finding(claim, 4, "fewer than two rules measured", None, Verdict.REPRODUCED)
    sens = {r: sensitivity[("scratch", r, depth)] for r in rules}
    err = {r: errors[("scratch", r, depth)] for r in rules}
    peak = max(rules, key=lambda r: sens[r].mean)
    best = min(rules, key=lambda r: err[r].mean)
    p_values = []
    for other in rules:
        if other != peak:
            test = compare_independent(sens[peak], sens[other])
            p_values.append(1.0 if test is None else test.p_value)
    evidence = (
        f"peak sensitivity {peak} {_fmt(sens[peak], 'input_sensitivity')};"
        f" lowest error {best} {_fmt(err[best])}"
    )
    if peak == best:
        for other in rules:
            if other != best:
                test = compare_independent(err[best], err[other])
                p_values.append(1.0 if test is None else test.p_value)
        if_rejected = Verdict.REPRODUCED
    else:
        test = compare_independent(err[peak], err[best])
        p_values.append(1.0 if test is None else test.p_value)
        evidence += f"; error of {peak} minus {best} " + (_diff(test) if test else "n/a")
        if_rejected = Verdict.REFUTED
    return Finding(
        claim,
        4,
        evidence,
        max(p_values),
        if_rejected,
        rule="intersection-union of generalized Welch tests (sensitivity and error)",
    )


def claim_four_verdict(findings: Sequence[Finding]) -> Verdict:
    """Claim 4 over depths: reproduced when every decided depth agrees, refuted when every one
    disagrees, else inconclusive."""
    decided = [f.verdict for f in findings if f.number == 4 and f.verdict != Verdict.INCONCLUSIVE]
    if decided and all(v is Verdict.REPRODUCED for v in decided):
        return Verdict.REPRODUCED
    if decided and all(v is Verdict.REFUTED for v in decided):
        return Verdict.REFUTED
    return Verdict.INCONCLUSIVE


def judge_growth(
    rows: Sequence[dict[str, Any]],
    margin: float = GROWTH_MARGIN,
    test_examples: int | None = None,
    alpha: float = ALPHA,
) -> list[Finding]:
    """Claim 5 from a grow sweep, per scaling: non-inferiority of the network grown by insertion
    against the same final depth from scratch, paired by seed, decided by Holm over the
    scalings. Empty when the rows hold no grown/scratch pair."""
    pairs: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") != "succeeded" or row.get("test_error") is None:
            continue
        if row.get("arm") not in (Arm.GROWN.value, Arm.SCRATCH.value) or row.get("seed") is None:
            continue
        key = (str(row["scaling"]), int(row["seed"]))
        pairs.setdefault(key, {})[str(row["arm"])] = row
    by_scaling: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for (scaling, _seed), arms in sorted(pairs.items()):
        if Arm.GROWN.value in arms and Arm.SCRATCH.value in arms:
            by_scaling.setdefault(scaling, []).append(
                (arms[Arm.GROWN.value], arms[Arm.SCRATCH.value])
            )
    findings = []
    for scaling, matched in by_scaling.items():
        grown = [float(g["test_error"]) for g, _ in matched]
        scratch = [float(s["test_error"]) for _, s in matched]
        n = _test_examples([row for pair in matched for row in pair], test_examples)
        shared = 0.0
        if n:
            shared = binomial_variance(sum(grown) / len(grown), n) + binomial_variance(
                sum(scratch) / len(scratch), n
            )
        differences = [g - s for g, s in zip(grown, scratch, strict=True)]
        test = compare_paired(differences, shared, null=margin)
        claim = (
            f"grown by insertion is not worse than the same depth from scratch by {margin:g} or"
            f" more in test error ({scaling})"
        )
        if test is None:
            evidence = f"grown minus scratch {differences[0]:+.4f} (n=1 seed, no test)"
            findings.append(Finding(claim, 5, evidence, None, Verdict.REPRODUCED))
            continue
        findings.append(
            Finding(
                claim,
                5,
                f"test error, grown minus scratch, paired by seed: {_diff(test)}"
                f" (n={len(differences)} seeds); non-inferior when shown below +{margin:g},"
                f" worse when shown above it",
                test.p_value,
                Verdict.REPRODUCED if test.difference < margin else Verdict.REFUTED,
                rule=f"{test.method}, null: difference = +{margin:g}",
            )
        )
    return decide(findings, alpha)


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def findings_markdown(findings: Sequence[Finding], alpha: float = ALPHA) -> str:
    """A markdown table of the findings: claim, verdict, p-values and the evidence."""
    family = max((f.family for f in findings), default=0)
    lines = [
        f"Verdicts by Holm's step-down over the {family} testable comparisons of this table at"
        f" family-wise level {alpha:g}; intervals are 95% (seeds and test set), not adjusted.",
        "",
        "| # | claim (as the rule decides it) | verdict | p | Holm-adjusted p | evidence |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.number} | {f.claim} | **{f.verdict.value}** | {_p(f.p_value)} |"
        f" {_p(f.p_adjusted)} | {f.evidence} |"
        for f in findings
    ]
    return "\n".join(lines)
