"""How many examples each split of a data spec holds, from the spec alone (no torch, no data
loaded): what `expansion.data.datasets` carves, so that `validate` and the API catch a
certificate split too small before any training, and `expand.grad_batch_size` can follow
from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from expansion.specs.sections import DataSpec

TRAIN_POOL_SIZES = {"mnist1d": 4000, "digits": 1437, "cifar10": 50_000, "cifar100": 50_000}
"""Training-set sizes of the stored data sets before the validation and certificate splits
(docs/design.md 2)."""
TEST_SIZES = {"mnist1d": 1000, "digits": 360, "cifar10": 10_000, "cifar100": 10_000}
"""Test-set sizes of the stored data sets."""


@dataclass(frozen=True)
class SplitSizes:
    """Examples in each split of a data spec."""

    train: int
    val: int
    certify: int


def split_sizes(data: DataSpec) -> SplitSizes:
    """The sizes `expansion.data.datasets` gives (its `_split`: validation first, at least
    one example, then the certificate split, Python's rounding). Your own data (its sizes
    filled in where the spec entered) brings its validation arrays when `val_size` is set."""
    if data.train_size is not None:  # your own data
        pool = min(data.train_size, data.max_train_samples or data.train_size)
        n_cert = round(pool * (data.certify_fraction or 0.0))
        if data.val_size:
            return SplitSizes(train=pool - n_cert, val=data.val_size, certify=n_cert)
        n_val = max(1, round(pool * data.val_fraction))
        return SplitSizes(train=pool - n_val - n_cert, val=n_val, certify=n_cert)
    pool = data.teacher_train_size if data.name == "teacher" else TRAIN_POOL_SIZES[data.name]
    if data.max_train_samples is not None:
        pool = min(pool, data.max_train_samples)
    n_val = max(1, round(pool * data.val_fraction))
    n_cert = round(pool * (data.certify_fraction or 0.0))
    return SplitSizes(train=pool - n_val - n_cert, val=n_val, certify=n_cert)
