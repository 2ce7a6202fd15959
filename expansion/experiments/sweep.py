"""The `sweep_point` and `sweep` experiments (docs/design.md 1.6, issue 12).

A sweep point trains one network (or grows one, with its from-scratch control) and measures
it: train/val/test risk and error, the generalization gap, the input sensitivity and the
norm-based capacity (expansion.models.measures), with its training curves. `run_sweep` runs every
point of a grid in this process (what `jumpboard run` does); in the service each point is a
job of its own instead. One failed point fails only itself.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from expansion.data.datasets import DataBundle, DataError, load_dataset
from expansion.experiments.grow import run_grow
from expansion.experiments.result_header import result_header
from expansion.models.evaluate import evaluate
from expansion.models.measures import (
    CAPACITY_DESCRIPTIONS,
    capacity_measures,
    generalization_gap,
    input_sensitivity,
)
from expansion.models.network import PostNormResNet, count_parameters
from expansion.progress import NullReporter, ProgressReporter, StagedReporter, StopRequested
from expansion.results.result_file import json_safe_record, write_result
from expansion.results.sweep_summary import Arm, table
from expansion.specs.experiments import GrowExperiment, SweepExperiment, SweepPointExperiment
from expansion.specs.grid import expand_sweep
from expansion.specs.sections import MeasureSpec
from expansion.training.trainer import resolve_device, train_model

log = logging.getLogger(__name__)

POINTS_DIR = "points"
MEASURE_NOTES = {
    "input_sensitivity": "mean over test inputs of ||d logits / d input||_F^2, random-projection "
    "(Hutchinson) estimate; standard_error over the inputs",
    "generalization_gap_risk": "test risk minus train risk (cross-entropy), same network",
    "generalization_gap_error": "test error minus train error (0-1), same network",
    **{f"capacity.{k}": v for k, v in CAPACITY_DESCRIPTIONS.items()},
}
"""What every per-point measure estimates (stored in each result)."""


def _risks(model: torch.nn.Module, bundle: DataBundle) -> dict[str, float]:
    out: dict[str, float] = {}
    for split in ("train", "val", "test"):
        x, y = getattr(bundle, f"x_{split}"), getattr(bundle, f"y_{split}")
        out[f"{split}_risk"], out[f"{split}_error"] = evaluate(model, x, y)
    return out


def measure_network(
    model: PostNormResNet, bundle: DataBundle, measures: MeasureSpec, arm: Arm
) -> dict[str, Any]:
    """Risks, gaps, input sensitivity and capacity of one trained network."""
    risks = _risks(model, bundle)
    n = min(measures.samples, len(bundle.y_test))
    pick = torch.randperm(
        len(bundle.y_test), generator=torch.Generator().manual_seed(measures.seed)
    )
    x = bundle.x_test[pick[:n].to(bundle.x_test.device)]
    sensitivity = input_sensitivity(model, x, projections=measures.projections, seed=measures.seed)
    alphas = [float(b.alpha.detach()) for b in model.blocks()]
    return {
        "arm": arm.value,
        "depth": model.total_blocks,
        **risks,
        "test_examples": len(bundle.y_test),
        **generalization_gap(risks),
        "input_sensitivity": sensitivity.to_dict(),
        "capacity": capacity_measures(model),
        "final_alpha_mean": sum(alphas) / len(alphas) if alphas else None,
        "parameters": count_parameters(model),
    }


def run_sweep_point(
    spec: SweepPointExperiment,
    out_dir: Path,
    reporter: ProgressReporter | None = None,
    *,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one grid point and measure it; writes and returns its result dict."""
    reporter = reporter or NullReporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    experiment = spec.experiment_spec()
    device = resolve_device(experiment.train)
    reporter.progress(0.0, "data", spec.data.name)
    bundle = load_dataset(spec.data, spec.model.kind, device, data_dir)
    extra: dict[str, Any] = {}
    if spec.grow is None:
        outcome = train_model(
            experiment, bundle, StagedReporter(reporter, 0.0, 0.95, "train"), out_dir / "train"
        )
        reporter.progress(0.95, "measure")
        arms = [measure_network(outcome.model, bundle, spec.measures, Arm.SCRATCH)]
        curves = outcome.history
        extra["steps"] = outcome.steps
    else:
        # Grow points report the risks of all three runs; the networks themselves stay inside
        # run_grow, so the sensitivity and capacity measures are not taken for them.
        assert isinstance(experiment, GrowExperiment)  # a point with `grow` runs a grow spec
        grown = run_grow(experiment, out_dir, StagedReporter(reporter, 0.0, 0.95, "train"))
        runs = grown["grow"]["runs"]
        names = {"grown": Arm.GROWN, "control_target": Arm.SCRATCH, "control_start": Arm.START}
        arms = []
        for key, arm in names.items():
            if key in runs:
                run = runs[key]
                risks = {k: run[k] for k in run if k.endswith(("_risk", "_error"))}
                arms.append(
                    {
                        "arm": arm.value,
                        "depth": sum(run["depths"]),
                        **risks,
                        "test_examples": len(bundle.y_test),
                        **generalization_gap(risks),
                        "input_sensitivity": None,
                        "capacity": None,
                        "parameters": run["parameters"],
                    }
                )
        curves = grown["curves"]
        extra["grow_events"] = grown["grow"]["events"]
    primary = arms[0]
    result = {
        **result_header(spec, device),
        "sweep_index": spec.sweep_index,
        "coordinates": spec.coordinates,
        **{k: primary.get(k) for k in ("test_risk", "test_error", "val_risk", "val_error")},
        "train_risk": primary.get("train_risk"),
        "train_error": primary.get("train_error"),
        "parameters": primary.get("parameters"),
        "arms": arms,
        "measure_notes": MEASURE_NOTES,
        "curves": curves,
        "timings": {"total_s": time.perf_counter() - started},
        "artifacts": [],
        **extra,
    }
    result = json_safe_record(result)
    write_result(out_dir, result)
    reporter.progress(1.0, "done")
    return result


def run_sweep(
    spec: SweepExperiment,
    out_dir: Path,
    reporter: ProgressReporter | None = None,
    *,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Run every grid point in this process, one after the other, under `out_dir/points/`.

    A point that fails (diverges, does not fit its data) is recorded as failed with its reason;
    the others still run. StopRequested stops the whole sweep.
    """
    reporter = reporter or NullReporter()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    points = expand_sweep(spec)
    results: list[dict[str, Any]] = []
    for i, point in enumerate(points):
        stage = StagedReporter(reporter, i / len(points), (i + 1) / len(points), "point")
        reporter.progress(i / len(points), "point", f"point {i + 1} of {len(points)}")
        point_dir = out_dir / POINTS_DIR / f"{i:03d}"
        try:
            result = run_sweep_point(point, point_dir, stage, data_dir=data_dir)
        except StopRequested:
            raise
        except (FloatingPointError, ValueError, RuntimeError, DataError) as exc:
            log.warning("sweep point %d failed: %s", i, exc)
            results.append(
                {
                    "status": "failed",
                    "sweep_index": i,
                    "coordinates": point.coordinates,
                    "spec": point.model_dump(mode="json"),
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(limit=5),
                }
            )
            continue
        summary = {k: v for k, v in result.items() if k != "curves"}
        results.append(
            {"status": "succeeded", "result_file": f"{POINTS_DIR}/{i:03d}/result.json", **summary}
        )
    failed = sum(r["status"] == "failed" for r in results)
    return json_safe_record(
        {
            **result_header(spec, resolve_device(spec.train)),
            "grid": spec.grid,
            "points": results,
            "rows": table(results),
            "succeeded": len(results) - failed,
            "failed": failed,
            "measure_notes": MEASURE_NOTES,
            "timings": {"total_s": time.perf_counter() - started},
            "artifacts": [],
        }
    )


def run_sweep_kind(
    spec: SweepExperiment | SweepPointExperiment,
    out_dir: Path,
    reporter: ProgressReporter | None = None,
    *,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """`run_experiment`'s entry for kinds `sweep` and `sweep_point`."""
    if isinstance(spec, SweepPointExperiment):
        return run_sweep_point(spec, out_dir, reporter, data_dir=data_dir)
    return run_sweep(spec, out_dir, reporter, data_dir=data_dir)
