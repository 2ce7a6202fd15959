"""What every experiment's result starts with: kind, spec, device, torch version; and a
network's risks on each split.
"""

from __future__ import annotations

from typing import Any

import torch

from expansion.data.datasets import DataBundle
from expansion.models.evaluate import evaluate
from expansion.results.result_file import json_safe
from expansion.specs.experiments import (
    AnyExperiment,
)

Spec = AnyExperiment


BASE_CHECKPOINT = "base.ckpt"


def risks(model: torch.nn.Module, bundle: DataBundle) -> dict[str, float | None]:
    """Test/validation/training risk (mean cross-entropy) and error (0-1 risk) of `model`."""
    out: dict[str, float | None] = {}
    for split in ("test", "val", "train"):
        x, y = getattr(bundle, f"x_{split}"), getattr(bundle, f"y_{split}")
        risk, error = evaluate(model, x, y)
        out[f"{split}_risk"], out[f"{split}_error"] = json_safe(risk), error
    return out


def result_header(spec: Spec, device: torch.device) -> dict[str, Any]:
    """The fields every result starts with: kind, spec, device, torch_version."""
    return {
        "kind": spec.kind,
        "spec": spec.model_dump(mode="json"),
        "device": str(device),
        "torch_version": torch.__version__,
    }
