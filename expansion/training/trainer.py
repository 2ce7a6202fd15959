"""Training a post-norm residual network with Lightning: module, callbacks, trainer, `train_model`.

`ResNetModule` wraps a `PostNormResNet`. Its checkpoints carry the architecture, so a
Lightning checkpoint of an expanded (deeper) network resumes into the right shape before the
weights load, and the optimizer's parameter groups by parameter name, so groups added for
inserted blocks resume too. Optimizer state leaves `train_model` keyed by parameter name,
which survives insertion (indices do not).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from expansion.data.datasets import DataBundle, DeviceBatches, augmentation_for
from expansion.data.shards import RankShards
from expansion.models.evaluate import EVAL_BATCH_SIZE
from expansion.models.network import PostNormResNet, build_model, model_from_architecture
from expansion.progress import NullReporter, ProgressReporter, check_stop
from expansion.ranks import externally_launched
from expansion.specs.sections import TrainSpec
from expansion.training.optim import clone_parameter_state, weight_decay_groups
from expansion.training.training_path import (
    TrainingPath,
    prepare_training_path,
    restore_layout,
)

log = logging.getLogger(__name__)


MIN_LR_FRACTION = 0.05
"""The cosine schedule ends at this fraction of the peak learning rate, not at zero, so that
continuing from the final learning rate (ExpandSpec.continue_lr = None) still moves."""


NamedOptimizerState = dict[str, Any]


Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]
"""(x, y) in one process; (x, y, per-example weight, real examples) on a DDP rank
(`RankShards`)."""


# Lightning's own use of a deprecated torch pytree API; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


# Epoch metrics are logged as floats already synced across DDP ranks by torchmetrics' compute().
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting")


# Lightning announces accelerators and devices at INFO on every Trainer; the CLI shows its own.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosineSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Per-step warmup then cosine (or constant); parameter groups added later are scheduled too."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        schedule: str = "cosine",
        warmup_steps: int = 0,
    ) -> None:
        self.total_steps, self.schedule, self.warmup_steps = total_steps, schedule, warmup_steps
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        """Each group's learning rate at the current step (`initial_lr` x the factor)."""
        factor = lr_factor(self.last_epoch, self.total_steps, self.schedule, self.warmup_steps)
        return [g.setdefault("initial_lr", g["lr"]) * factor for g in self.optimizer.param_groups]

    def track_new_groups(self) -> None:
        """Schedule parameter groups added to the optimizer since the last call (from their
        `initial_lr`, else their current learning rate), keeping `base_lrs` one per group."""
        for group in self.optimizer.param_groups[len(self.base_lrs) :]:
            self.base_lrs.append(group.setdefault("initial_lr", group["lr"]))


def named_optimizer_state(
    optimizer: torch.optim.Optimizer, model: nn.Module
) -> NamedOptimizerState:
    """The optimizer's state keyed by `model`'s parameter names (tensors cloned).

    `{"state": {name: {"exp_avg": ..., ...}}, "param_groups": [{"lr": ..., "params": [names]}]}`
    """
    names = {id(p): n for n, p in model.named_parameters()}
    state = {
        names[id(p)]: clone_parameter_state(s) for p, s in optimizer.state.items() if id(p) in names
    }
    groups = [
        {
            **{k: v for k, v in g.items() if k != "params"},
            "params": [names[id(p)] for p in g["params"] if id(p) in names],
        }
        for g in optimizer.param_groups
    ]
    return {"state": state, "param_groups": groups}


def load_named_optimizer_state(
    optimizer: torch.optim.Optimizer, model: nn.Module, named: NamedOptimizerState
) -> int:
    """Copy per-parameter state from `named` onto `model`'s parameters with the same names.

    Parameters without saved state (new blocks) start fresh; group hyperparameters are left
    as the optimizer has them. Returns how many parameters got state.
    """
    params = dict(model.named_parameters())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    loaded = 0
    for name, saved in named.get("state", {}).items():
        p = params.get(name)
        if p is None or id(p) not in in_optimizer:
            continue
        optimizer.state[p] = clone_parameter_state(saved, p.device)
        loaded += 1
    return loaded


class ResNetModule(L.LightningModule):
    """A `PostNormResNet` with its loss, metrics, optimizer and schedule (TrainSpec)."""

    # Set per split with setattr in __init__; declared for the type checker.
    train_loss: MeanMetric
    train_acc: MulticlassAccuracy

    def __init__(
        self,
        architecture: dict[str, Any],
        train: dict[str, Any] | TrainSpec,
        total_steps: int = 0,
        model: PostNormResNet | None = None,
        initial_optimizer_state: NamedOptimizerState | None = None,
    ) -> None:
        super().__init__()
        train_spec = train if isinstance(train, TrainSpec) else TrainSpec(**train)
        self.save_hyperparameters(
            {
                "architecture": architecture,
                "train": train_spec.model_dump(),
                "total_steps": total_steps,
            }
        )
        self.train_spec = train_spec
        self.total_steps = total_steps
        self.model = model if model is not None else model_from_architecture(architecture)
        self.initial_optimizer_state = initial_optimizer_state
        self._restored_group_names: list[list[str]] | None = None
        self.metric_sink: Callable[[int, str, str, float], None] | None = None
        """Receives epoch-level metrics as they are computed (set by ReporterCallback)."""
        self.training_path: TrainingPath | None = None
        """Layout and (compiled) forward of the training steps; set while fitting."""
        classes = self.model.arch.num_classes
        for split in ("train", "val", "test"):
            # No per-update NaN or argument checks: each costs a device sync every step, and a
            # non-finite training loss raises in training_step anyway.
            setattr(self, f"{split}_loss", MeanMetric(nan_strategy="disable"))
            setattr(
                self,
                f"{split}_acc",
                MulticlassAccuracy(num_classes=classes, average="micro", validate_args=False),
            )

    @classmethod
    def from_model(
        cls,
        model: PostNormResNet,
        train: TrainSpec,
        total_steps: int = 0,
        initial_optimizer_state: NamedOptimizerState | None = None,
    ) -> ResNetModule:
        """Wrap an existing network (its weights are kept)."""
        return cls(
            model.arch.to_dict(),
            train,
            total_steps,
            model=model,
            initial_optimizer_state=initial_optimizer_state,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the wrapped network."""
        logits: torch.Tensor = self.model(x)
        return logits

    # ---- steps -----------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Apply train.channels_last and train.compile before the strategy wraps the network."""
        if self._trainer is None:  # load_from_checkpoint calls it too: nothing trains yet
            return
        self.training_path = prepare_training_path(
            self.model, self.train_spec, self.trainer.strategy.root_device
        )

    def on_fit_end(self) -> None:
        """Give the network back in the default layout, uncompiled."""
        restore_layout(self.model)
        self.training_path = None

    def _training_forward(self, x: torch.Tensor) -> torch.Tensor:
        # Without configure_model (a module fitted by hand) or after self.model was replaced.
        if self.training_path is None or self.training_path.model is not self.model:
            self.training_path = prepare_training_path(self.model, self.train_spec, x.device)
        return self.training_path.forward(x)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Cross-entropy (with label smoothing) of one batch; non-finite loss raises.

        On a DDP rank the loss is the weighted sum of its shard (`RankShards`), whose average
        over the ranks is the global batch's mean loss."""
        x, y = batch[0], batch[1]
        logits = self._training_forward(x)
        smoothing = self.train_spec.label_smoothing
        if len(batch) == 4:
            weight, real = batch[2], batch[3]
            per_example = F.cross_entropy(
                logits.float(), y, label_smoothing=smoothing, reduction="none"
            )
            loss = (per_example * weight).sum()
            if real:  # a padding shard (weight 0) adds nothing to the epoch metrics
                self.train_loss.update(per_example.detach().mean(), weight=real)
                self.train_acc.update(logits.detach(), y)
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
            self.train_loss.update(loss.detach(), weight=len(y))
            self.train_acc.update(logits.detach(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step} "
                "(lower train.lr or use precision 32)"
            )
        return loss

    def _eval_step(self, batch: Batch, split: str) -> None:
        x, y = batch[0], batch[1]
        logits = self.model(x)
        if len(batch) == 4 and not batch[3]:  # a DDP padding shard: not counted
            return
        loss = F.cross_entropy(logits.float(), y)  # risk: plain mean cross-entropy
        getattr(self, f"{split}_loss").update(loss, weight=len(y))
        getattr(self, f"{split}_acc").update(logits, y)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Accumulate validation loss and accuracy."""
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Accumulate test loss and accuracy."""
        self._eval_step(batch, "test")

    def _log_epoch(self, split: str) -> None:
        loss, acc = getattr(self, f"{split}_loss"), getattr(self, f"{split}_acc")
        if not loss.update_called:
            return
        # compute() syncs torchmetrics state across DDP ranks.
        values = {"loss": float(loss.compute()), "accuracy": float(acc.compute())}
        loss.reset()
        acc.reset()
        for name, value in values.items():
            self.log(f"{split}/{name}", value)
            if self.metric_sink is not None and not self.trainer.sanity_checking:
                # The per-step curve owns "train/loss"; the epoch mean gets its own name.
                sink_name = "epoch_loss" if (split, name) == ("train", "loss") else name
                self.metric_sink(self.global_step, split, sink_name, value)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss and accuracy."""
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        """Log validation loss and accuracy."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log test loss and accuracy."""
        self._log_epoch("test")

    # ---- optimization ----------------------------------------------------------------------
    def _param_groups(self) -> list[dict[str, Any]]:
        named = dict(self.model.named_parameters())
        if self._restored_group_names:
            groups = [
                [named[n] for n in names if n in named] for names in self._restored_group_names
            ]
            seen = {id(p) for g in groups for p in g}
            rest = [p for p in named.values() if id(p) not in seen]
            if rest:
                groups.append(rest)
            return [{"params": g} for g in groups if g]
        return weight_decay_groups(named.values(), self.train_spec.weight_decay)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW or SGD with a per-step warmup + cosine/constant schedule."""
        spec = self.train_spec
        groups = self._param_groups()
        if spec.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(
                groups, lr=spec.lr, weight_decay=spec.weight_decay
            )
        else:
            opt = torch.optim.SGD(
                groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
            )
        if self.initial_optimizer_state is not None:
            load_named_optimizer_state(opt, self.model, self.initial_optimizer_state)
        total = self.total_steps or int(self.trainer.estimated_stepping_batches)
        sched = WarmupCosineSchedule(opt, total, spec.schedule, spec.warmup_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- checkpoints carry the architecture --------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the (possibly expanded) architecture and the optimizer groups by name."""
        checkpoint["architecture"] = self.model.arch.to_dict()
        checkpoint["hyper_parameters"]["architecture"] = self.model.arch.to_dict()
        if self._trainer is not None and self.trainer.optimizers:
            names = {id(p): n for n, p in self.model.named_parameters()}
            checkpoint["optimizer_param_names"] = [
                [names[id(p)] for p in g["params"] if id(p) in names]
                for g in self.trainer.optimizers[0].param_groups
            ]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the network in the checkpoint's shape before its weights load."""
        arch = checkpoint.get("architecture")
        if arch is not None and arch != self.model.arch.to_dict():
            ref = next(self.model.parameters())
            self.model = model_from_architecture(arch).to(device=ref.device, dtype=ref.dtype)
            self.hparams["architecture"] = arch
            log.info("rebuilt the network from the checkpoint: depths %s", self.model.arch.depths)
            if self.training_path is not None:  # before the optimizer and DDP see it
                self.training_path = prepare_training_path(
                    self.model, self.train_spec, self.trainer.strategy.root_device
                )
        self._restored_group_names = checkpoint.get("optimizer_param_names")


class ReporterCallback(Callback):
    """Forwards progress and metrics to a ProgressReporter, keeps curves, checks for stop.

    Every `every` optimizer steps: record the training loss, report progress and raise
    StopRequested when the reporter asks to stop. Epoch-level train/val/test loss and accuracy
    arrive from the module as it computes them.
    """

    def __init__(
        self,
        reporter: ProgressReporter,
        total_steps: int,
        every: int = 10,
        stage: str = "train",
    ) -> None:
        self.reporter, self.total_steps, self.every, self.stage = (
            reporter,
            total_steps,
            every,
            stage,
        )
        self.history: dict[str, list[list[float]]] = {}

    def _record(self, step: int, split: str, name: str, value: float) -> None:
        self.history.setdefault(f"{split}/{name}", []).append([step, value])
        self.reporter.metric(step, split, name, value)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Receive the module's epoch-level metrics."""
        if isinstance(pl_module, ResNetModule):
            pl_module.metric_sink = self._record

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Detach from the module."""
        if isinstance(pl_module, ResNetModule):
            pl_module.metric_sink = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Stop before the first step if asked already."""
        check_stop(self.reporter)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Every few steps: record the loss, report progress, check for a stop request."""
        step = trainer.global_step
        if step % self.every and step != self.total_steps:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            if trainer.world_size > 1:
                # Every rank reaches this step; the mean of the ranks' weighted shard losses
                # is the global batch's mean loss, the number one process would record.
                loss = trainer.strategy.reduce(loss.detach(), reduce_op="mean")
            self._record(step, "train", "loss", float(loss))
        self.reporter.progress(min(1.0, step / max(1, self.total_steps)), self.stage)
        check_stop(self.reporter)


def resolve_device(train: TrainSpec) -> torch.device:
    """The device a run of `train` uses (where its data should live): on a DDP rank, the GPU
    of its local rank."""
    if train.accelerator == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if train.devices > 1 else 0
        return torch.device("cuda", local_rank)
    if train.accelerator == "gpu":
        raise RuntimeError("train.accelerator is 'gpu' but no CUDA device is available")
    return torch.device("cpu")


def build_trainer(
    train: TrainSpec,
    out_dir: Path,
    callbacks: Sequence[Callback] = (),
    *,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    logger: Any = False,
    enable_checkpointing: bool = False,
    val_every_n_epochs: int = 1,
) -> L.Trainer:
    """A Trainer configured from the spec: no logger files, no checkpoints, no progress bar.

    With several devices (or nodes) it uses DDP over processes started by someone else
    (`expansion.distributed.launch`, torchrun, SLURM): Lightning launches nothing itself."""
    accelerator = {"auto": "auto", "cpu": "cpu", "gpu": "gpu"}[train.accelerator]
    distributed = train.devices > 1 or train.num_nodes > 1
    if distributed and not externally_launched():
        raise RuntimeError(
            f"train.devices {train.devices} x train.num_nodes {train.num_nodes} needs one "
            "process per device: run it through expansion.distributed.launch (the worker and "
            "`jumpboard run` do) or an external launcher such as torchrun"
        )
    return L.Trainer(
        accelerator=accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy="ddp" if distributed else "auto",
        precision="bf16-mixed" if train.precision == "bf16-mixed" else "32-true",
        max_epochs=max_epochs if max_epochs is not None else train.epochs,
        max_steps=max_steps if max_steps is not None else -1,
        logger=logger,
        enable_checkpointing=enable_checkpointing,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=val_every_n_epochs,
        callbacks=list(callbacks),
        default_root_dir=str(out_dir),
    )


class DeviceDataModule(L.LightningDataModule):
    """Serves a DataBundle as DeviceBatches, moved once to each rank's device; under DDP each
    rank gets its `RankShards` of the same global batches (`batch_size` is global)."""

    def __init__(self, bundle: DataBundle, batch_size: int, seed: int) -> None:
        super().__init__()
        self.bundle, self.batch_size, self.seed = bundle, batch_size, seed

    def _on_device(self, t: torch.Tensor) -> torch.Tensor:
        device = self.trainer.strategy.root_device if self.trainer is not None else t.device
        return t.to(device)

    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DeviceBatches | RankShards:
        """Shuffled, augmented (when the spec asks) training batches."""
        b = self.bundle
        rank, world = self._rank()
        x, y = self._on_device(b.x_train), self._on_device(b.y_train)
        augment = augmentation_for(b.name) if b.augment else None
        if world > 1:
            return RankShards(
                x, y, self.batch_size, rank=rank, world_size=world, seed=self.seed, augment=augment
            )
        return DeviceBatches(x, y, self.batch_size, seed=self.seed, augment=augment)

    def _eval(self, x: torch.Tensor, y: torch.Tensor) -> DeviceBatches | RankShards:
        rank, world = self._rank()
        x, y = self._on_device(x), self._on_device(y)
        if world > 1:
            return RankShards(x, y, EVAL_BATCH_SIZE, rank=rank, world_size=world, shuffle=False)
        return DeviceBatches(x, y, EVAL_BATCH_SIZE, shuffle=False)

    def val_dataloader(self) -> DeviceBatches | RankShards:
        """Validation split in order."""
        return self._eval(self.bundle.x_val, self.bundle.y_val)

    def test_dataloader(self) -> DeviceBatches | RankShards:
        """Test split in order."""
        return self._eval(self.bundle.x_test, self.bundle.y_test)


@dataclass
class TrainOutcome:
    """What `train_model` returns."""

    module: ResNetModule
    history: dict[str, list[list[float]]]
    """Curves `{"train/loss": [[step, value], ...], "val/loss": ..., "val/accuracy": ...}`."""
    optimizer_state: NamedOptimizerState
    """The final optimizer state keyed by parameter name (see `named_optimizer_state`)."""
    timings: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    final_lr: float = 0.0
    """Learning rate of the last step (of the first parameter group)."""

    @property
    def model(self) -> PostNormResNet:
        """The trained network."""
        return self.module.model


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of `n_train` samples at global batch `batch_size` (the same
    on any number of devices)."""
    return math.ceil(n_train / batch_size)


def train_model(
    spec: Any,
    bundle: DataBundle,
    reporter: ProgressReporter | None,
    out_dir: Path,
    callbacks: Sequence[Callback] = (),
    max_steps: int | None = None,
    *,
    model: PostNormResNet | None = None,
    optimizer_state: NamedOptimizerState | None = None,
) -> TrainOutcome:
    """Train the network `spec.model` describes (or `model`) on `bundle` by `spec.train`.

    Deterministic for a given `spec.train.seed` on CPU: the seed fixes the initialisation
    and the data order. `optimizer_state` (by parameter name) seeds the optimizer's state.
    Raises FloatingPointError on a non-finite loss and StopRequested when asked to stop.
    """
    train: TrainSpec = spec.train
    reporter = reporter or NullReporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(train.seed, verbose=False)
    if model is None:
        model = build_model(spec.model, spec.data, seed=train.seed)
    per_epoch = steps_per_epoch(len(bundle.y_train), train.batch_size)
    total = per_epoch * train.epochs
    if max_steps is not None:
        total = min(total, max_steps)
    module = ResNetModule.from_model(model, train, total, optimizer_state)
    report = ReporterCallback(reporter, total)
    trainer = build_trainer(train, out_dir, [report, *callbacks], max_steps=max_steps)
    data = DeviceDataModule(bundle, train.batch_size, train.seed)
    reporter.progress(0.0, "train", f"{total} steps")
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    train_s = time.perf_counter() - start
    reporter.progress(1.0, "train", f"{trainer.global_step} steps")
    # Lightning's teardown leaves the module (and optimizer state) on the CPU; callers get
    # the network back on the device its data lives on.
    module.to(bundle.device)
    optimizer = trainer.optimizers[0]
    outcome = TrainOutcome(
        module=module,
        history=report.history,
        optimizer_state=named_optimizer_state(optimizer, module.model),
        timings={
            "train_s": train_s,
            "steps_per_s": trainer.global_step / train_s if train_s > 0 else 0.0,
        },
        steps=trainer.global_step,
        final_lr=float(optimizer.param_groups[0]["lr"]),
    )
    module.model.eval()
    return outcome
