"""Checkpoints carry the architecture: exact round trips for networks of any depth."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expansion.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_payload,
    save_checkpoint,
)
from expansion.models.network import build_model
from expansion.specs import parse_spec


def assert_same_model(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize(
    "model_raw",
    [
        {"kind": "conv1d", "width": 8, "depth": 2, "kernel_size": 3},
        {"kind": "mlp", "width": 8, "depth": 1, "norm": "batch", "scaling": "learnable"},
    ],
)
def test_round_trip_is_exact(tmp_path: Path, model_raw: dict) -> None:
    spec = parse_spec({"model": model_raw, "train": {"epochs": 3}})
    model = build_model(spec.model, spec.data, seed=4)
    with torch.no_grad():  # make running statistics and weights non-default
        model.train()(torch.randn(16, 1, 40))
    state = {"state": {"head.weight": {"exp_avg": torch.ones(10, 8), "step": torch.tensor(3.0)}}}
    path = save_checkpoint(
        tmp_path / "m.ckpt", model, spec=spec, optimizer_state=state, extra={"note": (1, 2)}
    )
    loaded, payload = load_checkpoint(path)
    assert_same_model(model, loaded, torch.randn(5, 1, 40))
    assert payload["format"] == "jumpboard/1"
    assert payload["spec"]["train"]["epochs"] == 3
    assert torch.equal(
        payload["optimizer_state"]["state"]["head.weight"]["exp_avg"], torch.ones(10, 8)
    )
    assert payload["extra"] == {"note": [1, 2]}
    assert loaded.arch == model.arch


def test_expanded_network_round_trips(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "data": {"name": "digits"},
            "model": {
                "kind": "conv2d",
                "width": 4,
                "depth": 2,
                "stages": 2,
                "norm": "rms",
                "groups": 4,
            },
        }
    )
    model = build_model(spec.model, spec.data, seed=0)
    stage = 1
    block = model.new_block(stage, seed=9)
    model.stages[stage].insert(1, block)
    model.arch.block_scales[stage].insert(1, float(block.alpha))
    with torch.no_grad():
        block.w2.weight.normal_()  # a trained-looking inserted block, not just zeros
    loaded, payload = load_checkpoint(save_checkpoint(tmp_path / "deep.ckpt", model))
    assert loaded.arch.depths == [2, 3]
    assert payload["architecture"]["block_scales"][1] == model.arch.block_scales[1]
    assert_same_model(model, loaded, torch.randn(3, 1, 8, 8))


def test_refuses_non_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="jumpboard/1"):
        load_payload(other)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_payload(garbage)


class Sneaky:
    """An arbitrary class: weights_only loading must refuse to build it."""

    def __init__(self) -> None:
        self.value = 1


def test_weights_only_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "sneaky.ckpt"
    torch.save({"format": "jumpboard/1", "payload": Sneaky()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_payload(path)
