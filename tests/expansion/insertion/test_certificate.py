"""Descent certificate: the unbiased estimate, its bound, transfer and the jumpboard model."""

from __future__ import annotations

import pytest
import torch
from design_fields import DESCENT_FIELDS, JUMPBOARD_FIELDS
from tiny_networks import KINDS, inputs, labels, tiny_model

from expansion.insertion.certificate import (
    certify,
    descent_record,
    jumpboard_model,
    risk,
    unbiased_norm_sq,
)
from expansion.insertion.scan import (
    PositionGradient,
    new_blocks,
    scan_positions,
    single_pass_gradients,
)


def test_unbiased_estimate_matches_its_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(12, 30, generator=gen) + 0.3
    n = g.shape[0]
    mean = g.double().mean(dim=0)
    cov_trace = g.double().var(dim=0, unbiased=True).sum()
    expected = float(mean @ mean - cov_trace / n)
    u, lcb = unbiased_norm_sq(g, 0.95)
    assert u == pytest.approx(expected, rel=1e-9)
    assert lcb < u
    assert unbiased_norm_sq(g, 0.99)[1] < lcb  # more confidence, lower bound


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


def _scan_one(model, position: int, seed: int = 2):
    x = inputs(model, 96)
    vx = inputs(model, 64, seed=7)
    y, vy = teacher_labels(x), teacher_labels(vx)
    scan = scan_positions(model, (x, y), (vx, vy), [position], [seed], batch_size=16)
    return scan.gradients[(position, seed)], (vx, vy), (x, y)


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
def test_certificate_has_every_field_and_consistent_values(kind: str) -> None:
    model = tiny_model(kind).eval()
    grad, val, test = _scan_one(model, 0)
    descent, jump = certify(model, grad, val, test, confidence=0.9, line_search_points=5)
    assert set(descent) >= DESCENT_FIELDS
    assert set(jump) >= JUMPBOARD_FIELDS
    assert descent["condition_holds"] == (descent["grad_norm_sq_lcb"] > 0)
    assert descent["grad_norm_sq_train"] == pytest.approx(float(grad.train.norm() ** 2), rel=1e-5)
    assert -1.0 <= descent["cosine_train_val"] <= 1.0
    assert descent["step"] == jump["step"] > 0
    low, high = jump["test_risk_delta_ci"]
    assert low <= jump["test_risk_delta"] <= high
    steps = [t for t, _ in jump["line_search"]]
    assert len(steps) == 5 and jump["step"] in steps
    best = min(jump["line_search"], key=lambda pair: pair[1])
    assert jump["val_risk_delta"] == pytest.approx(best[1])


@pytest.mark.parametrize("kind", list(KINDS))
def test_condition_fails_where_the_downstream_gradient_vanishes(kind: str) -> None:
    model = tiny_model(kind).eval()
    with torch.no_grad():  # constant logits: dL/dh_p = 0 at every boundary
        model.head.weight.zero_()
    for position in range(model.num_positions):
        grad, val, test = _scan_one(model, position)
        descent, jump = certify(model, grad, val, test, confidence=0.95, line_search_points=4)
        assert descent["grad_norm_sq_unbiased"] == 0.0
        assert descent["condition_holds"] is False
        assert jump["test_risk_delta"] == 0.0


def test_condition_fails_where_the_branch_input_is_zero() -> None:
    model = tiny_model("mlp").eval()
    blocks = new_blocks(model, [1], [5])
    with torch.no_grad():  # act(W1 h) = relu(-1) = 0 for every input
        blocks[(1, 5)].w1.weight.zero_()
        blocks[(1, 5)].w1.bias.fill_(-1.0)
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
    record = descent_record(grad, 0.95)
    assert record["grad_norm_sq_unbiased"] == 0.0
    assert record["condition_holds"] is False
    # the same position with its usual W1 has a non-zero W2 gradient
    normal = single_pass_gradients(
        model, inputs(model, 16), labels(16), new_blocks(model, [1], [5])
    )
    assert torch.count_nonzero(normal[(1, 5)][:w2_size]) > 0
