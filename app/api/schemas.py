"""Response models of the REST API (request bodies are the experiment specs themselves)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

MAX_ID = 2**31 - 1
"""Largest row id (ids are 32-bit integers in the database); larger ids in a request are 422."""
MAX_ERROR_TEXT = 200
"""Longest message or location part in an error answer: input is never echoed back whole."""

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKind = Literal["train", "expand", "grow", "sweep", "sweep_point"]


class JobLinks(BaseModel):
    """Where to find a job and its parts."""

    self: str
    page: str
    events: str
    metrics: str
    insertions: str
    artifacts: str


class JobOut(BaseModel):
    """A job as the API shows it: identity, state, progress, timestamps and links."""

    id: int
    status: JobStatus
    kind: JobKind
    name: str
    priority: int
    progress: float
    stage: str
    message: str
    attempts: int
    max_attempts: int
    cancel_requested: bool
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    spec: dict[str, Any]
    summary: dict[str, Any] | None = Field(
        None, description="Headline numbers of a finished job (test risk/error, parameters...)."
    )
    parent_id: int | None = Field(
        None, description="The sweep this job is a grid point of (kind sweep_point)."
    )
    links: JobLinks


class JobList(BaseModel):
    """One page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[JobOut]
    next_cursor: str | None


class MetricSeries(BaseModel):
    """One time series of a job: `points` are `[step, value]` pairs in step order."""

    split: str
    name: str
    points: list[tuple[int, float]]


class MetricsOut(BaseModel):
    """Every time series of a job, grouped by split and name."""

    job_id: int
    series: list[MetricSeries]


class InsertionOut(BaseModel):
    """One insertion record (DESIGN.md section 5) of a job."""

    job_id: int
    position: int
    seed: int
    condition_holds: bool | None
    gain_vs_control: float | None
    record: dict[str, Any]


class InsertionList(BaseModel):
    """The insertion records of one job."""

    job_id: int
    items: list[InsertionOut]


class ArtifactOut(BaseModel):
    """A file a job wrote, downloadable at `url`."""

    name: str
    size: int
    sha256: str
    url: str


class ArtifactList(BaseModel):
    """The files of one job."""

    job_id: int
    items: list[ArtifactOut]


class ResultRow(BaseModel):
    """One insertion record across jobs, flattened to stable field names."""

    job_id: int
    job_name: str
    kind: str
    position: int
    seed: int
    depth_before: int | None
    depth_after: int | None
    function_drift_eval: float | None
    function_drift_train: float | None
    condition_holds: bool | None
    verdict: str | None = None
    """Descent certificate verdict: holds, fails or undecided (None in older results)."""
    certificate_source: str | None = None
    certificate_batches: int | None = None
    grad_norm_sq_train: float | None
    grad_norm_sq_val: float | None
    grad_norm_sq_unbiased: float | None
    grad_norm_sq_lcb: float | None
    grad_norm_sq_unbiased_train: float | None = None
    grad_norm_sq_lcb_train: float | None = None
    confidence: float | None
    cosine_train_val: float | None
    predicted_val_risk_delta: float | None
    jumpboard_step: float | None
    jumpboard_test_risk_delta: float | None
    base_test_risk: float | None
    expanded_test_risk: float | None
    control_test_risk: float | None
    gain_vs_control: float | None


RESULT_FIELDS: tuple[str, ...] = tuple(ResultRow.model_fields)
"""Column names of the results CSV, in order (stable: scripts read them)."""


class ResultList(BaseModel):
    """Insertion records across jobs; pass `next_cursor` as `cursor` for the next page."""

    items: list[ResultRow]
    next_cursor: str | None


class HealthOut(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable", "unchecked"] = "unchecked"
    detail: str = ""


class ErrorItem(BaseModel):
    """One problem of a request, at `loc` (the field path)."""

    loc: list[str | int]
    msg: str
    type: str = "value_error"


class ErrorOut(BaseModel):
    """An error answer: a message, or a list of problems with their field paths."""

    detail: str | list[ErrorItem]
