"""Controlled continuation: both arms share base state, data order and settings."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from expansion.data.datasets import DataBundle, load_dataset
from expansion.insertion.bounds import gain_interval
from expansion.insertion.insert import insert_block
from expansion.models.evaluate import evaluate
from expansion.models.network import PostNormResNet
from expansion.specs.sections import DataSpec, ModelSpec, TrainSpec
from expansion.training.continuation import (
    build_optimizer,
    controlled_continuation,
    paired_summary,
    run_arm,
)
from expansion.training.trainer import NamedOptimizerState, train_model

Trained = tuple[PostNormResNet, NamedOptimizerState, DataBundle]


class Spec:
    """The bits of an experiment spec that `train_model` reads."""

    data = DataSpec(name="digits")
    model = ModelSpec(kind="mlp", width=16, depth=2)
    train = TrainSpec(epochs=1, batch_size=64, lr=3e-3, accelerator="cpu", weight_decay=0.01)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    bundle = load_dataset(Spec.data, "mlp")
    outcome = train_model(Spec(), bundle, None, tmp_path_factory.mktemp("base"))
    return outcome.model.eval(), outcome.optimizer_state, bundle


def test_base_state_carries_over_by_name_and_new_params_get_their_own_groups(
    trained: Trained,
) -> None:
    base, state, _ = trained
    model = copy.deepcopy(base)
    base_names = {id(p): n for n, p in model.named_parameters()}
    block = insert_block(model, 0, seed=3)  # shifts every existing block's name by one
    opt = build_optimizer(model, Spec.train, 1e-3, base_names, state)
    new_ids = {id(p) for p in block.parameters()}
    roles: dict[str, set[int]] = {g["role"]: set() for g in opt.param_groups}
    for g in opt.param_groups:
        roles[g["role"]] |= {id(p) for p in g["params"]}
    assert roles["new"] == new_ids
    assert roles["existing"] == set(base_names)
    moved = model.stage_blocks(0)[1].w1.weight  # was stages.0.0.w1.weight in the base
    saved = state["state"]["stages.0.0.w1.weight"]["exp_avg"]
    assert torch.equal(opt.state[moved]["exp_avg"], saved)
    assert opt.state[moved]["exp_avg"] is not saved  # a copy: the arms cannot share it
    assert all(p not in opt.state for p in block.parameters())
    decays = {g["weight_decay"] for g in opt.param_groups if g["role"] == "new"}
    assert decays == {0.0, Spec.train.weight_decay}


def test_arms_are_deterministic_and_the_base_is_untouched(trained: Trained) -> None:
    base, state, bundle = trained
    before = {k: v.clone() for k, v in base.state_dict().items()}
    kwargs: dict[str, Any] = {"seed": 1, "steps": 6, "lr": 1e-3}
    a = run_arm(base, state, bundle, Spec.train, positions=[], **kwargs)
    b = run_arm(base, state, bundle, Spec.train, positions=[], **kwargs)
    assert a == b
    c = run_arm(base, state, bundle, Spec.train, positions=[1], **kwargs)
    assert c.test_risk != a.test_risk  # the inserted block did train
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k])


def test_controlled_continuation_records(trained: Trained) -> None:
    base, state, bundle = trained
    outcome = controlled_continuation(
        base, state, bundle, Spec.train, positions=[0, 2], seeds=[0, 1], steps=4, lr=1e-3
    )
    records = outcome.records
    assert set(records) == {(0, 0), (2, 0), (0, 1), (2, 1)}
    base_risk, _ = evaluate(base, bundle.x_test, bundle.y_test)
    for key, rec in records.items():
        assert rec["steps"] == 4
        assert rec["base_test_risk"] == pytest.approx(base_risk)
        assert rec["gain_vs_control"] == pytest.approx(
            rec["control_test_risk"] - rec["expanded_test_risk"]
        )
        diffs = outcome.differences[key]
        assert diffs.shape == (len(bundle.y_test),)
        assert float(diffs.mean()) == pytest.approx(rec["gain_vs_control"], abs=1e-9)
        low, high = rec["gain_ci"]
        assert low <= rec["gain_vs_control"] <= high
        assert rec["gain_ci_method"] == "test_examples_only(one seed)"
        assert (low, high) == pytest.approx(gain_interval(diffs[None, :], 0.95))
    # one control per seed, shared by the positions
    assert records[(0, 0)]["control_test_risk"] == records[(2, 0)]["control_test_risk"]
    assert records[(0, 0)]["control_test_risk"] != records[(0, 1)]["control_test_risk"]


def test_paired_summary_is_the_gain_interval() -> None:
    rng = np.random.default_rng(0)
    per_example = rng.normal(0.0, 0.2, size=500)
    diffs = [per_example + shift for shift in (0.01, -0.002, 0.004, 0.007)]
    s = paired_summary(diffs, 0.9)
    gains = np.array([d.mean() for d in diffs])
    assert s["gain_mean"] == pytest.approx(gains.mean())
    assert s["gain_std"] == pytest.approx(gains.std(ddof=1))
    assert s["gain_ci_method"] == "crossed_random_effects_t(seeds, test_examples)"
    low, high = s["gain_ci"]
    assert (low, high) == pytest.approx(gain_interval(np.stack(diffs), 0.9))
    assert low < s["gain_mean"] < high
    # the test examples' noise dominates here: the interval is far wider than the seeds-only
    # t-interval, and about as wide as the example-level one
    t_half = stats.t.ppf(0.95, 3) * gains.std(ddof=1) / math.sqrt(4)
    example_half = 1.645 * per_example.std(ddof=1) / math.sqrt(500)
    assert high - low > 2 * t_half
    assert high - low == pytest.approx(2 * example_half, rel=0.35)
    one = paired_summary(diffs[:1], 0.9)
    assert one["gain_std"] is None and one["gain_ci_method"] == "test_examples_only(one seed)"
