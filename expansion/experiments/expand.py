"""The `expand` experiment: train a base, scan every position, certify and measure chosen ones.

Stages (reported through the ProgressReporter): `train` (or load a base checkpoint), `scan`
(every position's W2 gradients: one pass over training batches, one over the certificate
batches), `certify` (descent certificate, jumpboard model and function drift per chosen
position and seed), `continue` (expanded vs control arms). The result dict and its records
follow `expansion.results.records`, docs/design.md 5 and docs/science.md.

Verdicts: per (position, seed) from the certificate batches; per position the
intersection-union verdict "every seed's block has a descent direction" (holds iff every seed
holds; its bound `seeds_lcb` is the minimum of the per-seed bounds, a valid bound of the
minimum over seeds of |E g|^2 at the same confidence); family-wise over the scanned positions
by Holm's step-down at level 1 - confidence.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from expansion.data.datasets import DataBundle, load_dataset
from expansion.experiments.result_header import result_header
from expansion.insertion.bounds import family_verdicts
from expansion.insertion.certificate import (
    CertificateBatches,
    base_losses,
    certify,
    descent_record,
)
from expansion.insertion.insert import expanded_copy, function_drift, reference_logits
from expansion.insertion.predictors import (
    early_steps_for,
    insertion_predictors,
    probe_steps_for,
    selection_scores,
)
from expansion.insertion.scan import ScanGradients, scan_positions
from expansion.models.evaluate import evaluate
from expansion.models.network import PostNormResNet, count_parameters
from expansion.progress import NullReporter, ProgressReporter, StagedReporter, check_stop
from expansion.ranks import agree_with_rank_zero
from expansion.results.records import (
    CertificateSource,
    DescentRecord,
    PositionRow,
    ScanPositionRow,
    ScanSeedRow,
    Verdict,
    seed_verdict,
    verdict_counts,
)
from expansion.results.result_file import json_safe, write_result
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.predictor_names import Predictor
from expansion.training.batched_arms import batching_chosen
from expansion.training.continuation import continuation_lr, controlled_continuation, paired_summary
from expansion.training.trainer import resolve_device, train_model

logger = logging.getLogger(__name__)

CONTINUATION_SPLIT = "continuation"
"""Metric split of the continuation arms' loss curves (the job page draws them live)."""
# Slices of the overall progress bar per stage.
STAGES = {"train": (0.0, 0.45), "scan": (0.45, 0.55), "certify": (0.55, 0.65)}
STAGES["continue"] = (0.65, 1.0)
MEAN_FIELDS = (
    "grad_norm_sq_train",
    "grad_norm_sq_val",
    "grad_norm_sq_unbiased",
    "cosine_train_val",
)
"""Estimates averaged over seeds in a scan row (never a bound: a mean of bounds bounds nothing)."""
FAMILY_METHOD = "holm"
SEEDS_LCB_METHOD = "min_over_seeds_of_per_seed_bounds"
FRESH_CERTIFICATE_BATCHES = 16
"""Fresh certificate batches drawn (`teacher`) when `expand.grad_batches` is not given."""
SCAN_SPLIT = 0.7
"""Share of the scan stage's progress bar taken by the training batches."""


def _stage(reporter: ProgressReporter, name: str) -> StagedReporter:
    start, end = STAGES[name]
    return StagedReporter(reporter, start, end, name)


def scan_summary(
    scan: ScanGradients,
    certificate: dict[tuple[int, int], CertificateBatches],
    seeds: list[int],
    confidence: float,
    min_batches: int,
) -> dict[str, Any]:
    """The result's `scan` section: per position its seeds' certificates, the position's
    intersection-union verdict over seeds and the family-wise (Holm) verdict over positions."""
    positions = sorted({p for p, _ in scan.gradients})
    rows: list[ScanPositionRow] = []
    for p in positions:
        per_seed: list[DescentRecord] = [
            descent_record(scan.gradients[(p, s)], certificate[(p, s)], confidence, min_batches)
            for s in seeds
        ]
        verdicts = [Verdict(r["verdict"]) for r in per_seed]
        bounds = [r["grad_norm_sq_lcb"] for r in per_seed]
        known = [b for b in bounds if b is not None]
        seed_rows: list[ScanSeedRow] = [
            {
                "seed": s,
                "grad_norm_sq_unbiased": r["grad_norm_sq_unbiased"],
                "grad_norm_sq_lcb": r["grad_norm_sq_lcb"],
                "grad_norm_sq_batch_mean": r["grad_norm_sq_batch_mean"],
                "grad_norm_sq_unbiased_train": r["grad_norm_sq_unbiased_train"],
                "grad_norm_sq_lcb_train": r["grad_norm_sq_lcb_train"],
                "p_value": r["p_value"],
                "verdict": r["verdict"],
            }
            for s, r in zip(seeds, per_seed, strict=True)
        ]
        as_dicts: list[dict[str, Any]] = [dict(r) for r in per_seed]
        means = {
            name: sum(float(r[name]) for r in as_dicts) / len(as_dicts) for name in MEAN_FIELDS
        }
        rows.append(
            {
                "position": p,
                "grad_norm_sq_train": means["grad_norm_sq_train"],
                "grad_norm_sq_val": means["grad_norm_sq_val"],
                "grad_norm_sq_unbiased": means["grad_norm_sq_unbiased"],
                "cosine_train_val": means["cosine_train_val"],
                "seeds_lcb": min(known) if len(known) == len(bounds) else None,
                "seeds_lcb_method": SEEDS_LCB_METHOD,
                "p_value": max(r["p_value"] for r in per_seed),
                "verdict": seed_verdict(verdicts),
                "verdict_counts": verdict_counts(verdicts),
                "family_verdict": Verdict.UNDECIDED,  # set below, over all positions
                "family_method": FAMILY_METHOD,
                "per_seed": seed_rows,
            }
        )
    family = family_verdicts(
        [r["verdict"] for r in rows], [r["p_value"] for r in rows], 1.0 - confidence
    )
    for row, verdict in zip(rows, family, strict=True):
        row["family_verdict"] = verdict
    sources = {c.source for c in certificate.values()}
    return {
        "method": scan.method,
        "reason": scan.reason,
        "train_samples": scan.train_samples,
        "grad_batch_size": scan.batch_size,
        "seeds": list(seeds),
        "certificate_source": sources.pop() if len(sources) == 1 else None,
        "certificate_batches": min(
            (int(c.batches.shape[0]) for c in certificate.values()), default=0
        ),
        "min_certificate_batches": min_batches,
        "confidence": confidence,
        "family_method": FAMILY_METHOD,
        "family_alpha": 1.0 - confidence,
        "positions": rows,
    }


def _rank_key(row: dict[str, Any]) -> tuple[float, float]:
    lcb = row.get("seeds_lcb")
    return (float("-inf") if lcb is None else float(lcb), float(row["grad_norm_sq_unbiased"]))


def choose_positions(
    spec: ExpandExperiment,
    scan_rows: list[dict[str, Any]],
    scores: dict[int, float] | None = None,
) -> list[int]:
    """Positions that get certified and continued: explicit, all, exactly those whose
    family-wise verdict holds (`certified`), or the top k by `expand.by`.

    `scores` (position -> seed-mean predictor) ranks top_k; without it (`by` is a certificate
    predictor) the certificate ranks: U for `certificate_u`, else the lower bound over seeds
    (ties by U).
    """
    e = spec.expand
    if e.select == "explicit":
        return sorted(set(e.positions))
    if e.select == "all":
        return [row["position"] for row in scan_rows]
    if e.select == "certified":
        return [row["position"] for row in scan_rows if row["family_verdict"] == Verdict.HOLDS]
    if scores is not None:
        ranked_positions = sorted(scores, key=lambda p: scores[p], reverse=True)
        return sorted(ranked_positions[: e.top_k])
    if e.by == Predictor.CERTIFICATE_U:
        ranked = sorted(scan_rows, key=lambda r: r["grad_norm_sq_unbiased"], reverse=True)
    else:
        ranked = sorted(scan_rows, key=_rank_key, reverse=True)
    return sorted(row["position"] for row in ranked[: e.top_k])


def certificate_gradients(
    base: PostNormResNet,
    spec: ExpandExperiment,
    bundle: DataBundle,
    on_batch: Any,
) -> dict[tuple[int, int], CertificateBatches]:
    """Per-batch gradients of every (position, seed) on the certificate data (held out or
    fresh): never trained on, never used by the line search."""
    e = spec.expand
    fresh_samples = (e.grad_batches or FRESH_CERTIFICATE_BATCHES) * e.grad_batch_size
    x, y, source = bundle.certificate_data(fresh_samples, seed=spec.data.seed + 2)
    if len(y) // e.grad_batch_size < 2:
        raise ValueError(
            f"the certificate split has {len(y)} samples, fewer than 2 batches of "
            f"expand.grad_batch_size={e.grad_batch_size}: raise data.certify_fraction or lower "
            "expand.grad_batch_size"
        )
    # scan_positions also wants a validation set; one batch of the certificate data keeps that
    # unused by-product cheap.
    head = (x[: e.grad_batch_size], y[: e.grad_batch_size])
    scan = scan_positions(
        base,
        (x, y),
        head,
        list(range(base.num_positions)),
        e.seeds,
        batch_size=e.grad_batch_size,
        max_batches=e.grad_batches,
        shuffle_seed=spec.train.seed + 1,
        on_batch=on_batch,
    )
    return {
        key: CertificateBatches(grad.batches, CertificateSource(source))
        for key, grad in scan.gradients.items()
    }


def selection_record(
    spec: ExpandExperiment, scan_rows: list[dict[str, Any]], scores: dict[int, float] | None
) -> dict[str, Any]:
    """The result's `selection`: how positions were chosen, and each position's score."""
    e = spec.expand
    if e.select != "top_k":
        return {"select": e.select, "by": None, "scores": []}
    key = "grad_norm_sq_unbiased" if e.by == Predictor.CERTIFICATE_U else "seeds_lcb"
    values: dict[int, float | None] = dict(scores) if scores is not None else {}
    if scores is None:
        values = {row["position"]: row.get(key) for row in scan_rows}
    return {
        "select": e.select,
        "by": e.by,
        "scores": [{"position": p, "score": values[p]} for p in sorted(values)],
    }


def _selection_scores(
    spec: ExpandExperiment,
    base: PostNormResNet,
    scan: ScanGradients,
    cert_grads: dict[tuple[int, int], CertificateBatches],
    bundle: Any,
    lr: float,
) -> dict[int, float] | None:
    """Per-position scores of `expand.by` for top_k (None: a certificate predictor, ranked by
    `choose_positions` from the scan summary's held-out U and bound)."""
    e = spec.expand
    if e.select != "top_k" or e.by in (Predictor.CERTIFICATE_U, Predictor.CERTIFICATE_LCB):
        return None
    positions = sorted({p for p, _ in scan.gradients})
    descents: dict[tuple[int, int], dict[str, Any]] = {}
    jumps: dict[tuple[int, int], dict[str, Any]] = {}
    reference = None
    if e.by in (Predictor.JUMPBOARD_VAL_GAIN, Predictor.PREDICTED_VAL_GAIN):
        reference = base_losses(base, (bundle.x_val, bundle.y_val), (bundle.x_test, bundle.y_test))
    for key, grad in scan.gradients.items():
        if e.by in (Predictor.JUMPBOARD_VAL_GAIN, Predictor.PREDICTED_VAL_GAIN):
            descent, jumps[key] = certify(
                base,
                grad,
                cert_grads[key],
                (bundle.x_val, bundle.y_val),
                (bundle.x_test, bundle.y_test),
                confidence=e.confidence,
                line_search_points=e.line_search_points,
                min_batches=e.min_certificate_batches,
                base=reference,
            )
            descents[key] = dict(descent)
        else:
            descents[key] = dict(
                descent_record(grad, cert_grads[key], e.confidence, e.min_certificate_batches)
            )
    return selection_scores(
        base,
        scan.gradients,
        descents,
        bundle,
        spec.train,
        by=e.by,
        positions=positions,
        seeds=e.seeds,
        lr=lr,
        probe_steps=probe_steps_for(e.continue_steps, e.probe_steps),
        jumpboard=jumps,
    )


def _attach_predictors(
    spec: ExpandExperiment,
    base: PostNormResNet,
    scan: ScanGradients,
    bundle: Any,
    records: dict[tuple[int, int], dict[str, Any]],
    lr: float,
) -> None:
    """Store every predictor (expansion.specs.predictor_names) in each record's `predictors`."""
    e = spec.expand
    base_val_risk, _ = evaluate(base, bundle.x_val, bundle.y_val)
    for key, rec in records.items():
        rec["predictors"] = insertion_predictors(
            base,
            scan.gradients[key],
            rec,
            bundle,
            spec.train,
            lr=lr,
            probe_steps=probe_steps_for(e.continue_steps, e.probe_steps),
            base_val_risk=base_val_risk,
        )


def _load_base(
    path: Path, spec: ExpandExperiment, device: torch.device
) -> tuple[PostNormResNet, dict[str, Any]]:
    """The `--base` network, checked against the spec (architecture, shapes, finite weights)."""
    from expansion.models.checkpoint import load_base_checkpoint

    model, payload = load_base_checkpoint(path, spec.model, spec.data, map_location=device)
    _check_base_splits(path, payload, spec)
    return model.to(device).eval(), payload


# DataSpec fields that decide which examples land in the training split.
_SPLIT_FIELDS = (
    "name",
    "seed",
    "val_fraction",
    "certify_fraction",
    "max_train_samples",
    "teacher_dim",
    "teacher_width",
    "teacher_depth",
    "teacher_train_size",
    "teacher_test_size",
)


def _check_base_splits(path: Path, payload: dict[str, Any], spec: ExpandExperiment) -> None:
    """Refuse a base trained on other splits: its training set may hold the certificate split,
    and a certificate on examples the base was fitted on is not a held-out certificate."""
    from expansion.models.checkpoint import CheckpointError
    from expansion.specs.sections import DataSpec

    stored = (payload.get("spec") or {}).get("data")
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"{path}: the checkpoint does not record its data section, so its training split "
            "cannot be checked against the certificate split; train the base with this spec's "
            "data section"
        )
    base_data = DataSpec.model_validate(stored).model_dump()
    wanted = spec.data.model_dump()
    differ = [f for f in _SPLIT_FIELDS if f in wanted and base_data.get(f) != wanted.get(f)]
    if differ:
        shown = ", ".join(
            f"data.{f} {base_data.get(f)!r} (spec: {wanted.get(f)!r})" for f in differ
        )
        raise CheckpointError(
            f"{path}: the base was trained on other splits ({shown}); its training set may hold "
            "the certificate split. Train the base with this spec's data section"
        )


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
    parsed = parse_spec(spec) if isinstance(spec, dict) else spec
    if not isinstance(parsed, ExpandExperiment):
        raise ValueError(f"run_expand needs an expand spec, not kind {parsed.kind!r}")
    spec = parsed
    reporter = reporter or NullReporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e = spec.expand
    started = time.perf_counter()
    device = resolve_device(spec.train)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bundle = load_dataset(spec.data, spec.model.kind, device, data_dir)
    timings["data_s"] = time.perf_counter() - t0

    curves: dict[str, Any] = {}
    if base_checkpoint is not None:
        base, payload = _load_base(Path(base_checkpoint), spec, device)
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
        scan_rep.progress(SCAN_SPLIT * fraction, "scan", "gradients at every position")
        check_stop(reporter)

    def on_certificate_batch(fraction: float) -> None:
        done = SCAN_SPLIT + (1.0 - SCAN_SPLIT) * fraction
        scan_rep.progress(done, "scan", "certificate gradients at every position")
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
    cert_grads = certificate_gradients(base, spec, bundle, on_certificate_batch)
    summary = scan_summary(scan, cert_grads, e.seeds, e.confidence, e.min_certificate_batches)
    lr = continuation_lr(e.continue_lr, final_lr, spec.train.lr)
    scores = _selection_scores(spec, base, scan, cert_grads, bundle, lr)
    # Every rank of a multi-device job continues the positions rank 0 chose.
    chosen = agree_with_rank_zero(choose_positions(spec, summary["positions"], scores))
    selection = selection_record(spec, summary["positions"], scores)
    timings["scan_s"] = time.perf_counter() - t0

    # ---- certify ------------------------------------------------------------------------
    t0 = time.perf_counter()
    cert_rep = _stage(reporter, "certify")
    val, test = (bundle.x_val, bundle.y_val), (bundle.x_test, bundle.y_test)
    records: dict[tuple[int, int], dict[str, Any]] = {}
    keys = [(p, s) for p in chosen for s in e.seeds]
    # The base's losses and logits are the same for every candidate: computed once.
    base_test_losses = base_losses(base, val, test)
    base_logits = reference_logits(base, bundle.x_test)
    for i, (p, s) in enumerate(keys):
        descent, jump = certify(
            base,
            scan.gradients[(p, s)],
            cert_grads[(p, s)],
            val,
            test,
            confidence=e.confidence,
            line_search_points=e.line_search_points,
            min_batches=e.min_certificate_batches,
            base=base_test_losses,
        )
        drift = function_drift(base_logits, expanded_copy(base, p, s), bundle.x_test)
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
    total_steps = e.continue_steps * len(e.seeds) * (len(chosen) + 1)
    done = [0]

    def on_step() -> None:
        done[0] += 1
        if done[0] % 20 == 0 or done[0] == total_steps:
            cont_rep.progress(done[0] / total_steps, "continue", f"{done[0]}/{total_steps} steps")
            check_stop(reporter)

    continuation_curves: dict[str, list[list[float]]] = {}
    batched = batching_chosen(e.batch_arms, device, base)

    def on_arm(label: str) -> None:
        # Each finished arm's curve lands on the job page while the others still train.
        for step, loss in continuation_curves.get(label, []):
            reporter.metric(int(step), CONTINUATION_SPLIT, f"{label}/loss", loss)

    continuation = controlled_continuation(
        base,
        base_state,
        bundle,
        spec.train,
        positions=chosen,
        seeds=e.seeds,
        steps=e.continue_steps,
        lr=lr,
        on_step=on_step,
        confidence=e.confidence,
        early_steps=sorted(set(early_steps_for(e.continue_steps).values())),
        on_arm=on_arm,
        curves=continuation_curves,
        batched=batched,
    )
    timings["continuation_s"] = time.perf_counter() - t0
    for key, rec in records.items():
        rec["realized"] = continuation.records[key]
        rec["realized"]["lr"] = lr
    t0 = time.perf_counter()
    _attach_predictors(spec, base, scan, bundle, records, lr)
    timings["predictors_s"] = time.perf_counter() - t0

    rows = {row["position"]: row for row in summary["positions"]}
    positions_summary: list[PositionRow] = []
    for p in chosen:
        per_seed = [records[(p, s)] for s in e.seeds]
        row = rows[p]
        gain = paired_summary([continuation.differences[(p, s)] for s in e.seeds], e.confidence)
        positions_summary.append(
            {
                "position": p,
                "n_seeds": len(per_seed),
                "verdict": row["verdict"],
                "verdict_counts": row["verdict_counts"],
                "family_verdict": row["family_verdict"],
                "family_method": row["family_method"],
                "seeds_lcb": row["seeds_lcb"],
                "seeds_lcb_method": row["seeds_lcb_method"],
                "certified_gain": row["grad_norm_sq_unbiased"],
                "predicted_val_risk_delta": sum(
                    r["descent"]["predicted_val_risk_delta"] for r in per_seed
                )
                / len(per_seed),
                "gain_mean": gain["gain_mean"],
                "gain_std": gain["gain_std"],
                "gain_ci": gain["gain_ci"],
                "gain_ci_method": gain.get("gain_ci_method", ""),
            }
        )

    t0 = time.perf_counter()
    train_risk, train_error = evaluate(base, bundle.x_train, bundle.y_train)
    val_risk, val_error = evaluate(base, bundle.x_val, bundle.y_val)
    test_risk, test_error = evaluate(base, bundle.x_test, bundle.y_test)
    timings["evaluate_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    result = json_safe(
        {
            **result_header(spec, device),
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
            "selection": selection,
            "continue_lr": lr,
            "continuation_curves": continuation_curves,
            "continuation_batched": batched,
        }
    )
    write_result(out_dir, result)
    reporter.progress(1.0, "continue", "done")
    return result
