"""docs/specs.md is generated from the spec models and must match them; every field is described;
an invalid spec reports every problem (per-field and cross-field) in one pass with full paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from expansion.specs.experiments import GrowExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError
from expansion.specs.reference import SECTIONS, render

SPECS_MD = Path(__file__).resolve().parents[3] / "docs" / "specs.md"


def test_specs_md_matches_the_models() -> None:
    assert SPECS_MD.read_text(encoding="utf-8") == render(), (
        "docs/specs.md is stale: run `python -m expansion.specs.reference > docs/specs.md`"
    )


def test_every_spec_field_is_described_and_listed_with_its_path() -> None:
    text = render()
    for section, model in SECTIONS:
        for name, info in model.model_fields.items():
            assert info.description, f"{section}.{name} has no attribute docstring"
            assert f"| `{section}.{name}` |" in text
    for name, info in GrowExperiment.model_fields.items():
        assert info.description, f"{name} has no attribute docstring"
    assert "| `model.depth` | int | `4` | ≥ 1, ≤ 256 | Residual blocks per stage. |" in text


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    return caught.value.problems


def test_cross_field_problems_come_with_the_per_field_ones_in_one_pass() -> None:
    problems = _problems(
        {
            "kind": "grow",
            "data": {"name": "digits", "val_fraction": 2},
            "model": {"kind": "mlp", "width": 0, "stages": 2, "norm": "group", "groups": 3},
            "train": {"epochs": 3},
            "grow": {"at_epochs": [2, 1, 5], "target_depth": 9},
        }
    )
    assert "data.val_fraction: Input should be less than or equal to 0.5" in problems
    assert "model.width: Input should be greater than or equal to 1" in problems
    assert "model.stages: stages > 1 is only defined for kind conv2d" in problems
    assert "grow.at_epochs: at_epochs must be strictly increasing" in problems
    # groups vs width: width failed, so the check would judge the default width: left out.
    assert not any(p.startswith("model.groups") for p in problems)
    assert all(not p.startswith(("model:", "grow:", "spec:")) for p in problems)


def test_experiment_level_problems_have_full_paths() -> None:
    problems = _problems(
        {
            "kind": "grow",
            "data": {"name": "mnist1d", "seed": -1},
            "model": {"depth": 4},
            "train": {"epochs": 2},
            "grow": {"at_epochs": [3], "target_depth": 3},
        }
    )
    assert problems[0] == "data.seed: Input should be greater than or equal to 0"
    assert (
        "grow.target_depth: target_depth 3 must exceed the starting 4 blocks "
        in " ".join(problems) + " "
    )
    assert "grow.at_epochs: at_epochs must all be before train.epochs (2)" in problems
    problems = _problems(
        {
            "kind": "expand",
            "model": {"depth": 2},
            "expand": {"select": "explicit", "positions": [7]},
        }
    )
    assert problems == [
        "expand.positions: positions [7] out of range: model.depth and model.stages give "
        "positions 0..2"
    ]


def test_cross_section_checks_run_when_a_section_failed_its_own_cross_field_check() -> None:
    problems = _problems(
        {
            "kind": "grow",
            "model": {"kind": "mlp", "depth": 2, "stages": 2},
            "train": {"epochs": 3},
            "grow": {"at_epochs": [4], "target_depth": 1},
        }
    )
    assert problems == [
        "model.stages: stages > 1 is only defined for kind conv2d",
        "grow.target_depth: target_depth 1 must exceed the starting 4 blocks "
        "(model.depth x model.stages)",
        "grow.at_epochs: at_epochs must all be before train.epochs (3)",
    ]
