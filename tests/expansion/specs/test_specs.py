"""Spec validation: every problem is one line naming its field; specs never import torch."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from expansion.specs.experiments import ExpandExperiment, TrainExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError
from expansion.specs.sections import input_shape, num_classes


def problems_of(raw: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return info.value.problems


def test_defaults_make_a_train_spec() -> None:
    spec = parse_spec({})
    assert isinstance(spec, TrainExperiment)
    assert spec.model.kind == "conv1d" and spec.data.name == "mnist1d"


def test_kind_selects_the_experiment_type() -> None:
    spec = parse_spec({"kind": "expand", "expand": {"select": "explicit", "positions": [0, 2]}})
    assert isinstance(spec, ExpandExperiment)
    assert spec.expand.positions == [0, 2]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"data": {"name": "imagenet"}}, "data.name"),
        ({"model": {"width": -4}}, "model.width"),
        ({"model": {"depth": 100000}}, "model.depth"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"model": {"colour": "red"}}, "model.colour"),
        ({"model": {"kernel_size": 4}}, "model.kernel_size"),
    ],
)
def test_each_bad_field_is_one_line_naming_it(raw: dict[str, Any], field: str) -> None:
    problems = problems_of(raw)
    assert len(problems) == 1
    assert problems[0].startswith(f"{field}: ")
    assert "\n" not in problems[0]


def test_unknown_key_is_reported_as_such() -> None:
    assert problems_of({"model": {"colour": "red"}}) == ["model.colour: unknown key"]


def test_all_problems_are_listed_together() -> None:
    raw = {
        "data": {"name": "imagenet"},
        "model": {"width": -1, "depth": 100000, "colour": "red"},
        "train": {"epochs": "many"},
    }
    fields = sorted(p.split(":")[0] for p in problems_of(raw))
    assert fields == ["data.name", "model.colour", "model.depth", "model.width", "train.epochs"]


def test_unknown_kind_and_non_mapping() -> None:
    assert problems_of({"kind": "fly"})[0].startswith("kind: ")
    assert problems_of(["not", "a", "mapping"])[0].startswith("spec: ")


def test_cross_field_rules() -> None:
    assert any("conv2d" in p for p in problems_of({"model": {"kind": "conv2d"}}))
    out_of_range = {"kind": "expand", "model": {"depth": 2}, "expand": {"positions": [3]}}
    assert any("out of range" in p for p in problems_of(out_of_range))
    assert any("stages" in p for p in problems_of({"model": {"stages": 2}}))


def test_the_global_batch_must_split_evenly_across_devices() -> None:
    (problem,) = problems_of({"train": {"devices": 3, "batch_size": 128}})
    assert problem.startswith("train.batch_size: the global batch 128 must split evenly")
    assert "multiple of 3" in problem
    (nodes,) = problems_of({"train": {"devices": 2, "num_nodes": 3, "batch_size": 64}})
    assert "6 devices (devices x num_nodes)" in nodes
    assert parse_spec({"train": {"devices": 4, "batch_size": 128}}).train.devices == 4


def test_shapes_and_classes() -> None:
    data = parse_spec({"data": {"name": "digits"}}).data
    assert input_shape(data, "conv2d") == (1, 8, 8)
    assert input_shape(data, "mlp") == (64,)
    assert input_shape(data, "conv1d") == (1, 64)
    teacher = parse_spec({"data": {"name": "teacher", "teacher_classes": 3}}).data
    assert num_classes(teacher) == 3


def test_round_trip_through_json() -> None:
    spec = parse_spec({"kind": "grow", "grow": {"at_epochs": [2], "target_depth": 6}})
    again = parse_spec(json.loads(json.dumps(spec.model_dump(mode="json"))))
    assert again == spec


def test_importing_specs_does_not_import_torch() -> None:
    code = (
        "import sys, expansion.specs, expansion.specs.cost, expansion.progress; "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_expand_gets_a_certificate_split() -> None:
    assert parse_spec({"kind": "expand"}).data.certify_fraction == 0.2
    assert parse_spec({"kind": "train"}).data.certify_fraction is None
    teacher = {"name": "teacher"}
    assert parse_spec({"kind": "expand", "data": teacher, "model": {"kind": "mlp"}})
    with pytest.raises(SpecError, match=r"data\.certify_fraction"):
        parse_spec({"kind": "expand", "data": {"certify_fraction": 0.0}})
    with pytest.raises(SpecError, match="fresh certificate samples"):
        parse_spec(
            {
                "kind": "expand",
                "data": {**teacher, "certify_fraction": 0.1},
                "model": {"kind": "mlp"},
            }
        )
    with pytest.raises(SpecError, match="at least 20%"):
        parse_spec({"kind": "expand", "data": {"val_fraction": 0.5, "certify_fraction": 0.4}})
    with pytest.raises(SpecError, match=r"expand\.min_certificate_batches"):
        parse_spec({"kind": "expand", "expand": {"min_certificate_batches": 4}})
    certified = parse_spec({"kind": "expand", "expand": {"select": "certified"}})
    assert isinstance(certified, ExpandExperiment) and certified.expand.select == "certified"
