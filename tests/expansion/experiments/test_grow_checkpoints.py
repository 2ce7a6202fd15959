"""A grow run keeps a checkpoint of each run (grown and both controls) as artifacts."""

from __future__ import annotations

from pathlib import Path

from network_checkpoints import load_checkpoint

from expansion.experiments.grow import run_grow

TINY_GROW = {
    "kind": "grow",
    "data": {"name": "digits", "max_train_samples": 300},
    "model": {"kind": "mlp", "width": 8, "depth": 1},
    "train": {"epochs": 3, "batch_size": 64, "accelerator": "cpu"},
    "grow": {"at_epochs": [1], "target_depth": 2, "policy": "stack"},
}


def test_grow_keeps_each_runs_checkpoint(tmp_path: Path) -> None:
    result = run_grow(TINY_GROW, tmp_path)
    assert result["artifacts"] == ["grown.ckpt", "control_target.ckpt", "control_start.ckpt"]
    runs = result["grow"]["runs"]
    for name in ("grown", "control_target", "control_start"):
        model, payload = load_checkpoint(tmp_path / f"{name}.ckpt")
        assert model.arch.depths == runs[name]["depths"], name
        assert payload["extra"]["run"] == name
    assert runs["grown"]["depths"] == [2] and runs["control_start"]["depths"] == [1]
