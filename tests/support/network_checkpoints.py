"""A network rebuilt from any Jumpboard checkpoint (base, grown, expanded), for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from expansion.models.checkpoint import CheckpointError, load_payload
from expansion.models.network import PostNormResNet, model_from_architecture


def load_checkpoint(
    path: Path | str, map_location: str | torch.device = "cpu"
) -> tuple[PostNormResNet, dict[str, Any]]:
    """(network rebuilt from the stored architecture with its weights, the whole payload)."""
    payload = load_payload(path, map_location)
    try:
        model = model_from_architecture(payload["architecture"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: architecture and weights do not match: {exc}") from None
    return model.to(map_location), payload
