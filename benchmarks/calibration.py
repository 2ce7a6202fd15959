"""Calibration of the insertion predictors on a fixed suite: which measurement ranks the gain?

Runs every expand spec under examples/calibration/ (every position continued against the
control, several seeds; each stores every predictor per insertion), then writes
docs/calibration.md: per predictor and configuration the within-network Spearman with the
realized gain and its bootstrap interval, a pooled row, the noise ceiling, runtime, command.

    python benchmarks/calibration.py                  # run the suite, then write the doc
    python benchmarks/calibration.py --report-only    # rewrite the doc from stored results

Results land in runs/calibration/<spec name>/result.json; a spec whose result exists is not
rerun (delete the folder to rerun it), so an interrupted suite resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/queue.py would shadow the standard library's queue when run as a script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from expansion.results.calibration import CalibrationRecord

SUITE = ROOT / "examples" / "calibration"
RUNS = ROOT / "runs" / "calibration"
DOC = ROOT / "docs" / "calibration.md"
COMMAND = "python benchmarks/calibration.py"

log = logging.getLogger("calibration")


def run_suite(specs: list[Path], runs: Path) -> None:
    """Run each spec not yet run; store result.json and the wall time per spec."""
    import torch

    from expansion.experiments.expand import run_expand
    from expansion.specs.experiments import ExpandExperiment
    from expansion.specs.parsing import parse_spec

    torch.set_num_threads(1)
    for path in specs:
        out = runs / path.stem
        if (out / "result.json").is_file():
            log.info("%s: already run", path.stem)
            continue
        spec = parse_spec(yaml.safe_load(path.read_text()))
        assert isinstance(spec, ExpandExperiment)
        started = time.perf_counter()
        log.info("%s: running", path.stem)
        run_expand(spec, out)
        seconds = time.perf_counter() - started
        (out / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
        log.info("%s: done in %.0f s", path.stem, seconds)


def load_results(
    runs: Path,
) -> tuple[list[CalibrationRecord], dict[str, float], dict[str, Any], list[str]]:
    """Insertion records of every stored result, wall seconds per job, timing totals, and
    notes on how the stored results were measured."""
    from expansion.results.calibration import records_from_result

    records: list[CalibrationRecord] = []
    walls: dict[str, float] = {}
    totals = {"continuation_s": 0.0, "predictors_s": 0.0, "certify_s": 0.0}
    sources: set[str] = set()
    for result_path in sorted(runs.glob("*/result.json")):
        job = result_path.parent.name
        result = json.loads(result_path.read_text())
        for rec in result.get("insertions") or []:
            sources.add(str((rec.get("descent") or {}).get("certificate_source", "training")))
        records.extend(records_from_result(job, result))
        wall = result_path.parent / "wall_seconds.txt"
        walls[job] = float(wall.read_text()) if wall.is_file() else float("nan")
        for key in totals:
            totals[key] += float((result.get("timings") or {}).get(key) or 0.0)
    notes = []
    if "training" in sources:
        notes.append(
            "`certificate_u`, `certificate_lcb` and `gradient_snr` of these results come from the"
            " base's TRAINING batches (no held-out certificate was recorded); within a one-stage"
            " network `grad_rel_w2` ranks positions exactly as the held-out |g_val|^2 does."
        )
    return records, walls, totals, notes


def main(argv: list[str] | None = None) -> int:
    """Run the suite (unless --report-only) and write docs/calibration.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="only rewrite the doc")
    parser.add_argument("--runs", type=Path, default=RUNS, help="result folder")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to write")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--first", nargs="*", default=[], help="spec names (file stems) to run before the rest"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    specs = sorted(SUITE.glob("*.yaml"))
    if not args.report_only:
        run_suite(sorted(specs, key=lambda p: p.stem not in args.first), args.runs)
    from expansion.results.calibration import calibration_markdown

    records, walls, totals, notes = load_results(args.runs)
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    )
    text = calibration_markdown(
        records,
        suite=[p.stem for p in specs],
        walls=walls,
        totals=totals,
        command=COMMAND,
        machine=machine,
        resamples=args.resamples,
        notes=notes,
    )
    args.doc.write_text(text)
    print(f"wrote {args.doc} from {len(walls)} jobs, {len(records)} insertions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
