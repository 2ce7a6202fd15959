"""Lightning training: determinism, learning, divergence, stop requests, resumable expansion."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from recording_reporter import RecordingReporter

from expansion.data.datasets import DataBundle, load_dataset
from expansion.models.evaluate import evaluate
from expansion.models.network import build_model
from expansion.progress import StopRequested
from expansion.specs.experiments import TrainExperiment
from expansion.specs.parsing import parse_spec
from expansion.training.trainer import (
    DeviceDataModule,
    ResNetModule,
    build_trainer,
    load_named_optimizer_state,
    lr_factor,
    train_model,
)


def digits_spec(**train: object) -> TrainExperiment:
    spec = parse_spec(
        {
            "data": {"name": "digits"},
            "model": {"kind": "mlp", "width": 32, "depth": 2},
            "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3, "accelerator": "cpu", **train},
        }
    )
    assert isinstance(spec, TrainExperiment)
    return spec


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset(digits_spec().data, "mlp", "cpu")


def test_same_seed_same_losses_other_seed_differs(digits: DataBundle, tmp_path: Path) -> None:
    spec = digits_spec(epochs=1)
    a = train_model(spec, digits, None, tmp_path / "a")
    b = train_model(spec, digits, None, tmp_path / "b")
    c = train_model(digits_spec(epochs=1, seed=1), digits, None, tmp_path / "c")
    assert a.history["train/loss"] == b.history["train/loss"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history["train/loss"] != c.history["train/loss"]


def test_a_short_run_learns_and_reports(digits: DataBundle, tmp_path: Path) -> None:
    spec = digits_spec(epochs=6, schedule="cosine", warmup_steps=5)
    reporter = RecordingReporter()
    outcome = train_model(spec, digits, reporter, tmp_path)
    risk, error = evaluate(outcome.model, digits.x_test, digits.y_test)
    assert error < 0.25  # chance is 0.9
    assert risk < 1.0
    steps_per_epoch = -(-len(digits.y_train) // 64)
    assert outcome.steps == 6 * steps_per_epoch
    fractions = [f for f, stage, _ in reporter.events if stage == "train"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(outcome.history["val/loss"]) == 6
    assert len(outcome.history["val/accuracy"]) == 6
    assert outcome.history["val/accuracy"][-1][1] > 0.75
    assert {(s, n) for _, s, n, _ in reporter.metrics} >= {("train", "loss"), ("val", "accuracy")}
    names = dict(outcome.model.named_parameters())
    assert set(outcome.optimizer_state["state"]) == set(names)
    assert outcome.final_lr == pytest.approx(3e-3 * lr_factor(10**9, 1, "cosine", 0))


def test_max_steps_stops_early(digits: DataBundle, tmp_path: Path) -> None:
    outcome = train_model(digits_spec(epochs=5), digits, None, tmp_path, max_steps=7)
    assert outcome.steps == 7


def test_non_finite_loss_raises_with_the_step(digits: DataBundle, tmp_path: Path) -> None:
    poisoned = DataBundle(**{**digits.__dict__, "x_train": digits.x_train * float("nan")})
    with pytest.raises(FloatingPointError, match=r"non-finite loss .* at step 0"):
        train_model(digits_spec(), poisoned, None, tmp_path)


class StopAfter(RecordingReporter):
    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def should_stop(self) -> bool:
        self.calls -= 1
        return self.calls < 0


def test_stop_request_ends_training(digits: DataBundle, tmp_path: Path) -> None:
    reporter = StopAfter(calls=2)
    with pytest.raises(StopRequested):
        train_model(digits_spec(epochs=50), digits, reporter, tmp_path)
    steps = [s for s, split, name, _ in reporter.metrics if (split, name) == ("train", "loss")]
    assert max(steps) < 50  # stopped within the first checks, long before 50 epochs


def test_schedule_warmup_and_cosine_ends() -> None:
    assert lr_factor(0, 100, "cosine", 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, "cosine", 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, "cosine", 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, "cosine", 10) < 0.1
    assert lr_factor(55, 100, "constant", 10) == 1.0


def test_lightning_checkpoint_of_an_expanded_network_resumes(
    digits: DataBundle, tmp_path: Path
) -> None:
    spec = digits_spec(epochs=1)
    module = ResNetModule.from_model(build_model(spec.model, spec.data), spec.train)
    data = DeviceDataModule(digits, 64, 0)
    trainer = build_trainer(spec.train, tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=data)
    # what the growth helper does mid-training: insert a block, give it its own group
    block = module.model.new_block(0, seed=5)
    module.model.stage_modules(0).insert(1, block)
    module.model.arch.block_scales[0].insert(1, float(block.alpha))
    with torch.no_grad():
        block.w2.weight.normal_()
    trainer.optimizers[0].add_param_group({"params": list(block.parameters())})
    ckpt = tmp_path / "grown.ckpt"
    trainer.save_checkpoint(ckpt)

    restored = ResNetModule.load_from_checkpoint(ckpt)
    assert restored.model.arch.depths == [3]
    expected = module.model.state_dict()
    assert all(torch.equal(expected[k], v) for k, v in restored.model.state_dict().items())

    fresh = ResNetModule.from_model(build_model(spec.model, spec.data), spec.train)
    assert fresh.model.arch.depths == [2]
    resumed = build_trainer(spec.train, tmp_path, max_epochs=3)
    resumed.fit(fresh, datamodule=data, ckpt_path=ckpt)
    assert fresh.model.arch.depths == [3]
    assert len(resumed.optimizers[0].param_groups) == 3
    assert resumed.global_step > trainer.global_step


def test_named_optimizer_state_carries_into_an_expanded_network(
    digits: DataBundle, tmp_path: Path
) -> None:
    outcome = train_model(digits_spec(epochs=1), digits, None, tmp_path)
    model = outcome.model
    model.stage_modules(0).append(model.new_block(0, seed=1))
    model.arch.block_scales[0].append(1.0)
    optimizer = torch.optim.AdamW(model.parameters())
    loaded = load_named_optimizer_state(optimizer, model, outcome.optimizer_state)
    new_names = {n for n, _ in model.named_parameters() if n.startswith("stages.0.2.")}
    assert loaded == sum(1 for _ in model.parameters()) - len(new_names)
    head = dict(model.named_parameters())["head.weight"]
    assert torch.equal(
        optimizer.state[head]["exp_avg"], outcome.optimizer_state["state"]["head.weight"]["exp_avg"]
    )


def test_bf16_mixed_precision_runs_on_cpu(digits: DataBundle, tmp_path: Path) -> None:
    outcome = train_model(digits_spec(precision="bf16-mixed"), digits, None, tmp_path, max_steps=3)
    assert outcome.steps == 3
    assert all(torch.isfinite(torch.tensor(v)) for _, v in outcome.history["train/loss"])


def test_sgd_optimizer_and_module_test_step(digits: DataBundle, tmp_path: Path) -> None:
    spec = digits_spec(optimizer="sgd", lr=0.05, epochs=2)
    outcome = train_model(spec, digits, None, tmp_path)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(
        outcome.module, datamodule=DeviceDataModule(digits, 64, 0), verbose=False
    )
    risk, error = evaluate(outcome.model, digits.x_test, digits.y_test)
    assert metrics["test/loss"] == pytest.approx(risk, rel=1e-4)
    assert metrics["test/accuracy"] == pytest.approx(1 - error, abs=1e-6)


def test_a_ddp_shard_loss_is_its_weighted_sum_and_a_padding_shard_counts_nothing(
    digits: DataBundle,
) -> None:
    spec = digits_spec()
    module = ResNetModule.from_model(build_model(spec.model, spec.data, seed=0), spec.train)
    x, y = digits.x_train[:6], digits.y_train[:6]
    weight = torch.full((6,), 2 / 12)  # rank's half of a global batch of 12 on 2 ranks
    loss = module.training_step((x, y, weight, 6), 0)
    per_example = torch.nn.functional.cross_entropy(module(x).float(), y, reduction="none")
    assert float(loss) == pytest.approx(float(per_example.sum()) / 6, rel=1e-6)
    assert float(module.train_loss.compute()) == pytest.approx(float(per_example.mean()), rel=1e-6)
    module.train_loss.reset()
    pad = module.training_step((x[:1], y[:1], torch.zeros(1), 0), 1)
    assert float(pad) == 0.0 and pad.requires_grad  # DDP still gets (zero) gradients
    assert not module.train_loss.update_called
