"""One DDP rank's share of the single-process batches: `RankShards`.

Under DDP each rank computes the gradient of its own shard and the ranks average those
gradients. `RankShards` makes that average the gradient one process would compute on the same
global batch: global batch i is exactly `DeviceBatches`' batch i (same permutation, same
augmentation draws), rank r takes the r-th contiguous slice of it, and every example carries a
weight such that summing `weight * loss` on each rank and averaging across ranks gives the mean
loss over the global batch. A rank whose slice of a short last batch would be empty gets one
padding example of weight 0, so every rank runs the same number of equally shaped steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def epoch_order(
    n: int, seed: int, epoch: int, shuffle: bool, device: torch.device
) -> tuple[torch.Generator, torch.Tensor]:
    """The order of `n` examples in one epoch (a seeded permutation, or 0..n-1) and the
    generator it was drawn from, whose later draws (augmentation) continue the same stream."""
    gen = torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)
    if shuffle:
        return gen, torch.randperm(n, generator=gen, device=device)
    return gen, torch.arange(n, device=device)


def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of rank `rank`'s contiguous slice of a batch of `size` examples (slices
    differ in size by at most one; the first `size % world_size` ranks get the larger ones)."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class RankShards:
    """Iterates (x, y, weight, real) shards of the global batches for rank `rank` of
    `world_size`.

    `batch_size` is the global batch (what one process would use). The weight of a real example
    is `world_size / global batch length`, of a padding example 0, so that
    `mean over ranks of sum(weight * loss)` is the global batch's mean loss. `real` (a plain
    int, so that using it costs no device sync) is the number of real examples: all of the
    shard, or 0 for a padding shard.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        rank: int,
        world_size: int,
        shuffle: bool = True,
        seed: int = 0,
        augment: Augmentation | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.augment = shuffle, seed, augment
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of `epoch` for the next iteration."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        # The generator is used exactly as DeviceBatches uses it: same seed, same draws.
        device = self.x.device
        gen, order = epoch_order(len(self.y), self.seed, self.epoch, self.shuffle, device)
        self.epoch += 1
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            size = len(idx)
            start, end = shard_bounds(size, self.rank, self.world_size)
            if self.augment is not None:
                # Every rank augments the whole global batch so that the generator advances
                # as in one process; the rank then keeps its slice.
                x = self.augment(self.x[idx], gen)[start:end]
            else:
                x = self.x[idx[start:end]]
            y = self.y[idx[start:end]]
            if len(y) == 0:
                yield self.x[idx[:1]], self.y[idx[:1]], torch.zeros(1, device=device), 0
            else:
                yield x, y, torch.full((len(y),), self.world_size / size, device=device), len(y)
