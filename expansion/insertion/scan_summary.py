"""The result's `scan` section: per position its seeds' certificates, the position's verdict
over seeds, and the family-wise (Holm) verdict over positions.
"""

from __future__ import annotations

from typing import Any

from expansion.insertion.bounds import family_verdicts
from expansion.insertion.certificate import (
    CertificateBatches,
    descent_record,
)
from expansion.insertion.scan import ScanGradients
from expansion.results.records import (
    DescentRecord,
    ScanPositionRow,
    ScanSeedRow,
    Verdict,
    seed_verdict,
    verdict_counts,
)

MEAN_FIELDS = (
    "grad_norm_sq_train",
    "grad_norm_sq_val",
    "grad_norm_sq_unbiased",
    "cosine_train_val",
)
"""Estimates averaged over seeds in a scan row (never a bound: a mean of bounds bounds nothing)."""


FAMILY_METHOD = "holm"


SEEDS_LCB_METHOD = "min_over_seeds_of_per_seed_bounds"


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
