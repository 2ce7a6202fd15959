"""The findings sweep of docs/findings.md: run it (or read a finished run), write table and figure.

    .venv/bin/python benchmarks/sweep_findings.py            # the full grid (~1 h on 2 cores)
    .venv/bin/python benchmarks/sweep_findings.py --spec examples/mnist1d-sweep.yaml \
        --out runs/sweep-small --docs-dir docs/findings-small    # the small example
    .venv/bin/python benchmarks/sweep_findings.py --from-result runs/findings/result.json

Writes into --docs-dir: `table.md` (mean and 95% t-interval over seeds of test error,
generalization gap and input sensitivity per scaling and depth), `claims.md` (the verdicts of
expansion.results.findings), `points.csv` (every point), `figure.png` (when matplotlib is installed)
and `runtime.json` (wall and CPU seconds, load average, torch threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, and its queue.py (the queue
# benchmark) would shadow the standard library's `queue` that torch imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from expansion.results.findings import findings_markdown, judge_claims, judge_growth  # noqa: E402
from expansion.results.sweep_summary import series, to_csv  # noqa: E402

log = logging.getLogger("sweep_findings")
ROOT = _HERE.parent
MEASURES = {
    "test_error": "test error",
    "generalization_gap_risk": "gap (test − train risk)",
    "input_sensitivity": "input sensitivity",
}


class LogReporter:
    """Logs each point's start; never asks to stop."""

    def __init__(self) -> None:
        self.last = ""

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Log when a new point starts."""
        if stage == "point" and message and message != self.last:
            self.last = message
            log.info("%s (%.0f%% done)", message, 100 * fraction)

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Ignore metrics."""

    def should_stop(self) -> bool:
        """Never stop."""
        return False


def run_grid(spec_path: Path, out: Path, data_dir: Path | None) -> dict[str, Any]:
    """Run the sweep in this process; the result with its runtime."""
    import torch

    from app.commands.submit import read_spec_file
    from expansion.experiments import run_experiment

    load_before = os.getloadavg()
    wall = time.perf_counter()
    result = run_experiment(read_spec_file(spec_path), out, LogReporter(), data_dir=data_dir)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["runtime"] = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """Mean [95% t-interval] over seeds of each measure, per scaling and depth."""
    lines = []
    for measure, label in MEASURES.items():
        points = [p for p in series(rows, measure) if p.arm == "scratch"]
        depths = sorted({p.depth for p in points})
        scalings = list(dict.fromkeys(p.scaling for p in points))
        lines += [f"**{label}**", "", "| scaling | " + " | ".join(f"L={d}" for d in depths) + " |"]
        lines.append("|---" * (len(depths) + 1) + "|")
        for scaling in scalings:
            cells = []
            for depth in depths:
                p = next((q for q in points if q.scaling == scaling and q.depth == depth), None)
                if p is None:
                    cells.append("—")
                elif p.low is None or p.high is None:
                    cells.append(f"{p.mean:.4g} (n={p.n})")
                else:
                    cells.append(f"{p.mean:.4g} [{p.low:.3g}, {p.high:.3g}]")
            lines.append(f"| {scaling} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def growth_table_markdown(rows: list[dict[str, Any]]) -> str:
    """Test error mean [95% t-interval] over seeds of each arm of a grow sweep, per scaling."""
    points = series(rows, "test_error")
    arms = ("grown", "scratch", "start")
    lines = [
        "**test error**",
        "",
        "| scaling | grown (depth) | scratch (depth) | start (depth) |",
        "|---|---|---|---|",
    ]
    for scaling in dict.fromkeys(p.scaling for p in points):
        cells = []
        for arm in arms:
            p = next((q for q in points if q.scaling == scaling and q.arm == arm), None)
            if p is None:
                cells.append("—")
            elif p.low is None or p.high is None:
                cells.append(f"{p.mean:.4g} (n={p.n}, L={p.depth})")
            else:
                cells.append(f"{p.mean:.4g} [{p.low:.3g}, {p.high:.3g}] (L={p.depth})")
        lines.append(f"| {scaling} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_figure(rows: list[dict[str, Any]], path: Path) -> bool:
    """Test error, gap and sensitivity against depth (log axis), one line per scaling."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no figure")
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (measure, label) in zip(axes, MEASURES.items(), strict=True):
        points = [p for p in series(rows, measure) if p.arm == "scratch"]
        for scaling in dict.fromkeys(p.scaling for p in points):
            line = sorted((p for p in points if p.scaling == scaling), key=lambda p: p.depth)
            low = [p.mean - p.low if p.low is not None else 0.0 for p in line]
            high = [p.high - p.mean if p.high is not None else 0.0 for p in line]
            ax.errorbar(
                [p.depth for p in line],
                [p.mean for p in line],
                yerr=[low, high],
                marker="o",
                capsize=3,
                label=scaling,
            )
        ax.set_xscale("log", base=2)
        if measure == "input_sensitivity":
            ax.set_yscale("log")
        ax.set_xlabel("depth L (blocks)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("MNIST-1D post-norm conv1d ResNets: mean and 95% t-interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    """Run or read the sweep and write the findings files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples/mnist1d-sweep-full.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/findings")
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs/findings-results")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--from-result", type=Path, default=None, help="a finished result.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.from_result is not None:
        result = json.loads(args.from_result.read_text())
    else:
        result = run_grid(args.spec, args.out, args.data_dir)
    rows = result["rows"]
    docs = args.docs_dir
    docs.mkdir(parents=True, exist_ok=True)
    if any(row.get("arm") == "grown" for row in rows):  # a grow sweep: claim 5
        table, findings = growth_table_markdown(rows), judge_growth(rows)
    else:
        table, findings = table_markdown(rows), judge_claims(rows)
        write_figure(rows, docs / "figure.png")
    (docs / "table.md").write_text(table)
    (docs / "claims.md").write_text(findings_markdown(findings) + "\n")
    (docs / "points.csv").write_text(to_csv(rows))
    (docs / "runtime.json").write_text(json.dumps(result.get("runtime") or {}, indent=2))
    print(table)
    print(findings_markdown(findings))
    print(json.dumps(result.get("runtime") or {}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
