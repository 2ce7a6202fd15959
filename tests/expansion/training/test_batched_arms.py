"""Batched continuation arms against the one-by-one path they replace.

The independent computation is the one-by-one path itself (`expanded_arm`, `build_optimizer`,
`train_steps`, `per_example_test`: torch.optim's AdamW/SGD on an ordinary module). Both train
the same tiny arms for a few steps; parameters, step losses and per-example test losses must
agree to float rounding. Tolerance: 1e-5 absolute on parameters and losses (the stacked
forward is a grouped convolution, which sums in another order; observed differences ~1e-7).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from tiny_networks import tiny_model

from expansion.data.datasets import DataBundle, load_dataset
from expansion.models.network import PostNormResNet
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError
from expansion.specs.sections import DataSpec, ModelSpec, TrainSpec
from expansion.training.batched_arms import (
    ArmPlan,
    batching_chosen,
    expanded_arm,
    group_arms,
    supports_batching,
    train_arms,
)
from expansion.training.continuation import (
    NamedState,
    build_optimizer,
    controlled_continuation,
    per_example_test,
    train_steps,
)
from expansion.training.trainer import train_model

TOLERANCE = 1e-5
STEPS = 5
LR = 2e-3

Trained = tuple[PostNormResNet, NamedState, DataBundle]


class Spec:
    """The bits of an experiment spec that `train_model` reads: a tiny conv1d on MNIST-1D."""

    data = DataSpec(name="mnist1d", augment=True, max_train_samples=600)
    model = ModelSpec(kind="conv1d", width=8, depth=2, kernel_size=3)
    train = TrainSpec(
        epochs=1,
        batch_size=64,
        lr=3e-3,
        accelerator="cpu",
        weight_decay=0.05,
        label_smoothing=0.1,
    )


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> Trained:
    bundle = load_dataset(Spec.data, "conv1d")
    outcome = train_model(Spec(), bundle, None, tmp_path_factory.mktemp("base"), max_steps=8)
    return outcome.model.eval(), outcome.optimizer_state, bundle


def one_by_one(
    base: PostNormResNet,
    state: NamedState | None,
    bundle: DataBundle,
    train: TrainSpec,
    plan: ArmPlan,
) -> tuple[PostNormResNet, list[float], np.ndarray]:
    """(final network, step losses, per-example test losses) of the one-by-one path."""
    model, names = expanded_arm(base, plan)
    optimizer = build_optimizer(model, train, LR, names, state)
    losses: list[float] = []
    train_steps(model, optimizer, bundle, train, STEPS, plan.seed, losses=losses)
    test_losses, _ = per_example_test(model, bundle.x_test, bundle.y_test)
    return model, losses, test_losses


PLANS = [ArmPlan((), 0), ArmPlan((), 1), ArmPlan((1,), 0), ArmPlan((2,), 1), ArmPlan((0,), 2)]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_batched_arms_equal_the_one_by_one_path(trained: Trained, optimizer: str) -> None:
    base, trained_state, bundle = trained
    train = Spec.train.model_copy(update={"optimizer": optimizer, "momentum": 0.9})
    state: NamedState | None = trained_state
    if optimizer == "sgd":
        state = None  # the base trained with AdamW: SGD arms start with fresh momentum
    batched = train_arms(base, state, bundle, train, PLANS, steps=STEPS, lr=LR)
    assert len(batched) == len(PLANS)
    for plan, arm in zip(PLANS, batched, strict=True):
        model, losses, test_losses = one_by_one(base, state, bundle, train, plan)
        params = dict(model.named_parameters())
        assert set(arm.parameters) == set(params)
        for name, p in params.items():
            torch.testing.assert_close(arm.parameters[name], p.detach(), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(arm.step_losses, losses, atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(arm.test_losses, test_losses, atol=TOLERANCE, rtol=0)
        assert arm.test_losses.dtype == np.float64
        # the arms did move: a step changes the network, not just the rounding
        start, _ = expanded_arm(base, plan)
        moved = max(
            float((arm.parameters[n] - p.detach()).abs().max()) for n, p in start.named_parameters()
        )
        assert moved > 100 * TOLERANCE


def test_arms_with_the_same_seed_see_the_same_data_and_others_do_not(trained: Trained) -> None:
    base, state, bundle = trained
    plans = [ArmPlan((), 3), ArmPlan((), 3), ArmPlan((), 4)]
    arms = train_arms(base, state, bundle, Spec.train, plans, steps=3, lr=LR)
    assert arms[0].step_losses == arms[1].step_losses
    assert arms[0].step_losses != arms[2].step_losses


def test_controlled_continuation_batched_gives_the_same_records(trained: Trained) -> None:
    base, state, bundle = trained
    kwargs: dict[str, Any] = {
        "positions": [0, 2],
        "seeds": [0, 1],
        "steps": 4,
        "lr": LR,
        "early_steps": [2],
    }
    labels: list[str] = []
    curves: dict[str, list[list[float]]] = {}
    steps_seen = [0]

    def count() -> None:
        steps_seen[0] += 1

    together = controlled_continuation(
        base,
        state,
        bundle,
        Spec.train,
        batched=True,
        on_arm=labels.append,
        on_step=count,
        curves=curves,
        **kwargs,
    )
    alone = controlled_continuation(base, state, bundle, Spec.train, **kwargs)
    assert steps_seen[0] == 4 * 2 * 3  # steps x seeds x (positions + control), as one by one
    assert (
        sorted(labels)
        == sorted(curves)
        == sorted(
            [f"control seed {s}" for s in (0, 1)]
            + [f"position {p} seed {s}" for p in (0, 2) for s in (0, 1)]
        )
    )
    assert set(together.records) == set(alone.records)
    for key, rec in alone.records.items():
        other = together.records[key]
        for field in ("expanded_test_risk", "control_test_risk", "gain_vs_control"):
            assert other[field] == pytest.approx(rec[field], abs=TOLERANCE)
        for mine, theirs in zip(other["early"], rec["early"], strict=True):
            assert mine["step"] == theirs["step"] == 2
            assert mine["gain"] == pytest.approx(theirs["gain"], abs=TOLERANCE)
        np.testing.assert_allclose(
            together.differences[key], alone.differences[key], atol=2 * TOLERANCE, rtol=0
        )


def test_positions_in_one_stage_stack_and_other_stages_do_not() -> None:
    base = tiny_model("conv2d")  # two stages of depth 2: positions 0..2 and 3..5
    models = [expanded_arm(base, ArmPlan(pos, 0))[0] for pos in [(0,), (2,), (4,), (), (1,)]]
    assert group_arms(models) == [[0, 1, 4], [2], [3]]


def test_batch_norm_is_refused_by_the_spec_and_left_one_by_one_by_auto() -> None:
    assert not supports_batching(tiny_model("conv1d", norm="batch"))
    assert supports_batching(tiny_model("conv1d"))
    raw = {
        "kind": "expand",
        "model": {"kind": "conv1d", "norm": "batch"},
        "expand": {"batch_arms": "on"},
    }
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    assert any(p.startswith("expand.batch_arms:") for p in caught.value.problems)
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert not batching_chosen("auto", cuda, tiny_model("conv1d", norm="batch"))
    assert batching_chosen("auto", cuda, tiny_model("conv1d"))
    assert not batching_chosen("auto", cpu, tiny_model("conv1d"))
    assert batching_chosen("on", cpu, tiny_model("conv1d"))
    assert not batching_chosen("off", cuda, tiny_model("conv1d"))
