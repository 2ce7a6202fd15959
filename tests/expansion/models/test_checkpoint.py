"""Checkpoints carry the architecture: exact round trips for networks of any depth; a base for
`expand --base` must match the spec (every field and shape) and hold finite weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from network_checkpoints import load_checkpoint

from expansion.models.checkpoint import (
    CheckpointError,
    load_base_checkpoint,
    load_payload,
    save_checkpoint,
)
from expansion.models.network import build_model
from expansion.specs.experiments import ExpandExperiment
from expansion.specs.parsing import parse_spec


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
def test_round_trip_is_exact(tmp_path: Path, model_raw: dict[str, Any]) -> None:
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
    model.stage_modules(stage).insert(1, block)
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


# ---- `expand --base`: the checkpoint must be the spec's network, with sound weights ----------

BASE_MODEL = {"kind": "mlp", "width": 16, "depth": 2}


def _expand_spec(**model: object) -> ExpandExperiment:
    spec = parse_spec(
        {
            "kind": "expand",
            "data": {"name": "digits"},
            "model": {**BASE_MODEL, **model},
            "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
            "expand": {
                "select": "explicit",
                "positions": [0],
                "seeds": [0],
                "continue_steps": 2,
                "grad_batch_size": 128,
                "line_search_points": 2,
            },
        }
    )
    assert isinstance(spec, ExpandExperiment)
    return spec


def _saved_base(tmp_path: Path, **model: object) -> Path:
    spec = _expand_spec(**model)
    return save_checkpoint(
        tmp_path / "base.ckpt", build_model(spec.model, spec.data, seed=1), spec=spec
    )


def _one_line_error(path: Path, spec: ExpandExperiment) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_base_checkpoint(path, spec.model, spec.data)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_base_checkpoint_of_the_spec_loads(tmp_path: Path) -> None:
    spec = _expand_spec()
    path = _saved_base(tmp_path)
    model, payload = load_base_checkpoint(path, spec.model, spec.data)
    reference, _ = load_checkpoint(path)
    assert_same_model(model, reference, torch.randn(4, 64))
    assert payload["spec"]["model"]["width"] == 16


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        ({"width": 32}, "width per stage: checkpoint [32], spec [16]"),
        ({"norm": "rms"}, "norm: checkpoint rms, spec layer"),
        ({"hidden_mult": 2}, "hidden_mult: checkpoint 2, spec 1"),
        ({"kind": "conv1d", "kernel_size": 3}, "kind: checkpoint conv1d, spec mlp"),
        ({"activation": "gelu"}, "activation: checkpoint gelu, spec relu"),
    ],
)
def test_base_checkpoint_of_another_architecture_is_refused(
    tmp_path: Path, saved: dict[str, Any], expected: str
) -> None:
    path = _saved_base(tmp_path, **saved)
    message = _one_line_error(path, _expand_spec())
    assert "does not match the spec's model" in message and expected in message, message


def _tampered(tmp_path: Path, change: str) -> Path:
    path = _saved_base(tmp_path)
    payload = torch.load(path, weights_only=True)
    state = payload["state_dict"]
    name = next(k for k in state if k.endswith("weight") and state[k].dim() == 2)
    if change == "nan":
        state[name][0, 0] = float("nan")
    elif change == "inf":
        state[name][-1, -1] = float("-inf")
    elif change == "shape":
        state[name] = torch.zeros(3, 3)
    elif change == "missing":
        del state[name]
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("shape", "has shape [3, 3]"),
        ("missing", "missing tensors"),
    ],
)
def test_corrupted_or_non_finite_weights_are_refused(
    tmp_path: Path, change: str, expected: str
) -> None:
    message = _one_line_error(_tampered(tmp_path, change), _expand_spec())
    assert "corrupted weights" in message and expected in message, message


def test_truncated_checkpoint_is_one_line(tmp_path: Path) -> None:
    path = _saved_base(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _one_line_error(path, _expand_spec())
    assert "not a readable checkpoint" in message


def test_run_expand_refuses_a_base_of_another_width_before_scanning(tmp_path: Path) -> None:
    from expansion.experiments.expand import run_expand

    path = _saved_base(tmp_path / "base", width=32)
    with pytest.raises(CheckpointError, match="width per stage"):
        run_expand(_expand_spec(), tmp_path / "out", None, base_checkpoint=path)
    assert not (tmp_path / "out" / "result.json").exists()
