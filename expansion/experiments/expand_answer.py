"""The last stage of an `expand` job: its answer (`expansion.results.answer`) from the
per-position continuation records and the scan's certificate verdicts (docs/science.md 8).

- the pooled gain: `gain_interval` of the differences averaged over the continued positions
  (per seed and test example), which estimates the gain at a position drawn uniformly from them;
- whether positions differ: every pair's difference gets `gain_interval` at confidence
  1 - (1 - c) / pairs (Bonferroni); shown when some pair's interval excludes 0, so "every
  position gains the same" is rejected wrongly with probability at most 1 - c;
- the recommended position: each position's interval at confidence 1 - (1 - c) / P; together
  they cover every position's expected gain with probability >= c, so the interval of whichever
  position the data picks keeps its coverage. The recommendation is the largest mean gain among
  positions whose adjusted interval lies above 0, else none;
- the certificate's counts: family-wise and per-position verdicts over the scanned positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from expansion.insertion.bounds import gain_interval, gain_interval_method
from expansion.results.answer import Answer, Effect, PositionAnswer, PositionDifference
from expansion.results.records import TestOutcome, Verdict, verdict_counts

POSITION_TEST_METHOD = "pairwise gain_interval, Bonferroni over the pairs"
SELECTION_ADJUSTMENT = "Bonferroni over the continued positions"


def _effect(ci: tuple[float, float]) -> Effect:
    low, high = ci
    if np.isfinite(low) and low > 0:
        return Effect.HELPS
    if np.isfinite(high) and high < 0:
        return Effect.HURTS
    return Effect.UNCLEAR


def _ci(ci: tuple[float, float]) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in ci]


def _largest_difference(
    arrays: Mapping[int, np.ndarray], confidence: float
) -> tuple[TestOutcome | None, PositionDifference | None]:
    """Whether some pair of positions differs (Bonferroni over pairs) and the largest pair."""
    pairs = list(combinations(sorted(arrays), 2))
    if not pairs:
        return None, None
    level = 1.0 - (1.0 - confidence) / len(pairs)
    shown = False
    largest: PositionDifference | None = None
    for p, q in pairs:
        diff = arrays[p] - arrays[q]
        mean = float(diff.mean())
        low, high = gain_interval(diff, level)
        if (np.isfinite(low) and low > 0) or (np.isfinite(high) and high < 0):
            shown = True
        better, worse = (p, q) if mean >= 0 else (q, p)
        if largest is None or abs(mean) > largest["difference"]:
            ci = (low, high) if mean >= 0 else (-high, -low)
            largest = {
                "better": better,
                "worse": worse,
                "difference": abs(mean),
                "difference_ci": _ci(ci),
            }
    return (TestOutcome.SHOWN if shown else TestOutcome.NOT_SHOWN), largest


def _position_answer(
    position: int,
    diffs: np.ndarray,
    adjusted: tuple[float, float],
    certificate: Mapping[str, Any],
    confidence: float,
) -> PositionAnswer:
    return {
        "position": position,
        "gain": float(diffs.mean()),
        "gain_ci": _ci(gain_interval(diffs, confidence)),
        "adjusted_ci": _ci(adjusted),
        "certificate_verdict": str(certificate.get("verdict", Verdict.UNDECIDED)),
        "certificate_family_verdict": str(certificate.get("family_verdict", Verdict.UNDECIDED)),
    }


def expand_answer(
    differences: Mapping[tuple[int, int], np.ndarray],
    positions: Sequence[int],
    seeds: Sequence[int],
    scan_rows: Sequence[Mapping[str, Any]],
    *,
    confidence: float,
    min_effect: float,
) -> Answer:
    """The answer from per (position, seed) control-minus-expanded per-example test losses of
    the continued `positions` and the scan's rows (their certificates)."""
    arrays = {
        p: np.stack([np.asarray(differences[(p, s)], dtype=np.float64) for s in seeds])
        for p in positions
    }
    family = verdict_counts([Verdict(r["certificate"]["family_verdict"]) for r in scan_rows])
    per_position = verdict_counts([Verdict(r["certificate"]["verdict"]) for r in scan_rows])
    answer: Answer = {
        "confidence": confidence,
        "seeds": len(seeds),
        "positions_continued": list(positions),
        "positions_scanned": len(scan_rows),
        "pooled_gain": None,
        "pooled_gain_ci": [None, None],
        "effect": Effect.UNCLEAR,
        "positions_differ": None,
        "position_test_method": POSITION_TEST_METHOD,
        "largest_difference": None,
        "recommended_position": None,
        "best_position": None,
        "best_gain": None,
        "best_gain_ci": [None, None],
        "selection_adjustment": SELECTION_ADJUSTMENT,
        "certificate_family": family,
        "certificate_positions": per_position,
        "min_effect": min_effect,
        "per_position": [],
    }
    if not arrays:
        return answer
    pooled = np.mean(np.stack(list(arrays.values())), axis=0)
    pooled_ci = gain_interval(pooled, confidence)
    answer["pooled_gain"] = float(pooled.mean())
    answer["pooled_gain_ci"] = _ci(pooled_ci)
    answer["effect"] = _effect(pooled_ci)
    answer["positions_differ"], answer["largest_difference"] = _largest_difference(
        arrays, confidence
    )
    adjusted_level = 1.0 - (1.0 - confidence) / len(arrays)
    means = {p: float(d.mean()) for p, d in arrays.items()}
    intervals = {p: gain_interval(d, adjusted_level) for p, d in arrays.items()}
    certificates = {r["position"]: r["certificate"] for r in scan_rows}
    answer["per_position"] = [
        _position_answer(p, arrays[p], intervals[p], certificates.get(p, {}), confidence)
        for p in positions
    ]
    best = max(means, key=lambda p: means[p])
    beating = [p for p in arrays if np.isfinite(intervals[p][0]) and intervals[p][0] > 0]
    recommended = max(beating, key=lambda p: means[p]) if beating else None
    shown = recommended if recommended is not None else best
    answer["recommended_position"] = recommended
    answer["best_position"] = shown
    answer["best_gain"] = means[shown]
    answer["best_gain_ci"] = _ci(intervals[shown])
    answer["selection_adjustment"] = (
        f"{SELECTION_ADJUSTMENT} ({len(arrays)}; {gain_interval_method(len(seeds))})"
    )
    return answer
