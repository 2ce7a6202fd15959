"""docs/calibration.md from the results of two suites of expand jobs (torch-free).

The DESIGN suite chooses the default `expand.by` (the selectable predictor with the largest mean
within-network Spearman: `best_predictor`); the REPLICATE suite, of other configurations and
seeds, plays no part in choosing anything and reports how the chosen predictor does there,
against the position-index baseline in the direction the design suite chose. Naming the best of
K predictors is a selection: the design suite's statement carries the max-T permutation p-value
of the best of K (expansion.results.rank_permutation); the replicate's p-value is for the one
predictor fixed in advance, so it needs no adjustment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from expansion.results.calibration import (
    BASELINE_NAMES,
    DEFAULT_CONFIDENCE,
    GROUP_KEYS,
    Baseline,
    CalibrationRecord,
    CalibrationRow,
    JobMatrix,
    RowKind,
    best_predictor,
    calibration_rows,
    family_adjusted,
    group_jobs,
    job_vectors,
)
from expansion.results.rank_correlation import spearman, t_interval_over_jobs
from expansion.results.rank_permutation import mean_spearman_null, observed_mean_spearman
from expansion.specs.predictor_names import (
    DEFAULT_SELECTION_PREDICTOR,
    PREDICTOR_NAMES,
    SELECTABLE_PREDICTORS,
)

ALPHA = 0.05
"""Level of the page's statements (after adjustment where a selection was made)."""


@dataclass(frozen=True)
class SuiteResults:
    """One suite's stored results and how they were measured."""

    name: str
    folder: str
    """Where its specs live (`examples/calibration/`)."""
    specs: Sequence[str]
    records: Sequence[CalibrationRecord]
    walls: Mapping[str, float] = field(default_factory=dict)
    """Wall seconds per job."""
    cpu_seconds: Mapping[str, float] = field(default_factory=dict)
    """CPU seconds per job (what the job costs whatever else the machine runs)."""
    totals: Mapping[str, float] = field(default_factory=dict)
    """Summed timings of the stored results (`continuation_s`, `predictors_s`, ...)."""
    loads: Sequence[float] = ()
    """Load averages (1 min) seen while the jobs ran."""
    notes: Sequence[str] = ()


@dataclass(frozen=True)
class SuiteTables:
    """The calibration rows of one suite: pooled, by data set, per configuration."""

    pooled: list[CalibrationRow]
    by_data: list[CalibrationRow]
    per_config: list[CalibrationRow]


def suite_tables(
    records: Sequence[CalibrationRecord], resamples: int, permutations: int
) -> SuiteTables:
    """Every table of a suite (max-T families: the predictors of each group)."""
    return SuiteTables(
        pooled=calibration_rows(records, (), resamples=resamples, permutations=permutations),
        by_data=calibration_rows(
            records, ("dataset",), resamples=resamples, permutations=permutations
        ),
        per_config=calibration_rows(records, GROUP_KEYS, resamples=0, permutations=0),
    )


@dataclass(frozen=True)
class Replication:
    """The chosen predictor on the replicate suite, beside the design-chosen baseline."""

    row: CalibrationRow
    p_one_sided: float | None
    """Exact permutation P(mean within-job Spearman >= observed): the direction was fixed."""
    baseline: CalibrationRow
    difference: float | None
    """Mean over jobs of (predictor's minus baseline's within-job Spearman)."""
    difference_ci: tuple[float | None, float | None]
    difference_jobs: int


def selection_adjusted_p(
    records: Sequence[CalibrationRecord], among: Sequence[str], permutations: int
) -> float | None:
    """One-sided max-T p-value of the BEST of `among` over all jobs: the chance that the
    largest mean within-job Spearman of the family reaches the observed best under the null."""
    jobs = [job for group in group_jobs(records, ()).values() for job in group]
    adjusted = family_adjusted(jobs, among, permutations=permutations, one_sided=True)
    best = best_predictor(
        calibration_rows(records, (), predictors=among, baselines=(), resamples=0, permutations=0),
        among,
    )
    return None if best is None else adjusted.get(best.predictor)


def _pairs(jobs: Sequence[JobMatrix], name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    return [pair for job in jobs if (pair := job_vectors(job, name)) is not None]


def replicate(
    records: Sequence[CalibrationRecord], predictor: str, baseline: str
) -> Replication | None:
    """How `predictor` (chosen elsewhere) and `baseline` rank positions on these records."""
    rows = calibration_rows(
        records, (), predictors=[predictor], baselines=[baseline], permutations=0
    )
    if len(rows) != 2:
        return None
    jobs = [job for group in group_jobs(records, ()).values() for job in group]
    pairs = _pairs(jobs, predictor)
    p = None
    if pairs:
        p = mean_spearman_null(pairs).p_greater(observed_mean_spearman(pairs))
    differences = []
    for job in jobs:
        a, b = job_vectors(job, predictor), job_vectors(job, baseline)
        if a is not None and b is not None:
            ra, rb = spearman(a[0].tolist(), a[1].tolist()), spearman(b[0].tolist(), b[1].tolist())
            if ra is not None and rb is not None:
                differences.append(ra - rb)
    diff = float(np.mean(differences)) if differences else None
    interval = t_interval_over_jobs(differences, DEFAULT_CONFIDENCE, limit=2.0)
    return Replication(rows[0], p, rows[1], diff, interval, len(differences))


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def _cell(rho: float | None, ci: tuple[float | None, float | None]) -> str:
    if rho is None:
        return "n/a"
    if ci[0] is None or ci[1] is None:
        return f"{_fmt(rho)} [n/a]"
    return f"{_fmt(rho)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _label(group: Mapping[str, str]) -> str:
    return " ".join(group.values()) or "all jobs"


def _direction(rows: Sequence[CalibrationRow]) -> str:
    """The position-index baseline's direction with the larger mean within-job Spearman."""
    base = {r.predictor: r for r in rows if r.kind is RowKind.BASELINE}
    forward = base.get(Baseline.POSITION_INDEX.value)
    if forward is None or forward.spearman is None or forward.spearman >= 0:
        return Baseline.POSITION_INDEX.value
    return Baseline.POSITION_INDEX_REVERSED.value


def _pooled_table(rows: Sequence[CalibrationRow]) -> list[str]:
    lines = [
        "| predictor | within-network Spearman [95% CI] | p (exact) | p adjusted (max-T) |"
        " pooled Spearman [95% cluster CI] | jobs | points |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"`{r.predictor}`" if r.kind is RowKind.PREDICTOR else f"*{r.predictor}*"
        lines.append(
            f"| {name} | {_cell(r.spearman, r.spearman_ci)} | {_p(r.p_value)} |"
            f" {_p(r.p_value_adjusted)} | {_cell(r.pooled_spearman, r.pooled_ci)} |"
            f" {r.n_jobs} | {r.n_points} |"
        )
    if rows:
        band = rows[0].random_band
        lines.append(
            f"| *random (no information)* | 0 [{_fmt(band[0])}, {_fmt(band[1])}] | | | 0 | | |"
        )
        lines += [
            "",
            f"Gain reliability (split-half over seeds, Spearman-Brown, mean over jobs):"
            f" {_fmt(rows[0].gain_reliability)}; the within-network Spearman it allows is about"
            f" its square root: ceiling {_fmt(rows[0].correlation_ceiling)}.",
        ]
    return lines


def _by_data_table(rows: Sequence[CalibrationRow]) -> list[str]:
    datasets = sorted({_label(r.group) for r in rows})
    table = {(r.predictor, _label(r.group)): r for r in rows}
    lines = [
        "| predictor | " + " | ".join(datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    for name in (*PREDICTOR_NAMES, *BASELINE_NAMES):
        cells = []
        for d in datasets:
            r = table.get((name, d))
            cells.append(
                "n/a" if r is None else f"{_cell(r.spearman, r.spearman_ci)} p={_p(r.p_value)}"
            )
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    first = PREDICTOR_NAMES[0]
    for label, attr in (
        ("gain reliability", "gain_reliability"),
        ("ceiling", "correlation_ceiling"),
    ):
        cells = [
            _fmt(getattr(table[(first, d)], attr)) if (first, d) in table else "n/a"
            for d in datasets
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _config_table(rows: Sequence[CalibrationRow]) -> list[str]:
    configs = sorted({_label(r.group) for r in rows})
    table = {(r.predictor, _label(r.group)): r for r in rows}
    names = (*PREDICTOR_NAMES, Baseline.POSITION_INDEX.value)
    lines = [
        "| configuration | reliability | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for c in configs:
        first = table[(PREDICTOR_NAMES[0], c)]
        cells = []
        for n in names:
            r = table.get((n, c))
            cells.append(
                "n/a"
                if r is None or r.spearman is None
                else f"{_fmt(r.spearman)} (p={_p(r.p_value)})"
            )
        lines.append(f"| {c} | {_fmt(first.gain_reliability)} | " + " | ".join(cells) + " |")
    return lines


def _runtime(suite: SuiteResults, machine: str) -> list[str]:
    cont = float(suite.totals.get("continuation_s", 0.0))
    pred = float(suite.totals.get("predictors_s", 0.0))
    walls = [v for v in suite.walls.values() if math.isfinite(v)]
    wall = sum(walls)
    load = (
        f"load average (1 min) {min(suite.loads):.1f} to {max(suite.loads):.1f} while it ran"
        if suite.loads
        else "load average not recorded"
    )
    share = f"{100 * pred / cont:.0f}%" if cont else "n/a"
    longest = max(walls, default=float("nan"))
    cpus = [v for v in suite.cpu_seconds.values() if math.isfinite(v)]
    cpu = (
        f" CPU time {sum(cpus):.0f} s ({sum(cpus) / 60:.1f} min) over {len(cpus)} jobs, the"
        f" longest {max(cpus):.0f} s: about the wall time of the suite on one idle core."
        if cpus
        else ""
    )
    return [
        f"Machine: {machine}; one torch thread per job; {load} (wall times on a shared machine"
        " stretch with the load).",
        f"Wall time: {wall:.0f} s ({wall / 60:.1f} min) over {len(walls)} jobs, the longest"
        f" {longest:.0f} s.{cpu} Continuation (both arms) {cont:.0f} s of wall time; extra"
        f" predictors {pred:.0f} s = {share} of the continuation.",
    ]


def _suite_section(
    suite: SuiteResults, tables: SuiteTables, machine: str, resamples: int
) -> list[str]:
    jobs = sorted({r.job for r in suite.records})
    missing = [s for s in suite.specs if s not in jobs]
    lines = [
        f"## {suite.name.capitalize()} suite",
        "",
        f"`{suite.folder}`: {len(suite.specs)} specs, {len(jobs)} measured"
        + (f"; NOT measured: {', '.join(missing)}" if missing else "")
        + f"; {len(suite.records)} insertions (position x seed).",
        "",
        "### All jobs",
        "",
        *_pooled_table(tables.pooled),
        "",
        "### By data set (within-network Spearman [95% CI] and its exact p)",
        "",
        *_by_data_table(tables.by_data),
        "",
        "### Per configuration (within-job Spearman and its exact p; one job each)",
        "",
        *_config_table(tables.per_config),
        "",
        "### Runtime",
        "",
        *_runtime(suite, machine),
    ]
    if suite.notes:
        lines += ["", *[f"- {n}" for n in suite.notes]]
    lines += ["", f"Intervals: {resamples} cluster resamples; not adjusted for multiplicity.", ""]
    return lines


def _statements(name: str, tables: SuiteTables) -> list[str]:
    """What the suite shows at ALPHA after the max-T adjustment over its predictors."""
    rows = [r for r in tables.pooled if r.kind is RowKind.PREDICTOR]
    shown = [r for r in rows if r.p_value_adjusted is not None and r.p_value_adjusted <= ALPHA]
    positive = [r for r in shown if (r.spearman or 0) > 0]
    negative = [r for r in shown if (r.spearman or 0) < 0]
    smallest = min(
        (r.p_value_adjusted for r in rows if r.p_value_adjusted is not None), default=None
    )
    out = []
    if positive:
        out.append(
            f"- {name}: ranks positions the right way after adjustment over the {len(rows)}"
            " predictors: "
            + ", ".join(
                f"`{r.predictor}` {_fmt(r.spearman)} (p adj {_p(r.p_value_adjusted)})"
                for r in positive
            )
            + "."
        )
    else:
        out.append(
            f"- {name}: no predictor ranks positions better than chance after adjustment over"
            f" the {len(rows)} predictors (smallest adjusted p {_p(smallest)})."
        )
    if negative:
        out.append(
            f"- {name}: ranks positions BACKWARDS after adjustment: "
            + ", ".join(
                f"`{r.predictor}` {_fmt(r.spearman)} (p adj {_p(r.p_value_adjusted)})"
                for r in negative
            )
            + "."
        )
    base = [
        r
        for r in tables.pooled
        if r.kind is RowKind.BASELINE and r.predictor == Baseline.POSITION_INDEX.value
    ]
    if base and base[0].spearman is not None:
        b = base[0]
        out.append(
            f"- {name}: the position index alone (deeper = more gain) has within-network Spearman"
            f" {_cell(b.spearman, b.spearman_ci)} (exact p {_p(b.p_value)})."
        )
    return out


def _default_section(
    design: SuiteResults,
    design_tables: SuiteTables,
    replicate_suite: SuiteResults | None,
    permutations: int,
) -> list[str]:
    lines = [
        "## The default `expand.by`: chosen on the design suite, reported on the replicate",
        "",
    ]
    best = best_predictor(design_tables.pooled, SELECTABLE_PREDICTORS)
    if best is None:
        return [*lines, "No selectable predictor could be measured on the design suite.", ""]
    adjusted = selection_adjusted_p(design.records, SELECTABLE_PREDICTORS, permutations)
    direction = _direction(design_tables.pooled)
    lines += [
        "Rule: the selectable predictor (known before the continuation;"
        f" {len(SELECTABLE_PREDICTORS)} candidates) with the largest mean within-network"
        " Spearman on the design suite.",
        "",
        f"- Design suite: `{best.predictor}`, {_cell(best.spearman, best.spearman_ci)} over"
        f" {best.n_jobs} jobs (exact p {_p(best.p_value)} for this predictor alone). It was"
        f" chosen as the best of {len(SELECTABLE_PREDICTORS)}: the chance that the best of them"
        f" reaches {_fmt(best.spearman)} when none carries information is {_p(adjusted)}"
        f" (max-T permutation, one-sided, {permutations} joint permutations)"
        + (
            "; the selection survives."
            if adjusted is not None and adjusted <= ALPHA
            else "; after the selection it is NOT distinguishable from chance on this suite."
        ),
        f"- Position-index baseline direction chosen on the design suite: `{direction}`.",
    ]
    if replicate_suite is None or not replicate_suite.records:
        lines += ["- Replicate suite: not measured yet.", ""]
    else:
        rep = replicate(replicate_suite.records, best.predictor, direction)
        if rep is None:
            lines += ["- Replicate suite: the chosen predictor could not be measured there.", ""]
        else:
            r, b = rep.row, rep.baseline
            verdict = (
                "it ranks positions better than chance there"
                if rep.p_one_sided is not None and rep.p_one_sided <= ALPHA
                else "it does NOT rank positions better than chance there"
            )
            beats = (
                "above the baseline"
                if rep.difference_ci[0] is not None and rep.difference_ci[0] > 0
                else "not shown above the baseline"
            )
            lines += [
                f"- Replicate suite (played no part in the choice): `{best.predictor}`"
                f" {_cell(r.spearman, r.spearman_ci)} over {r.n_jobs} jobs, exact one-sided p"
                f" {_p(rep.p_one_sided)} (fixed in advance: no adjustment): {verdict}. Pooled"
                f" between networks {_cell(r.pooled_spearman, r.pooled_ci)}; gain reliability"
                f" {_fmt(r.gain_reliability)}, ceiling {_fmt(r.correlation_ceiling)}.",
                f"- Against `{direction}` on the replicate suite"
                f" ({_cell(b.spearman, b.spearman_ci)}): difference"
                f" {_cell(rep.difference, rep.difference_ci)} over"
                f" {rep.difference_jobs} jobs (Student-t over jobs): {beats}.",
            ]
    current = (
        "matches"
        if best.predictor == DEFAULT_SELECTION_PREDICTOR
        else f"does NOT match (it is `{DEFAULT_SELECTION_PREDICTOR}`): update it or say why not"
    )
    lines += [
        f"- `DEFAULT_SELECTION_PREDICTOR` in `expansion/specs/predictor_names.py` {current}.",
        "",
    ]
    return lines


def calibration_markdown(
    design: SuiteResults,
    replicate_suite: SuiteResults | None,
    *,
    command: str,
    machine: str,
    resamples: int = 1000,
    permutations: int = 20000,
) -> str:
    """docs/calibration.md: the default chosen on one suite and reported on the other, then
    each suite's tables, runtime and statements."""
    design_tables = suite_tables(design.records, resamples, permutations)
    replicate_tables = (
        suite_tables(replicate_suite.records, resamples, permutations)
        if replicate_suite is not None and replicate_suite.records
        else None
    )
    lines = [
        "# Calibration: which measurement predicts the realized gain?",
        "",
        "Generated by `benchmarks/calibration.py` (do not edit by hand; rerun the command).",
        "",
        f"Command: `{command}` (resumes; `--report-only` rewrites this page from stored results).",
        "",
        "Two suites of expand jobs, every position continued against the control over several"
        " seeds: the DESIGN suite chooses the default `expand.by`; the REPLICATE suite (other"
        " widths, depths, norms and seeds on the same data sets) plays no part in choosing"
        " anything and reports the choice. Predictors and their sign convention (larger ="
        " predicts a larger gain): `expansion/specs/predictor_names.py`, docs/science.md.",
        "",
        'How to read the tables (docs/science.md, "Calibration"): *within-network Spearman* is'
        " the mean over jobs of the rank correlation across a job's positions between the"
        " seed-mean predictor and the seed-mean realized gain; its interval is Student-t over"
        ' the jobs. *p (exact)* is the exact permutation p-value (two-sided) of "no'
        " information\": every ordering of each job's gains equally likely. *p adjusted* is"
        " the max-T permutation p-value over the table's predictors: use it when reading off"
        " the best of them (in simulated 12-job suites where none of 13 predictors carries"
        " information, the best one's unadjusted interval excludes 0 in 19% of suites; its"
        " max-T p-value is <= 0.05 in 4%: docs/science.md). *Pooled* is one Spearman over"
        " every (job, position) point, with an interval that resamples jobs, not points."
        " *Random* is the central 95% of the mean within-network Spearman of a predictor"
        " carrying no information on the same jobs. *Gain reliability* is how well the"
        " realized ranking agrees with itself across seeds; the correlation it allows is about"
        " its square root (*ceiling*).",
        "",
    ]
    lines += _default_section(design, design_tables, replicate_suite, permutations)
    lines += ["## Statements", ""]
    lines += _statements("Design suite", design_tables)
    if replicate_tables is not None:
        lines += _statements("Replicate suite", replicate_tables)
    lines.append("")
    lines += _suite_section(design, design_tables, machine, resamples)
    if replicate_suite is not None and replicate_tables is not None:
        lines += _suite_section(replicate_suite, replicate_tables, machine, resamples)
    elif replicate_suite is not None:
        lines += [
            "## Replicate suite",
            "",
            f"`{replicate_suite.folder}`: {len(replicate_suite.specs)} specs, none measured yet.",
            "",
        ]
    return "\n".join(lines)
