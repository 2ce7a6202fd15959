"""The `expand` experiment: train a base, scan every position, certify and measure chosen ones.

Stages (reported through the ProgressReporter): `train` (or load a base checkpoint), `scan`
(every position's W2 gradients, one pass), `certify` (descent certificate, jumpboard model and
function drift per chosen position and seed), `continue` (expanded vs control arms). The result
dict and its insertion records follow docs/architecture.md and DESIGN.md section 5.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from expansion.data.datasets import load_dataset
from expansion.insertion.certificate import certify, descent_record
from expansion.insertion.insert import expanded_copy, function_drift
from expansion.insertion.scan import ScanGradients, scan_positions
from expansion.models.network import PostNormResNet, count_parameters
from expansion.progress import NullReporter, ProgressReporter, StagedReporter, check_stop
from expansion.result_file import json_safe, write_result
from expansion.specs import ExpandExperiment, parse_spec
from expansion.training.continuation import continuation_lr, controlled_continuation, paired_summary
from expansion.training.trainer import evaluate, resolve_device, train_model

logger = logging.getLogger(__name__)

CONTINUATION_SPLIT = "continuation"
"""Metric split of the continuation arms' loss curves (the job page draws them live)."""
# Slices of the overall progress bar per stage.
STAGES = {"train": (0.0, 0.45), "scan": (0.45, 0.55), "certify": (0.55, 0.65)}
STAGES["continue"] = (0.65, 1.0)
SCAN_SUMMARY_FIELDS = (
    "grad_norm_sq_train",
    "grad_norm_sq_val",
    "grad_norm_sq_unbiased",
    "grad_norm_sq_lcb",
    "cosine_train_val",
)


def _stage(reporter: ProgressReporter, name: str) -> StagedReporter:
    start, end = STAGES[name]
    return StagedReporter(reporter, start, end, name)


def scan_summary(scan: ScanGradients, seeds: list[int], confidence: float) -> dict[str, Any]:
    """The result's `scan` section: per position, seed means of the descent fields."""
    positions = sorted({p for p, _ in scan.gradients})
    rows = []
    for p in positions:
        per_seed = [descent_record(scan.gradients[(p, s)], confidence) for s in seeds]
        row: dict[str, Any] = {"position": p}
        for name in SCAN_SUMMARY_FIELDS:
            row[name] = sum(r[name] for r in per_seed) / len(per_seed)
        row["condition_holds"] = row["grad_norm_sq_lcb"] > 0
        row["condition_holds_seeds"] = sum(bool(r["condition_holds"]) for r in per_seed)
        row["per_seed"] = [
            {"seed": s, **{k: r[k] for k in (*SCAN_SUMMARY_FIELDS, "condition_holds")}}
            for s, r in zip(seeds, per_seed, strict=True)
        ]
        rows.append(row)
    return {
        "method": scan.method,
        "reason": scan.reason,
        "train_samples": scan.train_samples,
        "grad_batch_size": scan.batch_size,
        "seeds": list(seeds),
        "positions": rows,
    }


def choose_positions(spec: ExpandExperiment, scan_rows: list[dict[str, Any]]) -> list[int]:
    """Positions that get certified and continued: explicit, all, or the top k by certified gain."""
    e = spec.expand
    if e.select == "explicit":
        return sorted(set(e.positions))
    if e.select == "all":
        return [row["position"] for row in scan_rows]
    ranked = sorted(scan_rows, key=lambda r: r["grad_norm_sq_unbiased"], reverse=True)
    return sorted(row["position"] for row in ranked[: e.top_k])


def _load_base(path: Path, device: torch.device) -> tuple[PostNormResNet, dict[str, Any]]:
    from expansion.models.checkpoint import load_checkpoint

    model, payload = load_checkpoint(path, map_location=device)
    return model.to(device).eval(), payload


def _train_base(
    spec: ExpandExperiment, bundle: Any, reporter: ProgressReporter, out_dir: Path
) -> tuple[PostNormResNet, dict[str, Any] | None, float, dict[str, Any], float]:
    """(model, optimizer state, final lr, curves, seconds) of a freshly trained base."""
    from expansion.models.checkpoint import save_checkpoint

    outcome = train_model(spec, bundle, _stage(reporter, "train"), out_dir)
    model = outcome.model.eval()
    save_checkpoint(
        out_dir / "base.ckpt",
        model,
        spec=spec.model_dump(mode="json"),
        optimizer_state=outcome.optimizer_state,
        extra={"final_lr": outcome.final_lr},
    )
    return (
        model,
        outcome.optimizer_state,
        outcome.final_lr,
        outcome.history,
        outcome.timings["train_s"],
    )


def run_expand(
    spec: ExpandExperiment | dict,
    out_dir: Path,
    reporter: ProgressReporter | None = None,
    *,
    data_dir: Path | None = None,
    base_checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Run an `expand` experiment; write and return its result dict (docs/architecture.md).

    With `base_checkpoint` the base network (and its optimizer state) is loaded, not trained.
    """
    if isinstance(spec, dict):
        spec = parse_spec(spec)  # type: ignore[assignment]
    if not isinstance(spec, ExpandExperiment):
        raise ValueError(f"run_expand needs an expand spec, not kind {spec.kind!r}")
    reporter = reporter or NullReporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e = spec.expand
    started = time.perf_counter()
    device = resolve_device(spec.train)
    bundle = load_dataset(spec.data, spec.model.kind, device, data_dir)
    timings: dict[str, float] = {}

    curves: dict[str, Any] = {}
    if base_checkpoint is not None:
        base, payload = _load_base(Path(base_checkpoint), device)
        base_state = payload.get("optimizer_state")
        final_lr = float((payload.get("extra") or {}).get("final_lr", spec.train.lr))
        timings["train_s"] = 0.0
        artifacts = []
    else:
        base, base_state, final_lr, curves, timings["train_s"] = _train_base(
            spec, bundle, reporter, out_dir
        )
        # Lightning hands the trained module back on the CPU; the data lives on `device`.
        base = base.to(device)
        artifacts = ["base.ckpt"]
    check_stop(reporter)
    if base.num_positions != spec.model.num_positions:
        raise ValueError(
            f"the base network has {base.num_positions} positions, the spec "
            f"{spec.model.num_positions}: the checkpoint does not match the spec's model"
        )

    # ---- scan --------------------------------------------------------------------------
    t0 = time.perf_counter()
    scan_rep = _stage(reporter, "scan")

    def on_batch(fraction: float) -> None:
        scan_rep.progress(fraction, "scan", "gradients at every position")
        check_stop(reporter)

    scan = scan_positions(
        base,
        (bundle.x_train, bundle.y_train),
        (bundle.x_val, bundle.y_val),
        list(range(base.num_positions)),
        e.seeds,
        batch_size=e.grad_batch_size,
        max_batches=e.grad_batches,
        shuffle_seed=spec.train.seed,
        on_batch=on_batch,
    )
    summary = scan_summary(scan, e.seeds, e.confidence)
    chosen = choose_positions(spec, summary["positions"])
    timings["scan_s"] = time.perf_counter() - t0

    # ---- certify ------------------------------------------------------------------------
    t0 = time.perf_counter()
    cert_rep = _stage(reporter, "certify")
    val, test = (bundle.x_val, bundle.y_val), (bundle.x_test, bundle.y_test)
    records: dict[tuple[int, int], dict[str, Any]] = {}
    keys = [(p, s) for p in chosen for s in e.seeds]
    for i, (p, s) in enumerate(keys):
        descent, jump = certify(
            base,
            scan.gradients[(p, s)],
            val,
            test,
            confidence=e.confidence,
            line_search_points=e.line_search_points,
        )
        drift = function_drift(base, expanded_copy(base, p, s), bundle.x_test)
        records[(p, s)] = {
            "position": p,
            "depth_before": base.total_blocks,
            "depth_after": base.total_blocks + 1,
            "seed": s,
            "function_drift_eval": drift["eval"],
            "function_drift_train": drift["train"],
            "descent": descent,
            "jumpboard": jump,
        }
        cert_rep.progress((i + 1) / len(keys), "certify", f"position {p} seed {s}")
        check_stop(reporter)
    timings["certify_s"] = time.perf_counter() - t0

    # ---- continue -----------------------------------------------------------------------
    t0 = time.perf_counter()
    cont_rep = _stage(reporter, "continue")
    lr = continuation_lr(e.continue_lr, final_lr, spec.train.lr)
    total_steps = e.continue_steps * len(e.seeds) * (len(chosen) + 1)
    done = [0]

    def on_step() -> None:
        done[0] += 1
        if done[0] % 20 == 0 or done[0] == total_steps:
            cont_rep.progress(done[0] / total_steps, "continue", f"{done[0]}/{total_steps} steps")
            check_stop(reporter)

    continuation_curves: dict[str, list[list[float]]] = {}

    def on_arm(label: str) -> None:
        # Each finished arm's curve lands on the job page while the others still train.
        for step, loss in continuation_curves.get(label, []):
            reporter.metric(int(step), CONTINUATION_SPLIT, f"{label}/loss", loss)

    realized = controlled_continuation(
        base,
        base_state,
        bundle,
        spec.train,
        positions=chosen,
        seeds=e.seeds,
        steps=e.continue_steps,
        lr=lr,
        on_step=on_step,
        on_arm=on_arm,
        curves=continuation_curves,
    )
    timings["continuation_s"] = time.perf_counter() - t0
    for key, rec in records.items():
        rec["realized"] = realized[key]
        rec["realized"]["lr"] = lr

    positions_summary = []
    rows = {row["position"]: row for row in summary["positions"]}
    for p in chosen:
        per_seed = [records[(p, s)] for s in e.seeds]
        gains = [r["realized"]["gain_vs_control"] for r in per_seed]
        positions_summary.append(
            {
                "position": p,
                "n_seeds": len(per_seed),
                "certified_gain": rows[p]["grad_norm_sq_unbiased"],
                "certified_gain_lcb": rows[p]["grad_norm_sq_lcb"],
                "condition_holds": rows[p]["condition_holds"],
                "predicted_val_risk_delta": sum(
                    r["descent"]["predicted_val_risk_delta"] for r in per_seed
                )
                / len(per_seed),
                **paired_summary(gains, e.confidence),
            }
        )

    train_risk, train_error = evaluate(base, bundle.x_train, bundle.y_train)
    val_risk, val_error = evaluate(base, bundle.x_val, bundle.y_val)
    test_risk, test_error = evaluate(base, bundle.x_test, bundle.y_test)
    timings["total_s"] = time.perf_counter() - started
    result = json_safe(
        {
            "kind": "expand",
            "spec": spec.model_dump(mode="json"),
            "device": str(device),
            "torch_version": torch.__version__,
            "test_risk": test_risk,
            "test_error": test_error,
            "val_risk": val_risk,
            "val_error": val_error,
            "train_risk": train_risk,
            "train_error": train_error,
            "parameters": count_parameters(base),
            "curves": curves,
            "timings": timings,
            "artifacts": artifacts,
            "scan": summary,
            "insertions": [records[k] for k in keys],
            "positions": positions_summary,
            "continue_lr": lr,
            "continuation_curves": continuation_curves,
        }
    )
    write_result(out_dir, result)
    reporter.progress(1.0, "continue", "done")
    return result
