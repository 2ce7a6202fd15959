"""The base network of an `expand` experiment: trained here, or loaded from a checkpoint and
checked against the spec (architecture, and the data splits it was trained on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from expansion.data.datasets import DataBundle
from expansion.models.network import PostNormResNet
from expansion.progress import ProgressReporter
from expansion.specs.base_match import split_mismatches
from expansion.specs.experiments import ExpandExperiment
from expansion.training.trainer import train_model


def load_base(
    path: Path, spec: ExpandExperiment, device: torch.device
) -> tuple[PostNormResNet, dict[str, Any]]:
    """The `--base` network, checked against the spec (architecture, shapes, finite weights)."""
    from expansion.models.checkpoint import load_base_checkpoint

    model, payload = load_base_checkpoint(path, spec.model, spec.data, map_location=device)
    check_base_splits(path, payload, spec)
    return model.to(device).eval(), payload


def check_base_splits(path: Path, payload: dict[str, Any], spec: ExpandExperiment) -> None:
    """Refuse a base trained on other splits: its training set may hold the certificate split,
    and a certificate on examples the base was fitted on is not a held-out certificate."""
    from expansion.models.checkpoint import CheckpointError

    stored = (payload.get("spec") or {}).get("data")
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"{path}: the checkpoint does not record its data section, so its training split "
            "cannot be checked against the certificate split; train the base with this spec's "
            "data section"
        )
    differ = split_mismatches(stored, spec.data)
    if differ:
        raise CheckpointError(
            f"{path}: the base was trained on other splits ({', '.join(differ)}); its training "
            "set may hold the certificate split. Train the base with this spec's data section"
        )


@dataclass
class BaseNetwork:
    """The trained base of an expand experiment, as every later stage needs it."""

    model: PostNormResNet
    optimizer_state: dict[str, Any] | None
    """The optimizer's state at the end of base training (both continuation arms resume it)."""
    final_lr: float
    """The learning rate at the end of base training (the default continuation rate)."""
    curves: dict[str, Any]
    """Base training's curves (empty for a loaded base)."""
    train_s: float
    artifacts: list[str]
    """Files this experiment wrote for the base (`base.ckpt`; none for a loaded base)."""


def train_base(
    spec: ExpandExperiment, bundle: DataBundle, reporter: ProgressReporter, out_dir: Path
) -> BaseNetwork:
    """Train the base network on the training split and keep it as `base.ckpt`."""
    from expansion.models.checkpoint import save_checkpoint

    outcome = train_model(spec, bundle, reporter, out_dir)
    model = outcome.model.eval()
    save_checkpoint(
        out_dir / "base.ckpt",
        model,
        spec=spec.model_dump(mode="json"),
        optimizer_state=outcome.optimizer_state,
        extra={"final_lr": outcome.final_lr},
    )
    return BaseNetwork(
        model=model,
        optimizer_state=outcome.optimizer_state,
        final_lr=outcome.final_lr,
        curves=outcome.history,
        train_s=outcome.timings["train_s"],
        artifacts=["base.ckpt"],
    )


def obtain_base(
    spec: ExpandExperiment,
    bundle: DataBundle,
    reporter: ProgressReporter,
    out_dir: Path,
    device: torch.device,
    base_checkpoint: Path | None,
) -> BaseNetwork:
    """The base on `device`: loaded from `base_checkpoint` (with its optimizer state), or
    trained; either way checked to have the spec's number of positions."""
    if base_checkpoint is not None:
        model, payload = load_base(Path(base_checkpoint), spec, device)
        base = BaseNetwork(
            model=model,
            optimizer_state=payload.get("optimizer_state"),
            final_lr=float((payload.get("extra") or {}).get("final_lr", spec.train.lr)),
            curves={},
            train_s=0.0,
            artifacts=[],
        )
    else:
        base = train_base(spec, bundle, reporter, out_dir)
        # Lightning hands the trained module back on the CPU; the data lives on `device`.
        base.model = base.model.to(device)
    if base.model.num_positions != spec.model.num_positions:
        raise ValueError(
            f"the base network has {base.model.num_positions} positions, the spec "
            f"{spec.model.num_positions}: the checkpoint does not match the spec's model"
        )
    return base
