"""Which scanned positions an `expand` experiment certifies and continues (`expand.select`,
`expand.by`), and the record of that choice.
"""

from __future__ import annotations

from typing import Any

from expansion.insertion.certificate import CertificateBatches, descent_record
from expansion.insertion.jumpboard import JumpboardFit
from expansion.insertion.predictors import (
    probe_steps_for,
    selection_scores,
)
from expansion.insertion.scan import ScanGradients
from expansion.models.network import PostNormResNet
from expansion.results.records import CertificateRecord, Verdict
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.predictor_names import Predictor


def _rank_key(row: dict[str, Any]) -> tuple[float, float]:
    limit = row.get("seeds_test_limit")
    return (float("-inf") if limit is None else float(limit), float(row["grad_norm_sq_unbiased"]))


def choose_positions(
    spec: ExpandExperiment,
    scan_rows: list[dict[str, Any]],
    scores: dict[int, float] | None = None,
) -> list[int]:
    """Positions that get a continuation: explicit, all, exactly those whose certificate in
    nats holds family-wise (`certified`), or the top k by `expand.by`.

    `scores` (position -> seed-mean predictor) ranks top_k; without it (`by` is U or its test
    limit) the scan rows rank: U for `certificate_u`, else the minimum over seeds of the test
    limits (ties by U).
    """
    e = spec.expand
    if e.select == "explicit":
        return sorted(set(e.positions))
    if e.select == "all":
        return [row["position"] for row in scan_rows]
    if e.select == "certified":
        return [
            row["position"]
            for row in scan_rows
            if row["certificate"]["family_verdict"] == Verdict.HOLDS
        ]
    if scores is not None:
        ranked_positions = sorted(scores, key=lambda p: scores[p], reverse=True)
        return sorted(ranked_positions[: e.top_k])
    if e.by == Predictor.CERTIFICATE_U:
        ranked = sorted(scan_rows, key=lambda r: r["grad_norm_sq_unbiased"], reverse=True)
    else:
        ranked = sorted(scan_rows, key=_rank_key, reverse=True)
    return sorted(row["position"] for row in ranked[: e.top_k])


def selection_record(
    spec: ExpandExperiment, scan_rows: list[dict[str, Any]], scores: dict[int, float] | None
) -> dict[str, Any]:
    """The result's `selection`: how positions were chosen, and each position's score."""
    e = spec.expand
    if e.select != "top_k":
        return {"select": e.select, "by": None, "scores": []}
    key = "grad_norm_sq_unbiased" if e.by == Predictor.CERTIFICATE_U else "seeds_test_limit"
    values: dict[int, float | None] = dict(scores) if scores is not None else {}
    if scores is None:
        values = {row["position"]: row.get(key) for row in scan_rows}
    return {
        "select": e.select,
        "by": e.by,
        "scores": [{"position": p, "score": values[p]} for p in sorted(values)],
    }


def selection_scores_for(
    spec: ExpandExperiment,
    base: PostNormResNet,
    scan: ScanGradients,
    cert_grads: dict[tuple[int, int], CertificateBatches],
    fits: dict[tuple[int, int], JumpboardFit],
    certificates: dict[tuple[int, int], CertificateRecord],
    bundle: Any,
    lr: float,
) -> dict[int, float] | None:
    """Per-position scores of `expand.by` for top_k (None: U or its test limit, ranked by
    `choose_positions` from the scan summary)."""
    e = spec.expand
    if e.select != "top_k" or e.by in (Predictor.CERTIFICATE_U, Predictor.CERTIFICATE_U_TEST_LIMIT):
        return None
    positions = sorted({p for p, _ in scan.gradients})
    descents: dict[tuple[int, int], dict[str, Any]] = {}
    for key, grad in scan.gradients.items():
        descent = dict(
            descent_record(grad, cert_grads[key], e.confidence, e.min_certificate_batches)
        )
        descent["step"] = fits[key].step
        descent["predicted_val_risk_delta"] = fits[key].predicted_val_risk_delta
        descents[key] = descent
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
        certificates={key: dict(record) for key, record in certificates.items()},
    )
