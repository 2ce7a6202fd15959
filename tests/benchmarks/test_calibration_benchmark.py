"""benchmarks/calibration.py end to end on stored results written here (no jobs are run): both
suites are read from their folders and docs/calibration.md is written; every spec of both
suites is a valid expand spec within the default compute budget."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from app.settings import Settings
from expansion.specs.budget import budget_problems
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.predictor_names import PREDICTOR_NAMES, SELECTABLE_PREDICTORS

ROOT = Path(__file__).resolve().parents[2]
INFORMATIVE = SELECTABLE_PREDICTORS[2]


def benchmark() -> ModuleType:
    """benchmarks/calibration.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "calibration_benchmark", ROOT / "benchmarks" / "calibration.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stored_result(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """An expand result whose INFORMATIVE predictor follows the reproducible gains."""
    depth = int(spec["model"]["depth"])
    insertions = []
    level = rng.gauss(0, 2)
    for p in range(depth + 1):
        true = rng.gauss(0, 1)
        for s in spec["expand"]["seeds"]:
            predictors: dict[str, float | None] = {n: rng.gauss(0, 1) for n in PREDICTOR_NAMES}
            predictors[INFORMATIVE] = true + rng.gauss(0, 0.2)
            insertions.append(
                {
                    "position": p,
                    "seed": s,
                    "descent": {"certificate_source": "holdout"},
                    "realized": {"gain_vs_control": 0.01 * (level + true + rng.gauss(0, 0.2))},
                    "predictors": predictors,
                }
            )
    return {
        "kind": "expand",
        "spec": spec,
        "insertions": insertions,
        "timings": {"continuation_s": 20.0, "predictors_s": 1.0},
    }


@pytest.mark.parametrize("suite", ["design", "replicate"])
def test_every_suite_spec_is_a_valid_expand_spec(suite: str) -> None:
    module = benchmark()
    paths = sorted(module.SUITES[suite].glob("*.yaml"))
    assert len(paths) == 12
    configurations = set()
    for path in paths:
        spec = parse_spec(yaml.safe_load(path.read_text()))
        assert isinstance(spec, ExpandExperiment) and spec.expand.select == "all", path.name
        assert len(spec.expand.seeds) >= 3, "the gain reliability needs seeds to split"
        assert budget_problems(spec, Settings().compute_limits()) == [], path.name
        configurations.add((spec.data.name, spec.model.norm, spec.model.depth, spec.model.width))
    assert len(configurations) == 12


def test_the_replicate_suite_shares_no_configuration_or_seed_with_the_design_suite() -> None:
    module = benchmark()

    def read(suite: str) -> list[ExpandExperiment]:
        specs = [
            parse_spec(yaml.safe_load(p.read_text())) for p in module.SUITES[suite].glob("*.yaml")
        ]
        assert all(isinstance(s, ExpandExperiment) for s in specs)
        return [s for s in specs if isinstance(s, ExpandExperiment)]

    design, replicate = read("design"), read("replicate")
    assert {s.data.name for s in design} == {s.data.name for s in replicate}
    assert not {(s.model.depth, s.model.width) for s in design} & {
        (s.model.depth, s.model.width) for s in replicate
    }
    assert not {s.train.seed for s in design} & {s.train.seed for s in replicate}
    assert not {x for s in design for x in s.expand.seeds} & {
        x for s in replicate for x in s.expand.seeds
    }


def test_report_from_stored_results_of_both_suites(tmp_path: Path) -> None:
    module = benchmark()
    runs = tmp_path / "runs"
    rng = random.Random(0)
    for suite, folder in module.SUITES.items():
        for path in sorted(folder.glob("*.yaml")):
            spec = yaml.safe_load(path.read_text())
            # the design suite in the older layout runs/<spec>/, the replicate in runs/<suite>/
            out = runs / path.stem if suite == "design" else runs / suite / path.stem
            out.mkdir(parents=True)
            (out / "result.json").write_text(json.dumps(stored_result(spec, rng)))
            run = {
                "wall_s": 40.0,
                "cpu_s": 38.0,
                "load_average_before": 2.0,
                "load_average_after": 4.0,
            }
            (out / "run.json").write_text(json.dumps(run))
    doc = tmp_path / "calibration.md"
    argv = ["--report-only", "--runs", str(runs), "--doc", str(doc)]
    assert module.main([*argv, "--resamples", "100", "--permutations", "500"]) == 0
    text = doc.read_text()
    assert "NOT measured" not in text
    assert "`examples/calibration/`: 12 specs, 12 measured" in text
    assert "`examples/calibration-replicate/`: 12 specs, 12 measured" in text
    assert f"- Design suite: `{INFORMATIVE}`" in text
    assert "it ranks positions better than chance there" in text
    assert "Wall time: 480 s (8.0 min) over 12 jobs" in text
    assert "CPU time 456 s (7.6 min) over 12 jobs" in text
    assert "load average (1 min) 2.0 to 4.0" in text
