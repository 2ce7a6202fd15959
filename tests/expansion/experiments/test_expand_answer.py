"""The answer of an expand job: checked against its per-position records, on constructed
differences (where the right answer is known) and on a tiny job end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expansion.experiments.expand import run_expand
from expansion.experiments.expand_answer import expand_answer
from expansion.insertion.bounds import gain_interval
from expansion.results.answer import Effect, answer_line, position_rows
from expansion.results.records import TestOutcome
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec

SEEDS = [0, 1, 2, 3]
EXAMPLES = 400


def scan_row(position: int, verdict: str, family: str) -> dict[str, Any]:
    """A scan row carrying only what the answer reads: the position's certificate verdicts."""
    return {"position": position, "certificate": {"verdict": verdict, "family_verdict": family}}


def differences(means: dict[int, float], seed: int = 0) -> dict[tuple[int, int], np.ndarray]:
    """Control-minus-expanded per-example losses: a position effect, a seed effect shared by
    positions, a per-example effect shared by everything, and noise."""
    rng = np.random.default_rng(seed)
    seed_effect = rng.normal(0.0, 0.002, size=len(SEEDS))
    example_effect = rng.normal(0.0, 0.05, size=EXAMPLES)
    return {
        (p, s): mean + seed_effect[i] + example_effect + rng.normal(0.0, 0.05, size=EXAMPLES)
        for p, mean in means.items()
        for i, s in enumerate(SEEDS)
    }


def test_a_clear_winner_is_recommended_with_an_adjusted_interval() -> None:
    means = {0: 0.0, 1: 0.0, 2: 0.05}
    diffs = differences(means)
    rows = [scan_row(0, "holds", "holds"), scan_row(1, "undecided", "undecided")]
    rows += [scan_row(2, "holds", "undecided"), scan_row(3, "fails", "fails")]
    answer = expand_answer(diffs, [0, 1, 2], SEEDS, rows, confidence=0.95, min_effect=0.0)

    assert answer["recommended_position"] == 2
    assert answer["best_position"] == 2
    stacked = {p: np.stack([diffs[(p, s)] for s in SEEDS]) for p in means}
    assert answer["best_gain"] == pytest.approx(stacked[2].mean())
    plain = gain_interval(stacked[2], 0.95)
    adjusted = answer["best_gain_ci"]
    assert adjusted[0] is not None and adjusted[1] is not None
    assert adjusted[0] < plain[0] and adjusted[1] > plain[1]  # wider: chosen among 3
    assert adjusted == pytest.approx(list(gain_interval(stacked[2], 1 - 0.05 / 3)))
    pooled = np.mean(np.stack(list(stacked.values())), axis=0)
    assert answer["pooled_gain"] == pytest.approx(pooled.mean())
    assert answer["pooled_gain_ci"] == pytest.approx(list(gain_interval(pooled, 0.95)))
    assert answer["positions_differ"] is TestOutcome.SHOWN
    largest = answer["largest_difference"]
    assert largest is not None and largest["better"] == 2
    assert answer["certificate_family"] == {"holds": 1, "fails": 1, "undecided": 2}
    assert answer["certificate_positions"] == {"holds": 2, "fails": 1, "undecided": 1}
    assert [r["position"] for r in answer["per_position"]] == [0, 1, 2]
    line = answer_line(dict(answer))
    assert line.startswith("answer: insert at position 2: gain +0.05")
    assert "adjusted for choosing among 3" in line
    assert "certificate (family-wise): 1 of 4 positions hold, 1 fail, 2 undecided" in line
    assert len(position_rows(dict(answer))) == 3


def test_nothing_beats_the_control_answers_none() -> None:
    diffs = differences({0: 0.0, 1: 0.0})
    rows = [scan_row(0, "undecided", "undecided"), scan_row(1, "undecided", "undecided")]
    answer = expand_answer(diffs, [0, 1], SEEDS, rows, confidence=0.95, min_effect=0.0)

    assert answer["recommended_position"] is None
    assert answer["best_position"] in (0, 1)
    assert answer["effect"] is Effect.UNCLEAR
    assert answer["positions_differ"] is TestOutcome.NOT_SHOWN
    assert answer_line(dict(answer)).startswith("answer: none of 2 positions beats the control")


def test_a_harmful_insertion_is_said_to_hurt() -> None:
    diffs = differences({0: -0.05, 1: -0.06})
    rows = [scan_row(0, "fails", "fails"), scan_row(1, "fails", "fails")]
    answer = expand_answer(diffs, [0, 1], SEEDS, rows, confidence=0.95, min_effect=0.0)
    assert answer["effect"] is Effect.HURTS
    assert answer["recommended_position"] is None


def test_no_answer_recorded_reads_plainly() -> None:
    assert answer_line(None).startswith("answer: none recorded")


def test_the_answer_of_a_tiny_job_agrees_with_its_position_rows(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "kind": "expand",
            "data": {"name": "digits"},
            "model": {"kind": "mlp", "width": 16, "depth": 2},
            "train": {"epochs": 2, "batch_size": 64, "accelerator": "cpu"},
            "expand": {
                "select": "all",
                "seeds": [0, 1],
                "continue_steps": 5,
                "continue_lr": 1e-3,
                "grad_batch_size": 32,
                "line_search_points": 3,
            },
        }
    )
    assert isinstance(spec, ExpandExperiment)
    result = run_expand(spec, tmp_path)
    answer, rows = result["answer"], result["positions"]
    assert [r["position"] for r in rows] == answer["positions_continued"]
    for row, mine in zip(rows, answer["per_position"], strict=True):
        assert mine["gain"] == pytest.approx(row["gain_mean"])
        assert mine["gain_ci"] == pytest.approx(row["gain_ci"])
        assert mine["certificate_verdict"] == row["certificate"]["verdict"]
        assert mine["certificate_family_verdict"] == row["certificate"]["family_verdict"]
    assert answer["pooled_gain"] == pytest.approx(np.mean([r["gain_mean"] for r in rows]))
    best = max(rows, key=lambda r: r["gain_mean"])
    if answer["recommended_position"] is None:
        assert answer["best_position"] == best["position"]
    scanned = result["scan"]["positions"]
    assert answer["positions_scanned"] == len(scanned)
    assert sum(answer["certificate_family"].values()) == len(scanned)
    on_disk = (tmp_path / "result.json").read_text()
    assert '"answer"' in on_disk
