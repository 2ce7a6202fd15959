"""The answer of an `expand` job (torch-free): does inserting a block help this network, do the
positions differ, where to insert and what it buys, and what the certificate said.

It is computed from the per-position continuation records by the last stage of `run_expand`
(`expansion.experiments.expand_answer`), stored as `answer` in `result.json`, carried by the
API's job resource, printed as the last line of `submit --wait`, `jobs wait`, `jobs show` and
`run`, and used as the job page's headline. Every interval here is `gain_interval` (seeds x
test examples) of control minus expanded held-out test cross-entropy, in nats; docs/science.md
8 says what each number estimates.
"""

from __future__ import annotations

import enum
from typing import Any, TypedDict

from expansion.results.records import TestOutcome, VerdictCounts


class Effect(enum.StrEnum):
    """Whether inserting helps, averaged over the continued positions."""

    HELPS = "helps"
    """The interval of the pooled gain lies above 0."""
    HURTS = "hurts"
    """The interval of the pooled gain lies below 0."""
    UNCLEAR = "unclear"
    """The interval contains 0, or no interval exists."""


class PositionDifference(TypedDict):
    """The largest difference between two continued positions, with its adjusted interval."""

    better: int
    worse: int
    difference: float
    """Mean gain of `better` minus that of `worse` (nats)."""
    difference_ci: list[float | None]
    """`gain_interval` of the paired differences at confidence 1 - (1 - c) / pairs."""


class PositionAnswer(TypedDict):
    """One continued position in the answer: its gain with the plain and the adjusted interval
    beside its certificate verdicts."""

    position: int
    gain: float
    """Mean over seeds and test examples of control minus expanded test cross-entropy."""
    gain_ci: list[float | None]
    """`gain_interval` at the job's confidence (this position alone, not adjusted)."""
    adjusted_ci: list[float | None]
    """`gain_interval` at 1 - (1 - c) / P: valid for the position the data picks."""
    certificate_verdict: str
    """The position's certificate in nats over its seeds (holds / fails / undecided)."""
    certificate_family_verdict: str
    """The same, family-wise (Holm over the scanned positions)."""


class Answer(TypedDict):
    """The answer of an `expand` job (docs/science.md 8)."""

    confidence: float
    seeds: int
    positions_continued: list[int]
    positions_scanned: int
    pooled_gain: float | None
    """Mean over continued positions, seeds and test examples of control minus expanded test
    cross-entropy (nats): the expected gain of inserting at a position drawn uniformly from the
    continued ones."""
    pooled_gain_ci: list[float | None]
    """`gain_interval` of the position-averaged differences (seeds x test examples)."""
    effect: Effect
    positions_differ: TestOutcome | None
    """Shown when some pair of positions' adjusted interval of their difference excludes 0
    (a family-wise test of 'every position gains the same'); None with fewer than 2."""
    position_test_method: str
    largest_difference: PositionDifference | None
    recommended_position: int | None
    """The position with the largest mean gain among those whose selection-adjusted interval
    lies above 0; None when no position beats the control."""
    best_position: int | None
    """The recommended position, else the one with the largest mean gain."""
    best_gain: float | None
    best_gain_ci: list[float | None]
    """`gain_interval` of `best_position` at confidence 1 - (1 - c) / P (Bonferroni over the P
    continued positions): it covers whichever position the data picked."""
    selection_adjustment: str
    certificate_family: VerdictCounts
    """Family-wise (Holm) certificate verdicts over the scanned positions."""
    certificate_positions: VerdictCounts
    """Per-position certificate verdicts over the scanned positions (not adjusted)."""
    min_effect: float
    per_position: list[PositionAnswer]


def _nats(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:+.4f}"


def _interval(ci: Any) -> str:
    low, high = ci if isinstance(ci, list | tuple) and len(ci) == 2 else (None, None)
    return f"[{_nats(low)}, {_nats(high)}]"


def _level(confidence: Any) -> str:
    return f"{100 * confidence:g}%" if isinstance(confidence, int | float) else "?"


def answer_line(answer: dict[str, Any] | None) -> str:
    """The answer in one line: the recommended position (or none) with its selection-adjusted
    gain, the pooled gain over positions, whether positions differ, the certificate's counts."""
    if not answer:
        return "answer: none recorded (a result from before answers were stored)"
    level = _level(answer.get("confidence"))
    continued = answer.get("positions_continued") or []
    n = len(continued)
    best = answer.get("best_position")
    adjusted = f"{level}, adjusted for choosing among {n}"
    if answer.get("recommended_position") is not None:
        head = (
            f"answer: insert at position {answer['recommended_position']}: gain "
            f"{_nats(answer.get('best_gain'))} nats {_interval(answer.get('best_gain_ci'))} "
            f"({adjusted})"
        )
    elif best is not None:
        head = (
            f"answer: none of {n} positions beats the control (best: position {best}, "
            f"{_nats(answer.get('best_gain'))} nats {_interval(answer.get('best_gain_ci'))}, "
            f"{adjusted})"
        )
    else:
        head = "answer: no position was continued"
    parts = [head]
    if answer.get("pooled_gain") is not None:
        parts.append(
            f"over all {n}: {_nats(answer.get('pooled_gain'))} "
            f"{_interval(answer.get('pooled_gain_ci'))} ({answer.get('effect', 'unclear')})"
        )
    differ = answer.get("positions_differ")
    if differ is not None:
        parts.append(
            "positions differ" if differ == TestOutcome.SHOWN else "positions differ: not shown"
        )
    family = answer.get("certificate_family") or {}
    scanned = answer.get("positions_scanned")
    if family and scanned:
        # Counts first, so that no count reads as a position's index.
        holds, fails = int(family.get("holds", 0)), int(family.get("fails", 0))
        parts.append(
            f"certificate (family-wise): {holds} of {scanned} positions hold, {fails} fail, "
            f"{scanned - holds - fails} undecided"
        )
    return "; ".join(parts)


POSITION_HEADER = (
    "position",
    "gain vs control (nats)",
    "CI",
    "adjusted CI",
    "certificate",
    "family-wise",
)


def position_rows(answer: dict[str, Any] | None) -> list[tuple[str, ...]]:
    """Per continued position: gain, its interval, its selection-adjusted interval and the
    certificate's verdicts, as text cells under `POSITION_HEADER`."""
    rows: list[tuple[str, ...]] = []
    for row in (answer or {}).get("per_position") or []:
        rows.append(
            (
                str(row.get("position")),
                _nats(row.get("gain")),
                _interval(row.get("gain_ci")),
                _interval(row.get("adjusted_ci")),
                str(row.get("certificate_verdict") or "n/a"),
                str(row.get("certificate_family_verdict") or "n/a"),
            )
        )
    return rows
