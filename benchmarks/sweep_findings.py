"""The findings sweep of docs/findings.md: run it (or read a finished run), write table and figure.

    .venv/bin/python benchmarks/sweep_findings.py            # the full grid (~1 h on 2 cores)
    .venv/bin/python benchmarks/sweep_findings.py --spec examples/mnist1d-sweep.yaml \
        --out runs/sweep-small --docs-dir docs/findings-small    # the small example
    .venv/bin/python benchmarks/sweep_findings.py --from-result runs/findings/result.json
    .venv/bin/python benchmarks/sweep_findings.py --from-points docs/findings-small/points.csv \
        --docs-dir docs/findings-small --test-examples 1000   # tables from stored points
    .venv/bin/python benchmarks/sweep_findings.py --page --test-examples 1000
        # docs/findings.md's verdicts and tables from the stored points of both sweeps

Writes into --docs-dir: `table.md` (mean and 95% interval over seeds of test error,
generalization gap and input sensitivity per scaling and depth; test error and sensitivity
include the test set's noise), `claims.md` (the verdicts of expansion.results.findings, Holm over
this sweep's comparisons), `points.csv` (every point), `figure.png` (when matplotlib is installed)
and `runtime.json` (wall and CPU seconds, load average, torch threads).

`--page` reads `docs/findings-results/points.csv` (the grid: claims 1-4) and
`docs/findings-grow/points.csv` (the grow sweep: claim 5), decides every comparison of the page
by Holm over their union, and rewrites the generated parts of docs/findings.md (between the
`<!-- generated:NAME -->` and `<!-- /generated:NAME -->` markers). Points stored before rows
carried `test_examples` need `--test-examples` (MNIST-1D: 1000).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, and its queue.py (the queue
# benchmark) would shadow the standard library's `queue` that torch imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from expansion.results.findings import (  # noqa: E402
    claim_four_verdict,
    decide,
    findings_markdown,
    judge_claims,
    judge_growth,
)
from expansion.results.sweep_summary import ROW_FIELDS, series, to_csv  # noqa: E402

log = logging.getLogger("sweep_findings")
ROOT = _HERE.parent
FINDINGS_PAGE = ROOT / "docs" / "findings.md"
GRID_POINTS = ROOT / "docs" / "findings-results" / "points.csv"
GROW_POINTS = ROOT / "docs" / "findings-grow" / "points.csv"
TEXT_COLUMNS = frozenset({"status", "arm", "scaling", "coordinates", "error"})
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


def read_points(path: Path) -> list[dict[str, Any]]:
    """The rows of a stored points.csv, typed as the sweep stores them (numbers as numbers,
    empty cells as None)."""
    rows = []
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key in ROW_FIELDS:
                value = raw.get(key, "")
                if value == "":
                    row[key] = None
                elif key in TEXT_COLUMNS:
                    row[key] = value
                else:
                    number = float(value)
                    row[key] = (
                        int(number) if number.is_integer() and key != "test_error" else number
                    )
            rows.append(row)
    return rows


def table_markdown(rows: list[dict[str, Any]], test_examples: int | None = None) -> str:
    """Mean [95% interval] over seeds of each measure, per scaling and depth."""
    lines = []
    for measure, label in MEASURES.items():
        points = [
            p for p in series(rows, measure, test_examples=test_examples) if p.arm == "scratch"
        ]
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
        if points:
            lines += [f"Intervals: {points[0].method}.", ""]
    return "\n".join(lines)


def growth_table_markdown(rows: list[dict[str, Any]], test_examples: int | None = None) -> str:
    """Test error mean [95% interval] over seeds of each arm of a grow sweep, per scaling."""
    points = series(rows, "test_error", test_examples=test_examples)
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
    if points:
        lines += ["", f"Intervals: {points[0].method}."]
    return "\n".join(lines) + "\n"


def write_figure(rows: list[dict[str, Any]], path: Path, test_examples: int | None = None) -> bool:
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
        points = [
            p for p in series(rows, measure, test_examples=test_examples) if p.arm == "scratch"
        ]
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
    fig.suptitle(
        "MNIST-1D post-norm conv1d ResNets: mean and 95% interval over seeds"
        " (error and sensitivity include the test set's noise)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def replace_generated(page: str, name: str, text: str) -> str:
    """`page` with the text between `<!-- generated:name -->` and `<!-- /generated:name -->`
    replaced by `text`; ValueError when the markers are missing."""
    pattern = re.compile(
        rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- /generated:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(page):
        raise ValueError(f"docs/findings.md has no <!-- generated:{name} --> section")
    return pattern.sub(lambda m: m.group(1) + text.strip("\n") + "\n" + m.group(2), page)


def findings_page(
    page: str, grid: list[dict[str, Any]], grow: list[dict[str, Any]], test_examples: int | None
) -> tuple[str, str]:
    """docs/findings.md with its generated sections rewritten (every comparison of the page
    decided by Holm over the union of the two sweeps' comparisons, and the tables), and the
    verdict table alone."""
    findings = decide(
        judge_claims(grid, test_examples) + judge_growth(grow, test_examples=test_examples)
    )
    verdicts = findings_markdown(findings)
    verdicts += f"\n\nClaim 4 over depths: **{claim_four_verdict(findings).value}**."
    page = replace_generated(page, "verdicts", verdicts)
    page = replace_generated(page, "grid-table", table_markdown(grid, test_examples))
    page = replace_generated(page, "grow-table", growth_table_markdown(grow, test_examples))
    return page, verdicts


def main(argv: list[str] | None = None) -> int:
    """Run or read the sweep and write the findings files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples/mnist1d-sweep-full.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/findings")
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs/findings-results")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--from-result", type=Path, default=None, help="a finished result.json")
    parser.add_argument(
        "--from-points", type=Path, default=None, help="a stored points.csv (no runtime)"
    )
    parser.add_argument(
        "--page", action="store_true", help="rewrite docs/findings.md from the stored points"
    )
    parser.add_argument(
        "--test-examples",
        type=int,
        default=None,
        help="test set size, for rows that do not carry it (MNIST-1D: 1000)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.page:
        grid, grow = read_points(GRID_POINTS), read_points(GROW_POINTS)
        missing = [r for r in grid + grow if r.get("test_examples") is None]
        if missing and args.test_examples is None:
            parser.error(
                f"{len(missing)} stored rows do not say how many test examples they were scored"
                " on: give --test-examples (MNIST-1D: 1000)"
            )
        n = args.test_examples
        page, verdicts = findings_page(FINDINGS_PAGE.read_text(), grid, grow, n)
        FINDINGS_PAGE.write_text(page)
        for points, table in ((GRID_POINTS, table_markdown(grid, n)), (GROW_POINTS, None)):
            docs = points.parent
            (docs / "claims.md").write_text(verdicts + "\n")
            (docs / "table.md").write_text(table or growth_table_markdown(grow, n))
        write_figure(grid, GRID_POINTS.parent / "figure.png", n)
        print(f"wrote {FINDINGS_PAGE} from {len(grid)} grid and {len(grow)} grow rows")
        return 0
    if args.from_points is not None:
        result = {"rows": read_points(args.from_points)}
    elif args.from_result is not None:
        result = json.loads(args.from_result.read_text())
    else:
        result = run_grid(args.spec, args.out, args.data_dir)
    rows = result["rows"]
    docs = args.docs_dir
    docs.mkdir(parents=True, exist_ok=True)
    n = args.test_examples
    if any(row.get("arm") == "grown" for row in rows):  # a grow sweep: claim 5
        table, findings = growth_table_markdown(rows, n), judge_growth(rows, test_examples=n)
    else:
        table, findings = table_markdown(rows, n), judge_claims(rows, n)
        write_figure(rows, docs / "figure.png", n)
    (docs / "table.md").write_text(table)
    (docs / "claims.md").write_text(findings_markdown(findings) + "\n")
    if args.from_points is None:
        (docs / "points.csv").write_text(to_csv(rows))
        (docs / "runtime.json").write_text(json.dumps(result.get("runtime") or {}, indent=2))
    print(table)
    print(findings_markdown(findings))
    print(json.dumps(result.get("runtime") or {}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
