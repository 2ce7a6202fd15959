"""The sources' claims about branch scaling and depth, judged on a sweep's rows (torch-free).

Each verdict is `reproduced`, `refuted` or `inconclusive`, decided only by t-intervals of the
means over seeds (expansion.results.sweep_summary): a comparison counts only when the two
intervals do not overlap; anything else is `inconclusive` at these intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from expansion.results.sweep_summary import Arm, SeriesPoint, separated, series, t_interval

GROWTH_MARGIN = 0.01
"""Equivalence margin of claim 5 in test error (one percentage point): grown counts as
matching scratch when the interval of (grown - scratch) lies below +GROWTH_MARGIN."""


class Verdict(StrEnum):
    """What the data say about a claim."""

    REPRODUCED = "reproduced"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Finding:
    """One claim, its verdict and the comparison behind it."""

    claim: str
    verdict: Verdict
    evidence: str


def _at(points: list[SeriesPoint], scaling: str, depth: int) -> SeriesPoint | None:
    return next((p for p in points if p.scaling == scaling and p.depth == depth), None)


def _fmt(p: SeriesPoint | None) -> str:
    if p is None:
        return "missing"
    if p.low is None or p.high is None:
        return f"{p.mean:.4f} (n={p.n}, no interval)"
    return f"{p.mean:.4f} [{p.low:.4f}, {p.high:.4f}] (n={p.n})"


def _lower(a: SeriesPoint | None, b: SeriesPoint | None) -> Verdict:
    """REPRODUCED when a is below b with separated intervals, REFUTED when above."""
    if a is None or b is None or not separated(a, b):
        return Verdict.INCONCLUSIVE
    return Verdict.REPRODUCED if a.mean < b.mean else Verdict.REFUTED


def judge_claims(rows: list[dict[str, Any]]) -> list[Finding]:
    """Verdicts on the claims of issue 12 from a train sweep over scaling x depth x seed."""
    errors = [p for p in series(rows, "test_error") if p.arm == "scratch"]
    sensitivity = [p for p in series(rows, "input_sensitivity") if p.arm == "scratch"]
    depths = sorted({p.depth for p in errors})
    findings: list[Finding] = []
    if len(depths) < 2:
        return [Finding("all", Verdict.INCONCLUSIVE, "fewer than two depths in the grid")]
    shallow, deep = depths[0], depths[-1]

    c_shallow, c_deep = _at(errors, "constant", shallow), _at(errors, "constant", deep)
    findings.append(
        Finding(
            "constant branch scale: test error grows with depth",
            _lower(c_shallow, c_deep),
            f"constant at L={shallow}: {_fmt(c_shallow)}; at L={deep}: {_fmt(c_deep)}",
        )
    )

    verdicts = []
    evidence = []
    for rule in ("inv_sqrt_depth", "inv_depth"):
        scaled = _at(errors, rule, deep)
        verdicts.append(_lower(scaled, c_deep))
        evidence.append(f"{rule} at L={deep}: {_fmt(scaled)}")
    if all(v is Verdict.REPRODUCED for v in verdicts):
        both = Verdict.REPRODUCED
    elif any(v is Verdict.REFUTED for v in verdicts):
        both = Verdict.REFUTED
    else:
        both = Verdict.INCONCLUSIVE
    findings.append(
        Finding(
            "1/sqrt(L) and 1/L keep deep networks trainable (below constant at the deepest L)",
            both,
            "; ".join([*evidence, f"constant at L={deep}: {_fmt(c_deep)}"]),
        )
    )

    sqrt_deep, inv_deep = _at(errors, "inv_sqrt_depth", deep), _at(errors, "inv_depth", deep)
    findings.append(
        Finding(
            "1/sqrt(L) more accurate than 1/L",
            _lower(sqrt_deep, inv_deep),
            f"at L={deep}: 1/sqrt(L) {_fmt(sqrt_deep)}, 1/L {_fmt(inv_deep)}",
        )
    )

    agree = 0
    decided = 0
    notes = []
    for depth in depths:
        at_depth_err = [p for p in errors if p.depth == depth]
        at_depth_sens = [p for p in sensitivity if p.depth == depth]
        if not at_depth_err or not at_depth_sens:
            continue
        best = min(at_depth_err, key=lambda p: p.mean)
        peak = max(at_depth_sens, key=lambda p: p.mean)
        runner_up = sorted(at_depth_sens, key=lambda p: -p.mean)[1:2]
        clear = bool(runner_up) and separated(peak, runner_up[0]) is True
        notes.append(f"L={depth}: lowest error {best.scaling}, peak sensitivity {peak.scaling}")
        if clear:
            decided += 1
            agree += best.scaling == peak.scaling
    if decided == 0:
        peak_verdict = Verdict.INCONCLUSIVE
    elif agree == decided:
        peak_verdict = Verdict.REPRODUCED
    elif agree == 0:
        peak_verdict = Verdict.REFUTED
    else:
        peak_verdict = Verdict.INCONCLUSIVE
    findings.append(
        Finding(
            "input sensitivity peaks at the best scaling",
            peak_verdict,
            "; ".join(notes) + f" ({decided} depths with a separated peak, {agree} agree)",
        )
    )
    return findings


def judge_growth(rows: list[dict[str, Any]], margin: float = GROWTH_MARGIN) -> list[Finding]:
    """Claim 5 from a grow sweep: per scaling, the paired (same seed) difference of test error,
    grown by insertion minus the same final depth trained from scratch.

    `reproduced` (grown matches scratch): the 95% t-interval of the mean difference lies
    entirely below `+margin` (a difference that is real but smaller than the margin still
    matches); `refuted` (grown is worse): the interval lies above 0 and reaches the margin;
    otherwise `inconclusive`. Empty when the rows hold no grown/scratch pair."""
    pairs: dict[tuple[str, int], dict[str, float]] = {}
    for row in rows:
        if row.get("status") != "succeeded" or row.get("test_error") is None:
            continue
        if row.get("arm") not in (Arm.GROWN.value, Arm.SCRATCH.value) or row.get("seed") is None:
            continue
        key = (str(row["scaling"]), int(row["seed"]))
        pairs.setdefault(key, {})[str(row["arm"])] = float(row["test_error"])
    by_scaling: dict[str, list[float]] = {}
    for (scaling, _seed), arms in sorted(pairs.items()):
        if Arm.GROWN.value in arms and Arm.SCRATCH.value in arms:
            difference = arms[Arm.GROWN.value] - arms[Arm.SCRATCH.value]
            by_scaling.setdefault(scaling, []).append(difference)
    findings = []
    for scaling, differences in by_scaling.items():
        low, high = t_interval(differences)
        mean = sum(differences) / len(differences)
        if low is None or high is None:
            verdict = Verdict.INCONCLUSIVE
            interval = f"{mean:+.4f} (n={len(differences)}, no interval)"
        else:
            if high < margin:
                verdict = Verdict.REPRODUCED
            elif low > 0:
                verdict = Verdict.REFUTED
            else:
                verdict = Verdict.INCONCLUSIVE
            interval = f"{mean:+.4f} [{low:+.4f}, {high:+.4f}] (n={len(differences)} seeds)"
        findings.append(
            Finding(
                f"grown by insertion matches the same depth from scratch ({scaling})",
                verdict,
                f"test error, grown minus scratch, paired by seed: {interval}; "
                f"matches when it lies below +{margin:g}; "
                "worse when it lies above 0 and reaches the margin",
            )
        )
    return findings


def findings_markdown(findings: list[Finding]) -> str:
    """A markdown table of the findings."""
    lines = ["| claim | verdict | evidence (mean [95% t-interval] over seeds) |", "|---|---|---|"]
    lines += [f"| {f.claim} | **{f.verdict.value}** | {f.evidence} |" for f in findings]
    return "\n".join(lines)
