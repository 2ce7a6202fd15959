"""Training FLOPs per example against hand counts, the peak table, MFU, the step timer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from expansion.data.datasets import load_dataset
from expansion.models.network import build_model
from expansion.specs.parsing import parse_spec
from expansion.specs.sections import DataSpec, ModelSpec
from expansion.training.throughput import (
    MathMode,
    ThroughputCallback,
    gpu_model,
    model_flops_utilization,
    peak_flops,
    training_flops_per_example,
)
from expansion.training.trainer import train_model


def conv_flops(n: int, c_in: int, c_out: int, k: int, h: int, w: int) -> int:
    """2 x multiply-adds of a same-padded, stride-1 convolution over n images."""
    return 2 * n * c_out * h * w * c_in * k * k


def test_flops_of_a_conv_and_linear_network_match_a_hand_count() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )
    conv = conv_flops(2, 3, 4, 3, 8, 8)
    linear = 2 * 2 * 256 * 10
    # Backward: the first layer's input needs no gradient, so the convolution has only its
    # weight gradient (one more pass); the linear layer has input and weight gradients.
    expected = (2 * conv + 3 * linear) / 2
    assert training_flops_per_example(net, (3, 8, 8), batch_size=2) == expected


def test_flops_of_a_post_norm_conv2d_match_a_hand_count() -> None:
    spec = ModelSpec(kind="conv2d", width=4, depth=1, kernel_size=3)
    model = build_model(spec, DataSpec(name="digits"))
    n = 4
    stem = conv_flops(n, 1, 4, 3, 8, 8)
    branch = 2 * conv_flops(n, 4, 4, 3, 8, 8)  # W1 and W2
    head = 2 * n * 4 * 10
    expected = (2 * stem + 3 * branch + 3 * head) / n
    assert training_flops_per_example(model, (1, 8, 8), batch_size=n) == expected


def test_counting_leaves_the_network_untouched() -> None:
    spec = ModelSpec(kind="conv2d", width=4, depth=1, kernel_size=3, norm="batch")
    model = build_model(spec, DataSpec(name="digits"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training_flops_per_example(model, (1, 8, 8))
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running statistics too
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA GeForce RTX 3090", None),
        ("CPU", None),
    ],
)
def test_gpu_names_map_to_table_entries(name: str, table: str | None) -> None:
    assert gpu_model(name) == table


def test_peaks_and_mfu() -> None:
    assert peak_flops("NVIDIA H200", MathMode.BF16) == pytest.approx(989.5e12)
    assert peak_flops("NVIDIA A100-SXM4-40GB", MathMode.TF32) == pytest.approx(156e12)
    assert peak_flops("NVIDIA GeForce RTX 3090", MathMode.BF16) is None
    # 1e9 FLOPs per example at 1e5 examples/s is 1e14 FLOP/s: 10% of 1e15.
    assert model_flops_utilization(1e9, 1e5, 1e15) == pytest.approx(0.1)
    assert model_flops_utilization(1e9, 1e5, None) is None


def test_the_step_timer_counts_the_steps_after_warm_up(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "data": {"name": "digits"},
            "model": {"kind": "mlp", "width": 8, "depth": 1},
            "train": {"epochs": 2, "batch_size": 100, "accelerator": "cpu"},
        }
    )
    bundle = load_dataset(spec.data, "mlp", "cpu")
    timer = ThroughputCallback(warmup_steps=3)
    train_model(spec, bundle, None, tmp_path, [timer])
    assert timer.result is not None
    # First epoch only: its steps after the warm-up, without the last (partial) one.
    batches = -(-len(bundle.y_train) // 100)
    assert len(bundle.y_train) % 100  # the last batch is partial
    assert timer.result.examples == (batches - 1 - 3) * 100
    assert timer.result.seconds > 0
    assert timer.result.examples_per_s > 0
