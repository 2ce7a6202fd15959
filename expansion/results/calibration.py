"""How well each insertion predictor ranks the realized gain (issue 11); torch-free.

Input: one `CalibrationRecord` per (job, position, seed) with the job's configuration, the
realized `gain_vs_control` and the stored predictors. Output, per predictor and group of jobs:

- within-network Spearman: in each job, the rank correlation across positions between the
  seed-mean predictor and the seed-mean realized gain; the group's figure is the mean over its
  jobs. Interval: percentile bootstrap that resamples the jobs of the group and, inside each
  job, the seeds (paired: one seed draw serves every position, since positions share seeds).
- pooled Spearman (between networks): one rank correlation over every (job, position) point
  of the group; interval from a bootstrap over those points.
- noise ceiling: how well the realized ranking agrees with itself. Per job, the seeds are
  split into two random halves, the positions' half-mean gains are rank-correlated, averaged
  over random splits and stepped up to the full seed count with Spearman-Brown (2r / (1 + r),
  for r > 0; a non-positive agreement is reported as it is);
  the group's figure is the mean over jobs. No predictor can be expected to rank the
  positions much better than this.

The API process uses this module, so it imports numpy and scipy only, never torch.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from expansion.results.result_file import finite_or_none as _finite
from expansion.specs.predictor_names import (
    DEFAULT_SELECTION_PREDICTOR,
    PREDICTOR_DESCRIPTIONS,
    PREDICTOR_NAMES,
    SELECTABLE_PREDICTORS,
)

GROUP_KEYS: tuple[str, ...] = ("dataset", "model", "norm", "scaling", "depth")
"""Configuration fields a calibration can be grouped by."""
GROUP_ALIASES: dict[str, tuple[str, ...]] = {
    "configuration": GROUP_KEYS,
    "all": (),
    "none": (),
}
"""Other accepted `group_by` values: every configuration field, or one pooled group."""
DEFAULT_RESAMPLES = 400
DEFAULT_CONFIDENCE = 0.95
SPLIT_HALVES = 50
"""Random seed splits averaged in the noise ceiling."""

Interval = tuple[float | None, float | None]


@dataclass(frozen=True)
class CalibrationRecord:
    """One insertion (job, position, seed): its configuration, realized gain and predictors."""

    job: str
    config: Mapping[str, str]
    position: int
    seed: int
    gain: float | None
    predictors: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibrationRow:
    """Calibration of one predictor on one group of jobs."""

    group: dict[str, str]
    predictor: str
    n_jobs: int
    """Jobs with at least 3 positions where the predictor and the gain are both measured."""
    n_points: int
    """(job, position) points behind the pooled figure."""
    spearman: float | None
    """Mean within-job Spearman across positions (None when no job has 3 usable positions)."""
    spearman_ci: tuple[float | None, float | None]
    pooled_spearman: float | None
    """Spearman over every (job, position) point of the group (between networks)."""
    pooled_ci: tuple[float | None, float | None]
    noise_ceiling: float | None
    """Split-half agreement of the realized gains (Spearman-Brown stepped up), mean over jobs."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's row)."""
        return {
            "group": self.group,
            "predictor": self.predictor,
            "description": PREDICTOR_DESCRIPTIONS.get(self.predictor, ""),
            "n_jobs": self.n_jobs,
            "n": self.n_points,
            "spearman": self.spearman,
            "spearman_ci": list(self.spearman_ci),
            "spearman_method": "mean within-job Spearman; bootstrap over jobs and seeds",
            "pooled_spearman": self.pooled_spearman,
            "pooled_ci": list(self.pooled_ci),
            "noise_ceiling": self.noise_ceiling,
            "noise_ceiling_method": "split-half Spearman of gains over seeds, Spearman-Brown",
        }


def parse_group_by(value: str) -> tuple[str, ...]:
    """Configuration keys of a `group_by` value ("dataset", "norm,depth", "configuration", ...).

    ValueError naming the unknown part.
    """
    text = value.strip().lower()
    if text in GROUP_ALIASES:
        return GROUP_ALIASES[text]
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown or not keys:
        allowed = ", ".join((*GROUP_KEYS, *GROUP_ALIASES))
        raise ValueError(f"unknown group_by {unknown[0] if unknown else value!r}; use {allowed}")
    return keys


def config_of(spec: Mapping[str, Any]) -> dict[str, str]:
    """The configuration fields (GROUP_KEYS) of an expand spec, as strings."""
    data, model = spec.get("data") or {}, spec.get("model") or {}
    return {
        "dataset": str(data.get("name", "")),
        "model": str(model.get("kind", "")),
        "norm": str(model.get("norm", "")),
        "scaling": str(model.get("scaling", "")),
        "depth": str(model.get("depth", "")),
    }


def records_from_insertions(
    job: str, spec: Mapping[str, Any], insertions: Iterable[Mapping[str, Any]]
) -> list[CalibrationRecord]:
    """Calibration records of one job from its insertion records (docs/design.md 5 + predictors)."""
    config = config_of(spec)
    out = []
    for rec in insertions:
        predictors = rec.get("predictors") or {}
        out.append(
            CalibrationRecord(
                job=job,
                config=config,
                position=int(rec["position"]),
                seed=int(rec["seed"]),
                gain=_finite((rec.get("realized") or {}).get("gain_vs_control")),
                predictors={name: _finite(predictors.get(name)) for name in PREDICTOR_NAMES},
            )
        )
    return out


def records_from_result(job: str, result: Mapping[str, Any]) -> list[CalibrationRecord]:
    """Calibration records of one expand result dict."""
    return records_from_insertions(job, result.get("spec") or {}, result.get("insertions") or [])


@dataclass
class _JobMatrix:
    """Positions x seeds matrices of one job (NaN where not measured)."""

    positions: list[int]
    gains: np.ndarray
    values: dict[str, np.ndarray]


def _job_matrix(records: Sequence[CalibrationRecord]) -> _JobMatrix:
    positions = sorted({r.position for r in records})
    seeds = sorted({r.seed for r in records})
    pi = {p: i for i, p in enumerate(positions)}
    si = {s: j for j, s in enumerate(seeds)}
    gains = np.full((len(positions), len(seeds)), np.nan)
    values = {name: np.full_like(gains, np.nan) for name in PREDICTOR_NAMES}
    for r in records:
        i, j = pi[r.position], si[r.seed]
        gains[i, j] = np.nan if r.gain is None else r.gain
        for name in PREDICTOR_NAMES:
            v = r.predictors.get(name)
            values[name][i, j] = np.nan if v is None else v
    return _JobMatrix(positions=positions, gains=gains, values=values)


def _column_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman per column of (n, B) arrays; rows with a NaN in a column are left out there."""
    out = np.full(x.shape[1], np.nan)
    if x.shape[0] < 3:
        return out
    complete = ~(np.isnan(x) | np.isnan(y))
    if complete.all():
        rx = stats.rankdata(x, axis=0)
        ry = stats.rankdata(y, axis=0)
        rx -= rx.mean(axis=0)
        ry -= ry.mean(axis=0)
        denom = np.sqrt((rx**2).sum(axis=0) * (ry**2).sum(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(denom > 0, (rx * ry).sum(axis=0) / denom, np.nan)
        return out
    for b in range(x.shape[1]):
        keep = complete[:, b]
        if keep.sum() >= 3:
            out[b] = _column_spearman(x[keep, b : b + 1], y[keep, b : b + 1])[0]
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation of paired values (None: fewer than 3 pairs or no variation)."""
    rho = _column_spearman(
        np.asarray(x, dtype=float).reshape(-1, 1), np.asarray(y, dtype=float).reshape(-1, 1)
    )[0]
    return None if math.isnan(rho) else float(rho)


def _seed_means(matrix: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """(positions, B) means over the drawn seed columns (NaN-aware)."""
    picked = matrix[:, seed_draws]  # (P, B, S)
    with _quiet():
        means: np.ndarray = np.nanmean(picked, axis=2)
        return means


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN mean warnings (a position unmeasured in a draw is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def within_job_spearman(job: _JobMatrix, predictor: str) -> float | None:
    """Spearman across positions of the seed-mean predictor against the seed-mean gain."""
    all_seeds = np.arange(job.gains.shape[1]).reshape(1, -1)
    x = _seed_means(job.values[predictor], all_seeds)
    y = _seed_means(job.gains, all_seeds)
    rho = _column_spearman(x, y)[0]
    return None if math.isnan(rho) else float(rho)


def noise_ceiling(job: _JobMatrix, splits: int = SPLIT_HALVES, seed: int = 0) -> float | None:
    """Split-half Spearman of the positions' gains over seeds, stepped up by Spearman-Brown."""
    n_seeds = job.gains.shape[1]
    if n_seeds < 2 or job.gains.shape[0] < 3:
        return None
    rng = np.random.default_rng(seed)
    half = n_seeds // 2
    rhos = []
    for _ in range(splits):
        order = rng.permutation(n_seeds)
        a, b = order[:half], order[half : 2 * half] if n_seeds % 2 == 0 else order[half:]
        with _quiet():
            ga = np.nanmean(job.gains[:, a], axis=1, keepdims=True)
            gb = np.nanmean(job.gains[:, b], axis=1, keepdims=True)
        rho = _column_spearman(ga, gb)[0]
        if not math.isnan(rho):
            rhos.append(rho)
    if not rhos:
        return None
    r = float(np.mean(rhos))
    # Spearman-Brown steps a positive reliability up to the full seed count; a non-positive
    # split-half agreement means no reproducible ranking and is reported as it is.
    return 2 * r / (1 + r) if r > 0 else r


def _interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    kept = samples[~np.isnan(samples)]
    if kept.size < 10:
        return None, None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(kept, [alpha, 1 - alpha])
    return float(lo), float(hi)


def calibrate_group(
    jobs: Sequence[_JobMatrix],
    predictor: str,
    *,
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[int, int, float | None, Interval, float | None, Interval]:
    """(n_jobs, n_points, rho, ci, pooled rho, pooled ci) of one predictor on a group."""
    per_job = [within_job_spearman(j, predictor) for j in jobs]
    usable = [i for i, r in enumerate(per_job) if r is not None]
    rho = float(np.mean([per_job[i] for i in usable])) if usable else None
    ci: tuple[float | None, float | None] = (None, None)
    if usable and resamples > 0:
        draws = np.full((resamples, len(usable)), np.nan)
        job_draws = rng.integers(0, len(usable), size=(resamples, len(usable)))
        for col, idx in enumerate(usable):
            job = jobs[idx]
            n_seeds = job.gains.shape[1]
            seed_draws = rng.integers(0, n_seeds, size=(resamples, n_seeds))
            x = _seed_means(job.values[predictor], seed_draws)
            y = _seed_means(job.gains, seed_draws)
            draws[:, col] = _column_spearman(x, y)
        # resample jobs too (a single job: only its seeds vary)
        picked = np.take_along_axis(draws, job_draws, axis=1) if len(usable) > 1 else draws
        with _quiet():
            ci = _interval(np.nanmean(picked, axis=1), confidence)
    # pooled over (job, position) points
    xs: list[float] = []
    ys: list[float] = []
    for job in jobs:
        all_seeds = np.arange(job.gains.shape[1]).reshape(1, -1)
        x = _seed_means(job.values[predictor], all_seeds)[:, 0]
        y = _seed_means(job.gains, all_seeds)[:, 0]
        keep = ~(np.isnan(x) | np.isnan(y))
        xs.extend(x[keep].tolist())
        ys.extend(y[keep].tolist())
    pooled = spearman(xs, ys)
    pooled_ci: tuple[float | None, float | None] = (None, None)
    if pooled is not None and resamples > 0:
        picks = rng.integers(0, len(xs), size=(len(xs), resamples))
        px, py = np.asarray(xs)[picks], np.asarray(ys)[picks]
        pooled_ci = _interval(_column_spearman(px, py), confidence)
    return len(usable), len(xs), rho, ci, pooled, pooled_ci


def calibration_rows(
    records: Sequence[CalibrationRecord],
    group_by: Sequence[str] = (),
    *,
    predictors: Sequence[str] = PREDICTOR_NAMES,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[CalibrationRow]:
    """A row per group (by the configuration keys `group_by`) and predictor."""
    by_job: dict[str, list[CalibrationRecord]] = {}
    for r in records:
        by_job.setdefault(r.job, []).append(r)
    groups: dict[tuple[str, ...], list[str]] = {}
    for job, recs in by_job.items():
        key = tuple(recs[0].config.get(k, "") for k in group_by)
        groups.setdefault(key, []).append(job)
    rng = np.random.default_rng(seed)
    rows = []
    for key in sorted(groups):
        matrices = [_job_matrix(by_job[j]) for j in groups[key]]
        ceilings = [noise_ceiling(m) for m in matrices]
        known = [c for c in ceilings if c is not None]
        ceiling = float(np.mean(known)) if known else None
        for name in predictors:
            n_jobs, n_points, rho, ci, pooled, pooled_ci = calibrate_group(
                matrices,
                name,
                resamples=resamples,
                confidence=confidence,
                rng=rng,
            )
            rows.append(
                CalibrationRow(
                    group=dict(zip(group_by, key, strict=True)),
                    predictor=name,
                    n_jobs=n_jobs,
                    n_points=n_points,
                    spearman=rho,
                    spearman_ci=ci,
                    pooled_spearman=pooled,
                    pooled_ci=pooled_ci,
                    noise_ceiling=ceiling,
                )
            )
    return rows


def best_predictor(
    rows: Sequence[CalibrationRow], among: Sequence[str] = PREDICTOR_NAMES
) -> CalibrationRow | None:
    """Among predictors `among`: the row with the largest within-network Spearman whose
    interval lies above 0, if any; else the largest Spearman. Ties: larger pooled Spearman."""
    measured = [r for r in rows if r.spearman is not None and r.predictor in among]
    above = [r for r in measured if r.spearman_ci[0] is not None and r.spearman_ci[0] > 0]
    pool = above or measured

    def key(r: CalibrationRow) -> tuple[float, float]:
        return (round(r.spearman or -2.0, 6), r.pooled_spearman or -2.0)

    return max(pool, key=key) if pool else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _cell(rho: float | None, ci: tuple[float | None, float | None]) -> str:
    if rho is None:
        return "n/a"
    if ci[0] is None or ci[1] is None:
        return f"{_fmt(rho)} [n/a]"
    return f"{_fmt(rho)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _label(group: Mapping[str, str]) -> str:
    return " ".join(group.values()) or "all jobs"


def findings(pooled: Sequence[CalibrationRow], by_data: Sequence[CalibrationRow]) -> list[str]:
    """Plain statements read off the tables: the goal, what ranks backwards, the ceiling."""

    def above(r: CalibrationRow) -> bool:
        return r.spearman_ci[0] is not None and r.spearman_ci[0] > 0

    def below(r: CalibrationRow) -> bool:
        return r.spearman_ci[1] is not None and r.spearman_ci[1] < 0

    goal = [r for r in pooled if r.spearman is not None and r.spearman >= 0.6 and above(r)]
    beats = [r for r in pooled if above(r)]
    backwards = [r for r in pooled if below(r)]
    out = []
    if goal:
        out.append(
            "- Goal of issue 11 (within-network Spearman >= 0.6, interval above 0) met by: "
            + ", ".join(f"`{r.predictor}` {_cell(r.spearman, r.spearman_ci)}" for r in goal)
            + "."
        )
    else:
        out.append(
            "- No predictor reaches the goal (within-network Spearman >= 0.6, interval above 0)."
        )
    if not beats:
        out.append("- No predictor ranks positions better than chance on this suite.")
    if backwards:
        out.append(
            "- Ranked BACKWARDS (interval entirely below 0): "
            + ", ".join(f"`{r.predictor}`" for r in backwards)
            + "."
        )
    between = [r for r in pooled if r.pooled_ci[0] is not None and r.pooled_ci[0] > 0]
    if between:
        out.append(
            "- Between networks (one Spearman over every job and position), interval above 0: "
            + ", ".join(
                f"`{r.predictor}` {_cell(r.pooled_spearman, r.pooled_ci)}"
                for r in sorted(between, key=lambda r: -(r.pooled_spearman or 0))
            )
            + "."
        )
    groups = sorted({_label(r.group) for r in by_data})
    per_group = []
    for g in groups:
        best_here = best_predictor([r for r in by_data if _label(r.group) == g])
        if best_here is not None:
            per_group.append(
                f"{g}: `{best_here.predictor}` {_cell(best_here.spearman, best_here.spearman_ci)}"
            )
    if per_group:
        out.append("- Best within-network predictor per data set: " + "; ".join(per_group) + ".")
    ceilings = {_label(r.group): r.noise_ceiling for r in by_data}
    out.append(
        "- Noise ceiling by data set: "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(ceilings.items()))
        + " (where it is low, the realized ranking itself does not reproduce across seeds and"
        " no predictor can be judged there)."
    )
    return out


def calibration_markdown(
    records: Sequence[CalibrationRecord],
    *,
    suite: Sequence[str],
    walls: Mapping[str, float],
    totals: Mapping[str, float],
    command: str,
    machine: str,
    resamples: int = 1000,
    notes: Sequence[str] = (),
) -> str:
    """docs/calibration.md: the measured tables, ceiling, runtime and command."""
    jobs = sorted({r.job for r in records})
    per_config = calibration_rows(records, GROUP_KEYS, resamples=resamples)
    pooled = calibration_rows(records, (), resamples=resamples)
    by_data = calibration_rows(records, ("dataset",), resamples=resamples)
    best = best_predictor(pooled, SELECTABLE_PREDICTORS)
    missing = [s for s in suite if s not in jobs]
    lines = [
        "# Calibration: which measurement predicts the realized gain?",
        "",
        "Generated by `benchmarks/calibration.py` from the expand specs in",
        "`examples/calibration/` (do not edit by hand; rerun the command below).",
        "",
        f"Command: `{command}` (resumes; `--report-only` rewrites this page from stored results).",
        "",
        f"Suite: {len(suite)} specs, {len(jobs)} measured"
        + (f"; NOT measured: {', '.join(missing)}" if missing else "")
        + f"; {len(records)} insertions (position x seed), every position continued against the"
        " control. Predictors and their sign convention (larger = predicts a larger gain):"
        " `expansion/specs/predictor_names.py`, docs/science.md.",
        "",
        "Within-network Spearman: per job, the rank correlation across positions between the"
        " seed-mean predictor and the seed-mean realized gain (`gain_vs_control`, test"
        " cross-entropy), averaged over the group's jobs; "
        f"{int(DEFAULT_CONFIDENCE * 100)}% percentile bootstrap interval over jobs and seeds"
        f" ({resamples} resamples). Pooled: one Spearman over every (job, position) point of"
        " the group (between networks), bootstrap over points. Noise ceiling: split-half"
        " Spearman of the realized gains over seeds, Spearman-Brown stepped up, mean over jobs:"
        " no predictor can be expected to rank positions much better than that.",
        "",
        "## All jobs",
        "",
        "| predictor | within-network Spearman [CI] | pooled Spearman [CI] | jobs | points |"
        " noise ceiling |",
        "|---|---|---|---|---|---|",
    ]
    for row in pooled:
        lines.append(
            f"| `{row.predictor}` | {_cell(row.spearman, row.spearman_ci)} | "
            f"{_cell(row.pooled_spearman, row.pooled_ci)} | {row.n_jobs} | {row.n_points} | "
            f"{_fmt(row.noise_ceiling)} |"
        )
    datasets = sorted({_label(r.group) for r in by_data})
    lines += [
        "",
        "## By data set (within-network Spearman [CI]; last row: noise ceiling)",
        "",
        "| predictor | " + " | ".join(datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    table = {(r.predictor, _label(r.group)): r for r in by_data}
    for name in PREDICTOR_NAMES:
        cells = [_cell(table[(name, d)].spearman, table[(name, d)].spearman_ci) for d in datasets]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines.append(
        "| noise ceiling | "
        + " | ".join(_fmt(table[(PREDICTOR_NAMES[0], d)].noise_ceiling) for d in datasets)
        + " |"
    )
    configs = sorted({_label(r.group) for r in per_config})
    lines += [
        "",
        "## Predictor x configuration (dataset model norm scaling depth)",
        "",
        "Within-job Spearman [bootstrap CI over seeds]; one job per configuration.",
        "",
        "| configuration | noise ceiling | " + " | ".join(f"`{n}`" for n in PREDICTOR_NAMES) + " |",
        "|---|---|" + "---|" * len(PREDICTOR_NAMES),
    ]
    ctable = {(r.predictor, _label(r.group)): r for r in per_config}
    for c in configs:
        first = ctable[(PREDICTOR_NAMES[0], c)]
        cells = [
            _cell(ctable[(n, c)].spearman, ctable[(n, c)].spearman_ci) for n in PREDICTOR_NAMES
        ]
        lines.append(f"| {c} | {_fmt(first.noise_ceiling)} | " + " | ".join(cells) + " |")
    cont = float(totals.get("continuation_s", 0.0))
    pred = float(totals.get("predictors_s", 0.0))
    wall = sum(v for v in walls.values() if math.isfinite(v))
    lines += [
        "",
        "## Runtime",
        "",
        f"Machine: {machine}; one torch thread per job. Wall times depend on what else the"
        " machine runs: the run of record below had 2 cores nearly to itself (about 6.4 min);"
        " the first run, with five other jobs sharing the cores (load average up to ~15),"
        " took 46 min.",
        f"Wall time of the measured suite: {wall:.0f} s ({wall / 60:.1f} min) over"
        f" {len(walls)} jobs. Continuation (both arms) {cont:.0f} s; extra predictors"
        f" (probe, activation scale, early-gain reads happen inside the continuation)"
        f" {pred:.0f} s = {100 * pred / cont if cont else float('nan'):.0f}% of the"
        " continuation.",
        "",
        "## Findings",
        "",
    ]
    lines += findings(pooled, by_data)
    lines += [f"- {note}" for note in notes]
    lines += [
        "",
        "## The default `expand.by`",
        "",
    ]
    if best is None:
        lines.append("No predictor could be measured (no usable jobs).")
    else:
        verdict = (
            "its interval lies above 0"
            if best.spearman_ci[0] is not None and best.spearman_ci[0] > 0
            else "its interval does NOT exclude 0: no predictor beats chance on this suite"
        )
        lines.append(
            f"Best measured within-network calibration: `{best.predictor}`, Spearman"
            f" {_cell(best.spearman, best.spearman_ci)} over {best.n_jobs} jobs ({verdict});"
            f" noise ceiling {_fmt(best.noise_ceiling)}; between networks"
            f" {_cell(best.pooled_spearman, best.pooled_ci)}. Only predictors known before the"
            " continuation can select positions, so the early gains are not candidates."
            " `expand.by` defaults to the selectable predictor with the best measured"
            " calibration (`DEFAULT_SELECTION_PREDICTOR` in `expansion/specs/predictor_names.py`,"
            f" now `{DEFAULT_SELECTION_PREDICTOR}`); rerun this benchmark and revisit the default"
            " when the predictors or the certificate change."
        )
    lines.append("")
    return "\n".join(lines)
