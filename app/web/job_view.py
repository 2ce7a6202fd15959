"""Everything the job page shows, assembled from the job row and its metric/insertion rows.

Stored rows win over the result dict (they exist while a job runs); the result dict fills in
what a job without rows carries only there (curves, insertion records, artifacts). Results of
older versions are read under today's names (`expansion.results.older_results`); what they
lack (the certificate in nats, intervals) shows "n/a".
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Artifact, Insertion, Job, Metric
from app.urls import artifact_path
from app.web.calibration import JobCalibration, calibration_for_job
from app.web.charts import (
    CONTINUATION_SPLIT,
    Chart,
    continuation_chart,
    curve_chart,
    curves_from_result,
    depth_chart,
    insertion_chart,
    split_curves,
)
from app.web.expand_answer_view import answer_headline, format_interval, partial_result
from app.web.heldout_chart import heldout_gain_chart
from app.web.results import positions_from_insertions
from expansion.results.older_results import current_record, current_result
from expansion.results.result_file import finite_or_none as _num

HEADLINE_RESAMPLES = 200
"""Bootstrap resamples of the job page's calibration interval: few, so the page stays fast."""

DRIFT_LIMIT = 1e-4
"""Function drift above this (max |f_expanded - f_base| on the test set) gets a warning: the
inserted block is then not function-preserving (group and batch norms)."""

NOT_AVAILABLE = "n/a"

SUMMARY_FIELDS: tuple[tuple[str, str], ...] = (
    ("test_risk", "test risk (cross-entropy, nats)"),
    ("test_error", "test error"),
    ("val_risk", "validation risk (nats)"),
    ("val_error", "validation error"),
    ("train_risk", "train risk (nats)"),
    ("train_error", "train error"),
    ("parameters", "parameters"),
    ("device", "device"),
    ("torch_version", "torch"),
)

STAGES_BY_KIND: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "expand": ("train", "scan", "certify", "continue"),
    "grow": ("train",),
}

VERDICTS = ("holds", "fails", "undecided")
OUTCOMES = ("shown", "not_shown")


@dataclass
class InsertionRow:
    """One insertion record (position x seed) as the job page's table shows it."""

    position: int
    seed: int
    certificate_verdict: str
    certificate_reason: str
    certificate_risk_decrease: float | None
    certificate_ci: list[float | None]
    nonzero_gradient: str
    nonzero_gradient_reason: str
    grad_norm_sq_unbiased: float | None
    grad_norm_sq_test_limit: float | None
    cosine_train_val: float | None
    jumpboard_test_risk_delta: float | None
    jumpboard_ci: list[float | None]
    expanded_test_risk: float | None
    control_test_risk: float | None
    gain_vs_control: float | None
    gain_ci: list[float | None]
    function_drift_eval: float | None
    function_drift_train: float | None

    @property
    def drift_warning(self) -> bool:
        """True when the insertion changed the network's function by more than DRIFT_LIMIT."""
        drifts = (self.function_drift_eval, self.function_drift_train)
        return any(d is not None and d > DRIFT_LIMIT for d in drifts)


@dataclass
class StageProgress:
    """Where a queued or running job is: its stages, the current step, time spent and left."""

    stages: list[tuple[str, str]]
    """(stage, "done" | "current" | "pending") in run order."""
    stage: str
    step: str
    fraction: float
    elapsed_s: float | None
    remaining_s: float | None
    """A linear extrapolation of the elapsed time over the progress fraction (None early on)."""


@dataclass
class GrowRun:
    """One run of a grow job (the grown network or a control) with its headline numbers."""

    name: str
    label: str
    depths: list[int]
    parameters: int | None
    test_risk: float | None
    test_error: float | None
    train_s: float | None


@dataclass
class GrowView:
    """The grow job's schedule, events and runs."""

    policy: str
    schedule: list[int]
    target_depth: int | None
    events: list[dict[str, Any]]
    runs: list[GrowRun]


@dataclass
class JobView:
    """The job page's content."""

    job: Job
    spec_json: str
    headline: str
    headline_note: str
    headline_selection: str
    """How the expand job's positions were chosen and how well that predictor is calibrated."""
    summary: list[tuple[str, Any]]
    loss_chart: Chart
    accuracy_chart: Chart
    continuation_chart: Chart | None
    heldout_chart: Chart | None
    """Control minus expanded held-out risk per position with a band over seeds (expand)."""
    insertion_chart: Chart | None
    depth_chart: Chart | None
    grow_curves_chart: Chart | None
    positions: list[dict[str, Any]]
    insertions: list[InsertionRow]
    artifacts: list[tuple[str, str, int | None]]
    """(name, download URL, size in bytes or None)."""
    timings: list[tuple[str, str]]
    """(name, value with its unit)."""
    scan_method: str
    scan_reason: str
    progress: StageProgress | None
    grow: GrowView | None
    drift_warnings: list[str] = field(default_factory=list)
    job_warnings: list[str] = field(default_factory=list)
    """The result's warnings (a tracker that failed): the job itself succeeded."""

    @property
    def live(self) -> bool:
        """True while the job may still change (the page refreshes itself)."""
        return self.job.status in ("queued", "running")


def _pair(value: Any) -> list[float | None]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return [_num(value[0]), _num(value[1])]
    return [None, None]


def artifact_url(job_id: int, name: str) -> str:
    """Download URL of a job's artifact (served by the JSON API)."""
    return artifact_path(job_id, name)


def _word(value: Any, allowed: Sequence[str]) -> str:
    """`value` when it is one of `allowed`, else n/a."""
    return str(value) if value in allowed else NOT_AVAILABLE


def _certificate_cells(certificate: Any) -> dict[str, Any]:
    """The certificate-in-nats cells of a position row (n/a where the result has none)."""
    cert: Mapping[str, Any] = certificate if isinstance(certificate, Mapping) else {}
    counts = cert.get("verdict_counts")
    return {
        "certificate_risk_decrease": _num(cert.get("risk_decrease")),
        "certificate_ci": _pair(cert.get("risk_decrease_ci")),
        "certificate_verdict": _word(cert.get("verdict"), VERDICTS),
        "certificate_family_verdict": _word(cert.get("family_verdict"), VERDICTS),
        "certificate_counts": counts if isinstance(counts, dict) else None,
        "certificate_method": str(cert.get("interval_method") or ""),
    }


def _gradient_cells(row: Mapping[str, Any]) -> dict[str, Any]:
    """The |E g|^2 test's cells of a position row."""
    counts = row.get("nonzero_gradient_counts")
    return {
        "nonzero_gradient": _word(row.get("nonzero_gradient"), OUTCOMES),
        "nonzero_gradient_family": _word(row.get("nonzero_gradient_family"), OUTCOMES),
        "nonzero_gradient_counts": counts if isinstance(counts, dict) else None,
        "grad_norm_sq_unbiased": _num(row.get("grad_norm_sq_unbiased")),
        "seeds_test_limit": _num(row.get("seeds_test_limit")),
    }


def position_rows(
    result: Mapping[str, Any], insertions: Sequence[Insertion]
) -> list[dict[str, Any]]:
    """Per-position rows of the insertion chart and table.

    Positions measured against a control come from the result's `positions` summaries (or the
    insertion rows); positions that were only scanned add their certificate and |E g|^2 test.
    """
    result = current_result(result)
    measured = result.get("positions") or positions_from_insertions(insertions)
    scanned_rows = {
        int(r["position"]): r for r in (result.get("scan") or {}).get("positions") or []
    }
    rows: dict[int, dict[str, Any]] = {}
    for row in measured:
        position = int(row["position"])
        scanned = scanned_rows.get(position, {})
        rows[position] = {
            "position": position,
            "n_seeds": int(row.get("n_seeds") or 0),
            **_certificate_cells(row.get("certificate") or scanned.get("certificate")),
            **_gradient_cells(row if "nonzero_gradient" in row else scanned or row),
            "predicted_val_risk_delta": _num(row.get("predicted_val_risk_delta")),
            "gain_mean": _num(row.get("gain_mean")),
            "gain_std": _num(row.get("gain_std")),
            "gain_ci": _pair(row.get("gain_ci")),
            "gain_ci_method": str(row.get("gain_ci_method") or ""),
        }
    for position, scanned in scanned_rows.items():
        if position in rows:
            continue
        rows[position] = {
            "position": position,
            "n_seeds": 0,
            **_certificate_cells(scanned.get("certificate")),
            **_gradient_cells(scanned),
            "predicted_val_risk_delta": _num(scanned.get("predicted_val_risk_delta")),
            "gain_mean": None,
            "gain_std": None,
            "gain_ci": [None, None],
            "gain_ci_method": "",
        }
    return [rows[p] for p in sorted(rows)]


def _insertion_rows(result: Mapping[str, Any], stored: Sequence[Insertion]) -> list[InsertionRow]:
    records = [row.record for row in stored] or list(result.get("insertions") or [])
    rows = []
    for raw in records:
        record = current_record(raw)
        descent = record.get("descent") or {}
        certificate = record.get("certificate") or {}
        jumpboard = record.get("jumpboard") or {}
        realized = record.get("realized") or {}
        rows.append(
            InsertionRow(
                position=int(record.get("position", -1)),
                seed=int(record.get("seed", -1)),
                certificate_verdict=_word(certificate.get("verdict"), VERDICTS),
                certificate_reason=str(certificate.get("verdict_reason") or ""),
                certificate_risk_decrease=_num(certificate.get("risk_decrease")),
                certificate_ci=_pair(certificate.get("risk_decrease_ci")),
                nonzero_gradient=_word(descent.get("nonzero_gradient"), OUTCOMES),
                nonzero_gradient_reason=str(descent.get("nonzero_gradient_reason") or ""),
                grad_norm_sq_unbiased=_num(descent.get("grad_norm_sq_unbiased")),
                grad_norm_sq_test_limit=_num(descent.get("grad_norm_sq_test_limit")),
                cosine_train_val=_num(descent.get("cosine_train_val")),
                jumpboard_test_risk_delta=_num(jumpboard.get("test_risk_delta")),
                jumpboard_ci=_pair(jumpboard.get("test_risk_delta_ci")),
                expanded_test_risk=_num(realized.get("expanded_test_risk")),
                control_test_risk=_num(realized.get("control_test_risk")),
                gain_vs_control=_num(realized.get("gain_vs_control")),
                gain_ci=_pair(realized.get("gain_ci")),
                function_drift_eval=_num(record.get("function_drift_eval")),
                function_drift_train=_num(record.get("function_drift_train")),
            )
        )
    return sorted(rows, key=lambda r: (r.position, r.seed))


def _count_held(result: Mapping[str, Any], positions: Sequence[Mapping[str, Any]]) -> str:
    """ "the certificate held at 1 of 5 positions (Holm)" from the family-wise verdicts of the
    scanned positions, else from the per-position verdicts (said to be uncorrected); for older
    results without a certificate in nats, the |E g|^2 test's count instead."""
    scanned = list((current_result(result).get("scan") or {}).get("positions") or [])
    rows: Sequence[Mapping[str, Any]] = scanned or positions
    if not rows:
        return f"the certificate's verdict is {NOT_AVAILABLE}"
    # scan rows nest the certificate; the page's position rows carry it flattened
    cells = [_certificate_cells(r["certificate"]) if "certificate" in r else r for r in rows]
    family = [c.get("certificate_family_verdict") for c in cells]
    if all(v in VERDICTS for v in family):
        held = sum(v == "holds" for v in family)
        return f"the certificate held at {held} of {len(rows)} positions (Holm)"
    single = [c.get("certificate_verdict") for c in cells]
    if all(v in VERDICTS for v in single):
        held = sum(v == "holds" for v in single)
        return (
            f"the certificate held at {held} of {len(rows)} positions "
            "(each position on its own, no family-wise correction)"
        )
    outcomes = [r.get("nonzero_gradient_family") or r.get("nonzero_gradient") for r in rows]
    if all(o in OUTCOMES for o in outcomes):
        shown = sum(o == "shown" for o in outcomes)
        return (
            f"no certificate in nats (an older result); |E g|^2 > 0 shown at {shown} of "
            f"{len(rows)} positions"
        )
    return f"the certificate's verdict is {NOT_AVAILABLE}"


def expand_headline(
    result: Mapping[str, Any], positions: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    """The expand job's answer in one sentence, with its interval, and a note on its reading:
    the stored answer where there is one, else (older results) the best continued position."""
    if isinstance(result.get("answer"), dict):
        return answer_headline(result["answer"], _count_held(result, positions))
    measured = [p for p in positions if p.get("gain_mean") is not None]
    held = _count_held(result, positions)
    if not measured:
        return f"No realized gain measured yet; {held}.", ""
    best = max(measured, key=lambda p: p["gain_mean"])
    gain = float(best["gain_mean"])
    ci = best.get("gain_ci") or [None, None]
    verb = "lowered" if gain >= 0 else "raised"
    lo, hi = ci[0], ci[1]
    magnitude, interval = format_interval(abs(gain), [None, None])
    if lo is not None and hi is not None:
        shown_lo, shown_hi = (lo, hi) if gain >= 0 else (-hi, -lo)
        magnitude, interval = format_interval(abs(gain), [shown_lo, shown_hi])
    seeds = int(best.get("n_seeds") or 0)
    seed_word = "seed" if seeds == 1 else "seeds"
    which = (
        f"Of the {len(measured)} positions continued, inserting at position {best['position']}"
        if len(measured) > 1
        else f"Inserting at position {best['position']}"
    )
    sentence = (
        f"{which} {verb} test risk by {magnitude} nats {interval} against the control over "
        f"{seeds} {seed_word}; {held}."
    )
    note = ""
    if lo is not None and hi is not None and lo <= 0.0 <= hi:
        note = "The interval includes 0: this run cannot tell the insertion from the control."
    elif lo is None:
        note = "No interval (fewer than two seeds): the size of the change is not established."
    return sentence, note


def selection_sentence(
    job: Job, result: Mapping[str, Any], calibration: JobCalibration | None
) -> str:
    """The predictor that chose the expand job's positions and its measured calibration on
    similar stored jobs; empty for other kinds."""
    if job.kind != "expand":
        return ""
    spec_expand = (job.spec or {}).get("expand") or {}
    selection = result.get("selection") or {}
    select = str(selection.get("select") or spec_expand.get("select") or "top_k")
    if select == "explicit":
        return "Positions given in the spec: no predictor chose them."
    if select == "all":
        return "Every position was continued: no predictor chose them."
    if select == "certified":
        return "Positions chosen where the certificate in nats holds family-wise (Holm)."
    predictor = str(
        selection.get("by")
        or spec_expand.get("by")
        or (calibration.predictor if calibration is not None else NOT_AVAILABLE)
    )
    sentence = f"Positions chosen by {predictor}"
    if calibration is None or calibration.predictor != predictor or calibration.rho is None:
        return f"{sentence}; too few similar jobs to measure its calibration."
    if calibration.lo is not None and calibration.hi is not None:
        interval = f" [{calibration.lo:.2f}, {calibration.hi:.2f}]"
    else:
        interval = f" [{NOT_AVAILABLE}]"
    reliability = calibration.gain_reliability
    ceiling = calibration.correlation_ceiling
    agreement = (
        NOT_AVAILABLE
        if reliability is None or ceiling is None
        else f"{reliability:.2f}, allowing about {ceiling:.2f}"
    )
    p = "" if calibration.p_value is None else f"exact p {calibration.p_value:.2g}; "
    jobs = "job" if calibration.n_jobs == 1 else "jobs"
    return (
        f"{sentence}; on {calibration.n_jobs} similar {jobs}: Spearman {calibration.rho:.2f}"
        f"{interval} ({p}gain reliability {agreement})."
    )


def train_headline(job: Job, result: Mapping[str, Any]) -> tuple[str, str]:
    """The train job's answer: what the base reached."""
    error, risk = _num(result.get("test_error")), _num(result.get("test_risk"))
    if error is None or risk is None:
        return f"Test error {NOT_AVAILABLE}.", ""
    model = job.spec.get("model") or {}
    epochs = (job.spec.get("train") or {}).get("epochs")
    params = result.get("parameters")
    size = f", {params:,} parameters" if isinstance(params, int) else ""
    return (
        f"The {model.get('kind', '')} network ({model.get('depth', '?')} blocks per stage{size}) "
        f"reached {100 * error:.1f}% test error (test risk {risk:.3f} nats) after {epochs} epochs.",
        "One training run: no interval.",
    )


GROW_RUN_LABELS = {
    "grown": "grown by the schedule",
    "control_target": "target depth from scratch",
    "control_start": "starting depth",
}


def grow_view(job: Job, result: Mapping[str, Any]) -> GrowView | None:
    """The grow section: schedule, inserted blocks and each run's numbers."""
    grow_spec = job.spec.get("grow") or {}
    grow = result.get("grow") or {}
    runs = []
    for name, run in (grow.get("runs") or {}).items():
        depths = run.get("depths") or []
        runs.append(
            GrowRun(
                name=name,
                label=GROW_RUN_LABELS.get(name, name),
                depths=[int(d) for d in depths],
                parameters=run.get("parameters"),
                test_risk=_num(run.get("test_risk")),
                test_error=_num(run.get("test_error")),
                train_s=_num(run.get("train_s")),
            )
        )
    return GrowView(
        policy=str(grow.get("policy") or grow_spec.get("policy") or NOT_AVAILABLE),
        schedule=[int(e) for e in grow_spec.get("at_epochs") or []],
        target_depth=grow_spec.get("target_depth"),
        events=[e for e in grow.get("events") or [] if isinstance(e, dict)],
        runs=runs,
    )


def grow_headline(job: Job, view: GrowView) -> tuple[str, str]:
    """The grow job's answer: the grown network's test risk next to the controls'."""
    by_name = {r.name: r for r in view.runs}
    grown = by_name.get("grown")
    if grown is None or grown.test_risk is None:
        return f"Growth result {NOT_AVAILABLE} yet.", ""
    model = job.spec.get("model") or {}
    start = int(model.get("depth", 0)) * int(model.get("stages", 1))
    end = sum(grown.depths) if grown.depths else view.target_depth
    parts = [
        f"Growing from {start} to {end} blocks ({view.policy} policy, {len(view.schedule)} "
        f"events) reached test risk {grown.test_risk:.3f} nats"
        + (f" ({100 * grown.test_error:.1f}% error)" if grown.test_error is not None else "")
    ]
    controls = [
        f"{r.test_risk:.3f} for the {r.label}"
        for r in view.runs
        if r.name != "grown" and r.test_risk is not None
    ]
    if controls:
        parts.append("against " + " and ".join(controls))
    return "; ".join(parts) + ".", "One seed per run: no interval; read differences as indicative."


def stage_progress(job: Job, now: dt.datetime | None = None) -> StageProgress | None:
    """The running job's stage list, step, elapsed time and a linear estimate of time left."""
    if job.status not in ("queued", "running"):
        return None
    stages = STAGES_BY_KIND.get(job.kind, ())
    current = job.stage if job.stage in stages else ""
    states = []
    reached = False
    for name in stages:
        if job.status == "queued":
            states.append((name, "pending"))
        elif name == current:
            states.append((name, "current"))
            reached = True
        else:
            states.append((name, "pending" if reached or not current else "done"))
    now = now or dt.datetime.now(dt.UTC)
    elapsed = (now - job.started_at).total_seconds() if job.started_at is not None else None
    fraction = float(job.progress or 0.0)
    remaining = None
    if elapsed is not None and 0.02 <= fraction < 1.0:
        remaining = elapsed * (1.0 - fraction) / fraction
    return StageProgress(
        stages=states,
        stage=job.stage or ("waiting for a worker" if job.status == "queued" else "starting"),
        step=job.message or "",
        fraction=fraction,
        elapsed_s=elapsed,
        remaining_s=remaining,
    )


def format_timing(name: str, value: float) -> tuple[str, str]:
    """A timing entry with its unit: `train_s` -> ("train", "12.3 s"), rates in steps/s."""
    if name.endswith("_per_s"):
        return name.removesuffix("_per_s").replace(
            "_", " "
        ) + " rate", f"{value:,.1f} {name.split('_per_')[0]}/s"
    if name.endswith("_s"):
        return name.removesuffix("_s").replace("_", " "), f"{value:,.1f} s"
    return name.replace("_", " "), f"{value:,.4g}"


def _continuation_series(
    result: Mapping[str, Any], metric_points: Sequence[tuple[int, str, str, float]]
) -> dict[str, list[tuple[float, float]]]:
    """Arm label -> [(step, loss)]: the result's `continuation_curves`, else the live metrics."""
    stored = result.get("continuation_curves")
    if isinstance(stored, dict) and stored:
        return {
            str(label): [(float(p[0]), float(p[1])) for p in points if len(p) >= 2]
            for label, points in stored.items()
            if isinstance(points, list)
        }
    series: dict[str, list[tuple[float, float]]] = {}
    for step, split, name, value in metric_points:
        if split == CONTINUATION_SPLIT:
            series.setdefault(name.removesuffix("/loss"), []).append((float(step), value))
    return series


def _drift_warnings(rows: Sequence[InsertionRow]) -> list[str]:
    by_position: dict[int, float] = {}
    for r in rows:
        if r.drift_warning:
            worst = max(d for d in (r.function_drift_eval, r.function_drift_train) if d is not None)
            by_position[r.position] = max(by_position.get(r.position, 0.0), worst)
    return [
        f"position {p}: the inserted block changes the network's output by up to {d:.3g} "
        f"(> {DRIFT_LIMIT:g}): it is not function-preserving, so the certificate's premise fails"
        for p, d in sorted(by_position.items())
    ]


def build_job_view(session: Session, job: Job, job_dir: Path | None = None) -> JobView:
    """Assemble the job page for `job` (a running expand job's finished stages from the
    partial result in `job_dir`)."""
    finished = bool(job.result)
    result: dict[str, Any] = current_result(job.result or partial_result(job, job_dir))
    stored_points: Sequence[tuple[int, str, str, float]] = [
        (step, split, name, value)
        for step, split, name, value in session.execute(
            select(Metric.step, Metric.split, Metric.name, Metric.value)
            .where(Metric.job_id == job.id)
            .order_by(Metric.step)
        )
        if value is not None
    ]
    training_points = [p for p in stored_points if p[1] != CONTINUATION_SPLIT]
    metric_points = training_points or curves_from_result(result.get("curves") or {})
    losses, accuracies = split_curves(metric_points)
    stored_insertions = session.scalars(
        select(Insertion).where(Insertion.job_id == job.id).order_by(Insertion.position)
    ).all()
    positions = position_rows(result, stored_insertions) if job.kind == "expand" else []
    insertions = _insertion_rows(result, stored_insertions)
    stored_artifacts = session.scalars(
        select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)
    ).all()
    artifacts: list[tuple[str, str, int | None]] = [
        (a.name, artifact_url(job.id, a.name), a.size) for a in stored_artifacts
    ] or [
        (name, artifact_url(job.id, name), None)
        for name in result.get("artifacts") or []
        if isinstance(name, str)
    ]
    scan = result.get("scan") or {}
    grow = grow_view(job, result) if job.kind == "grow" else None
    if job.kind == "expand":
        headline, note = expand_headline(result, positions)
    elif grow is not None:
        headline, note = grow_headline(job, grow)
    else:
        headline, note = train_headline(job, result)
    selection = ""
    if job.kind == "expand" and finished:
        calibration = calibration_for_job(session, job, resamples=HEADLINE_RESAMPLES)
        selection = selection_sentence(job, result, calibration)
    if not finished:  # queued, running or failed: no answer to state
        headline, note = "", ""
    continuation = _continuation_series(result, stored_points) if job.kind == "expand" else {}
    grow_curves: dict[str, list[tuple[float, float]]] = {}
    if grow is not None:
        for name, run in ((result.get("grow") or {}).get("runs") or {}).items():
            for key, pairs in (run.get("curves") or {}).items():
                if key == "val/loss" and isinstance(pairs, list):
                    grow_curves[GROW_RUN_LABELS.get(name, name)] = [
                        (float(p[0]), float(p[1]))
                        for p in pairs
                        if len(p) >= 2 and p[1] is not None
                    ]
    return JobView(
        job=job,
        spec_json=json.dumps(job.spec, indent=2, sort_keys=False),
        headline=headline,
        headline_note=note,
        headline_selection=selection,
        summary=[(label, result[key]) for key, label in SUMMARY_FIELDS if key in result],
        loss_chart=curve_chart(
            "loss-chart",
            losses,
            title="Loss",
            y_title="loss (nats)",
            empty_message="No loss recorded yet.",
        ),
        accuracy_chart=curve_chart(
            "accuracy-chart", accuracies, title="Accuracy", y_title="accuracy"
        ),
        continuation_chart=(
            continuation_chart("continuation-chart", continuation) if job.kind == "expand" else None
        ),
        heldout_chart=(
            heldout_gain_chart("heldout-chart", [r.record for r in stored_insertions])
            if job.kind == "expand" and stored_insertions
            else None
        ),
        insertion_chart=insertion_chart("insertion-chart", positions) if positions else None,
        depth_chart=depth_chart("depth-chart", grow.events, job.spec) if grow else None,
        grow_curves_chart=(
            curve_chart(
                "grow-curves-chart",
                grow_curves,
                title="Validation loss of each run",
                y_title="validation loss (nats)",
                x_title="step",
            )
            if grow
            else None
        ),
        positions=positions,
        insertions=insertions,
        artifacts=artifacts,
        timings=[
            format_timing(str(k), float(v))
            for k, v in (result.get("timings") or {}).items()
            if _num(v) is not None
        ],
        scan_method=str(scan.get("method", "")),
        scan_reason=str(scan.get("reason", "")),
        progress=stage_progress(job),
        grow=grow,
        drift_warnings=_drift_warnings(insertions),
        job_warnings=[str(w) for w in (result.get("warnings") or []) if w],
    )
