"""How well each insertion predictor ranks the realized gain (issues 11, 20); torch-free.

Input: one `CalibrationRecord` per (job, position, seed) with the job's configuration, the
realized `gain_vs_control` and the stored predictors (names: `PREDICTOR_NAMES`, never spelled out
here, so renamed or added predictors flow through). Output, per predictor and group of jobs
(docs/science.md, "Calibration"):

- within-network Spearman: in each job, the rank correlation across positions between the
  seed-mean predictor and the seed-mean realized gain; the group's figure is the mean over its
  jobs. Interval: Student-t over the jobs (the jobs are the independent units; >= 3 jobs).
  p-value: the exact permutation test of "the predictor carries no information about which
  position gains more" (every ordering of each job's gains equally likely; two-sided, for the
  mean over jobs; expansion.results.rank_permutation). Adjusted p-value: max-T over the
  predictors of the table (the chance that the best of them reaches this value under the null).
- random band: the central 95% of the mean within-job Spearman a predictor carrying no
  information reaches on the same jobs (the random baseline).
- baselines: the position index itself (`Baseline`), in both directions.
- pooled Spearman (between networks): one rank correlation over every (job, position) point.
  The points of one job share the job's level, so the interval resamples JOBS (clusters), never
  points: a cluster bootstrap over jobs gives the standard error on Fisher's z scale and
  Student's t with J - 1 degrees of freedom gives the interval (>= 5 jobs). A bootstrap over
  points excludes 0 for a null predictor in about a quarter of simulated 12-job suites with
  job effects; the cluster interval in about 5% (tests/expansion/results/test_calibration_stats.py).
- gain reliability: the split-half reliability of the realized gains' ranking over seeds
  (Spearman-Brown stepped up), mean over jobs; the correlation it allows a predictor to reach is
  about its square root (`correlation_ceiling`), since a correlation with a noisy measure is
  attenuated by the square root of that measure's reliability.

The API process uses this module, so it imports numpy and scipy only, never torch.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from expansion.results.rank_correlation import (
    Interval,
    cluster_bootstrap_interval,
    column_spearman,
    spearman,
    t_interval_over_jobs,
)
from expansion.results.rank_permutation import (
    max_mean_spearman,
    max_t_adjusted,
    mean_spearman_null,
    observed_mean_spearman,
)
from expansion.results.result_file import finite_or_none as _finite
from expansion.specs.predictor_names import PREDICTOR_DESCRIPTIONS, PREDICTOR_NAMES

GROUP_KEYS: tuple[str, ...] = ("dataset", "model", "norm", "scaling", "depth")
"""Configuration fields a calibration can be grouped by."""
GROUP_ALIASES: dict[str, tuple[str, ...]] = {
    "configuration": GROUP_KEYS,
    "all": (),
    "none": (),
}
"""Other accepted `group_by` values: every configuration field, or one pooled group."""
DEFAULT_RESAMPLES = 400
DEFAULT_PERMUTATIONS = 2000
"""Joint permutations behind the max-T adjusted p-values."""
DEFAULT_CONFIDENCE = 0.95
SPLIT_HALVES = 50
"""Random seed splits averaged in the gain reliability."""
WITHIN_METHOD = "mean within-job Spearman; Student-t over jobs; exact permutation p-value"
POOLED_METHOD = "Spearman over (job, position) points; cluster bootstrap over jobs (Fisher z, t)"
RELIABILITY_METHOD = "split-half Spearman of the gains over seeds, Spearman-Brown, mean over jobs"


class Baseline(StrEnum):
    """Rankings any job has without measuring anything: references for every predictor."""

    POSITION_INDEX = "position_index"
    """Relative position p / L: a deeper insertion predicts a larger gain."""
    POSITION_INDEX_REVERSED = "position_index_reversed"
    """-p / L: a shallower insertion predicts a larger gain."""


BASELINE_NAMES: tuple[str, ...] = tuple(b.value for b in Baseline)
BASELINE_DESCRIPTIONS: dict[str, str] = {
    Baseline.POSITION_INDEX.value: "baseline: relative position p/L (deeper predicts more gain)",
    Baseline.POSITION_INDEX_REVERSED.value: "baseline: -p/L (shallower predicts more gain)",
}


class RowKind(StrEnum):
    """What a calibration row measures."""

    PREDICTOR = "predictor"
    BASELINE = "baseline"


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
    """Calibration of one predictor (or baseline) on one group of jobs."""

    group: dict[str, str]
    predictor: str
    kind: RowKind
    n_jobs: int
    """Jobs with at least 3 positions where the predictor and the gain are both measured."""
    n_points: int
    """(job, position) points behind the pooled figure."""
    spearman: float | None
    """Mean within-job Spearman across positions (None when no job has 3 usable positions)."""
    spearman_ci: Interval
    p_value: float | None
    """Exact permutation p-value (two-sided) of the mean within-job Spearman."""
    p_value_adjusted: float | None
    """Max-T adjusted over the predictors of the same table (None for baselines)."""
    p_value_exact: bool
    """False where some job had more positions than the exact enumeration takes."""
    random_band: Interval
    """Central 95% of the mean within-job Spearman of a predictor carrying no information."""
    pooled_spearman: float | None
    """Spearman over every (job, position) point of the group (between networks)."""
    pooled_ci: Interval
    gain_reliability: float | None
    """Split-half reliability of the realized gains' ranking (Spearman-Brown), mean over jobs."""
    correlation_ceiling: float | None
    """About the largest within-job Spearman the gains' noise allows: mean over jobs of the
    square root of the reliability (0 where it is not positive)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's row)."""
        description = PREDICTOR_DESCRIPTIONS.get(self.predictor) or BASELINE_DESCRIPTIONS.get(
            self.predictor, ""
        )
        return {
            "group": self.group,
            "predictor": self.predictor,
            "kind": self.kind.value,
            "description": description,
            "n_jobs": self.n_jobs,
            "n": self.n_points,
            "spearman": self.spearman,
            "spearman_ci": list(self.spearman_ci),
            "spearman_method": WITHIN_METHOD,
            "p_value": self.p_value,
            "p_value_adjusted": self.p_value_adjusted,
            "p_value_exact": self.p_value_exact,
            "random_band": list(self.random_band),
            "pooled_spearman": self.pooled_spearman,
            "pooled_ci": list(self.pooled_ci),
            "pooled_method": POOLED_METHOD,
            "gain_reliability": self.gain_reliability,
            "correlation_ceiling": self.correlation_ceiling,
            "reliability_method": RELIABILITY_METHOD,
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
class JobMatrix:
    """Positions x seeds matrices of one job (NaN where not measured), baselines included."""

    positions: list[int]
    gains: np.ndarray
    values: dict[str, np.ndarray]


def job_matrix(records: Sequence[CalibrationRecord]) -> JobMatrix:
    """The job's matrices, with the baselines' values (relative position) filled in."""
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
    depth = _depth(records[0].config if records else {}, positions)
    relative = np.repeat((np.asarray(positions, dtype=float) / depth)[:, None], len(seeds), 1)
    values[Baseline.POSITION_INDEX.value] = relative
    values[Baseline.POSITION_INDEX_REVERSED.value] = -relative
    return JobMatrix(positions=positions, gains=gains, values=values)


def _depth(config: Mapping[str, str], positions: Sequence[int]) -> float:
    """The base network's depth L (positions run 0..L), from the configuration if it says."""
    try:
        depth = float(config.get("depth", ""))
    except ValueError:
        depth = float("nan")
    if not math.isfinite(depth) or depth <= 0:
        depth = float(max(positions, default=1) or 1)
    return depth


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN mean warnings (a position unmeasured in every seed is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def seed_means(matrix: np.ndarray) -> np.ndarray:
    """(positions,) NaN-aware means over the seeds."""
    with _quiet():
        means: np.ndarray = np.nanmean(matrix, axis=1)
    return means


def job_vectors(job: JobMatrix, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(predictor, gain) seed means over the job's positions with a measured gain, or None when
    the predictor is missing at one of them, fewer than 3 remain, or either is constant."""
    gains = seed_means(job.gains)
    keep = ~np.isnan(gains)
    x = seed_means(job.values[name])[keep]
    y = gains[keep]
    if y.size < 3 or np.isnan(x).any() or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return x, y


def within_job_spearman(job: JobMatrix, predictor: str) -> float | None:
    """Spearman across positions of the seed-mean predictor against the seed-mean gain."""
    pair = job_vectors(job, predictor)
    return None if pair is None else spearman(pair[0].tolist(), pair[1].tolist())


def gain_reliability(job: JobMatrix, splits: int = SPLIT_HALVES, seed: int = 0) -> float | None:
    """Split-half Spearman of the positions' gains over seeds, stepped up by Spearman-Brown.

    Two random halves of the seeds (sizes floor(S/2) and ceil(S/2)) each rank the positions;
    their agreement, averaged over random splits, estimates the reliability of a half; 2r/(1+r)
    steps it up to all seeds (a non-positive agreement is reported as it is)."""
    n_seeds = job.gains.shape[1]
    if n_seeds < 2 or job.gains.shape[0] < 3:
        return None
    rng = np.random.default_rng(seed)
    half = n_seeds // 2
    orders = np.argsort(rng.random((splits, n_seeds)), axis=1)
    first = np.zeros((splits, n_seeds), dtype=bool)
    np.put_along_axis(first, orders[:, :half], True, axis=1)
    with _quiet():
        ga = np.stack([np.nanmean(job.gains[:, f], axis=1) for f in first], axis=1)
        gb = np.stack([np.nanmean(job.gains[:, ~f], axis=1) for f in first], axis=1)
    rhos = column_spearman(ga, gb)
    rhos = rhos[~np.isnan(rhos)]
    if rhos.size == 0:
        return None
    r = float(np.mean(rhos))
    return 2 * r / (1 + r) if r > 0 else r


@dataclass(frozen=True)
class GroupFigures:
    """The figures of one predictor on one group, before they become a row."""

    n_jobs: int
    n_points: int
    spearman: float | None
    spearman_ci: Interval
    p_value: float | None
    p_value_exact: bool
    random_band: Interval
    pooled: float | None
    pooled_ci: Interval


def predictor_figures(
    jobs: Sequence[JobMatrix],
    name: str,
    *,
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> GroupFigures:
    """Within-job and pooled figures of one predictor (or baseline) on a group of jobs."""
    pairs = [pair for job in jobs if (pair := job_vectors(job, name)) is not None]
    rhos = [spearman(x.tolist(), y.tolist()) for x, y in pairs]
    per_job = [r for r in rhos if r is not None]
    rho = float(np.mean(per_job)) if per_job else None
    p_value: float | None = None
    exact = True
    band: Interval = (None, None)
    if pairs:
        null = mean_spearman_null(pairs)
        p_value, exact = null.p_two_sided(observed_mean_spearman(pairs)), null.exact
        untied = [(np.arange(len(y), dtype=float), y) for _, y in pairs]
        low, high = mean_spearman_null(untied).quantiles([0.025, 0.975])
        band = (low, high)
    points = []
    for job in jobs:
        x, y = seed_means(job.values[name]), seed_means(job.gains)
        keep = ~(np.isnan(x) | np.isnan(y))
        if keep.any():
            points.append((x[keep], y[keep]))
    pooled = None
    if points:
        pooled = spearman(
            np.concatenate([x for x, _ in points]).tolist(),
            np.concatenate([y for _, y in points]).tolist(),
        )
    return GroupFigures(
        n_jobs=len(pairs),
        n_points=sum(len(x) for x, _ in points),
        spearman=rho,
        spearman_ci=t_interval_over_jobs(per_job, confidence),
        p_value=p_value,
        p_value_exact=exact,
        random_band=band,
        pooled=pooled,
        pooled_ci=cluster_bootstrap_interval(points, resamples, confidence, rng)
        if pooled is not None
        else (None, None),
    )


def family_adjusted(
    jobs: Sequence[JobMatrix],
    names: Sequence[str],
    *,
    permutations: int,
    one_sided: bool = False,
    seed: int = 0,
) -> dict[str, float | None]:
    """Max-T adjusted p-values of the mean within-job Spearman of `names` (the family), from
    joint permutations of each job's gains; None where a predictor has no usable job or
    `permutations` is 0."""
    if permutations <= 0 or not names:
        return dict.fromkeys(names)
    xs, ys, masks = [], [], []
    for job in jobs:
        pairs = [job_vectors(job, name) for name in names]
        usable = np.array([p is not None for p in pairs])
        if not usable.any():
            continue
        gains = seed_means(job.gains)
        keep = ~np.isnan(gains)
        x = np.column_stack([seed_means(job.values[name])[keep] for name in names])
        x[:, ~usable] = 0.0
        xs.append(x)
        ys.append(gains[keep])
        masks.append(usable)
    if not xs:
        return dict.fromkeys(names)
    observed, permuted = max_mean_spearman(xs, ys, masks, permutations, seed)
    adjusted = max_t_adjusted(observed, permuted, one_sided=one_sided)
    return {n: None if math.isnan(a) else float(a) for n, a in zip(names, adjusted, strict=True)}


def group_jobs(
    records: Sequence[CalibrationRecord], group_by: Sequence[str]
) -> dict[tuple[str, ...], list[JobMatrix]]:
    """The jobs' matrices per group (by the configuration keys `group_by`), in key order."""
    by_job: dict[str, list[CalibrationRecord]] = {}
    for r in records:
        by_job.setdefault(r.job, []).append(r)
    groups: dict[tuple[str, ...], list[str]] = {}
    for job, recs in by_job.items():
        key = tuple(recs[0].config.get(k, "") for k in group_by)
        groups.setdefault(key, []).append(job)
    return {key: [job_matrix(by_job[j]) for j in groups[key]] for key in sorted(groups)}


def calibration_rows(
    records: Sequence[CalibrationRecord],
    group_by: Sequence[str] = (),
    *,
    predictors: Sequence[str] = PREDICTOR_NAMES,
    baselines: Sequence[str] = BASELINE_NAMES,
    resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[CalibrationRow]:
    """A row per group and predictor, then one per group and baseline. The max-T adjustment's
    family is `predictors` within the group."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, matrices in group_jobs(records, group_by).items():
        reliabilities = [r for m in matrices if (r := gain_reliability(m)) is not None]
        reliability = float(np.mean(reliabilities)) if reliabilities else None
        ceiling = (
            float(np.mean([math.sqrt(max(r, 0.0)) for r in reliabilities]))
            if reliabilities
            else None
        )
        adjusted = family_adjusted(matrices, predictors, permutations=permutations, seed=seed)
        named = [(n, RowKind.PREDICTOR) for n in predictors]
        named += [(n, RowKind.BASELINE) for n in baselines]
        for name, kind in named:
            figures = predictor_figures(
                matrices, name, resamples=resamples, confidence=confidence, rng=rng
            )
            rows.append(
                CalibrationRow(
                    group=dict(zip(group_by, key, strict=True)),
                    predictor=name,
                    kind=kind,
                    n_jobs=figures.n_jobs,
                    n_points=figures.n_points,
                    spearman=figures.spearman,
                    spearman_ci=figures.spearman_ci,
                    p_value=figures.p_value,
                    p_value_adjusted=adjusted.get(name) if kind is RowKind.PREDICTOR else None,
                    p_value_exact=figures.p_value_exact,
                    random_band=figures.random_band,
                    pooled_spearman=figures.pooled,
                    pooled_ci=figures.pooled_ci,
                    gain_reliability=reliability,
                    correlation_ceiling=ceiling,
                )
            )
    return rows


def best_predictor(
    rows: Sequence[CalibrationRow], among: Sequence[str] = PREDICTOR_NAMES
) -> CalibrationRow | None:
    """The selection rule of the default `expand.by`: among predictors `among`, the row with the
    largest mean within-job Spearman (ties: the larger pooled Spearman)."""
    measured = [r for r in rows if r.spearman is not None and r.predictor in among]

    def key(r: CalibrationRow) -> tuple[float, float]:
        return (round(r.spearman or -2.0, 6), r.pooled_spearman or -2.0)

    return max(measured, key=key) if measured else None
