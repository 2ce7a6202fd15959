"""Where this process stands among the ranks of one job, for code at any layer: whether an
external launcher (torchrun, SLURM) started it, its global rank, and decisions broadcast from
rank 0. Imports torch.distributed only inside the functions that need it.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar, cast

T = TypeVar("T")


def agree_with_rank_zero(value: T) -> T:
    """`value` as rank 0 computed it, on every rank of an initialized process group (itself
    elsewhere). For decisions taken from floating-point values (which positions to continue)
    that GPUs of one job could round differently; on the CPU every rank computes the same."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return cast(T, box[0])


EXTERNAL_LAUNCHER_VARIABLES = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")
"""Either in the environment: this process is one rank of a run someone else launched (as is
a task of a SLURM step with several tasks)."""


def externally_launched() -> bool:
    """True when this process is a rank started by an external launcher (torchrun, SLURM).

    A SLURM job with one task (a worker or `jumpboard run` in an allocation) is not: it
    launches its ranks itself."""
    if any(name in os.environ for name in EXTERNAL_LAUNCHER_VARIABLES):
        return True
    return "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1


def external_rank() -> int:
    """The global rank an external launcher gave this process (0 when none did)."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name])
    return 0
