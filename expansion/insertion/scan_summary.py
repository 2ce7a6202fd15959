"""The result's `scan` section: per scanned position its certificate in nats over seeds, the
test of a non-zero expected gradient over seeds, and both family-wise (Holm) over positions.

Every scanned position is certified before any is chosen, so the family that Holm corrects
for is fixed by the scan, whatever `expand.select` then continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from expansion.insertion.bounds import family_outcomes, family_verdicts
from expansion.insertion.certificate import CertificateBatches, descent_record, position_certificate
from expansion.insertion.scan import ScanGradients
from expansion.results.records import (
    CertificateRecord,
    DescentRecord,
    ScanPositionRow,
    ScanSeedRow,
    TestOutcome,
    Verdict,
    every_seed_shows,
    outcome_counts,
)

MEAN_FIELDS = (
    "grad_norm_sq_train",
    "grad_norm_sq_val",
    "grad_norm_sq_unbiased",
    "cosine_train_val",
)
"""Estimates averaged over seeds in a scan row (never a limit: a mean of limits means nothing)."""


FAMILY_METHOD = "holm"


SEEDS_TEST_LIMIT_METHOD = "min_over_seeds_of_per_seed_limits"


@dataclass(frozen=True)
class SeedCertificates:
    """Every (position, seed)'s certificate record and per-example risk decreases."""

    records: dict[tuple[int, int], CertificateRecord]
    diffs: dict[tuple[int, int], np.ndarray]


def _seed_row(seed: int, descent: DescentRecord, certificate: CertificateRecord) -> ScanSeedRow:
    return {
        "seed": seed,
        "grad_norm_sq_unbiased": descent["grad_norm_sq_unbiased"],
        "grad_norm_sq_test_limit": descent["grad_norm_sq_test_limit"],
        "grad_norm_sq_batch_mean": descent["grad_norm_sq_batch_mean"],
        "grad_norm_sq_unbiased_train": descent["grad_norm_sq_unbiased_train"],
        "grad_norm_sq_test_limit_train": descent["grad_norm_sq_test_limit_train"],
        "nonzero_gradient_p_value": descent["nonzero_gradient_p_value"],
        "nonzero_gradient": descent["nonzero_gradient"],
        "certificate_risk_decrease": certificate["risk_decrease"],
        "certificate_risk_decrease_ci": certificate["risk_decrease_ci"],
        "certificate_verdict": certificate["verdict"],
    }


def scan_summary(
    scan: ScanGradients,
    certificate: dict[tuple[int, int], CertificateBatches],
    certificates: SeedCertificates,
    seeds: list[int],
    *,
    confidence: float,
    min_batches: int,
    min_effect: float,
) -> dict[str, Any]:
    """The result's `scan` section: per position the certificate in nats over its seeds and the
    intersection-union |E g|^2 test over its seeds, each with its family-wise (Holm) outcome."""
    positions = sorted({p for p, _ in scan.gradients})
    rows: list[ScanPositionRow] = []
    p_below: list[float] = []
    for p in positions:
        per_seed: list[DescentRecord] = [
            descent_record(scan.gradients[(p, s)], certificate[(p, s)], confidence, min_batches)
            for s in seeds
        ]
        seed_certificates = [certificates.records[(p, s)] for s in seeds]
        position_cert, below = position_certificate(
            [certificates.diffs[(p, s)] for s in seeds],
            [Verdict(c["verdict"]) for c in seed_certificates],
            confidence=confidence,
            min_effect=min_effect,
        )
        p_below.append(below)
        outcomes = [TestOutcome(r["nonzero_gradient"]) for r in per_seed]
        limits = [r["grad_norm_sq_test_limit"] for r in per_seed]
        known = [b for b in limits if b is not None]
        as_dicts: list[dict[str, Any]] = [dict(r) for r in per_seed]
        means = {
            name: sum(float(r[name]) for r in as_dicts) / len(as_dicts) for name in MEAN_FIELDS
        }
        rows.append(
            {
                "position": p,
                "certificate": position_cert,
                "grad_norm_sq_train": means["grad_norm_sq_train"],
                "grad_norm_sq_val": means["grad_norm_sq_val"],
                "grad_norm_sq_unbiased": means["grad_norm_sq_unbiased"],
                "cosine_train_val": means["cosine_train_val"],
                "seeds_test_limit": min(known) if len(known) == len(limits) else None,
                "seeds_test_limit_method": SEEDS_TEST_LIMIT_METHOD,
                "nonzero_gradient_p_value": max(r["nonzero_gradient_p_value"] for r in per_seed),
                "nonzero_gradient": every_seed_shows(outcomes),
                "nonzero_gradient_counts": outcome_counts(outcomes),
                "nonzero_gradient_family": TestOutcome.NOT_SHOWN,  # set below, over positions
                "family_method": FAMILY_METHOD,
                "per_seed": [
                    _seed_row(s, r, c)
                    for s, r, c in zip(seeds, per_seed, seed_certificates, strict=True)
                ],
            }
        )
    shown = family_outcomes(
        [r["nonzero_gradient"] for r in rows],
        [r["nonzero_gradient_p_value"] for r in rows],
        1.0 - confidence,
    )
    verdicts = family_verdicts(
        [r["certificate"]["verdict"] for r in rows],
        [r["certificate"]["p_value"] for r in rows],
        p_below,
        confidence,
    )
    for row, outcome, verdict in zip(rows, shown, verdicts, strict=True):
        row["nonzero_gradient_family"] = outcome
        row["certificate"]["family_verdict"] = verdict
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
        "certificate_examples": min(
            (int(r["examples"]) for r in certificates.records.values()), default=0
        ),
        "min_certificate_batches": min_batches,
        "min_effect": min_effect,
        "confidence": confidence,
        "family_method": FAMILY_METHOD,
        "family_alpha": 1.0 - confidence,
        "positions": rows,
    }
