"""The `grow` experiment: a network grown during training against two controls (docs/design.md 1.6).

Runs: `grown` (the starting depth, blocks inserted by the schedule), `control_target` (the
grown run's final architecture trained from scratch, every block scaled by the rule at that
depth) and `control_start` (kept at the starting depth); the controls only with
`grow.controls`. Each run reports test/val/train risk and error and its curves.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from expansion.data.datasets import DataBundle, load_dataset
from expansion.experiments.result_header import result_header
from expansion.models.evaluate import evaluate
from expansion.models.network import (
    Architecture,
    PostNormResNet,
    branch_scale,
    build_architecture,
    count_parameters,
)
from expansion.progress import NullReporter, ProgressReporter, StagedReporter, check_stop
from expansion.results.result_file import json_safe_record, write_result
from expansion.specs.experiments import GrowExperiment
from expansion.specs.parsing import parse_spec
from expansion.training.growth import GrowthCallback
from expansion.training.trainer import resolve_device, train_model

logger = logging.getLogger(__name__)

"""The grown network (architecture, weights, optimizer state) under the run's folder."""


def _summary(
    model: PostNormResNet, bundle: DataBundle, history: dict[str, Any], seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"depths": model.arch.depths, "parameters": count_parameters(model)}
    for split, (x, y) in {
        "train": (bundle.x_train, bundle.y_train),
        "val": (bundle.x_val, bundle.y_val),
        "test": (bundle.x_test, bundle.y_test),
    }.items():
        out[f"{split}_risk"], out[f"{split}_error"] = evaluate(model, x, y)
    out["curves"] = history
    out["train_s"] = seconds
    return out


def _keep_checkpoint(
    out_dir: Path, name: str, outcome: Any, spec: GrowExperiment, artifacts: list[str]
) -> None:
    """Save one run's final network as `<name>.ckpt` (an artifact, loadable by `--base`)."""
    from expansion.models.checkpoint import save_checkpoint

    file_name = f"{name}.ckpt"
    save_checkpoint(
        out_dir / file_name,
        outcome.model,
        spec=spec.model_dump(mode="json"),
        optimizer_state=outcome.optimizer_state,
        extra={"steps": outcome.steps, "final_lr": outcome.final_lr, "run": name},
    )
    artifacts.append(file_name)


def target_architecture(spec: GrowExperiment, depths: list[int]) -> Architecture:
    """The spec's architecture with the given per-stage depths, scales set at the total depth."""
    arch = build_architecture(spec.model, spec.data)
    total = sum(depths)
    scale = branch_scale(spec.model.scaling, spec.model.alpha, total)
    if spec.model.scaling == "learnable":
        scale = spec.model.alpha
    arch.block_scales = [[scale] * d for d in depths]
    return arch


def run_grow(
    spec: GrowExperiment | dict[str, Any],
    out_dir: Path,
    reporter: ProgressReporter | None = None,
    *,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Run a `grow` experiment; write and return its result dict."""
    parsed = parse_spec(spec) if isinstance(spec, dict) else spec
    if not isinstance(parsed, GrowExperiment):
        raise ValueError(f"run_grow needs a grow spec, not kind {parsed.kind!r}")
    spec = parsed
    if spec.train.devices > 1:
        raise ValueError(
            "train.devices > 1 is not supported for kind grow: DDP fixes the parameter set "
            "when it wraps the model, so blocks cannot be inserted during training"
        )
    reporter = reporter or NullReporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = resolve_device(spec.train)
    bundle = load_dataset(spec.data, spec.model.kind, device, data_dir)
    runs = 3 if spec.grow.controls else 1
    span = 1.0 / runs

    growth = GrowthCallback(
        spec.grow,
        train_seed=spec.train.seed,
        weight_decay=spec.train.weight_decay,
        data=((bundle.x_train, bundle.y_train), (bundle.x_val, bundle.y_val)),
    )
    t0 = time.perf_counter()
    grown = train_model(
        spec,
        bundle,
        StagedReporter(reporter, 0.0, span, "train"),
        out_dir / "grown",
        callbacks=[growth],
    )
    results: dict[str, Any] = {
        "grown": _summary(grown.model, bundle, grown.history, time.perf_counter() - t0)
    }
    artifacts: list[str] = []
    _keep_checkpoint(out_dir, "grown", grown, spec, artifacts)
    check_stop(reporter)
    if spec.grow.controls:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.train.seed)
            target = PostNormResNet(target_architecture(spec, grown.model.arch.depths))
        t0 = time.perf_counter()
        control_target = train_model(
            spec,
            bundle,
            StagedReporter(reporter, span, 2 * span, "train"),
            out_dir / "control_target",
            model=target,
        )
        results["control_target"] = _summary(
            control_target.model, bundle, control_target.history, time.perf_counter() - t0
        )
        _keep_checkpoint(out_dir, "control_target", control_target, spec, artifacts)
        check_stop(reporter)
        t0 = time.perf_counter()
        control_start = train_model(
            spec, bundle, StagedReporter(reporter, 2 * span, 1.0, "train"), out_dir / "start"
        )
        results["control_start"] = _summary(
            control_start.model, bundle, control_start.history, time.perf_counter() - t0
        )
        _keep_checkpoint(out_dir, "control_start", control_start, spec, artifacts)
    g = results["grown"]
    timings = {"total_s": time.perf_counter() - started, "train_s": g["train_s"]}
    result = json_safe_record(
        {
            **result_header(spec, device),
            **{k: g[k] for k in ("test_risk", "test_error", "val_risk", "val_error")},
            "train_risk": g["train_risk"],
            "train_error": g["train_error"],
            "parameters": g["parameters"],
            "curves": g["curves"],
            "timings": timings,
            "artifacts": artifacts,
            "grow": {
                "policy": spec.grow.policy,
                "events": growth.inserted,
                "final_depths": grown.model.arch.depths,
                "runs": results,
            },
        }
    )
    write_result(out_dir, result)
    reporter.progress(1.0, "train", "done")
    return result
