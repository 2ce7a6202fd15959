"""`{"kind": "expand", "data": {"name": N}}` with nothing else runs to success on every built-in
data set that needs no download; shrunk in its training and continuation budget (and the
larger data sets in their size), so the derived gradient batch size meets a real certificate
split; digits keeps its full 287-example one."""

from __future__ import annotations

from pathlib import Path

import pytest

from expansion.experiments.expand import run_expand
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["mnist1d", "digits", "teacher"])
def test_a_bare_expand_spec_runs(name: str, tmp_path: Path) -> None:
    bare = parse_spec({"kind": "expand", "data": {"name": name}})
    assert isinstance(bare, ExpandExperiment)
    raw = bare.model_dump(mode="json")
    raw["train"].update(epochs=1, accelerator="cpu")
    if name == "mnist1d":
        raw["data"]["max_train_samples"] = 1000
    if name == "teacher":
        raw["data"].update(teacher_train_size=1000, teacher_test_size=500)
    raw["expand"].update(seeds=[0], continue_steps=2, line_search_points=2, grad_batch_size=None)
    spec = parse_spec(raw)
    assert isinstance(spec, ExpandExperiment)
    result = run_expand(spec, tmp_path)
    assert result["answer"]["positions_continued"] == [p["position"] for p in result["positions"]]
    assert result["scan"]["positions"], "every position scanned"
