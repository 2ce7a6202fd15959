"""The GPU training path: throughput and MFU, the default expand job, the scan ratio (issue 16).

Prints, on the device `accelerator: auto` picks (a GPU when there is one):
  * training throughput (examples/s, timed after warm-up steps) of the conv2d network on
    CIFAR-shaped data (3x32x32, 10 classes; synthetic, or real CIFAR-10 with --cifar-dir), for
    fp32, bf16-mixed, channels_last, torch.compile and all three together, each as a ratio to
    the fp32 run measured in the same process; training FLOPs per example and MFU (against
    --peak-tflops, or the table in expansion.training.throughput; "n/a" when unknown);
  * the wall time of the default expand job (examples/mnist1d-expand.yaml, accelerator auto);
  * the exact scan's ratio to one forward+backward (benchmarks/scan.py's `scan_ratios`).
--smoke shrinks everything so that it runs on a CPU in well under a minute (figures labelled
smoke), skipping torch.compile there (its C++ compilation alone takes minutes on 2 cores).

    .venv/bin/python benchmarks/gpu.py [--cifar-dir DIR/cifar-10-batches-py] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as a script, this folder comes first on sys.path, and its queue.py (the queue
# benchmark) would shadow the standard library's `queue` that torch imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402
import yaml  # noqa: E402

from expansion.data.datasets import CIFAR_FOLDER, DataBundle, DataError, load_dataset  # noqa: E402
from expansion.experiments.runner import run_experiment  # noqa: E402
from expansion.models.evaluate import evaluate  # noqa: E402
from expansion.models.network import build_model  # noqa: E402
from expansion.specs.experiments import TrainExperiment  # noqa: E402
from expansion.specs.parsing import parse_spec  # noqa: E402
from expansion.training.throughput import (  # noqa: E402
    ThroughputCallback,
    gpu_model,
    math_mode,
    model_flops_utilization,
    peak_flops,
    training_flops_per_example,
)
from expansion.training.trainer import resolve_device, train_model  # noqa: E402

EXPAND_SPEC = _HERE.parent / "examples" / "mnist1d-expand.yaml"
CONFIGS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "32", "channels_last": False, "compile": False},
    "bf16-mixed": {"precision": "bf16-mixed", "channels_last": False, "compile": False},
    "channels_last": {"precision": "32", "channels_last": True, "compile": False},
    "compile": {"precision": "32", "channels_last": False, "compile": True},
    "bf16+channels_last+compile": {
        "precision": "bf16-mixed",
        "channels_last": True,
        "compile": True,
    },
}


@dataclass
class Sizes:
    """The sizes of one benchmark run (full or smoke)."""

    width: int
    depth: int
    stages: int
    batch: int
    train_samples: int
    warmup_steps: int
    scan_width: int
    scan_depth: int
    scan_batch: int
    scan_positions: tuple[int, ...]
    scan_repeats: int


FULL = Sizes(64, 2, 3, 256, 256 * 100, 10, 64, 16, 256, (4, 8, 16), 20)
SMOKE = Sizes(8, 1, 2, 32, 32 * 4, 1, 8, 4, 16, (4,), 1)


def load_scan_module() -> ModuleType:
    """benchmarks/scan.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("benchmark_scan", _HERE / "scan.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {_HERE / 'scan.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def cifar_shaped_bundle(
    n: int, device: torch.device, cifar_dir: Path | None, seed: int = 0
) -> DataBundle:
    """CIFAR-10 from the python-version folder when given, else n synthetic Gaussian images
    (3x32x32) with random labels from 10 classes, all on `device`."""
    if cifar_dir is not None:
        if cifar_dir.name != CIFAR_FOLDER:
            raise SystemExit(f"--cifar-dir must be a folder named {CIFAR_FOLDER}: {cifar_dir}")
        spec = parse_spec({"data": {"name": "cifar10", "augment": True}})
        try:
            return load_dataset(spec.data, "conv2d", device, cifar_dir.parent)
        except DataError as exc:
            raise SystemExit(f"--cifar-dir: {exc}") from None
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 512, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n + 512,), generator=gen)
    return DataBundle(
        name="cifar10",
        x_train=x[:n].to(device),
        y_train=y[:n].to(device),
        x_val=x[n:].to(device),
        y_val=y[n:].to(device),
        x_test=x[n:].to(device),
        y_test=y[n:].to(device),
        num_classes=10,
        augment=True,
    )


def train_spec(sizes: Sizes, config: dict[str, Any], epochs: int) -> TrainExperiment:
    """The conv2d experiment of one throughput row."""
    spec = parse_spec(
        {
            "kind": "train",
            "data": {"name": "cifar10", "augment": True},
            "model": {
                "kind": "conv2d",
                "width": sizes.width,
                "depth": sizes.depth,
                "stages": sizes.stages,
                "kernel_size": 3,
            },
            "train": {
                "epochs": epochs,
                "batch_size": sizes.batch,
                "warmup_steps": 20,
                "accelerator": "auto",
                **config,
            },
        }
    )
    assert isinstance(spec, TrainExperiment)
    return spec


def measure_config(
    name: str,
    sizes: Sizes,
    bundle: DataBundle,
    epochs: int,
    flops: float,
    peak_tflops: float | None,
    real_data: bool,
) -> dict[str, Any]:
    """Throughput, MFU (and test accuracy on real data) of one configuration's training run."""
    spec = train_spec(sizes, CONFIGS[name], epochs)
    timer = ThroughputCallback(sizes.warmup_steps)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = train_model(spec, bundle, None, Path(out), [timer])
        wall = time.perf_counter() - start
    if timer.result is None:
        raise RuntimeError(f"{name}: too few steps to time after the warm-up")
    rate = timer.result.examples_per_s
    device = bundle.device
    if peak_tflops is not None:
        peak: float | None = peak_tflops * 1e12
    elif device.type == "cuda":
        mode = math_mode(spec.train.precision, "conv2d")
        peak = peak_flops(torch.cuda.get_device_name(device), mode)
    else:
        peak = None
    accuracy = None
    if real_data:
        accuracy = 1.0 - evaluate(outcome.model, bundle.x_test, bundle.y_test)[1]
    return {
        "config": name,
        "examples_per_s": rate,
        "mfu": model_flops_utilization(flops, rate, peak),
        "peak_tflops": peak / 1e12 if peak else None,
        "wall_s": wall,
        "test_accuracy": accuracy,
    }


def throughput_rows(
    sizes: Sizes,
    bundle: DataBundle,
    names: list[str],
    epochs: int,
    peak_tflops: float | None,
    real_data: bool,
) -> tuple[float, list[dict[str, Any]], dict[str, str]]:
    """(training FLOPs per example, one row per configuration with its ratio to the fp32
    row, the configurations that failed and why); fp32 first, and it must not fail."""
    base = train_spec(sizes, CONFIGS["fp32"], epochs)
    flops = training_flops_per_example(build_model(base.model, base.data), (3, 32, 32))
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for name in names:
        try:
            row = measure_config(name, sizes, bundle, epochs, flops, peak_tflops, real_data)
        # One unavailable option (no bf16, no compiler) must not end the run.
        except Exception as exc:
            if not rows:
                raise
            first_line = (str(exc).splitlines() or [""])[0][:200]
            failed[name] = f"failed: {type(exc).__name__}: {first_line}"
            continue
        row["ratio_to_fp32"] = row["examples_per_s"] / rows[0]["examples_per_s"] if rows else 1.0
        rows.append(row)
    return flops, rows, failed


def expand_time(smoke: bool) -> dict[str, Any]:
    """Wall time of the default expand job (examples/mnist1d-expand.yaml, accelerator auto);
    smoke: the same spec with width 16 on 400 samples, 1 epoch, 5 continuation steps, 1 seed,
    top 1."""
    raw = yaml.safe_load(EXPAND_SPEC.read_text())
    raw["train"]["accelerator"] = "auto"
    if smoke:
        raw["data"]["max_train_samples"] = 400
        raw["model"]["width"] = 16
        raw["train"].update(epochs=1, warmup_steps=2)
        raw["expand"].update(
            continue_steps=5, seeds=[0], top_k=1, grad_batch_size=10, line_search_points=2
        )
    spec = parse_spec(raw)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_experiment(spec, Path(out))
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "device": str(resolve_device(spec.train)),
        "base_test_error": result.get("test_error"),
        "timings": result.get("timings", {}),
    }


def fmt(value: float | None, spec: str) -> str:
    """`value` formatted, or n/a."""
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    """Run every part and print the figures (and write them as JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU, under a minute)")
    parser.add_argument("--cifar-dir", type=Path, help=f"the extracted {CIFAR_FOLDER} folder")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per throughput run")
    parser.add_argument("--peak-tflops", type=float, help="peak TFLOP/s for MFU (else looked up)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SMOKE if args.smoke else FULL
    device = resolve_device(parse_spec({}).train)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    label = " (SMOKE sizes: not a performance figure)" if args.smoke else ""
    print(
        f"device {device} ({name}, table entry {gpu_model(name)}), torch {torch.__version__}{label}"
    )

    configs = list(CONFIGS)
    skipped = {}
    if args.smoke and device.type == "cpu":
        for c in configs:
            if CONFIGS[c]["compile"]:
                skipped[c] = "skipped in CPU smoke: inductor's C++ compilation takes minutes"
        configs = [c for c in configs if c not in skipped]
    bundle = cifar_shaped_bundle(sizes.train_samples, device, args.cifar_dir)
    flops, rows, failed = throughput_rows(
        sizes, bundle, configs, args.epochs, args.peak_tflops, args.cifar_dir is not None
    )
    skipped.update(failed)
    data = "CIFAR-10" if args.cifar_dir else "synthetic CIFAR-shaped"
    print(
        f"\nconv2d width {sizes.width}, depth {sizes.depth}, stages {sizes.stages}, batch "
        f"{sizes.batch}, {data} ({len(bundle.y_train)} training examples, on-device "
        f"crop+flip); training FLOPs/example {flops:.3e}"
    )
    print(f"{'config':<28}{'examples/s':>12}{'vs fp32':>9}{'MFU':>8}{'test acc':>10}")
    for row in rows:
        print(
            f"{row['config']:<28}{row['examples_per_s']:>12.1f}{row['ratio_to_fp32']:>9.2f}"
            f"{fmt(row['mfu'], '.1%'):>8}{fmt(row['test_accuracy'], '.1%'):>10}"
        )
    for c, why in skipped.items():
        print(f"{c:<28}{why}")

    expand = expand_time(args.smoke)
    print(f"\ndefault expand job on {expand['device']}: {expand['seconds']:.1f} s")

    scan = load_scan_module()
    ratios = scan.scan_ratios(
        "conv2d",
        sizes.scan_width,
        sizes.scan_depth,
        sizes.scan_batch,
        device,
        sizes.scan_positions,
        sizes.scan_repeats,
    )
    print(
        f"\nscan (conv2d width {sizes.scan_width}, {sizes.scan_depth} blocks, "
        f"batch {sizes.scan_batch})"
    )
    for r in ratios:
        print(
            f"P={r.positions}: base {r.base_ms:.1f} ms, single-pass/base "
            f"{r.single_pass_ratio:.2f}, autograd/base {r.autograd_ratio:.2f}, "
            f"rel.err {r.rel_err:.1e}"
        )
    figures = {
        "smoke": args.smoke,
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "flops_per_example": flops,
        "throughput": rows,
        "skipped": skipped,
        "expand": expand,
        "scan": [{**asdict(r), "speed_up": r.speed_up} for r in ratios],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
