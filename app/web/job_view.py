"""Everything the job page shows, assembled from the job row and its metric/insertion rows.

Stored rows win over the result dict (they exist while a job runs); the result dict fills in
what a job without rows carries only there (curves, insertion records, artifacts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Artifact, Insertion, Job, Metric
from app.urls import artifact_path
from app.web.charts import (
    Chart,
    curve_chart,
    curves_from_result,
    insertion_chart,
    split_curves,
)
from app.web.results import positions_from_insertions
from expansion.result_file import finite_or_none as _num

SUMMARY_FIELDS: tuple[tuple[str, str], ...] = (
    ("test_risk", "test risk (cross-entropy)"),
    ("test_error", "test error"),
    ("val_risk", "validation risk"),
    ("val_error", "validation error"),
    ("train_risk", "train risk"),
    ("train_error", "train error"),
    ("parameters", "parameters"),
    ("device", "device"),
    ("torch_version", "torch"),
)


@dataclass
class InsertionRow:
    """One insertion record as the job page's table shows it."""

    position: int
    seed: int
    depth_after: int | None
    condition_holds: bool | None
    certified_gain: float | None
    certified_gain_lcb: float | None
    cosine_train_val: float | None
    jumpboard_test_risk_delta: float | None
    expanded_test_risk: float | None
    control_test_risk: float | None
    gain_vs_control: float | None
    function_drift_eval: float | None


@dataclass
class JobView:
    """The job page's content."""

    job: Job
    spec_json: str
    summary: list[tuple[str, Any]]
    loss_chart: Chart
    accuracy_chart: Chart
    insertion_chart: Chart | None
    positions: list[dict[str, Any]]
    insertions: list[InsertionRow]
    artifacts: list[tuple[str, str, int | None]]
    """(name, download URL, size in bytes or None)."""
    timings: list[tuple[str, float]]
    scan_method: str
    scan_reason: str

    @property
    def live(self) -> bool:
        """True while the job may still change (the page refreshes itself)."""
        return self.job.status in ("queued", "running")


def artifact_url(job_id: int, name: str) -> str:
    """Download URL of a job's artifact (served by the JSON API)."""
    return artifact_path(job_id, name)


def position_rows(result: Mapping[str, Any], insertions: Sequence[Insertion]) -> list[dict]:
    """Per-position rows of the insertion chart.

    Positions measured against a control come from the result's `positions` summaries (or the
    insertion rows); positions that were only scanned add their certified gain alone.
    """
    measured = result.get("positions") or positions_from_insertions(insertions)
    rows: dict[int, dict[str, Any]] = {}
    for row in measured:
        ci = row.get("gain_ci") or [None, None]
        rows[int(row["position"])] = {
            "position": int(row["position"]),
            "n_seeds": int(row.get("n_seeds") or 0),
            "certified_gain": _num(row.get("certified_gain")),
            "certified_gain_lcb": _num(row.get("certified_gain_lcb")),
            "predicted_val_risk_delta": _num(row.get("predicted_val_risk_delta")),
            "gain_mean": _num(row.get("gain_mean")),
            "gain_std": _num(row.get("gain_std")),
            "gain_ci": [_num(ci[0]), _num(ci[1])] if len(ci) == 2 else [None, None],
        }
    for scanned in (result.get("scan") or {}).get("positions") or []:
        position = int(scanned["position"])
        certified = _num(scanned.get("grad_norm_sq_unbiased"))
        if position in rows or certified is None:
            continue
        rows[position] = {
            "position": position,
            "n_seeds": 0,
            "certified_gain": certified,
            "certified_gain_lcb": _num(scanned.get("grad_norm_sq_lcb")),
            "predicted_val_risk_delta": _num(scanned.get("predicted_val_risk_delta")),
            "gain_mean": None,
            "gain_std": None,
            "gain_ci": [None, None],
        }
    return [rows[p] for p in sorted(rows)]


def _insertion_rows(result: Mapping[str, Any], stored: Sequence[Insertion]) -> list[InsertionRow]:
    records = [row.record for row in stored] or list(result.get("insertions") or [])
    rows = []
    for record in records:
        descent = record.get("descent") or {}
        jumpboard = record.get("jumpboard") or {}
        realized = record.get("realized") or {}
        rows.append(
            InsertionRow(
                position=int(record.get("position", -1)),
                seed=int(record.get("seed", -1)),
                depth_after=record.get("depth_after"),
                condition_holds=descent.get("condition_holds"),
                certified_gain=_num(descent.get("grad_norm_sq_unbiased")),
                certified_gain_lcb=_num(descent.get("grad_norm_sq_lcb")),
                cosine_train_val=_num(descent.get("cosine_train_val")),
                jumpboard_test_risk_delta=_num(jumpboard.get("test_risk_delta")),
                expanded_test_risk=_num(realized.get("expanded_test_risk")),
                control_test_risk=_num(realized.get("control_test_risk")),
                gain_vs_control=_num(realized.get("gain_vs_control")),
                function_drift_eval=_num(record.get("function_drift_eval")),
            )
        )
    return sorted(rows, key=lambda r: (r.position, r.seed))


def build_job_view(session: Session, job: Job) -> JobView:
    """Assemble the job page for `job`."""
    result: dict[str, Any] = job.result or {}
    metric_points: Sequence[tuple[int, str, str, float | None]] = [
        (step, split, name, value)
        for step, split, name, value in session.execute(
            select(Metric.step, Metric.split, Metric.name, Metric.value)
            .where(Metric.job_id == job.id)
            .order_by(Metric.step)
        )
    ] or curves_from_result(result.get("curves") or {})
    losses, accuracies = split_curves(metric_points)
    stored_insertions = session.scalars(
        select(Insertion).where(Insertion.job_id == job.id).order_by(Insertion.position)
    ).all()
    positions = position_rows(result, stored_insertions) if job.kind == "expand" else []
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
    return JobView(
        job=job,
        spec_json=json.dumps(job.spec, indent=2, sort_keys=False),
        summary=[(label, result[key]) for key, label in SUMMARY_FIELDS if key in result],
        loss_chart=curve_chart("loss-chart", losses, title="Loss", y_title="loss"),
        accuracy_chart=curve_chart(
            "accuracy-chart", accuracies, title="Accuracy", y_title="accuracy"
        ),
        insertion_chart=insertion_chart("insertion-chart", positions) if positions else None,
        positions=positions,
        insertions=_insertion_rows(result, stored_insertions),
        artifacts=artifacts,
        timings=[
            (k, float(v)) for k, v in (result.get("timings") or {}).items() if _num(v) is not None
        ],
        scan_method=str(scan.get("method", "")),
        scan_reason=str(scan.get("reason", "")),
    )
