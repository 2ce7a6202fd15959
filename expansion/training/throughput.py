"""Training throughput and model FLOPs utilization (MFU).

MFU = achieved FLOP/s / peak FLOP/s, where the achieved rate is the network's training FLOPs
per example (one forward and backward, counted by `torch.utils.flop_counter.FlopCounterMode`:
matrix products and convolutions, 2 FLOPs per multiply-add; norms, activations and the
optimizer step are not counted) times the examples trained per second. The peak is given, or
looked up for the GPUs in `PEAK_TFLOPS`; for anything else MFU is not reported.
"""

from __future__ import annotations

import copy
import enum
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


class MathMode(enum.StrEnum):
    """The arithmetic a training run's matrix products and convolutions use."""

    BF16 = "bf16"
    """bfloat16 inputs on tensor cores (`precision: bf16-mixed`)."""
    TF32 = "tf32"
    """float32 tensors multiplied as TF32 on tensor cores (PyTorch's default for cuDNN
    convolutions; for matrix products only when `torch.backends.cuda.matmul.allow_tf32`)."""
    FP32 = "fp32"
    """Plain float32 (no tensor cores)."""


# Dense peaks (without 2:4 structured sparsity) in TFLOP/s, from NVIDIA's product datasheets:
# A100 (SXM and PCIe: the same tensor-core peaks), H100 SXM5, H100 PCIe, H200 SXM, L4, L40S.
# The datasheets print the sparse figure for tensor cores; dense is half of it.
PEAK_TFLOPS: dict[str, dict[MathMode, float]] = {
    "A100": {MathMode.BF16: 312.0, MathMode.TF32: 156.0, MathMode.FP32: 19.5},
    "H100 SXM": {MathMode.BF16: 989.5, MathMode.TF32: 494.5, MathMode.FP32: 67.0},
    "H100 PCIe": {MathMode.BF16: 756.5, MathMode.TF32: 378.0, MathMode.FP32: 51.2},
    "H200 SXM": {MathMode.BF16: 989.5, MathMode.TF32: 494.5, MathMode.FP32: 67.0},
    "L4": {MathMode.BF16: 121.0, MathMode.TF32: 60.0, MathMode.FP32: 30.3},
    "L40S": {MathMode.BF16: 362.0, MathMode.TF32: 183.0, MathMode.FP32: 91.6},
}


def gpu_model(device_name: str) -> str | None:
    """The `PEAK_TFLOPS` key of a CUDA device name (`torch.cuda.get_device_name`), or None.

    "NVIDIA H100 80GB HBM3" is the SXM5 part and "NVIDIA H200" the SXM one; the NVL variants
    have other peaks and are not listed.
    """
    name = device_name.upper()
    if "NVL" in name:
        return None
    if "H200" in name:
        return "H200 SXM"
    if "H100" in name:
        return "H100 PCIe" if "PCIE" in name else "H100 SXM"
    if "A100" in name:
        return "A100"
    if "L40S" in name:
        return "L40S"
    if name.endswith(" L4") or name == "L4":
        return "L4"
    return None


def peak_flops(device_name: str, mode: MathMode) -> float | None:
    """Dense peak FLOP/s of a known GPU in `mode`, or None for an unknown device."""
    model = gpu_model(device_name)
    if model is None:
        return None
    return PEAK_TFLOPS[model][mode] * 1e12


def math_mode(precision: str, kind: str) -> MathMode:
    """The arithmetic of a run with `precision` (TrainSpec) on a network of `kind` on a GPU."""
    if precision == "bf16-mixed":
        return MathMode.BF16
    if kind == "mlp":
        return MathMode.TF32 if torch.backends.cuda.matmul.allow_tf32 else MathMode.FP32
    return MathMode.TF32 if torch.backends.cudnn.allow_tf32 else MathMode.FP32


def training_flops_per_example(
    model: nn.Module, sample_shape: tuple[int, ...], batch_size: int = 8
) -> float:
    """FLOPs of one training example: forward, cross-entropy and backward of one batch of
    `batch_size` examples of `sample_shape`, divided by `batch_size`.

    Counted on a copy of `model` on the meta device: nothing is computed, and `model` (its
    gradients, running statistics) is left as it is.
    """
    meta = copy.deepcopy(model).to("meta")
    meta.train()
    x = torch.zeros(batch_size, *sample_shape, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        logits = meta(x)
        y = torch.zeros(batch_size, dtype=torch.long, device="meta")
        F.cross_entropy(logits.float(), y).backward()
    return counter.get_total_flops() / batch_size


def model_flops_utilization(
    flops_per_example: float, examples_per_s: float, peak: float | None
) -> float | None:
    """Achieved FLOP/s over the peak, or None without a peak."""
    if peak is None or peak <= 0:
        return None
    return flops_per_example * examples_per_s / peak


@dataclass
class Throughput:
    """Examples per second over the timed steps of a training run."""

    examples: int
    seconds: float

    @property
    def examples_per_s(self) -> float:
        """Examples trained per second (0 when nothing was timed)."""
        return self.examples / self.seconds if self.seconds > 0 else 0.0


class ThroughputCallback(Callback):
    """Times the training steps of the first epoch from step `warmup_steps` (after
    compilation and cuDNN's algorithm search) up to the epoch's last step, which is left out
    (it may be a partial batch: another compilation); the device is synchronized at both
    ends, and validation is outside the interval."""

    def __init__(self, warmup_steps: int = 5) -> None:
        self.warmup_steps = warmup_steps
        self._start = 0.0
        self._examples = 0
        self.result: Throughput | None = None

    @staticmethod
    def _sync(module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Start the clock at the first timed step, stop it before the epoch's last one."""
        if trainer.current_epoch != 0:
            return
        if batch_idx == self.warmup_steps:
            self._sync(pl_module)
            self._start = time.perf_counter()
            self._examples = 0
        if batch_idx == trainer.num_training_batches - 1 and batch_idx > self.warmup_steps:
            self._sync(pl_module)
            self.result = Throughput(self._examples, time.perf_counter() - self._start)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Count the examples of a timed step."""
        if trainer.current_epoch == 0 and batch_idx >= self.warmup_steps:
            self._examples += len(batch[1])
