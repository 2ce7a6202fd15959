"""RankShards: DDP ranks' shards put back together are the single-process batches."""

from __future__ import annotations

import itertools

import pytest
import torch

from expansion.data.datasets import DeviceBatches, random_shift
from expansion.data.shards import RankShards, shard_bounds


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("augment", [False, True])
def test_shards_of_all_ranks_rebuild_the_single_process_batches(world: int, augment: bool) -> None:
    y = torch.arange(23)  # 23 = 2 full batches of 8 and a short one of 7
    x = torch.randn(23, 1, 12)
    aug = (lambda t, g: random_shift(t, 2, g)) if augment else None
    single = list(DeviceBatches(x, y, 8, seed=5, augment=aug))
    shards = [
        list(RankShards(x, y, 8, rank=r, world_size=world, seed=5, augment=aug))
        for r in range(world)
    ]
    assert all(len(s) == len(single) for s in shards)
    for i, (xb, yb) in enumerate(single):
        real = [(s[i][0][s[i][2] > 0], s[i][1][s[i][2] > 0]) for s in shards]
        assert torch.equal(torch.cat([r[1] for r in real]), yb)
        assert torch.equal(torch.cat([r[0] for r in real]), xb)


def test_weights_make_the_rank_mean_the_global_mean_loss() -> None:
    # A short last batch of 3 examples over 4 ranks: one rank gets only a padding example.
    y = torch.arange(11) % 3
    x = torch.randn(11, 4)
    losses = torch.rand(11)  # a per-example "loss" looked up by example
    lookup = {tuple(row.tolist()): float(v) for row, v in zip(x, losses, strict=True)}
    single = list(DeviceBatches(x, y, 8, seed=1))
    shards = [list(RankShards(x, y, 8, rank=r, world_size=4, seed=1)) for r in range(4)]
    for i, (xb, _) in enumerate(single):
        expected = sum(lookup[tuple(row.tolist())] for row in xb) / len(xb)
        per_rank = [
            float(
                sum(
                    lookup[tuple(row.tolist())] * float(w)
                    for row, w in zip(s[i][0], s[i][2], strict=True)
                )
            )
            for s in shards
        ]
        assert sum(per_rank) / 4 == pytest.approx(expected, rel=1e-6)
    assert [len(s[-1][1]) for s in shards] == [1, 1, 1, 1]
    assert float(shards[3][-1][2].sum()) == 0.0
    assert [s[-1][3] for s in shards] == [1, 1, 1, 0]  # real examples: the padding shard has none
    assert all(s[0][3] == len(s[0][1]) == 2 for s in shards)


def test_shard_bounds_cover_the_batch_once() -> None:
    for size in range(0, 20):
        bounds = [shard_bounds(size, r, 3) for r in range(3)]
        assert bounds[0][0] == 0 and bounds[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
