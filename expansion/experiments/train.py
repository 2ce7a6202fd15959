"""The `train` experiment: train one network, evaluate it, keep its checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from expansion.data.datasets import load_dataset
from expansion.experiments.result_header import BASE_CHECKPOINT, result_header, risks
from expansion.models.checkpoint import save_checkpoint
from expansion.models.network import count_parameters
from expansion.progress import ProgressReporter, StagedReporter
from expansion.specs.experiments import (
    TrainExperiment,
)
from expansion.training.trainer import resolve_device, train_model


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
