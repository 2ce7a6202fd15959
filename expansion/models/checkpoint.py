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

from expansion.models.network import (
    Architecture,
    PostNormResNet,
    build_architecture,
    model_from_architecture,
)
from expansion.specs.sections import DataSpec, ModelSpec

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


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's can span dozens of lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_payload(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded with `weights_only=True` and its format checked."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint: {_first_line(exc)}") from None
    except Exception as exc:  # a corrupted archive fails in many ways (zip, struct, unicode...)
        raise CheckpointError(
            f"{path} is not a readable checkpoint: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (found {found!r})")
    return payload


# Architecture fields a base checkpoint must share with the spec; `kernel_size` matters for
# the convolutional kinds and `groups` for group norm only.
_COMPARED_FIELDS = (
    "kind",
    "in_shape",
    "num_classes",
    "widths",
    "depths",
    "norm",
    "groups",
    "scaling",
    "activation",
    "kernel_size",
    "hidden_mult",
)
_SPEC_NAMES = {
    "widths": "width per stage",
    "depths": "blocks per stage",
    "in_shape": "input shape",
    "num_classes": "classes",
}


def architecture_mismatches(found: Architecture, expected: Architecture) -> list[str]:
    """`field: checkpoint X, spec Y` for each architecture field where the two differ."""
    problems = []
    for name in _COMPARED_FIELDS:
        if name == "kernel_size" and expected.kind == "mlp":
            continue
        if name == "groups" and expected.norm != "group":
            continue
        have, want = getattr(found, name), getattr(expected, name)
        if isinstance(have, tuple | list):
            have, want = list(have), list(want)
        if have != want:
            problems.append(f"{_SPEC_NAMES.get(name, name)}: checkpoint {have}, spec {want}")
    return problems


def _weight_problems(state: dict[str, Any], reference: dict[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected, misshapen, mistyped or non-finite tensors of `state`."""
    problems = []
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    if missing:
        problems.append(f"missing tensors {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        more = " ..." if len(unexpected) > 3 else ""
        problems.append(f"unexpected tensors {unexpected[:3]}{more}")
    for name, want in reference.items():
        have = state.get(name)
        if have is None:
            continue
        if not torch.is_tensor(have):
            problems.append(f"{name} is a {type(have).__name__}, not a tensor")
        elif tuple(have.shape) != tuple(want.shape):
            problems.append(
                f"{name} has shape {list(have.shape)}, the architecture needs {list(want.shape)}"
            )
        elif have.is_floating_point() != want.is_floating_point():
            problems.append(f"{name} has dtype {have.dtype}, the architecture needs {want.dtype}")
        elif have.is_floating_point() and not bool(torch.isfinite(have).all()):
            bad = int((~torch.isfinite(have)).sum())
            problems.append(f"{name} holds {bad} NaN or infinite values")
    return problems


def load_base_checkpoint(
    path: Path | str,
    model_spec: ModelSpec,
    data_spec: DataSpec,
    map_location: str | torch.device = "cpu",
) -> tuple[PostNormResNet, dict[str, Any]]:
    """Load a base network for `expand --base`, refusing one the spec does not describe.

    The stored architecture must match the spec's model on the data (kind, input shape,
    classes, widths, blocks per stage, norm, scaling, activation, kernel, hidden width), every
    tensor must have the shape that architecture needs, and every weight must be finite.
    CheckpointError otherwise, with a one-line message naming what differs."""
    path = Path(path)
    payload = load_payload(path, map_location)
    try:
        found = Architecture.from_dict(payload["architecture"])
        state = payload["state_dict"]
        if not isinstance(state, dict):
            raise TypeError(f"state_dict is a {type(state).__name__}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: unreadable architecture or weights: {_first_line(exc)}"
        ) from None
    problems = architecture_mismatches(found, build_architecture(model_spec, data_spec))
    if problems:
        raise CheckpointError(f"{path} does not match the spec's model: {'; '.join(problems)}")
    try:
        model = model_from_architecture(found)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unusable architecture: {_first_line(exc)}") from None
    problems = _weight_problems(state, model.state_dict())
    if problems:
        shown = "; ".join(problems[:4]) + ("; ..." if len(problems) > 4 else "")
        raise CheckpointError(f"{path}: corrupted weights: {shown}")
    try:
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupted weights: {_first_line(exc)}") from None
    return model.to(map_location), payload
