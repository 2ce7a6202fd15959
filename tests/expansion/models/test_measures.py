"""Measures: the random-projection sensitivity estimate against the exact Jacobian; capacity."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_networks import inputs, tiny_model

from expansion.models.measures import (
    capacity_measures,
    exact_input_sensitivity,
    generalization_gap,
    input_sensitivity,
)


@pytest.mark.parametrize("method", ["jvp", "vjp"])
@pytest.mark.parametrize("kind", ["mlp", "conv1d"])
def test_sensitivity_estimate_matches_the_exact_jacobian(kind: str, method: str) -> None:
    model = tiny_model(kind)
    x = inputs(model, n=24)
    exact = exact_input_sensitivity(model, x)
    est = input_sensitivity(model, x, projections=64, seed=1, method=method)
    assert est.projections == 64 and est.samples == 24 and est.method == method
    assert est.standard_error > 0
    # The standard error is over inputs, so it also bounds the error against the exact mean.
    assert abs(est.estimate - exact) < 4 * est.standard_error + 0.05 * exact
    # Projection noise alone: many projections converge to the exact value.
    many = input_sensitivity(model, x, projections=400, seed=2, method=method)
    assert many.estimate == pytest.approx(exact, rel=0.08)


def test_sensitivity_per_input_matches_a_hand_computed_jacobian() -> None:
    # A linear map has the same Jacobian everywhere: ||W||_F^2 exactly.
    linear = torch.nn.Linear(5, 3)
    x = torch.randn(40, 5)
    exact = float(linear.weight.detach().pow(2).sum())
    assert exact_input_sensitivity(linear, x) == pytest.approx(exact, rel=1e-6)
    est = input_sensitivity(linear, x, projections=200, seed=0)
    assert abs(est.estimate - exact) < 4 * est.standard_error
    assert est.estimate == pytest.approx(exact, rel=0.1)


def test_capacity_sums_alpha_times_branch_norms() -> None:
    model = tiny_model("mlp", scaling="inv_depth")
    blocks = model.blocks()
    expected = sum(
        abs(float(b.alpha.detach()))
        * float(b.w1.weight.detach().norm())
        * float(b.w2.weight.detach().norm())
        for b in blocks
    )
    measures = capacity_measures(model)
    assert measures["branch_norm_sum"] == pytest.approx(expected)
    assert measures["alpha_sum"] == pytest.approx(len(blocks) * 1 / len(blocks))
    assert measures["weight_frobenius_sq"] > 0
    # Zeroing every branch's last layer removes that capacity.
    for b in blocks:
        b.zero_init_last()
    assert capacity_measures(model)["branch_norm_sum"] == 0.0


def test_generalization_gap_is_test_minus_train() -> None:
    gap = generalization_gap({"test_risk": 0.5, "train_risk": 0.2, "test_error": 0.1})
    assert gap["generalization_gap_risk"] == pytest.approx(0.3)
    assert gap["generalization_gap_error"] is None
    assert not math.isnan(gap["generalization_gap_risk"] or 0.0)
