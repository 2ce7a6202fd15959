"""Checkpoints that carry the architecture, so a network of any depth (expanded ones too) reloads.

The file holds tensors and plain containers only and loads with `weights_only=True`: a
checkpoint from anyone cannot run code. Layout (format `jumpboard/1`):

    {"format", "architecture": Architecture.to_dict(), "state_dict", "optimizer_state",
     "spec", "extra"}
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from expansion.models.network import PostNormResNet, model_from_architecture

CHECKPOINT_FORMAT = "jumpboard/1"


class CheckpointError(ValueError):
    """A file is not a readable Jumpboard checkpoint; the message says why."""


def _plain(value: Any) -> Any:
    """Tuples -> lists, pydantic models -> dicts, recursively; tensors are kept (detached)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if torch.is_tensor(value):
        return value.detach()
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, int) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def save_checkpoint(
    path: Path | str,
    model: PostNormResNet,
    *,
    spec: BaseModel | dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (weights and architecture) with optional spec, optimizer state and extras.

    The write is atomic (a temporary file renamed into place). Returns the path written.
    """
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "architecture": _plain(model.arch.to_dict()),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer_state": _plain(optimizer_state) if optimizer_state is not None else None,
        "spec": _plain(spec) if spec is not None else None,
        "extra": _plain(extra) if extra is not None else {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_payload(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded with `weights_only=True` and its format checked."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (found {found!r})")
    return payload


def load_checkpoint(
    path: Path | str, map_location: str | torch.device = "cpu"
) -> tuple[PostNormResNet, dict[str, Any]]:
    """(network rebuilt from the stored architecture with its weights, the whole payload)."""
    payload = load_payload(path, map_location)
    try:
        model = model_from_architecture(payload["architecture"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: architecture and weights do not match: {exc}") from None
    return model.to(map_location), payload
