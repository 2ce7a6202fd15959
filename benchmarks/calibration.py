"""Calibration of the insertion predictors on two suites: which measurement ranks the gain?

Runs every expand spec of the DESIGN suite (examples/calibration/) and of the REPLICATE suite
(examples/calibration-replicate/: other widths, depths, norms, scalings and seeds on the same
data sets), every position continued against the control over several seeds, each storing
every predictor per insertion. Then writes docs/calibration.md: the default `expand.by` chosen
on the design suite (with its selection-adjusted p-value) and reported on the replicate suite
(against the position-index baseline), and per suite the within-network Spearman with exact
permutation p-values, the pooled Spearman with cluster-bootstrap intervals, the baselines, the
gain reliability and the ceiling it implies, and the runtime (expansion.results.calibration_report).

    python benchmarks/calibration.py                     # run both suites, then write the doc
    python benchmarks/calibration.py --suite replicate   # run one suite only
    python benchmarks/calibration.py --report-only       # rewrite the doc from stored results

Results land in runs/calibration/<suite>/<spec name>/result.json (the design suite also reads
the older runs/calibration/<spec name>/ folders); a spec whose result exists is not rerun
(delete its folder to rerun it), so an interrupted suite resumes. Each job's wall and CPU
seconds and the load average around it go to `run.json` beside its result.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    from expansion.results.calibration_report import SuiteResults

SUITES = {
    "design": ROOT / "examples" / "calibration",
    "replicate": ROOT / "examples" / "calibration-replicate",
}
RUNS = ROOT / "runs" / "calibration"
DOC = ROOT / "docs" / "calibration.md"
COMMAND = "python benchmarks/calibration.py"

log = logging.getLogger("calibration")


def run_suite(specs: list[Path], runs: Path) -> None:
    """Run each spec not yet run; store result.json and run.json (wall, CPU, load) per spec."""
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
        if not isinstance(spec, ExpandExperiment):
            raise SystemExit(f"{path}: a calibration spec must be of kind expand")
        load_before = os.getloadavg()[0]
        started, cpu = time.perf_counter(), time.process_time()
        log.info("%s: running", path.stem)
        run_expand(spec, out)
        seconds = time.perf_counter() - started
        measured = {
            "wall_s": round(seconds, 1),
            "cpu_s": round(time.process_time() - cpu, 1),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
        }
        (out / "run.json").write_text(json.dumps(measured, indent=2) + "\n")
        log.info("%s: done in %.0f s", path.stem, seconds)


def result_folders(runs: Path, suite: str) -> list[Path]:
    """Folders holding a result.json of `suite`: runs/<suite>/<spec>/, and for the design
    suite also the older layout runs/<spec>/ (a spec of the design folder)."""
    folders = {p.parent.name: p.parent for p in (runs / suite).glob("*/result.json")}
    if suite == "design":
        names = {p.stem for p in SUITES["design"].glob("*.yaml")}
        for path in runs.glob("*/result.json"):
            if path.parent.name in names:
                folders.setdefault(path.parent.name, path.parent)
    return [folders[name] for name in sorted(folders)]


def load_suite(runs: Path, suite: str, specs: list[Path]) -> SuiteResults:
    """The stored results of one suite, with their wall times, timing totals and load."""
    from expansion.results.calibration import records_from_result
    from expansion.results.calibration_report import SuiteResults

    records = []
    walls: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    totals = {"continuation_s": 0.0, "predictors_s": 0.0, "certify_s": 0.0}
    loads: list[float] = []
    sources: set[str] = set()
    for folder in result_folders(runs, suite):
        job = folder.name
        result: dict[str, Any] = json.loads((folder / "result.json").read_text())
        for rec in result.get("insertions") or []:
            sources.add(str((rec.get("descent") or {}).get("certificate_source", "training")))
        records.extend(records_from_result(job, result))
        walls[job] = float("nan")
        if (folder / "run.json").is_file():
            measured = json.loads((folder / "run.json").read_text())
            walls[job] = float(measured["wall_s"])
            cpu_seconds[job] = float(measured["cpu_s"])
            loads += [float(measured["load_average_before"]), float(measured["load_average_after"])]
        elif (folder / "wall_seconds.txt").is_file():
            walls[job] = float((folder / "wall_seconds.txt").read_text())
        for key in totals:
            totals[key] += float((result.get("timings") or {}).get(key) or 0.0)
    notes = []
    if "training" in sources:
        notes.append(
            "Some results hold no held-out certificate (older runs): their certificate"
            " predictors come from the base's TRAINING batches."
        )
    return SuiteResults(
        name=suite,
        folder=SUITES[suite].relative_to(ROOT).as_posix() + "/",
        specs=[p.stem for p in specs],
        records=records,
        walls=walls,
        cpu_seconds=cpu_seconds,
        totals=totals,
        loads=loads,
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the suites (unless --report-only) and write docs/calibration.md."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="only rewrite the doc")
    parser.add_argument(
        "--suite", choices=["both", *SUITES], default="both", help="which suite(s) to run"
    )
    parser.add_argument("--runs", type=Path, default=RUNS, help="result folder")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to write")
    parser.add_argument("--resamples", type=int, default=1000, help="cluster bootstrap resamples")
    parser.add_argument(
        "--permutations", type=int, default=20000, help="joint permutations of the max-T tests"
    )
    parser.add_argument(
        "--first", nargs="*", default=[], help="spec names (file stems) to run before the rest"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    specs = {name: sorted(folder.glob("*.yaml")) for name, folder in SUITES.items()}
    if not args.report_only:
        for name in SUITES if args.suite == "both" else [args.suite]:
            ordered = sorted(specs[name], key=lambda p: p.stem not in args.first)
            run_suite(ordered, args.runs / name)
    from expansion.results.calibration_report import calibration_markdown

    design = load_suite(args.runs, "design", specs["design"])
    replicate = load_suite(args.runs, "replicate", specs["replicate"])
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} CPUs,"
        f" python {platform.python_version()}"
    )
    args.doc.write_text(
        calibration_markdown(
            design,
            replicate,
            command=COMMAND,
            machine=machine,
            resamples=args.resamples,
            permutations=args.permutations,
        )
    )
    print(
        f"wrote {args.doc}: design {len(design.walls)} jobs, {len(design.records)} insertions;"
        f" replicate {len(replicate.walls)} jobs, {len(replicate.records)} insertions"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
