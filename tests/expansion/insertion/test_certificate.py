"""The records of one candidate insertion: U and the |E g|^2 test, transfer, the jumpboard model
and the certificate in nats, including where the inserted block provably helps and where it
provably cannot."""

from __future__ import annotations

import math

import pytest
import torch
from design_fields import CERTIFICATE_FIELDS, DESCENT_FIELDS, JUMPBOARD_FIELDS
from tiny_networks import KINDS, inputs, labels, tiny_model

from expansion.insertion.bounds import numerical_floor
from expansion.insertion.certificate import (
    CertificateBatches,
    certificate_data,
    certify,
    descent_record,
    gradient_test,
    unbiased_norm_sq,
)
from expansion.insertion.jumpboard import base_losses, jumpboard_model, risk
from expansion.insertion.scan import (
    PositionGradient,
    new_blocks,
    scan_positions,
    single_pass_gradients,
)
from expansion.models.network import PostNormResNet
from expansion.results.records import CertificateSource, TestOutcome, Verdict

NEW_FIELDS = {
    "grad_norm_sq_batch_mean",
    "certificate_source",
    "certificate_batches",
    "nonzero_gradient_method",
    "numerical_floor",
    "nonzero_gradient_reason",
    "grad_norm_sq_unbiased_train",
    "grad_norm_sq_test_limit_train",
    "train_batches",
    "nonzero_gradient_train",
}


def test_unbiased_estimate_matches_its_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(12, 30, generator=gen) + 0.3
    n = g.shape[0]
    mean = g.double().mean(dim=0)
    cov_trace = g.double().var(dim=0, unbiased=True).sum()
    expected = float(mean @ mean - cov_trace / n)
    u, limit = unbiased_norm_sq(g, 0.95)
    assert u == pytest.approx(expected, rel=1e-9)
    assert math.isnan(unbiased_norm_sq(g[:2], 0.95)[1])  # no limit from 2 batches
    assert limit < u
    assert unbiased_norm_sq(g, 0.99)[1] < limit  # more confidence, lower limit


def test_unbiased_estimate_is_centred_on_the_true_norm() -> None:
    gen = torch.Generator().manual_seed(1)
    mu = torch.full((20,), 0.1)  # |mu|^2 = 0.2
    estimates = [
        float(unbiased_norm_sq(mu + torch.randn(8, 20, generator=gen), 0.9)[0]) for _ in range(400)
    ]
    assert sum(estimates) / len(estimates) == pytest.approx(0.2, abs=0.06)
    # the plain |mean g|^2 would be biased up by trace(Cov)/n = 20/8
    naive = float((mu + torch.randn(8, 20, generator=gen)).mean(dim=0).norm() ** 2)
    assert naive > 1.0


def teacher_labels(x: torch.Tensor) -> torch.Tensor:
    """Labels from a fixed random linear teacher, so train and validation gradients agree."""
    w = torch.randn(x[0].numel(), 10, generator=torch.Generator().manual_seed(99))
    return (x.flatten(1) @ w).argmax(dim=1)


Split = tuple[torch.Tensor, torch.Tensor]


def _scan_one(
    model: PostNormResNet, position: int, seed: int = 2
) -> tuple[PositionGradient, Split, Split]:
    x = inputs(model, 96)
    vx = inputs(model, 64, seed=7)
    y, vy = teacher_labels(x), teacher_labels(vx)
    scan = scan_positions(model, (x, y), (vx, vy), [position], [seed], batch_size=16)
    return scan.gradients[(position, seed)], (vx, vy), (x, y)


def _certificate(
    model: PostNormResNet, position: int, seed: int = 2, examples: int = 128
) -> tuple[CertificateBatches, Split]:
    """Batches of 16 fresh teacher-labelled inputs (never seen by `_scan_one`'s data), and the
    examples themselves."""
    cx = inputs(model, examples, seed=11)
    cy = teacher_labels(cx)
    scan = scan_positions(model, (cx, cy), (cx, cy), [position], [seed], batch_size=16)
    batches = scan.gradients[(position, seed)].batches
    return CertificateBatches(batches, CertificateSource.FRESH), (cx, cy)


@pytest.mark.parametrize("kind", list(KINDS))
def test_predicted_change_agrees_with_finite_difference(kind: str) -> None:
    model = tiny_model(kind).eval()
    grad, (vx, vy), _ = _scan_one(model, 1)
    base = risk(model, vx, vy)
    inner = float(grad.train.double() @ grad.val.double())
    # a first-order change of 0.02% of the risk: small, yet far above float32 rounding
    t = 2e-4 * base / abs(inner)
    predicted = -t * inner
    finite = risk(jumpboard_model(model, 1, grad.seed, grad.train, t), vx, vy) - base
    assert predicted != 0.0
    assert abs(finite - predicted) <= 0.05 * abs(predicted), (finite, predicted)


@pytest.mark.parametrize("kind", list(KINDS))
def test_records_have_every_field_and_consistent_values(kind: str) -> None:
    model = tiny_model(kind).eval()
    grad, val, test = _scan_one(model, 0)
    batches, (cx, cy) = _certificate(model, 0)
    data = certificate_data(model, cx, cy, CertificateSource.FRESH)
    out = certify(model, grad, batches, data, val, test, confidence=0.9, line_search_points=5)
    descent, certificate, jump = out.descent, out.certificate, out.jumpboard
    assert set(descent) >= DESCENT_FIELDS | NEW_FIELDS
    assert set(certificate) >= CERTIFICATE_FIELDS
    assert set(jump) >= JUMPBOARD_FIELDS
    assert descent["nonzero_gradient"] in set(TestOutcome)
    assert descent["certificate_source"] == "fresh" and descent["certificate_batches"] == 8
    assert descent["train_batches"] == 6
    # U and the limit come from the certificate batches, the *_train values from training
    on_cert = gradient_test(batches.batches, 0.9)
    on_train = gradient_test(grad.batches, 0.9)
    assert descent["grad_norm_sq_unbiased"] == pytest.approx(on_cert.u)
    assert descent["grad_norm_sq_test_limit"] == pytest.approx(on_cert.limit)
    assert descent["grad_norm_sq_unbiased_train"] == pytest.approx(on_train.u)
    assert descent["grad_norm_sq_unbiased"] != descent["grad_norm_sq_unbiased_train"]
    floor = numerical_floor(descent["grad_norm_sq_batch_mean"])
    assert descent["numerical_floor"] == pytest.approx(floor)
    if descent["nonzero_gradient"] == "shown":
        limit = descent["grad_norm_sq_test_limit"]
        assert limit is not None and limit > floor
    assert descent["grad_norm_sq_train"] == pytest.approx(float(grad.train.norm() ** 2), rel=1e-5)
    assert -1.0 <= descent["cosine_train_val"] <= 1.0
    assert descent["step"] == jump["step"] > 0
    low, high = jump["test_risk_delta_ci"]
    assert low <= jump["test_risk_delta"] <= high
    steps = [t for t, _ in jump["line_search"]]
    assert len(steps) == 5 and jump["step"] in steps
    best = min(jump["line_search"], key=lambda pair: pair[1])
    assert jump["val_risk_delta"] == pytest.approx(best[1])
    # the certificate: the chosen model on the certificate examples, against the base
    chosen = jumpboard_model(model, 0, grad.seed, grad.train, jump["step"])
    expected = risk(model, cx, cy) - risk(chosen, cx, cy)
    assert certificate["risk_decrease"] == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert certificate["examples"] == 128 and certificate["source"] == "fresh"
    assert certificate["base_risk"] == pytest.approx(risk(model, cx, cy), rel=1e-6)
    low, high = certificate["risk_decrease_ci"]
    assert low is not None and high is not None and low <= certificate["risk_decrease"] <= high
    # the base's losses computed once by the caller give the same records
    shared = base_losses(model, val, test)
    again = certify(
        model, grad, batches, data, val, test, confidence=0.9, line_search_points=5, base=shared
    )
    assert (again.descent, again.certificate, again.jumpboard) == (descent, certificate, jump)


@pytest.mark.parametrize("kind", list(KINDS))
def test_nothing_is_shown_where_the_downstream_gradient_vanishes(kind: str) -> None:
    model = tiny_model(kind).eval()
    with torch.no_grad():  # constant logits: dL/dh_p = 0 at every boundary
        model.head.weight.zero_()
    for position in range(model.num_positions):
        grad, val, test = _scan_one(model, position)
        batches, (cx, cy) = _certificate(model, position)
        data = certificate_data(model, cx, cy, CertificateSource.FRESH)
        out = certify(model, grad, batches, data, val, test, confidence=0.95, line_search_points=4)
        assert out.descent["grad_norm_sq_unbiased"] == 0.0
        # exactly zero gradients sit inside the numerical floor: never shown
        assert out.descent["nonzero_gradient"] == TestOutcome.NOT_SHOWN
        # the jumpboard model is the base: a decrease of exactly 0, never a verdict
        assert out.certificate["risk_decrease"] == 0.0
        assert out.certificate["verdict"] == Verdict.UNDECIDED
        assert out.jumpboard["test_risk_delta"] == 0.0


def test_nothing_is_shown_where_the_branch_input_is_zero() -> None:
    model = tiny_model("mlp").eval()
    blocks = new_blocks(model, [1], [5])
    with torch.no_grad():  # act(W1 h) = relu(-1) = 0 for every input
        blocks[(1, 5)].w1.weight.zero_()
        bias = blocks[(1, 5)].w1.bias
        assert bias is not None
        bias.fill_(-1.0)
    per_batch = [
        single_pass_gradients(model, inputs(model, 16, seed=i), labels(16, seed=i), blocks)[(1, 5)]
        for i in range(4)
    ]
    w2_size = blocks[(1, 5)].w2.weight.numel()
    for g in per_batch:
        assert torch.count_nonzero(g[:w2_size]) == 0
    # keep only the W2 part (the bias still sees the downstream gradient)
    w2_grads = torch.stack([g[:w2_size] for g in per_batch])
    grad = PositionGradient(1, 5, w2_grads.mean(0), w2_grads.mean(0), w2_grads)
    record = descent_record(grad, CertificateBatches(w2_grads, CertificateSource.HOLDOUT), 0.95)
    assert record["grad_norm_sq_unbiased"] == 0.0
    assert record["nonzero_gradient"] == TestOutcome.NOT_SHOWN
    # the same position with its usual W1 has a non-zero W2 gradient
    normal = single_pass_gradients(
        model, inputs(model, 16), labels(16), new_blocks(model, [1], [5])
    )
    assert torch.count_nonzero(normal[(1, 5)][:w2_size]) > 0


def test_certificate_and_training_batches_are_told_apart() -> None:
    """A mean that only the training batches have (an overfitted base) shows nothing."""
    gen = torch.Generator().manual_seed(4)
    train = torch.randn(16, 40, generator=gen) + 1.0
    held_out = torch.randn(16, 40, generator=gen)
    grad = PositionGradient(0, 0, train.mean(0), held_out.mean(0), train)
    record = descent_record(grad, CertificateBatches(held_out, CertificateSource.HOLDOUT), 0.95)
    train_limit, limit = record["grad_norm_sq_test_limit_train"], record["grad_norm_sq_test_limit"]
    assert train_limit is not None and train_limit > 0  # a descent direction on train
    assert record["nonzero_gradient_train"] == "shown"
    assert limit is not None and limit < 0 and record["nonzero_gradient"] == "not_shown"
    assert record["certificate_source"] == "holdout" and record["certificate_batches"] == 16
