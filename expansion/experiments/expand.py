"""The `expand` experiment: train a base, scan every position, certify and measure chosen ones.

Stages (reported through the ProgressReporter): `train` (or load a base checkpoint), `scan`
(every position's W2 gradients: one pass over training batches, one over the certificate
batches; then every position's jumpboard model, its step line-searched on validation data and
its risk decrease measured on the certificate examples), `certify` (the records and function
drift per chosen position and seed), `continue` (expanded vs control arms). The result dict
and its records follow `expansion.results.records`, docs/design.md 5 and docs/science.md.

The certificate in nats: per (position, seed) the jumpboard model's risk decrease on the
certificate examples with its interval and verdict against `expand.min_effect`; per position
the same over its seeds' models; family-wise over every scanned position by Holm. Beside it,
the |E g|^2 test: shown or not shown per seed, per position (every seed), family-wise (Holm).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from expansion.data.datasets import DataBundle, load_dataset
from expansion.experiments.expand_answer import expand_answer
from expansion.experiments.expand_base import BaseNetwork, obtain_base
from expansion.experiments.expand_certificates import (
    certificate_examples,
    certificate_gradients,
    seed_certificates,
)
from expansion.experiments.expand_keep import keep_expanded
from expansion.experiments.position_choice import (
    choose_positions,
    selection_record,
    selection_scores_for,
)
from expansion.experiments.result_header import result_header
from expansion.experiments.result_header import risks as base_risks
from expansion.insertion.certificate import (
    CertificateBatches,
    certificate_data,
    descent_record,
    jumpboard_record,
)
from expansion.insertion.insert import expanded_copy, function_drift, reference_logits
from expansion.insertion.jumpboard import JumpboardFit, base_losses
from expansion.insertion.predictors import (
    early_steps_for,
    insertion_predictors,
    probe_steps_for,
)
from expansion.insertion.scan import ScanGradients, scan_positions
from expansion.insertion.scan_summary import SeedCertificates, scan_summary
from expansion.models.evaluate import evaluate
from expansion.models.network import PostNormResNet, count_parameters
from expansion.progress import NullReporter, ProgressReporter, StagedReporter, check_stop
from expansion.ranks import agree_with_rank_zero
from expansion.results.records import PositionRow
from expansion.results.result_file import PARTIAL_RESULT_FILE, json_safe_record, write_result
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.stage_weights import stage_slices
from expansion.training.batched_arms import batching_chosen
from expansion.training.continuation import (
    Continuation,
    continuation_lr,
    controlled_continuation,
    paired_summary,
)
from expansion.training.trainer import resolve_device

logger = logging.getLogger(__name__)


CONTINUATION_SPLIT = "continuation"
"""Metric split of the continuation arms' loss curves (the job page draws them live)."""


Slices = dict[str, tuple[float, float]]
"""Each stage's (start, end) on the progress bar (`expansion.specs.stage_weights`)."""


SCAN_SPLIT = 0.5
"""Share of the scan stage's progress bar taken by the training batches."""
CERTIFICATE_SPLIT = 0.7
"""Share of the scan stage's progress bar done when the certificate batches are."""


def _stage(reporter: ProgressReporter, name: str, slices: Slices) -> StagedReporter:
    start, end = slices[name]
    # Predictors and keeping the expanded network report under the page's `continue` stage.
    shown = "continue" if name in ("predictors", "keep") else name
    return StagedReporter(reporter, start, end, shown)


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


@dataclass
class Scanned:
    """What the scan stage found: every position's gradients, jumpboard step and certificate,
    the summary, and the positions chosen for continuation."""

    gradients: ScanGradients
    """Training-batch gradients of every (position, seed) (the jumpboard model's direction)."""
    certificate: dict[tuple[int, int], CertificateBatches]
    """Per-batch gradients of every (position, seed) on the certificate data."""
    fits: dict[tuple[int, int], JumpboardFit]
    """The jumpboard model's line-searched step of every (position, seed)."""
    certificates: SeedCertificates
    """The certificate in nats of every (position, seed)."""
    summary: dict[str, Any]
    """The result's `scan` section."""
    chosen: list[int]
    selection: dict[str, Any]
    """The result's `selection` section."""
    lr: float
    """The continuation's learning rate."""


def scan_stage(
    spec: ExpandExperiment,
    base: BaseNetwork,
    bundle: DataBundle,
    reporter: ProgressReporter,
    slices: Slices,
) -> Scanned:
    """Every position's gradients (one pass over training batches, one over the certificate
    batches), jumpboard models and certificates, their summary, and the positions chosen."""
    e = spec.expand
    staged = _stage(reporter, "scan", slices)

    def on_batch(fraction: float) -> None:
        staged.progress(SCAN_SPLIT * fraction, "scan", "gradients at every position")
        check_stop(reporter)

    def on_certificate_batch(fraction: float) -> None:
        done = SCAN_SPLIT + (CERTIFICATE_SPLIT - SCAN_SPLIT) * fraction
        staged.progress(done, "scan", "certificate gradients at every position")
        check_stop(reporter)

    def on_candidate(fraction: float) -> None:
        done = CERTIFICATE_SPLIT + (1.0 - CERTIFICATE_SPLIT) * fraction
        staged.progress(done, "scan", "jumpboard models on the certificate split")
        check_stop(reporter)

    model = base.model
    gradients = scan_positions(
        model,
        (bundle.x_train, bundle.y_train),
        (bundle.x_val, bundle.y_val),
        list(range(model.num_positions)),
        e.seeds,
        batch_size=spec.grad_batch_size,
        max_batches=e.grad_batches,
        shuffle_seed=spec.train.seed,
        on_batch=on_batch,
    )
    examples = certificate_examples(spec, bundle)
    certificate = certificate_gradients(model, spec, examples, on_certificate_batch)
    data = certificate_data(model, *examples)
    fits, certificates = seed_certificates(spec, model, gradients, data, bundle, on_candidate)
    summary = scan_summary(
        gradients,
        certificate,
        certificates,
        e.seeds,
        confidence=e.confidence,
        min_batches=e.min_certificate_batches,
        min_effect=e.min_effect,
    )
    lr = continuation_lr(e.continue_lr, base.final_lr, spec.train.lr)
    scores = selection_scores_for(
        spec, model, gradients, certificate, fits, certificates.records, bundle, lr
    )
    # Every rank of a multi-device job continues the positions rank 0 chose.
    chosen = agree_with_rank_zero(choose_positions(spec, summary["positions"], scores))
    return Scanned(
        gradients=gradients,
        certificate=certificate,
        fits=fits,
        certificates=certificates,
        summary=summary,
        chosen=chosen,
        selection=selection_record(spec, summary["positions"], scores),
        lr=lr,
    )


def certify_stage(
    spec: ExpandExperiment,
    base: BaseNetwork,
    scanned: Scanned,
    bundle: DataBundle,
    reporter: ProgressReporter,
    slices: Slices,
) -> dict[tuple[int, int], dict[str, Any]]:
    """The insertion record of every chosen (position, seed) so far: depths, function drift,
    the gradient statistics with the |E g|^2 test, the certificate in nats (from the scan) and
    the jumpboard model on the test set."""
    e = spec.expand
    staged = _stage(reporter, "certify", slices)
    model = base.model
    val, test = (bundle.x_val, bundle.y_val), (bundle.x_test, bundle.y_test)
    keys = [(p, s) for p in scanned.chosen for s in e.seeds]
    # The base's losses and logits are the same for every candidate: computed once.
    reference = base_losses(model, val, test)
    base_logits = reference_logits(model, bundle.x_test)
    records: dict[tuple[int, int], dict[str, Any]] = {}
    for i, (p, s) in enumerate(keys):
        grad, fit = scanned.gradients.gradients[(p, s)], scanned.fits[(p, s)]
        descent = descent_record(
            grad, scanned.certificate[(p, s)], e.confidence, e.min_certificate_batches
        )
        descent["step"] = fit.step
        descent["predicted_val_risk_delta"] = fit.predicted_val_risk_delta
        drift = function_drift(base_logits, expanded_copy(model, p, s), bundle.x_test)
        records[(p, s)] = {
            "position": p,
            "depth_before": model.total_blocks,
            "depth_after": model.total_blocks + 1,
            "seed": s,
            "function_drift_eval": drift["eval"],
            "function_drift_train": drift["train"],
            "descent": descent,
            "certificate": scanned.certificates.records[(p, s)],
            "jumpboard": jumpboard_record(model, grad, fit, test, reference, e.confidence),
        }
        staged.progress((i + 1) / len(keys), "certify", f"position {p} seed {s}")
        check_stop(reporter)
    return records


@dataclass
class Continued:
    """The continuation stage's outcome: both arms of every chosen (position, seed)."""

    continuation: Continuation
    curves: dict[str, list[list[float]]]
    """Training-loss window means per arm (`control seed 0`, `position 4 seed 0`, ...)."""
    batched: bool
    """Whether arms of one architecture trained together (expand.batch_arms)."""


def continue_stage(
    spec: ExpandExperiment,
    base: BaseNetwork,
    scanned: Scanned,
    bundle: DataBundle,
    reporter: ProgressReporter,
    device: torch.device,
    slices: Slices,
) -> Continued:
    """Expanded against control arms from the base for `expand.continue_steps` steps, for every
    chosen position and seed; each finished arm's curve is reported as it lands."""
    e = spec.expand
    staged = _stage(reporter, "continue", slices)
    total_steps = e.continue_steps * len(e.seeds) * (len(scanned.chosen) + 1)
    done = [0]

    def on_step() -> None:
        done[0] += 1
        if done[0] % 20 == 0 or done[0] == total_steps:
            staged.progress(done[0] / total_steps, "continue", f"{done[0]}/{total_steps} steps")
            check_stop(reporter)

    curves: dict[str, list[list[float]]] = {}
    batched = batching_chosen(e.batch_arms, device, base.model)

    def on_arm(label: str) -> None:
        # Each finished arm's curve lands on the job page while the others still train.
        for step, loss in curves.get(label, []):
            reporter.metric(int(step), CONTINUATION_SPLIT, f"{label}/loss", loss)

    continuation = controlled_continuation(
        base.model,
        base.optimizer_state,
        bundle,
        spec.train,
        positions=scanned.chosen,
        seeds=e.seeds,
        steps=e.continue_steps,
        lr=scanned.lr,
        on_step=on_step,
        confidence=e.confidence,
        early_steps=sorted(set(early_steps_for(e.continue_steps).values())),
        on_arm=on_arm,
        curves=curves,
        batched=batched,
    )
    return Continued(continuation=continuation, curves=curves, batched=batched)


def position_rows(
    spec: ExpandExperiment,
    scanned: Scanned,
    records: dict[tuple[int, int], dict[str, Any]],
    continued: Continued,
) -> list[PositionRow]:
    """The result's `positions`: per continued position its certificate in nats and its
    |E g|^2 test over seeds beside its realized gain against the control with an interval."""
    e = spec.expand
    rows = {row["position"]: row for row in scanned.summary["positions"]}
    out: list[PositionRow] = []
    for p in scanned.chosen:
        per_seed = [records[(p, s)] for s in e.seeds]
        row = rows[p]
        gain = paired_summary(
            [continued.continuation.differences[(p, s)] for s in e.seeds], e.confidence
        )
        out.append(
            {
                "position": p,
                "n_seeds": len(per_seed),
                "certificate": row["certificate"],
                "nonzero_gradient": row["nonzero_gradient"],
                "nonzero_gradient_counts": row["nonzero_gradient_counts"],
                "nonzero_gradient_family": row["nonzero_gradient_family"],
                "nonzero_gradient_p_value": row["nonzero_gradient_p_value"],
                "family_method": row["family_method"],
                "seeds_test_limit": row["seeds_test_limit"],
                "seeds_test_limit_method": row["seeds_test_limit_method"],
                "grad_norm_sq_unbiased": row["grad_norm_sq_unbiased"],
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
    return out


def run_expand(
    spec: ExpandExperiment,
    out_dir: Path,
    reporter: ProgressReporter | None = None,
    *,
    data_dir: Path | None = None,
    base_checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Run an `expand` experiment; write and return its result dict (docs/architecture.md).

    Stages, in order: data, the base (trained, or loaded from `base_checkpoint` with its
    optimizer state), scan and choice of positions, certificate, continuation, predictors,
    per-position summary, the base's own risks, the answer (`expansion.results.answer`).
    """
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

    slices = stage_slices(spec, base_given=base_checkpoint is not None)
    base = obtain_base(
        spec, bundle, _stage(reporter, "train", slices), out_dir, device, base_checkpoint
    )
    timings["train_s"] = base.train_s
    check_stop(reporter)

    t0 = time.perf_counter()
    scanned = scan_stage(spec, base, bundle, reporter, slices)
    timings["scan_s"] = time.perf_counter() - t0
    partial = {**result_header(spec, device), "scan": scanned.summary}
    partial["selection"] = scanned.selection
    write_result(out_dir, json_safe_record(partial), PARTIAL_RESULT_FILE)

    t0 = time.perf_counter()
    records = certify_stage(spec, base, scanned, bundle, reporter, slices)
    timings["certify_s"] = time.perf_counter() - t0
    partial["insertions"] = [records[k] for k in sorted(records)]
    write_result(out_dir, json_safe_record(partial), PARTIAL_RESULT_FILE)

    t0 = time.perf_counter()
    continued = continue_stage(spec, base, scanned, bundle, reporter, device, slices)
    timings["continuation_s"] = time.perf_counter() - t0
    for key, record in records.items():
        record["realized"] = continued.continuation.records[key]
        record["realized"]["lr"] = scanned.lr

    t0 = time.perf_counter()
    _attach_predictors(spec, base.model, scanned.gradients, bundle, records, scanned.lr)
    timings["predictors_s"] = time.perf_counter() - t0
    _stage(reporter, "predictors", slices).progress(1.0, "continue", "predictors done")

    t0 = time.perf_counter()
    risks = base_risks(base.model, bundle)
    timings["evaluate_s"] = time.perf_counter() - t0
    answer = expand_answer(
        continued.continuation.differences,
        scanned.chosen,
        e.seeds,
        scanned.summary["positions"],
        confidence=e.confidence,
        min_effect=e.min_effect,
    )
    t0 = time.perf_counter()
    expanded = keep_expanded(spec, base, bundle, answer, scanned.lr, out_dir)
    timings["keep_expanded_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    keys = [(p, s) for p in scanned.chosen for s in e.seeds]
    result = json_safe_record(
        {
            **result_header(spec, device),
            **risks,
            "parameters": count_parameters(base.model),
            "curves": base.curves,
            "timings": timings,
            "artifacts": [*base.artifacts, *([expanded["file"]] if expanded else [])],
            "expanded_checkpoint": expanded,
            "scan": scanned.summary,
            "insertions": [records[k] for k in keys],
            "positions": position_rows(spec, scanned, records, continued),
            "selection": scanned.selection,
            "continue_lr": scanned.lr,
            "continuation_curves": continued.curves,
            "continuation_batched": continued.batched,
            "answer": answer,
        }
    )
    write_result(out_dir, result)
    reporter.progress(1.0, "continue", "done")
    return result
