"""The certificate data of an `expand` experiment and every (position, seed)'s certificate in
nats on it: the jumpboard model's step from validation data, its risk decrease on the
certificate examples (docs/design.md 1.3, docs/science.md 2).
"""

from __future__ import annotations

from typing import Any

import torch

from expansion.data.datasets import DataBundle
from expansion.insertion.certificate import CertificateBatches, CertificateData, certificate_record
from expansion.insertion.jumpboard import (
    JumpboardFit,
    fit_jumpboard,
    loss_differences,
    per_sample_losses,
)
from expansion.insertion.scan import ScanGradients, scan_positions
from expansion.insertion.scan_summary import SeedCertificates
from expansion.models.network import PostNormResNet
from expansion.results.records import CertificateSource
from expansion.specs.experiments import ExpandExperiment

FRESH_CERTIFICATE_BATCHES = 16
"""Fresh certificate batches drawn (`teacher`) when `expand.grad_batches` is not given."""

CertificateExamples = tuple[torch.Tensor, torch.Tensor, CertificateSource]
"""(x, y, source) of the certificate data."""


def certificate_examples(spec: ExpandExperiment, bundle: DataBundle) -> CertificateExamples:
    """The certificate data (held out or fresh): never trained on, never used by the line
    search."""
    e = spec.expand
    fresh_samples = (e.grad_batches or FRESH_CERTIFICATE_BATCHES) * spec.grad_batch_size
    x, y, source = bundle.certificate_data(fresh_samples, seed=spec.data.seed + 2)
    if len(y) // spec.grad_batch_size < 2:
        raise ValueError(
            f"the certificate split has {len(y)} samples, fewer than 2 batches of "
            f"expand.grad_batch_size={spec.grad_batch_size}: raise data.certify_fraction or lower "
            "expand.grad_batch_size"
        )
    return x, y, CertificateSource(source)


def certificate_gradients(
    base: PostNormResNet,
    spec: ExpandExperiment,
    examples: CertificateExamples,
    on_batch: Any,
) -> dict[tuple[int, int], CertificateBatches]:
    """Per-batch gradients of every (position, seed) on the certificate data."""
    e = spec.expand
    x, y, source = examples
    # scan_positions also wants a validation set; one batch of the certificate data keeps that
    # unused by-product cheap.
    head = (x[: spec.grad_batch_size], y[: spec.grad_batch_size])
    scan = scan_positions(
        base,
        (x, y),
        head,
        list(range(base.num_positions)),
        e.seeds,
        batch_size=spec.grad_batch_size,
        max_batches=e.grad_batches,
        shuffle_seed=spec.train.seed + 1,
        on_batch=on_batch,
    )
    return {key: CertificateBatches(grad.batches, source) for key, grad in scan.gradients.items()}


def seed_certificates(
    spec: ExpandExperiment,
    model: PostNormResNet,
    gradients: ScanGradients,
    data: CertificateData,
    bundle: DataBundle,
    on_candidate: Any,
) -> tuple[dict[tuple[int, int], JumpboardFit], SeedCertificates]:
    """Every (position, seed)'s jumpboard step (line search on validation data) and its
    certificate in nats on the certificate examples."""
    e = spec.expand
    val = (bundle.x_val, bundle.y_val)
    base_val = per_sample_losses(model, *val)[0]
    base_risk = float(data.base_losses.double().mean())
    fits: dict[tuple[int, int], JumpboardFit] = {}
    records, diffs = {}, {}
    for i, (key, grad) in enumerate(sorted(gradients.gradients.items())):
        fits[key] = fit_jumpboard(model, grad, val, e.line_search_points, base_val)
        diffs[key] = loss_differences(model, grad, fits[key], (data.x, data.y), data.base_losses)
        records[key] = certificate_record(
            diffs[key], data.source, base_risk, confidence=e.confidence, min_effect=e.min_effect
        )
        on_candidate((i + 1) / len(gradients.gradients))
    return fits, SeedCertificates(records, diffs)
