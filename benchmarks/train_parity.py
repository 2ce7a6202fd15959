"""Training parity: the same model, data and seed trained by a plain PyTorch loop and by Lightning.

Prints both wall times, their ratio (Lightning / plain; target <= 1.10 on CPU) and the
difference of the final training loss. Both arms run the same steps in the same order (the
same `DeviceBatches`, the same schedule, the same per-epoch validation), so the ratio is the
framework's overhead. The arms alternate over `--repeats` rounds and the best time of each is
kept, which damps the noise of a shared machine.

    .venv/bin/python benchmarks/train_parity.py [--epochs 3] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and its queue.py (the queue
# benchmark) would shadow the standard library's `queue` that torch imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from expansion.data.datasets import DataBundle, DeviceBatches, augmentation_for, load_dataset  # noqa: E402
from expansion.models.network import build_model  # noqa: E402
from expansion.progress import NullReporter  # noqa: E402
from expansion.specs.experiments import TrainExperiment  # noqa: E402
from expansion.specs.parsing import parse_spec  # noqa: E402
from expansion.training.trainer import WarmupCosineSchedule, steps_per_epoch, train_model  # noqa: E402

SPEC = {
    "data": {"name": "mnist1d", "augment": True},
    "model": {"kind": "conv1d", "width": 80, "depth": 3, "kernel_size": 5},
    "train": {
        "epochs": 3,
        "batch_size": 128,
        "lr": 3e-3,
        "weight_decay": 0.05,
        "accelerator": "cpu",
    },
}


def plain_loop(spec: TrainExperiment, bundle: DataBundle) -> tuple[float, float]:
    """(seconds, final training loss) of a hand-written loop doing what ResNetModule does."""
    train = spec.train
    torch.manual_seed(train.seed)
    model = build_model(spec.model, spec.data, seed=train.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": train.weight_decay},
            {"params": rest, "weight_decay": 0},
        ],
        lr=train.lr,
    )
    total = steps_per_epoch(len(bundle.y_train), train.batch_size) * train.epochs
    sched = WarmupCosineSchedule(opt, total, train.schedule, train.warmup_steps)
    batches = DeviceBatches(
        bundle.x_train,
        bundle.y_train,
        train.batch_size,
        seed=train.seed,
        augment=augmentation_for(bundle.name) if bundle.augment else None,
    )
    val = DeviceBatches(bundle.x_val, bundle.y_val, 2048, shuffle=False)
    loss = torch.zeros(())
    start = time.perf_counter()
    for _ in range(train.epochs):
        model.train()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, label_smoothing=train.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError("non-finite loss")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.inference_mode():
            for x, y in val:
                F.cross_entropy(model(x), y)
    return time.perf_counter() - start, float(loss.detach())


def lightning_loop(spec: TrainExperiment, bundle: DataBundle, out_dir: Path) -> tuple[float, float]:
    """(seconds, final training loss) of `train_model` (its timed fit only)."""
    outcome = train_model(spec, bundle, NullReporter(), out_dir)
    return outcome.timings["train_s"], outcome.history["train/loss"][-1][1]


def main() -> None:
    """Run both arms and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = json.loads(json.dumps(SPEC))
    raw["train"]["epochs"] = args.epochs
    spec = parse_spec(raw)
    assert isinstance(spec, TrainExperiment)
    bundle = load_dataset(spec.data, spec.model.kind, "cpu", args.data_dir)
    plain_times, lightning_times = [], []
    plain_loss = lightning_loss = float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        lightning_loop(spec, bundle, Path(tmp))  # warm-up: imports, first-call allocations
        for _ in range(args.repeats):
            t, plain_loss = plain_loop(spec, bundle)
            plain_times.append(t)
            t, lightning_loss = lightning_loop(spec, bundle, Path(tmp))
            lightning_times.append(t)
    steps = steps_per_epoch(len(bundle.y_train), spec.train.batch_size) * spec.train.epochs
    plain, light = min(plain_times), min(lightning_times)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, threads {args.threads}"
    )
    m = spec.model
    print(
        f"model: {m.kind} width {m.width} depth {m.depth} on {spec.data.name}, {steps} steps, "
        f"batch {spec.train.batch_size} (examples/mnist1d.yaml's network)"
    )
    print(f"plain PyTorch: {plain:.2f} s  (runs {', '.join(f'{t:.2f}' for t in plain_times)})")
    print(f"Lightning:     {light:.2f} s  (runs {', '.join(f'{t:.2f}' for t in lightning_times)})")
    print(
        f"ratio Lightning/plain: {light / plain:.3f} best-of-{args.repeats}, "
        f"{statistics.median(lightning_times) / statistics.median(plain_times):.3f} median "
        "(target <= 1.10)"
    )
    print(
        f"final loss: plain {plain_loss:.6f}, Lightning {lightning_loss:.6f}, "
        f"difference {abs(plain_loss - lightning_loss):.2e}"
    )


if __name__ == "__main__":
    main()
