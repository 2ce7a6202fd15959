"""The default expand job's stages, timed, and the continuation batched against one by one.

Runs `examples/mnist1d-expand.yaml` on the CPU (`run_expand`, as `jumpboard run` does) and
prints each stage's seconds from the result's `timings`. Then, on the same trained base and
the same chosen positions, trains the continuation's arms both ways (one by one, and arms of
one architecture together: `expansion.training.batched_arms`) and prints both times, their
ratio and the largest difference of a gain between the two (float rounding only). The two
ways alternate over `--repeats` rounds and the best time of each is kept.

    .venv/bin/python benchmarks/expand.py [--quick] [--threads 2] [--batch-arms auto]

`--quick` shrinks the job (3 base epochs, 20 continuation steps) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, and its queue.py (the queue
# benchmark) would shadow the standard library's `queue` that torch imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
# As `jumpboard run` does before torch loads: spinning OpenMP threads on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import yaml  # noqa: E402

from expansion.data.datasets import load_dataset  # noqa: E402
from expansion.experiments.expand import run_expand  # noqa: E402
from expansion.insertion.predictors import early_steps_for  # noqa: E402
from expansion.models.checkpoint import load_base_checkpoint  # noqa: E402
from expansion.results.answer import answer_line  # noqa: E402
from expansion.specs.experiments import ExpandExperiment  # noqa: E402
from expansion.specs.parsing import parse_spec  # noqa: E402
from expansion.training.continuation import Continuation, controlled_continuation  # noqa: E402

SPEC_FILE = Path(__file__).resolve().parents[1] / "examples" / "mnist1d-expand.yaml"
STAGES = (
    ("data_s", "data loading"),
    ("train_s", "base training"),
    ("scan_s", "scan (gradients, every position's line search and certificate, selection)"),
    ("certify_s", "certify (chosen positions' records, jumpboard on test, drift)"),
    ("continuation_s", "continuation (control + expanded arms)"),
    ("predictors_s", "predictors (probes)"),
    ("evaluate_s", "final evaluation"),
    ("keep_expanded_s", "expanded.ckpt (the answer's arm trained again)"),
)


def job_spec(path: Path, quick: bool, batch_arms: str) -> ExpandExperiment:
    """The benchmarked spec: the example on the CPU, shrunk with `quick`."""
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.setdefault("train", {})["accelerator"] = "cpu"
    raw.setdefault("expand", {})["batch_arms"] = batch_arms
    if quick:
        raw["train"]["epochs"] = 3
        raw["expand"]["continue_steps"] = 20
    spec = parse_spec(raw)
    assert isinstance(spec, ExpandExperiment)
    return spec


def continuation_both_ways(
    spec: ExpandExperiment, result: dict[str, Any], out_dir: Path, repeats: int
) -> dict[str, Any]:
    """Seconds of the job's continuation one by one and batched, on its base and positions."""
    device = torch.device("cpu")
    bundle = load_dataset(spec.data, spec.model.kind, device)
    base, payload = load_base_checkpoint(out_dir / "base.ckpt", spec.model, spec.data, device)
    base.eval()
    e = spec.expand
    kwargs: dict[str, Any] = {
        "positions": [row["position"] for row in result["positions"]],
        "seeds": e.seeds,
        "steps": e.continue_steps,
        "lr": result["continue_lr"],
        "confidence": e.confidence,
        "early_steps": sorted(set(early_steps_for(e.continue_steps).values())),
    }
    state = payload.get("optimizer_state")
    times: dict[bool, list[float]] = {False: [], True: []}
    outcomes: dict[bool, Continuation] = {}
    for _ in range(repeats):
        for batched in (False, True):
            start = time.perf_counter()
            outcomes[batched] = controlled_continuation(
                base, state, bundle, spec.train, batched=batched, **kwargs
            )
            times[batched].append(time.perf_counter() - start)
    gap = max(
        abs(outcomes[True].records[k]["gain_vs_control"] - r["gain_vs_control"])
        for k, r in outcomes[False].records.items()
    )
    return {
        "one_by_one_s": min(times[False]),
        "batched_s": min(times[True]),
        "runs_one_by_one_s": times[False],
        "runs_batched_s": times[True],
        "ratio_batched_over_one_by_one": min(times[True]) / min(times[False]),
        "max_gain_difference": gap,
        "arms": len(e.seeds) * (len(kwargs["positions"]) + 1),
    }


def main() -> None:
    """Run the job, then the continuation both ways; print the stages and the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC_FILE)
    parser.add_argument("--quick", action="store_true", help="3 epochs, 20 continuation steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-arms", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--no-compare", action="store_true", help="only the job's stages")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = job_spec(args.spec, args.quick, args.batch_arms)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = run_expand(spec, Path(tmp))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        compare = None
        if not args.no_compare:
            compare = continuation_both_ways(spec, result, Path(tmp), args.repeats)
    timings = result["timings"]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, threads {args.threads}, load average at start "
        f"{load[0]:.1f}, at end {os.getloadavg()[0]:.1f}"
    )
    e = spec.expand
    print(
        f"job: {args.spec.name}{' (quick)' if args.quick else ''}: {spec.train.epochs} epochs, "
        f"{len(result['positions'])} positions x {len(e.seeds)} seeds, {e.continue_steps} "
        f"continuation steps, batch_arms {e.batch_arms} "
        f"(batched: {result.get('continuation_batched')})"
    )
    accounted = 0.0
    for key, label in STAGES:
        if key in timings:
            accounted += timings[key]
            share = timings[key] / timings["total_s"]
            print(f"  {label:<52} {timings[key]:7.1f} s  {share:5.1%}")
    print(
        f"  {'other (setup, summaries, result file)':<52} {timings['total_s'] - accounted:7.1f} s"
    )
    print(
        f"  {'total (run_expand)':<52} {timings['total_s']:7.1f} s  (wall {wall:.1f} s, "
        f"CPU {cpu:.1f} s over {args.threads} threads)"
    )
    print(answer_line(result.get("answer")))
    if compare is not None:
        print(
            f"continuation of {compare['arms']} arms: one by one {compare['one_by_one_s']:.1f} s, "
            f"batched {compare['batched_s']:.1f} s, ratio batched/one-by-one "
            f"{compare['ratio_batched_over_one_by_one']:.2f} (best of {args.repeats}); "
            f"largest gain difference {compare['max_gain_difference']:.1e}"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"timings": timings, "wall_s": wall, "cpu_s": cpu, "continuation": compare},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
