"""The one entry point from the service into the science: `run_experiment`.

Runs a spec of any kind in this process (docs/architecture.md), writes `out_dir/result.json`
and checkpoints under `out_dir`, reports progress through a `ProgressReporter`, and returns
the result dict. Kind `train` is implemented here; `expand`, `grow`, `sweep` and `sweep_point`
have their own modules.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from expansion.data.datasets import DataBundle, load_dataset
from expansion.models.checkpoint import save_checkpoint
from expansion.models.evaluate import evaluate
from expansion.models.network import count_parameters
from expansion.progress import NullReporter, ProgressReporter, StagedReporter
from expansion.results.result_file import json_safe, write_result
from expansion.specs.experiments import (
    AnyExperiment,
    ExpandExperiment,
    GrowExperiment,
    TrainExperiment,
)
from expansion.specs.parsing import parse_spec
from expansion.training.trainer import resolve_device, train_model

log = logging.getLogger(__name__)

Spec = AnyExperiment
BASE_CHECKPOINT = "base.ckpt"


def risks(model: torch.nn.Module, bundle: DataBundle) -> dict[str, float | None]:
    """Test/validation/training risk (mean cross-entropy) and error (0-1 risk) of `model`."""
    out: dict[str, float | None] = {}
    for split in ("test", "val", "train"):
        x, y = getattr(bundle, f"x_{split}"), getattr(bundle, f"y_{split}")
        risk, error = evaluate(model, x, y)
        out[f"{split}_risk"], out[f"{split}_error"] = json_safe(risk), error
    return out


def result_header(spec: Spec, device: torch.device) -> dict[str, Any]:
    """The fields every result starts with: kind, spec, device, torch_version."""
    return {
        "kind": spec.kind,
        "spec": spec.model_dump(mode="json"),
        "device": str(device),
        "torch_version": torch.__version__,
    }


def run_train(
    spec: TrainExperiment,
    out_dir: Path,
    reporter: ProgressReporter,
    *,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Train a base network, evaluate it, save `base.ckpt`; returns the result dict."""
    start = time.perf_counter()
    device = resolve_device(spec.train)
    reporter.progress(0.0, "data", spec.data.name)
    bundle = load_dataset(spec.data, spec.model.kind, device, data_dir)
    data_s = time.perf_counter() - start
    outcome = train_model(spec, bundle, StagedReporter(reporter, 0.0, 0.97, "train"), out_dir)
    reporter.progress(0.97, "evaluate")
    model = outcome.model
    evaluated = risks(model, bundle)
    save_checkpoint(
        out_dir / BASE_CHECKPOINT,
        model,
        spec=spec,
        optimizer_state=outcome.optimizer_state,
        extra={"steps": outcome.steps, "final_lr": outcome.final_lr},
    )
    for split in ("test", "val", "train"):
        for name in ("risk", "error"):
            value = evaluated[f"{split}_{name}"]
            if value is not None:
                reporter.metric(outcome.steps, split, name, value)
    result = {
        **result_header(spec, device),
        **evaluated,
        "parameters": count_parameters(model),
        "steps": outcome.steps,
        "final_lr": outcome.final_lr,
        "curves": outcome.history,
        "timings": {
            "total_s": time.perf_counter() - start,
            "data_s": data_s,
            **outcome.timings,
        },
        "artifacts": [BASE_CHECKPOINT],
    }
    reporter.progress(1.0, "done")
    return result


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
        from expansion.experiments.expand import run_expand

        result = run_expand(
            spec, out_dir, reporter, data_dir=data_dir, base_checkpoint=base_checkpoint
        )
    elif isinstance(spec, GrowExperiment):
        from expansion.experiments.grow import run_grow

        result = run_grow(spec, out_dir, reporter, data_dir=data_dir)
    else:
        from expansion.experiments.sweep import run_sweep_kind

        result = run_sweep_kind(spec, out_dir, reporter, data_dir=data_dir)
    write_result(out_dir, result)
    return result
