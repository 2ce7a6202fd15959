"""Exact single-pass scan vs per-position autograd (docs/design.md 1.4).

For P candidate positions of a 16-block post-norm network, times
  * base:       one forward + backward (parameter gradients) of the base network,
  * single-pass: one forward + backward to the boundaries plus the closed-form W2 gradients,
  * autograd:    insert each block, forward + backward, remove it (P passes),
and prints both scans as ratios to the base pass (median of --repeats runs, measured in the
same process), and the largest relative difference between the two scans' gradients.

    .venv/bin/python benchmarks/scan.py [--kind conv1d] [--width 64] [--batch 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

# benchmarks/queue.py would shadow the standard library's `queue` (which torch imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from expansion.insertion.scan import autograd_gradients, new_blocks, single_pass_gradients  # noqa: E402
from expansion.models.network import build_model  # noqa: E402
from expansion.specs.sections import DataSpec, ModelSpec  # noqa: E402


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread_positions(total: int, p: int) -> list[int]:
    """p positions spread evenly over 0..total-1."""
    return sorted({round(i * (total - 1) / max(p - 1, 1)) for i in range(p)})


@dataclass
class ScanRatio:
    """One row of the table: P positions scanned, times as ratios to one base pass."""

    positions: int
    base_ms: float
    single_pass_ratio: float
    autograd_ratio: float
    rel_err: float

    @property
    def speed_up(self) -> float:
        """Per-position autograd time over single-pass time."""
        return self.autograd_ratio / self.single_pass_ratio


def scan_ratios(
    kind: str,
    width: int,
    depth: int,
    batch: int,
    device: torch.device,
    position_counts: Sequence[int] = (4, 8, 16),
    repeats: int = 7,
) -> list[ScanRatio]:
    """The single-pass scan and per-position autograd, each timed as a ratio to one
    forward + backward of the base network (re-measured next to each P), for a `kind`
    network of `width` and `depth` blocks on a batch of `batch` on `device`."""
    data = DataSpec(name="digits" if kind == "conv2d" else "mnist1d")
    spec = ModelSpec(kind=kind, width=width, depth=depth, norm="layer")
    model = build_model(spec, data, seed=0).eval().to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *model.arch.in_shape, generator=gen).to(device)
    y = torch.randint(0, model.arch.num_classes, (batch,), generator=gen).to(device)

    def base_pass() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    rows = []
    for p in position_counts:
        positions = spread_positions(model.num_positions, p)
        blocks = new_blocks(model, positions, [0])
        keys = list(blocks)
        base = median_seconds(base_pass, repeats)
        single = median_seconds(partial(single_pass_gradients, model, x, y, blocks), repeats)
        per_pos = median_seconds(
            partial(autograd_gradients, model, x, y, keys), max(1, repeats // 2)
        )
        a = single_pass_gradients(model, x, y, blocks)
        b = autograd_gradients(model, x, y, keys)
        err = max(float((a[k] - b[k]).norm() / b[k].norm()) for k in blocks)
        rows.append(ScanRatio(len(positions), base * 1e3, single / base, per_pos / base, err))
    return rows


def main() -> None:
    """Run the benchmark and print a table of ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="conv1d", choices=["mlp", "conv1d", "conv2d"])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"{args.kind} width {args.width}, {args.depth} blocks, batch {args.batch}, "
        f"{device}, {torch.get_num_threads()} CPU threads (base pass re-measured next to each P)"
    )
    columns = ("P", "base ms", "single-pass/base", "autograd/base", "speed-up", "rel.err")
    print("  ".join(columns))
    for row in scan_ratios(
        args.kind, args.width, args.depth, args.batch, device, repeats=args.repeats
    ):
        print(
            f"{row.positions:>1}  {row.base_ms:>7.1f}  {row.single_pass_ratio:>16.2f}  "
            f"{row.autograd_ratio:>13.2f}  {row.speed_up:>7.1f}x  {row.rel_err:.1e}"
        )


if __name__ == "__main__":
    main()
