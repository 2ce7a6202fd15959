"""The training path's options: channels-last layout, torch.compile, and a conv2d that learns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from expansion.data.datasets import DataBundle, load_dataset
from expansion.models.evaluate import evaluate
from expansion.models.network import build_model
from expansion.models.norms import is_channels_last
from expansion.specs.experiments import TrainExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError
from expansion.specs.sections import TrainSpec
from expansion.training.trainer import DeviceDataModule, ResNetModule, build_trainer, train_model
from expansion.training.training_path import use_channels_last


def conv2d_spec(**train: object) -> TrainExperiment:
    spec = parse_spec(
        {
            "data": {"name": "digits", "augment": True},
            "model": {"kind": "conv2d", "width": 16, "depth": 2, "kernel_size": 3},
            "train": {"epochs": 1, "batch_size": 64, "lr": 3e-3, "accelerator": "cpu", **train},
        }
    )
    assert isinstance(spec, TrainExperiment)
    return spec


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset(conv2d_spec().data, "conv2d", "cpu")


class LayoutProbe(Callback):
    """Records the layout of the first block's W1 input and weight at every training step
    (the stem's are ambiguous: with one input channel both layouts are the same strides)."""

    def __init__(self) -> None:
        self.inputs: list[bool] = []
        self.weights: list[bool] = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        assert isinstance(pl_module, ResNetModule)
        w1 = pl_module.model.blocks()[0].w1
        if not self.inputs:
            w1.register_forward_pre_hook(
                lambda _m, args: (
                    self.inputs.append(is_channels_last(args[0])) if _m.training else None
                )
            )
        self.weights.append(is_channels_last(w1.weight))


class PathProbe(Callback):
    """Records at every step whether the training forward is a compiled one."""

    def __init__(self) -> None:
        self.compiled_forward: list[bool] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        assert isinstance(pl_module, ResNetModule)
        path = pl_module.training_path
        self.compiled_forward.append(
            path is not None and path.compiled and path.network_forward is not pl_module.model
        )


def test_channels_last_trains_in_that_layout_to_the_same_network(
    digits: DataBundle, tmp_path: Path
) -> None:
    probe_on, probe_off = LayoutProbe(), LayoutProbe()
    on = train_model(conv2d_spec(channels_last=True), digits, None, tmp_path / "on", [probe_on])
    off = train_model(conv2d_spec(), digits, None, tmp_path / "off", [probe_off])
    assert probe_on.weights and all(probe_on.weights) and all(probe_on.inputs)
    assert not any(probe_off.weights) and not any(probe_off.inputs)
    # The same arithmetic in another memory order: equal up to float32 rounding.
    losses_on = torch.tensor([v for _, v in on.history["train/loss"]])
    losses_off = torch.tensor([v for _, v in off.history["train/loss"]])
    torch.testing.assert_close(losses_on, losses_off, rtol=1e-4, atol=1e-5)
    # Afterwards the network is back in the default layout (scan, insertion, checkpoints).
    assert all(p.is_contiguous() for p in on.model.parameters())
    assert not any(is_channels_last(p) for p in on.model.parameters())
    state_on, state_off = on.model.state_dict(), off.model.state_dict()
    for name, value in state_off.items():
        torch.testing.assert_close(state_on[name], value, rtol=1e-3, atol=1e-4)


def test_channels_last_defaults_to_cuda_conv2d_only() -> None:
    auto = TrainSpec()
    assert use_channels_last(auto, "conv2d", torch.device("cuda", 0))
    assert not use_channels_last(auto, "conv2d", torch.device("cpu"))
    assert not use_channels_last(auto, "conv1d", torch.device("cuda", 0))
    assert not use_channels_last(TrainSpec(channels_last=False), "conv2d", torch.device("cuda"))
    assert use_channels_last(TrainSpec(channels_last=True), "conv2d", torch.device("cpu"))


def test_channels_last_on_a_sequence_network_is_refused_by_name() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"model": {"kind": "conv1d"}, "train": {"channels_last": True}})
    assert info.value.problems == [
        "train.channels_last: channels_last applies to conv2d networks only, not model.kind conv1d"
    ]


def test_a_small_conv2d_learns_digits(digits: DataBundle, tmp_path: Path) -> None:
    # The image network must train: an earlier width-64, depth-4, 5x5-kernel network stayed
    # at chance at lr 3e-3 without warmup (a learning rate too large for its fan-in, not a
    # bug: docs/benchmarks.md). Chance is 90% error.
    outcome = train_model(conv2d_spec(epochs=4, warmup_steps=10), digits, None, tmp_path)
    _, error = evaluate(outcome.model, digits.x_test, digits.y_test)
    assert error < 0.5  # 40% measured after these 4 epochs (about 80 steps)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compile_trains_the_same_network_on_the_cpu(digits: DataBundle, tmp_path: Path) -> None:
    # Inductor compiles C++ kernels here: slow on 2 cores, but it must work.
    spec = parse_spec(
        {
            "data": {"name": "digits"},
            "model": {"kind": "mlp", "width": 16, "depth": 1},
            "train": {"batch_size": 64, "accelerator": "cpu", "compile": True},
        }
    )
    bundle = load_dataset(spec.data, "mlp", "cpu")
    probe = PathProbe()
    compiled = train_model(spec, bundle, None, tmp_path / "c", [probe], max_steps=12)
    assert probe.compiled_forward == [True] * 12
    eager = train_model(
        spec.model_copy(update={"train": spec.train.model_copy(update={"compile": False})}),
        bundle,
        None,
        tmp_path / "e",
        max_steps=12,
    )
    losses_c = torch.tensor([v for _, v in compiled.history["train/loss"]])
    losses_e = torch.tensor([v for _, v in eager.history["train/loss"]])
    assert len(losses_c) >= 2
    torch.testing.assert_close(losses_c, losses_e, rtol=1e-4, atol=1e-5)
    assert type(compiled.model).__name__ == "PostNormResNet"  # the network itself is not wrapped


def test_a_resumed_expanded_network_trains_in_the_layout_asked_for(
    digits: DataBundle, tmp_path: Path
) -> None:
    spec = conv2d_spec(channels_last=True)
    module = ResNetModule.from_model(build_model(spec.model, spec.data), spec.train)
    data = DeviceDataModule(digits, 64, 0)
    trainer = build_trainer(spec.train, tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=data)
    block = module.model.new_block(0, seed=5)  # what growth does mid-training
    module.model.stage_modules(0).append(block)
    module.model.arch.block_scales[0].append(1.0)
    trainer.optimizers[0].add_param_group({"params": list(block.parameters())})
    ckpt = tmp_path / "grown.ckpt"
    trainer.save_checkpoint(ckpt)

    fresh = ResNetModule.from_model(build_model(spec.model, spec.data), spec.train)
    probe = LayoutProbe()
    resumed = build_trainer(spec.train, tmp_path, max_epochs=2, callbacks=[probe])
    resumed.fit(fresh, datamodule=data, ckpt_path=ckpt)
    assert fresh.model.arch.depths == [3]  # rebuilt from the checkpoint, then converted
    assert probe.weights and all(probe.weights) and all(probe.inputs)
    assert not any(is_channels_last(p) for p in fresh.model.parameters())
