"""Growth schedules: insert blocks during training at given epochs (docs/design.md 1.6).

`GrowthCallback` inserts blocks after the epochs of a `GrowSpec` (after that epoch's
validation), at an explicit position list or by a policy, up to the target depth, and adds
the new parameters to the optimizer the trainer really steps (new parameter groups, the
scheduler's per-group lists extended). Its state (events done, insertions) is checkpointed;
a resumed run gets the grown architecture from `ResNetModule.on_load_checkpoint` (the
checkpoint's `architecture`) and its optimizer groups by parameter name, so the callback only
has to remember not to repeat events.

Policies: `explicit` (one position per event from the spec), `best` (the largest certified
first-order gain from a single-pass scan on training data), `stack` (after the last block),
`interpolate` (midway between existing blocks of the shallowest stage), `uniform` (spread
evenly over all positions).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from expansion.insertion.certificate import unbiased_norm_sq
from expansion.insertion.insert import insert_block
from expansion.insertion.scan import scan_positions
from expansion.models.network import PostNormResNet
from expansion.specs.sections import GrowSpec
from expansion.training.optim import weight_decay_groups
from expansion.training.trainer import ResNetModule, WarmupCosineSchedule

logger = logging.getLogger(__name__)

SCAN_BATCH_SIZE = 256
SCAN_MAX_BATCHES = 8


def block_seed(train_seed: int, event: int, index: int) -> int:
    """Seed of the W1 of the `index`-th block inserted at growth event `event`."""
    return train_seed * 10_007 + event * 64 + index


def stack_positions(model: PostNormResNet, k: int) -> list[int]:
    """`stack`: after the last block of the last stage (k times)."""
    return [model.num_positions - 1] * k


def interpolate_positions(model: PostNormResNet, k: int) -> list[int]:
    """`interpolate`: between existing blocks, spread within the shallowest stage(s)."""
    depths = model.arch.depths
    counts = [0] * len(depths)
    for _ in range(k):  # shallowest stage (counting blocks already allotted) first
        counts[min(range(len(depths)), key=lambda s: depths[s] + counts[s])] += 1
    out = []
    for stage, (d, m) in enumerate(zip(depths, counts, strict=True)):
        offset = sum(x + 1 for x in depths[:stage])
        for j in range(m):
            local = max(1, min(d - 1, round((j + 1) * d / (m + 1)))) if d > 1 else 1
            out.append(offset + local)
    return out


def uniform_positions(model: PostNormResNet, k: int) -> list[int]:
    """`uniform`: k positions spread evenly over all positions."""
    n = model.num_positions
    return [min(n - 1, int((j + 0.5) * n / k)) for j in range(k)]


def best_positions(
    model: PostNormResNet,
    k: int,
    seeds: list[int],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    shuffle_seed: int,
) -> tuple[list[int], dict[int, float]]:
    """`best`: the k positions with the largest seed-mean U on training batches (the unbiased
    estimate of |E g|^2 of the new block's W2 gradient; training data, since growth has no
    held-out certificate split).

    One scan of every position with the seeds the inserted blocks will have; returns the
    positions and every position's gain.
    """
    n_train = train[0].shape[0]
    batch = min(SCAN_BATCH_SIZE, max(2, n_train // 2))
    scan = scan_positions(
        model,
        train,
        val,
        list(range(model.num_positions)),
        seeds,
        batch_size=batch,
        max_batches=SCAN_MAX_BATCHES,
        shuffle_seed=shuffle_seed,
    )
    gains: dict[int, float] = {}
    for (p, _seed), grad in scan.gradients.items():
        u, _ = unbiased_norm_sq(grad.batches, 0.95)
        gains[p] = gains.get(p, 0.0) + u / len(seeds)
    ranked = sorted(gains, key=lambda p: gains[p], reverse=True)
    return ranked[:k], gains


def add_parameters_to_optimizer(
    trainer: L.Trainer, params: list[torch.nn.Parameter], weight_decay: float
) -> None:
    """Add `params` to the optimizer the trainer steps as new groups, and to its schedule.

    Weight matrices/kernels get `weight_decay`, the rest none (as in `ResNetModule`); the new
    groups start at the learning rate the scheduler currently gives the first group.
    """
    optimizer = trainer.optimizers[0]
    ref = optimizer.param_groups[0]
    lr, initial_lr = ref["lr"], ref.get("initial_lr", ref["lr"])
    for group in weight_decay_groups(params, weight_decay, lr=lr, initial_lr=initial_lr):
        optimizer.add_param_group(group)
    for config in trainer.lr_scheduler_configs:
        sched = config.scheduler
        if getattr(sched, "optimizer", None) is not optimizer:
            continue
        if not isinstance(sched, WarmupCosineSchedule):
            # Torch's own schedulers keep per-group lists with no public way to extend them.
            raise TypeError(
                f"growth needs the trainer's WarmupCosineSchedule, not {type(sched).__name__}"
            )
        sched.track_new_groups()


class GrowthCallback(Callback):
    """Inserts blocks into `pl_module.model` after the epochs of a growth schedule."""

    def __init__(
        self,
        grow: GrowSpec,
        *,
        train_seed: int = 0,
        weight_decay: float = 0.0,
        data: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
        | None = None,
    ) -> None:
        if grow.policy == "best" and data is None:
            raise ValueError("growth policy 'best' needs training and validation data to scan")
        self.grow = grow
        self.train_seed = train_seed
        self.weight_decay = weight_decay
        self.data = data
        self.events_done: list[int] = []
        self.inserted: list[dict[str, Any]] = []
        self._gains: dict[int, float] = {}
        """`best`: every position's certified gain at the latest event."""

    # ---- where ---------------------------------------------------------------------------
    def choose(self, model: PostNormResNet, event: int, k: int, seeds: list[int]) -> list[int]:
        """Positions (in the network before this event) for the event's k blocks."""
        policy = self.grow.policy
        if policy == "explicit":
            position = self.grow.positions[event]
            if position >= model.num_positions:
                raise ValueError(
                    f"grow.positions[{event}] = {position} is out of range: the network has "
                    f"positions 0..{model.num_positions - 1} at that event"
                )
            return [position] * k
        if policy == "stack":
            return stack_positions(model, k)
        if policy == "interpolate":
            return interpolate_positions(model, k)
        if policy == "uniform":
            return uniform_positions(model, k)
        assert self.data is not None
        train, val = self.data
        chosen, gains = best_positions(model, k, seeds, train, val, self.train_seed + event)
        self._gains = gains
        return chosen

    # ---- when ----------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a scheduled epoch: insert blocks and hand their parameters to the optimizer."""
        completed = trainer.current_epoch + 1
        if completed not in self.grow.at_epochs or completed in self.events_done:
            return
        if not isinstance(pl_module, ResNetModule):
            raise TypeError(f"growth trains a ResNetModule, not {type(pl_module).__name__}")
        model = pl_module.model
        event = self.grow.at_epochs.index(completed)
        k = min(self.grow.blocks_per_event, self.grow.target_depth - model.total_blocks)
        self.events_done.append(completed)
        if k <= 0:
            return
        seeds = [block_seed(self.train_seed, event, j) for j in range(k)]
        self._gains = {}
        positions = self.choose(model, event, k, seeds)
        new_params: list[torch.nn.Parameter] = []
        depth_before = model.total_blocks
        # highest first, so each base position keeps its meaning
        for position, seed in sorted(zip(positions, seeds, strict=True), reverse=True):
            block = insert_block(model, position, seed)
            block.train(model.training)
            new_params.extend(block.parameters())
            self.inserted.append(
                {
                    "epoch": completed,
                    "step": trainer.global_step,
                    "position": position,
                    "seed": seed,
                    "depth_before": depth_before,
                    "depth_after": depth_before + k,
                    "grad_norm_sq_unbiased_train": self._gains.get(position),
                }
            )
        add_parameters_to_optimizer(trainer, new_params, self.weight_decay)
        pl_module.hparams["architecture"] = model.arch.to_dict()
        logger.info(
            "epoch %d: inserted %d block(s) at %s; depth %d -> %d",
            completed,
            k,
            positions,
            depth_before,
            model.total_blocks,
        )

    # ---- checkpoint ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Events done and insertions made (the architecture itself is in the checkpoint)."""
        return {"events_done": list(self.events_done), "inserted": list(self.inserted)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore events done, so a resumed run does not repeat them."""
        self.events_done = list(state_dict.get("events_done", []))
        self.inserted = list(state_dict.get("inserted", []))
