"""Whether a base network's recorded spec fits an `expand` spec (torch-free): the same model,
and the same data splits, so that the certificate split was never trained on. Used before any
training by the service (`expand.base_job`) and by `--base` when the checkpoint is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from expansion.specs.sections import DataSpec, ModelSpec

SPLIT_FIELDS = (
    "name",
    "seed",
    "val_fraction",
    "certify_fraction",
    "max_train_samples",
    "teacher_dim",
    "teacher_width",
    "teacher_depth",
    "teacher_train_size",
    "teacher_test_size",
)
"""DataSpec fields that decide which examples land in the training split."""


def split_mismatches(base_data: dict[str, Any], data: DataSpec) -> list[str]:
    """`data.F base X (spec: Y)` for each split field where the base's data section differs."""
    try:
        stored = DataSpec.model_validate(base_data).model_dump()
    except ValidationError:
        return ["data: the base's data section is not a valid one"]
    wanted = data.model_dump()
    return [
        f"data.{f} {stored.get(f)!r} (spec: {wanted.get(f)!r})"
        for f in SPLIT_FIELDS
        if f in wanted and stored.get(f) != wanted.get(f)
    ]


def model_mismatches(base_model: dict[str, Any], model: ModelSpec) -> list[str]:
    """`model.F base X (spec: Y)` for each model field where the base's model section differs."""
    try:
        stored = ModelSpec.model_validate(base_model).model_dump()
    except ValidationError:
        return ["model: the base's model section is not a valid one"]
    wanted = model.model_dump()
    return [
        f"model.{f} {stored.get(f)!r} (spec: {wanted.get(f)!r})"
        for f in wanted
        if stored.get(f) != wanted.get(f)
    ]


BASE_CHECKPOINTS = ("base.ckpt", "grown.ckpt")
"""The file that holds a job's trained network: train and expand jobs, grow jobs."""


def base_checkpoint(job_dir: Path) -> Path | None:
    """The trained network in a job's folder, if it is there."""
    for name in BASE_CHECKPOINTS:
        if (job_dir / name).is_file():
            return job_dir / name
    return None
