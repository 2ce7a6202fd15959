"""Growth schedules: blocks inserted during training join the optimizer; resumed runs rebuild."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from tiny_networks import tiny_model

from expansion.data.datasets import DataBundle, load_dataset
from expansion.specs.sections import DataSpec, GrowSpec, ModelSpec, TrainSpec
from expansion.training.growth import (
    GrowthCallback,
    interpolate_positions,
    stack_positions,
    uniform_positions,
)
from expansion.training.trainer import DeviceDataModule, ResNetModule, build_trainer, train_model


class OptimizerProbe(L.Callback):
    """After each epoch: does the optimizer hold exactly the model's parameters (by identity)?"""

    def __init__(self) -> None:
        self.checks: list[tuple[int, bool, int]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, ResNetModule)
        in_opt = [id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]]
        model_ids = [id(p) for p in pl_module.model.parameters()]
        sched = trainer.lr_scheduler_configs[0].scheduler
        lists_ok = len(sched.base_lrs) == len(trainer.optimizers[0].param_groups)
        same = sorted(in_opt) == sorted(model_ids) and len(in_opt) == len(set(in_opt))
        self.checks.append((trainer.current_epoch + 1, same and lists_ok, len(model_ids)))


class Spec:
    """The bits of an experiment spec that `train_model` reads."""

    def __init__(self, epochs: int) -> None:
        self.data = DataSpec(name="digits")
        self.model = ModelSpec(kind="mlp", width=16, depth=2)
        self.train = TrainSpec(epochs=epochs, batch_size=128, lr=3e-3, accelerator="cpu")


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset(DataSpec(name="digits"), "mlp")


def test_new_blocks_join_the_optimizer_the_trainer_steps(
    digits: DataBundle, tmp_path: Path
) -> None:
    spec = Spec(epochs=3)
    grow = GrowSpec(at_epochs=[1, 2], policy="stack", target_depth=4)
    growth = GrowthCallback(grow, train_seed=0, weight_decay=0.0)
    probe = OptimizerProbe()
    outcome = train_model(spec, digits, None, tmp_path, callbacks=[growth, probe])
    model = outcome.model
    assert model.arch.depths == [4] and model.total_blocks == 4
    assert [e["position"] for e in growth.inserted] == [2, 3]
    assert all(
        e["grad_norm_sq_unbiased_train"] is None for e in growth.inserted
    )  # no scan for stack
    assert all(ok for _, ok, _ in probe.checks), probe.checks
    for event in growth.inserted:  # W2 started at zero; only optimizer steps move it
        block = model.stage_blocks(0)[event["position"]]
        assert torch.count_nonzero(block.w2.weight) > 0
    # optimizer state by name covers the grown blocks
    assert "stages.0.3.w2.weight" in outcome.optimizer_state["state"]


def test_growth_stops_at_target_depth(digits: DataBundle, tmp_path: Path) -> None:
    grow = GrowSpec(at_epochs=[1, 2], policy="uniform", blocks_per_event=2, target_depth=3)
    growth = GrowthCallback(grow)
    outcome = train_model(Spec(epochs=3), digits, None, tmp_path, callbacks=[growth])
    assert outcome.model.total_blocks == 3
    assert len(growth.inserted) == 1 and growth.events_done == [1, 2]


def test_best_policy_scans_and_needs_data(digits: DataBundle, tmp_path: Path) -> None:
    grow = GrowSpec(at_epochs=[1], policy="best", target_depth=3)
    with pytest.raises(ValueError, match="needs training and validation data"):
        GrowthCallback(grow)
    data = ((digits.x_train, digits.y_train), (digits.x_val, digits.y_val))
    growth = GrowthCallback(grow, data=data)
    outcome = train_model(Spec(epochs=2), digits, None, tmp_path, callbacks=[growth])
    assert outcome.model.total_blocks == 3
    event = growth.inserted[0]
    assert 0 <= event["position"] <= 2
    assert isinstance(event["grad_norm_sq_unbiased_train"], float)  # the scan ranked this position


def test_fixed_policies_choose_sensible_positions() -> None:
    model = tiny_model("conv1d")  # one stage of 2 blocks: positions 0..2
    assert stack_positions(model, 2) == [2, 2]
    assert interpolate_positions(model, 1) == [1]  # between the two blocks
    assert uniform_positions(model, 3) == [0, 1, 2]
    conv2d = tiny_model("conv2d")  # two stages of 2 blocks: positions 0..2 and 3..5
    assert interpolate_positions(conv2d, 2) == [1, 4]  # one in each stage, between blocks


def test_resumed_growth_run_rebuilds_its_architecture_and_continues(
    digits: DataBundle, tmp_path: Path
) -> None:
    spec = Spec(epochs=4)
    grow = GrowSpec(at_epochs=[1, 3], policy="explicit", positions=[0, 1], target_depth=4)
    data = DeviceDataModule(digits, 128, seed=0)

    def fresh_module() -> ResNetModule:
        from expansion.models.network import build_model

        model = build_model(spec.model, spec.data, seed=0)
        return ResNetModule.from_model(model, spec.train, total_steps=4 * 12)

    first = GrowthCallback(grow)
    trainer = build_trainer(spec.train, tmp_path, [first], max_epochs=2)
    module = fresh_module()
    trainer.fit(module, datamodule=data)
    ckpt = tmp_path / "grown.ckpt"
    trainer.save_checkpoint(ckpt)
    steps_at_save = trainer.global_step
    inserted = {k: v.clone() for k, v in module.model.stage_blocks(0)[0].state_dict().items()}
    assert module.model.total_blocks == 3

    resumed = GrowthCallback(grow)
    probe = OptimizerProbe()
    trainer2 = build_trainer(spec.train, tmp_path, [resumed, probe], max_epochs=4)
    module2 = fresh_module()  # built at the STARTING depth
    assert module2.model.total_blocks == 2
    trainer2.fit(module2, datamodule=data, ckpt_path=ckpt)
    assert resumed.events_done == [1, 3]  # epoch 1 restored, not repeated; epoch 3 done now
    assert [e["epoch"] for e in resumed.inserted] == [1, 3]
    assert module2.model.total_blocks == 4
    assert trainer2.global_step > steps_at_save
    assert all(ok for _, ok, _ in probe.checks), probe.checks
    # the block grown before the checkpoint came back with its trained weights (then moved on)
    restored = module2.model.stage_blocks(0)[0]
    assert restored.w2.weight.shape == inserted["w2.weight"].shape
    assert torch.count_nonzero(restored.w2.weight) > 0
