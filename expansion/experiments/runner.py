"""The one entry point from the service into the science: `run_experiment`.

Runs a spec of any kind in this process (docs/architecture.md), writes `out_dir/result.json`
and checkpoints under `out_dir`, reports progress through a `ProgressReporter`, and returns
the result dict. Each kind has its own module: `train`, `expand`, `grow`, `sweep` (kinds
`sweep` and `sweep_point`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from expansion.experiments.expand import run_expand
from expansion.experiments.grow import run_grow
from expansion.experiments.result_header import Spec
from expansion.experiments.sweep import run_sweep_kind
from expansion.experiments.train import run_train
from expansion.progress import NullReporter, ProgressReporter
from expansion.ranks import external_rank
from expansion.results.result_file import write_result
from expansion.specs.experiments import (
    ExpandExperiment,
    GrowExperiment,
    TrainExperiment,
)
from expansion.specs.parsing import parse_spec

log = logging.getLogger(__name__)


def run_experiment(
    spec: Spec | dict[str, Any],
    out_dir: Path,
    reporter: ProgressReporter | None = None,
    *,
    data_dir: Path | None = None,
    base_checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Run an experiment spec of any kind; writes `out_dir/result.json` and returns it.

    `base_checkpoint` (kind `expand` only) loads the base network and its optimizer state from
    a checkpoint (e.g. a `train` run's `base.ckpt`) instead of training one.
    Raises SpecError for an invalid raw spec, StopRequested soon after the reporter asks to
    stop, FloatingPointError when training diverges.
    """
    if isinstance(spec, dict):
        spec = parse_spec(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reporter = reporter or NullReporter()
    data_dir = Path(data_dir) if data_dir is not None else None
    log.info("running %s experiment %r into %s", spec.kind, spec.name, out_dir)
    if base_checkpoint is not None and not isinstance(spec, ExpandExperiment):
        raise ValueError(f"a base checkpoint applies to kind expand, not {spec.kind}")
    if isinstance(spec, TrainExperiment):
        result = run_train(spec, out_dir, reporter, data_dir=data_dir)
    elif isinstance(spec, ExpandExperiment):
        result = run_expand(
            spec, out_dir, reporter, data_dir=data_dir, base_checkpoint=base_checkpoint
        )
    elif isinstance(spec, GrowExperiment):
        result = run_grow(spec, out_dir, reporter, data_dir=data_dir)
    else:
        result = run_sweep_kind(spec, out_dir, reporter, data_dir=data_dir)
    if spec.train.loggers and external_rank() == 0:
        _publish_to_trackers(list(spec.train.loggers), result, out_dir, spec.name or spec.kind)
    write_result(out_dir, result)
    return result


def _publish_to_trackers(
    trackers: list[str], result: dict[str, Any], out_dir: Path, group: str
) -> None:
    """Send the result to the spec's trackers (rank 0 only); their failures become warnings."""
    from expansion.training.trackers import publish

    report = publish(list(trackers), result, out_dir, group)
    result["trackers"] = report
    if report["artifact"]:
        result["artifacts"] = [*(result.get("artifacts") or []), report["artifact"]]
    if report["warnings"]:
        result["warnings"] = [*(result.get("warnings") or []), *report["warnings"]]
