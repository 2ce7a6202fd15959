"""How the training steps run the network: memory format and compilation (TrainSpec).

`train.channels_last` puts a conv2d network's 4-D weights and every input batch in the
channels-last (NHWC) layout, the one tensor cores convolve without transposes; `None` means
on for conv2d on a CUDA device. `train.compile` runs the training forward through
`torch.compile`. The network itself stays a plain `PostNormResNet` (state dict, insertion and
checkpoints are unchanged); `restore_layout` returns its weights to the default layout after
training so that the scan, insertion and checkpoints see ordinary tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from expansion.models.network import PostNormResNet
from expansion.specs.sections import TrainSpec

log = logging.getLogger(__name__)


def use_channels_last(train: TrainSpec, kind: str, device: torch.device) -> bool:
    """Whether a network of `kind` trained by `train` on `device` uses the channels-last layout."""
    if kind != "conv2d":
        return False
    if train.channels_last is None:
        return device.type == "cuda"
    return train.channels_last


@dataclass
class TrainingPath:
    """The network's forward as the training steps call it, with the choices made."""

    model: PostNormResNet
    channels_last: bool
    compiled: bool
    network_forward: Callable[[torch.Tensor], torch.Tensor]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a training batch (moved to the network's layout first)."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network_forward(x)


def prepare_training_path(
    model: PostNormResNet, train: TrainSpec, device: torch.device
) -> TrainingPath:
    """Put `model` in the layout `train` asks for on `device` and build its training forward."""
    channels_last = use_channels_last(train, model.arch.kind, device)
    if channels_last:
        # Module.to takes memory_format (documented); torch's overload stubs omit it.
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if train.compile:
        if device.type == "cpu":
            log.warning(
                "train.compile on the CPU: the first steps compile C++ kernels "
                "(a minute or more on a small machine)"
            )
        forward = torch.compile(model)
    log.debug(
        "training path on %s: channels_last=%s compile=%s", device, channels_last, train.compile
    )
    return TrainingPath(model, channels_last, train.compile, forward)


def restore_layout(model: nn.Module) -> None:
    """Return every 4-D weight and buffer of `model` to the default contiguous layout."""
    # Module.to takes memory_format (documented); torch's overload stubs omit it.
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
