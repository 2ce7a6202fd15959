"""Insertion of a zero block: exact identity for parameter-free norms, measured drift otherwise."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_networks import KINDS, inputs, tiny_model

from expansion.insertion.insert import expanded_copy, function_drift, insert_block, remove_block


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_parameter_free_insertion_preserves_the_function(kind: str, norm: str) -> None:
    base = tiny_model(kind, norm)
    x = inputs(base)
    for position in range(base.num_positions):
        expanded = expanded_copy(base, position, seed=3)
        drift = function_drift(base, expanded, x)
        assert drift["eval"] <= 1e-5, (position, drift)
        assert drift["train"] <= 1e-5, (position, drift)
        assert expanded.total_blocks == base.total_blocks + 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_insert_block_updates_stage_and_architecture(kind: str) -> None:
    model = tiny_model(kind)
    before = [copy.deepcopy(b.state_dict()) for b in model.blocks()]
    old_blocks = model.blocks()
    position = model.num_positions - 1  # after the last block of the last stage
    stage, index = model.position_to_stage_index(position)
    block = insert_block(model, position, seed=11)
    assert model.stage_modules(stage)[index] is block
    assert model.arch.depths[stage] == len(model.stage_modules(stage))
    assert model.arch.block_scales[stage][index] == pytest.approx(float(block.alpha))
    assert float(block.alpha) == pytest.approx(1 / model.total_blocks**0.5)
    assert block.w2.bias is not None
    assert torch.count_nonzero(block.w2.weight) == 0 and torch.count_nonzero(block.w2.bias) == 0
    assert torch.count_nonzero(block.w1.weight) > 0
    reference = model.new_block(stage, 11)  # same seed -> same W1
    assert torch.equal(block.w1.weight, reference.w1.weight)
    for old, state in zip(old_blocks, before, strict=True):  # others untouched, not rescaled
        for name, value in old.state_dict().items():
            assert torch.equal(value, state[name])
    removed = remove_block(model, position)
    assert removed is block and model.blocks() == old_blocks


@pytest.mark.parametrize("kind", list(KINDS))
def test_batch_norm_drift_is_measured_and_caller_stats_untouched(kind: str) -> None:
    base = tiny_model(kind, "batch")
    x = inputs(base)
    base.train()
    for _ in range(3):  # running statistics away from their initial values
        base(inputs(base, seed=1) * 2 + 1)
    base.eval()
    expanded = expanded_copy(base, 1, seed=0)
    stats_before = [t.clone() for t in expanded.buffers()]
    drift = function_drift(base, expanded, x)
    assert set(drift) == {"eval", "train"}
    assert drift["eval"] <= 1e-4  # the new norm is calibrated to the identity in eval mode
    assert drift["train"] > drift["eval"]  # batch statistics are not an identity
    for before, after in zip(stats_before, expanded.buffers(), strict=True):
        assert torch.equal(before, after)
    assert not expanded.training


def test_out_of_range_position_is_a_clear_error() -> None:
    model = tiny_model("conv1d")
    with pytest.raises(ValueError, match="out of range"):
        insert_block(model, model.num_positions, seed=0)


@pytest.mark.parametrize("norm", ["layer", "group", "batch"])
def test_drift_from_precomputed_base_logits_equals_a_direct_comparison(norm: str) -> None:
    from expansion.insertion.insert import mode_independent, reference_logits

    base = tiny_model("conv1d", norm)
    x = inputs(base)
    expanded = expanded_copy(base, 1, seed=0)
    with torch.no_grad():  # a non-zero branch, so the drift is not zero
        expanded.stage_blocks(0)[1].w2.weight.normal_(
            0, 0.3, generator=torch.Generator().manual_seed(0)
        )
    direct = {}
    for mode, training in (("eval", False), ("train", True)):
        a, b = copy.deepcopy(base).train(training), copy.deepcopy(expanded).train(training)
        with torch.no_grad():
            direct[mode] = float((b(x) - a(x)).abs().max())
    reference = reference_logits(base, x)
    drift = function_drift(reference, expanded, x)
    assert drift == pytest.approx(direct, rel=1e-6, abs=1e-7)
    assert drift["eval"] > 1e-3
    assert function_drift(base, expanded, x) == drift
    assert mode_independent(base) == (norm != "batch")
    assert (reference["train"] is reference["eval"]) == (norm != "batch")
