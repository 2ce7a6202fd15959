"""Controlled continuation: both arms share base state, data order and settings."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from scipy import stats

from expansion.data.datasets import load_dataset
from expansion.insertion.insert import insert_block
from expansion.specs import DataSpec, ModelSpec, TrainSpec
from expansion.training.continuation import (
    build_optimizer,
    controlled_continuation,
    paired_summary,
    run_arm,
)
from expansion.training.trainer import train_model


class Spec:
    """The bits of an experiment spec that `train_model` reads."""

    data = DataSpec(name="digits")
    model = ModelSpec(kind="mlp", width=16, depth=2)
    train = TrainSpec(epochs=1, batch_size=64, lr=3e-3, accelerator="cpu", weight_decay=0.01)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    bundle = load_dataset(Spec.data, "mlp")
    outcome = train_model(Spec(), bundle, None, tmp_path_factory.mktemp("base"))
    return outcome.model.eval(), outcome.optimizer_state, bundle


def test_base_state_carries_over_by_name_and_new_params_get_their_own_groups(trained) -> None:
    base, state, _ = trained
    model = copy.deepcopy(base)
    base_names = {id(p): n for n, p in model.named_parameters()}
    block = insert_block(model, 0, seed=3)  # shifts every existing block's name by one
    opt = build_optimizer(model, Spec.train, 1e-3, base_names, state)
    new_ids = {id(p) for p in block.parameters()}
    roles = {g["role"]: set() for g in opt.param_groups}
    for g in opt.param_groups:
        roles[g["role"]] |= {id(p) for p in g["params"]}
    assert roles["new"] == new_ids
    assert roles["existing"] == set(base_names)
    moved = model.stages[0][1].w1.weight  # was stages.0.0.w1.weight in the base
    saved = state["state"]["stages.0.0.w1.weight"]["exp_avg"]
    assert torch.equal(opt.state[moved]["exp_avg"], saved)
    assert opt.state[moved]["exp_avg"] is not saved  # a copy: the arms cannot share it
    assert all(p not in opt.state for p in block.parameters())
    decays = {g["weight_decay"] for g in opt.param_groups if g["role"] == "new"}
    assert decays == {0.0, Spec.train.weight_decay}


def test_arms_are_deterministic_and_the_base_is_untouched(trained) -> None:
    base, state, bundle = trained
    before = {k: v.clone() for k, v in base.state_dict().items()}
    kwargs = {"seed": 1, "steps": 6, "lr": 1e-3}
    a = run_arm(base, state, bundle, Spec.train, positions=[], **kwargs)
    b = run_arm(base, state, bundle, Spec.train, positions=[], **kwargs)
    assert a == b
    c = run_arm(base, state, bundle, Spec.train, positions=[1], **kwargs)
    assert c.test_risk != a.test_risk  # the inserted block did train
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k])


def test_controlled_continuation_records(trained) -> None:
    base, state, bundle = trained
    records = controlled_continuation(
        base, state, bundle, Spec.train, positions=[0, 2], seeds=[0, 1], steps=4, lr=1e-3
    )
    assert set(records) == {(0, 0), (2, 0), (0, 1), (2, 1)}
    for rec in records.values():
        assert rec["steps"] == 4
        assert rec["gain_vs_control"] == pytest.approx(
            rec["control_test_risk"] - rec["expanded_test_risk"]
        )
    # one control per seed, shared by the positions
    assert records[(0, 0)]["control_test_risk"] == records[(2, 0)]["control_test_risk"]
    assert records[(0, 0)]["control_test_risk"] != records[(0, 1)]["control_test_risk"]


def test_paired_summary_is_a_student_t_interval() -> None:
    gains = [0.01, -0.002, 0.004, 0.007]
    s = paired_summary(gains, 0.9)
    n = len(gains)
    mean = sum(gains) / n
    sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1))
    low, high = stats.t.interval(0.9, n - 1, loc=mean, scale=sd / math.sqrt(n))
    assert s["gain_mean"] == pytest.approx(mean)
    assert s["gain_std"] == pytest.approx(sd)
    assert s["gain_ci"] == pytest.approx([low, high])
    assert paired_summary([0.1], 0.9)["gain_ci"] == [None, None]
