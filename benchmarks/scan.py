"""Exact single-pass scan vs per-position autograd (DESIGN.md 1.4).

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
from collections.abc import Callable
from pathlib import Path

# benchmarks/queue.py would shadow the standard library's `queue` (which torch imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from expansion.insertion.scan import autograd_gradients, new_blocks, single_pass_gradients  # noqa: E402
from expansion.models.network import build_model  # noqa: E402
from expansion.specs import DataSpec, ModelSpec  # noqa: E402


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
    data = DataSpec(name="digits" if args.kind == "conv2d" else "mnist1d")
    spec = ModelSpec(kind=args.kind, width=args.width, depth=args.depth, norm="layer")
    device = torch.device(args.device)
    model = build_model(spec, data, seed=0).eval().to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, *model.arch.in_shape, generator=gen).to(device)
    y = torch.randint(0, model.arch.num_classes, (args.batch,), generator=gen).to(device)

    def base_pass() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    print(
        f"{args.kind} width {args.width}, {args.depth} blocks, batch {args.batch}, "
        f"{device}, {torch.get_num_threads()} CPU threads (base pass re-measured next to each P)"
    )
    columns = ("P", "base ms", "single-pass/base", "autograd/base", "speed-up", "rel.err")
    print("  ".join(columns))
    for p in (4, 8, 16):
        positions = spread_positions(model.num_positions, p)
        blocks = new_blocks(model, positions, [0])
        keys = list(blocks)
        base = median_seconds(base_pass, args.repeats)
        single = median_seconds(
            lambda b=blocks: single_pass_gradients(model, x, y, b), args.repeats
        )
        per_pos = median_seconds(
            lambda k=keys: autograd_gradients(model, x, y, k), max(1, args.repeats // 2)
        )
        a = single_pass_gradients(model, x, y, blocks)
        b = autograd_gradients(model, x, y, keys)
        err = max(float((a[k] - b[k]).norm() / b[k].norm()) for k in blocks)
        print(
            f"{len(positions):>1}  {base * 1e3:>7.1f}  {single / base:>16.2f}  "
            f"{per_pos / base:>13.2f}  {per_pos / single:>7.1f}x  {err:.1e}"
        )


if __name__ == "__main__":
    main()
