"""An expand job's progress slices from the cost model: they cover the bar, follow the stages'
order, give a given base no training slice, and put the default job's weight where its time
goes (the continuation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.stage_weights import EXPAND_STAGES, stage_slices, stage_weights

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def example(name: str) -> ExpandExperiment:
    """A shipped expand example, parsed."""
    spec = parse_spec(yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8")))
    assert isinstance(spec, ExpandExperiment)
    return spec


@pytest.mark.parametrize("name", ["mnist1d-expand.yaml", "mnist1d-expand-converged.yaml"])
def test_slices_cover_the_bar_in_stage_order(name: str) -> None:
    slices = stage_slices(example(name))
    assert list(slices) == list(EXPAND_STAGES)
    assert slices["train"][0] == 0.0 and slices["keep"][1] == pytest.approx(1.0)
    ends = [slices[s][1] for s in EXPAND_STAGES]
    assert ends == sorted(ends)


def test_a_given_base_has_no_training_slice() -> None:
    assert stage_weights(example("mnist1d-expand.yaml"), base_given=True)["train"] == 0.0


def test_the_continuation_carries_the_default_jobs_weight() -> None:
    default = stage_weights(example("mnist1d-expand.yaml"))
    converged = stage_weights(example("mnist1d-expand-converged.yaml"))
    assert default["continue"] > 0.6  # measured 72% of the time (docs/benchmarks.md)
    assert converged["train"] > default["train"]  # 30 epochs of a deeper base
