"""Insertion predictors: each checked against an independent computation where one exists."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from network_checkpoints import load_checkpoint

from expansion.data.datasets import DataBundle, load_dataset
from expansion.experiments.expand import run_expand
from expansion.experiments.position_choice import choose_positions
from expansion.insertion.certificate import CertificateBatches, descent_record
from expansion.insertion.predictors import (
    branch_input_norm_sq,
    early_gains,
    early_steps_for,
    gradient_predictors,
    probe_steps_for,
    probe_val_gain,
    stage_w2_norm_sq,
    train_probe,
)
from expansion.insertion.scan import scan_positions
from expansion.models.network import PostNormResNet
from expansion.results.records import CertificateSource
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.predictor_names import PREDICTOR_NAMES
from expansion.specs.sections import DataSpec, ModelSpec, TrainSpec
from expansion.training.continuation import controlled_continuation, run_arm
from expansion.training.trainer import NamedOptimizerState, train_model

Trained = tuple[PostNormResNet, NamedOptimizerState, DataBundle]


class Spec:
    """The bits of an experiment spec that `train_model` reads."""

    data = DataSpec(name="digits")
    model = ModelSpec(kind="mlp", width=16, depth=2)
    train = TrainSpec(epochs=1, batch_size=64, lr=3e-3, accelerator="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    bundle = load_dataset(Spec.data, "mlp")
    outcome = train_model(Spec(), bundle, None, tmp_path_factory.mktemp("base"))
    return outcome.model.eval(), outcome.optimizer_state, bundle


def test_scale_free_gradients_match_an_independent_computation(trained: Trained) -> None:
    base, _, bundle = trained
    scan = scan_positions(
        base,
        (bundle.x_train, bundle.y_train),
        (bundle.x_val, bundle.y_val),
        [0, 1, 2],
        [5],
        batch_size=128,
        max_batches=None,
        shuffle_seed=0,
    )
    for position in (0, 1, 2):
        grad = scan.gradients[(position, 5)]
        # the training batches stand in for certificate batches: these predictors ignore U
        descent = descent_record(
            grad, CertificateBatches(grad.batches, CertificateSource.HOLDOUT), 0.95
        )
        values = gradient_predictors(
            base, grad, descent, optimizer="adamw", lr=1e-3, x_val=bundle.x_val
        )
        # stage W2 norm: by hand over the (single) stage's blocks
        w2 = [b.w2 for b in base.stage_blocks(0)]
        w2_sq = sum(float(p.detach().pow(2).sum()) for m in w2 for p in m.parameters()) / len(w2)
        assert stage_w2_norm_sq(base, position) == pytest.approx(w2_sq, rel=1e-6)
        val_sq = float(grad.val.double().pow(2).sum())
        assert values["grad_rel_w2"] == pytest.approx(val_sq / w2_sq, rel=1e-6)
        # branch input: h_p from the network's own boundaries, the block built directly
        boundaries: list[torch.Tensor] = []
        with torch.no_grad():
            base(bundle.x_val[:512], boundaries)
            block = base.new_block(0, 5)
            a = block.branch_input(boundaries[position]).double()
        expected = float(block.alpha) ** 2 * float(a.pow(2).sum(dim=1).mean())
        assert branch_input_norm_sq(base, position, 5, bundle.x_val) == pytest.approx(expected)
        assert values["grad_rel_activation"] == pytest.approx(val_sq / expected, rel=1e-9)
        # AdamW's first step moves each coordinate by lr * sign(g): its first-order gain
        sign_inner = float(torch.sign(grad.train.double()) @ grad.val.double())
        assert values["adam_step_val_gain"] == pytest.approx(1e-3 * sign_inner)
        batch_mean = float(grad.batches.double().pow(2).sum(dim=1).mean())
        assert values["gradient_snr"] == pytest.approx(
            descent["grad_norm_sq_unbiased"] / batch_mean
        )
        assert values["certificate_u"] == descent["grad_norm_sq_unbiased"]


def test_probe_trains_only_the_new_block(trained: Trained) -> None:
    base, _, bundle = trained
    probe = train_probe(base, bundle, Spec.train, position=1, seed=2, steps=5, lr=1e-2)
    new = probe.blocks()[1]
    moved = max(float(p.detach().abs().max()) for p in new.w2.parameters())
    assert moved > 0, "the new block's W2 moved off zero"
    before = dict(base.named_parameters())
    # the probe's existing blocks sit at indices 0 and 2 after the insertion at 1
    renamed = {"stages.0.2.": "stages.0.1."}
    for name, param in probe.named_parameters():
        if name.startswith("stages.0.1."):
            continue
        for old, new_name in renamed.items():
            name = name.replace(old, new_name)
        assert torch.equal(param, before[name]), f"{name} changed"
    assert not probe.training


def test_early_gain_equals_a_separate_short_run(trained: Trained) -> None:
    base, state, bundle = trained
    k_values = sorted(set(early_steps_for(20).values()))
    assert k_values == [1, 2, 5]
    records = controlled_continuation(
        base,
        state,
        bundle,
        Spec.train,
        positions=[1],
        seeds=[0],
        steps=20,
        lr=1e-3,
        early_steps=k_values,
    ).records
    early = {row["step"]: row for row in records[(1, 0)]["early"]}
    # an independent run of each arm to k steps only, read on validation at its end
    for k in k_values:
        arm = run_arm(
            base,
            state,
            bundle,
            Spec.train,
            positions=[1],
            seed=0,
            steps=k,
            lr=1e-3,
            early_steps=[k],
            early_data=(bundle.x_val, bundle.y_val),
        )
        assert early[k]["expanded_val_risk"] == pytest.approx(arm.early_val_risk[k], abs=1e-6)
        ctrl = run_arm(
            base,
            state,
            bundle,
            Spec.train,
            positions=[],
            seed=0,
            steps=k,
            lr=1e-3,
            early_steps=[k],
            early_data=(bundle.x_val, bundle.y_val),
        )
        assert early[k]["gain"] == pytest.approx(
            ctrl.early_val_risk[k] - arm.early_val_risk[k], abs=1e-6
        )
    values = early_gains(records[(1, 0)])
    assert values["early_gain_10pct"] == early[2]["gain"]
    assert early_gains({"steps": 20}) == dict.fromkeys(values)


def test_default_lengths_keep_the_predictors_cheap() -> None:
    assert probe_steps_for(200, None) == 20
    assert probe_steps_for(200, 7) == 7
    assert probe_steps_for(3, None) == 1
    assert early_steps_for(200) == {
        "early_gain_5pct": 10,
        "early_gain_10pct": 20,
        "early_gain_25pct": 50,
    }


def test_top_k_ranks_by_the_given_scores() -> None:
    spec = parse_spec(
        {"kind": "expand", "model": {"depth": 4}, "expand": {"top_k": 2, "by": "grad_rel_w2"}}
    )
    assert isinstance(spec, ExpandExperiment)
    rows = [{"position": p, "grad_norm_sq_unbiased": float(p)} for p in range(5)]
    assert choose_positions(spec, rows) == [3, 4]  # U without scores
    assert choose_positions(spec, rows, {0: 5.0, 1: 1.0, 2: 4.0, 3: 0.0, 4: -1.0}) == [0, 2]


def test_every_insertion_record_carries_every_predictor() -> None:
    spec = {
        "kind": "expand",
        "data": {"name": "digits"},
        "model": {"kind": "mlp", "width": 16, "depth": 2},
        "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
        "expand": {
            "select": "top_k",
            "top_k": 2,
            "by": "probe_val_gain",
            "seeds": [0, 1],
            "continue_steps": 20,
            "continue_lr": 1e-3,
            # small batches: the held-out certificate split needs 3+ of them for a bound
            "grad_batch_size": 32,
            "line_search_points": 3,
        },
    }
    with tempfile.TemporaryDirectory() as out:
        parsed = parse_spec(spec)
        assert isinstance(parsed, ExpandExperiment)
        result = run_expand(parsed, Path(out))
        base, _ = load_checkpoint(Path(out) / "base.ckpt")
    assert len(result["insertions"]) == 4
    for rec in result["insertions"]:
        assert set(rec["predictors"]) == set(PREDICTOR_NAMES)
        for name, value in rec["predictors"].items():
            assert value is not None and math.isfinite(value), name
        # measured on the certificate split, which chose neither the direction nor the step
        certified = rec["certificate"]["risk_decrease"]
        assert rec["predictors"]["jumpboard_certificate_gain"] == certified
    assert result["timings"]["predictors_s"] >= 0
    # `by: probe_val_gain` chose the two positions with the largest seed-mean probe gain
    bundle = load_dataset(parse_spec(spec).data, "mlp")  # the run's splits (certificate too)
    train = TrainSpec(epochs=1, batch_size=64, accelerator="cpu")
    scores = {
        p: sum(
            probe_val_gain(base.eval(), bundle, train, position=p, seed=s, steps=2, lr=1e-3)
            for s in (0, 1)
        )
        for p in range(3)
    }
    expected = sorted(sorted(scores, key=lambda p: scores[p], reverse=True)[:2])
    assert sorted({rec["position"] for rec in result["insertions"]}) == expected
    stored = {r["position"]: r["score"] for r in result["selection"]["scores"]}
    assert result["selection"]["by"] == "probe_val_gain"
    for p in expected:  # the selection score is the seed mean of the stored predictor
        values = [
            r["predictors"]["probe_val_gain"] for r in result["insertions"] if r["position"] == p
        ]
        assert stored[p] == pytest.approx(sum(values) / len(values))
        assert stored[p] == pytest.approx(scores[p] / 2, abs=1e-6)
