"""The REST API's schemas in one place: response models, request bodies other than specs (the
experiment specs are their own, `expansion.specs`), path parameters and documented error answers.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import AliasPath, BaseModel, ConfigDict, Field, computed_field, field_validator

from app.db.enums import JobKind, JobStatus
from app.tokens import TokenScope, parse_expiry
from app.urls import job_path

MAX_ID = 2**31 - 1
"""Largest row id (ids are 32-bit integers in the database); larger ids in a request are 422."""
MAX_ERROR_TEXT = 200
"""Longest message or location part in an error answer: input is never echoed back whole."""

JOB_SUMMARY_KEYS = (
    "test_risk",
    "test_error",
    "val_risk",
    "val_error",
    "train_risk",
    "train_error",
    "parameters",
    "device",
    "warnings",
)
"""The headline numbers of a finished job's result that its API view carries."""


class JobLinks(BaseModel):
    """Where to find a job and its parts."""

    self: str
    page: str
    events: str
    metrics: str
    insertions: str
    artifacts: str


class JobOut(BaseModel):
    """A job as the API shows it: identity, state, progress, timestamps and links; read from
    the job row's attributes (`JobOut.model_validate(job)`)."""

    model_config = ConfigDict(from_attributes=True)

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
        None,
        validation_alias="result",
        description="Headline numbers of a finished job (test risk/error, parameters...).",
    )
    answer: dict[str, Any] | None = Field(
        None,
        validation_alias=AliasPath("result", "answer"),
        description="An expand job's answer (expansion.results.answer.Answer): where to insert "
        "and what it buys, with selection-adjusted intervals, and the certificate's counts.",
    )
    parent_id: int | None = Field(
        None, description="The sweep this job is a grid point of (kind sweep_point)."
    )
    warning: str | None = Field(
        None,
        description="What the reader should know that is neither error nor progress: a queued "
        "job that no live worker can run (it needs more devices than any offers), a result "
        "discarded because another attempt had started.",
    )

    @field_validator("summary", mode="before")
    @classmethod
    def _headline_numbers(cls, result: dict[str, Any] | None) -> dict[str, Any] | None:
        """The job's whole result is read; only its headline numbers are shown."""
        if not result:
            return None
        return {k: result[k] for k in JOB_SUMMARY_KEYS if k in result}

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented property pattern
    @property
    def links(self) -> JobLinks:
        """Relative links to the job's resources and its web page."""
        base = job_path(self.id)
        return JobLinks(
            self=base,
            page=f"/jobs/{self.id}",
            events=f"{base}/events",
            metrics=f"{base}/metrics",
            insertions=f"{base}/insertions",
            artifacts=f"{base}/artifacts",
        )


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
    """One insertion record (docs/design.md 5) of a job."""

    job_id: int
    position: int
    seed: int
    certificate_verdict: str | None = None
    """The certificate in nats: holds, fails or undecided (None in results before issue 20)."""
    nonzero_gradient: str | None = None
    """The |E g|^2 = 0 test: shown or not_shown."""
    gain_vs_control: float | None
    record: dict[str, Any]
    """The insertion record under today's names (docs/design.md 5)."""


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
    certificate_verdict: str | None = None
    """The certificate in nats against expand.min_effect: holds, fails or undecided (None in
    results before issue 20)."""
    certificate_risk_decrease: float | None = None
    """The jumpboard model's risk decrease on the certificate split (nats)."""
    certificate_risk_decrease_low: float | None = None
    certificate_risk_decrease_high: float | None = None
    certificate_p_value: float | None = None
    nonzero_gradient: str | None = None
    """The |E g|^2 = 0 test on the certificate batches: shown or not_shown."""
    certificate_source: str | None = None
    certificate_batches: int | None = None
    grad_norm_sq_train: float | None
    grad_norm_sq_val: float | None
    grad_norm_sq_unbiased: float | None
    grad_norm_sq_test_limit: float | None = None
    """The |E g|^2 test's jackknife-t limit (a test statistic, not a lower bound)."""
    grad_norm_sq_unbiased_train: float | None = None
    grad_norm_sq_test_limit_train: float | None = None
    confidence: float | None
    cosine_train_val: float | None
    predicted_val_risk_delta: float | None
    jumpboard_step: float | None
    jumpboard_test_risk_delta: float | None
    base_test_risk: float | None
    expanded_test_risk: float | None
    control_test_risk: float | None
    gain_vs_control: float | None
    gain_ci_low: float | None = None
    """This seed's interval of gain_vs_control over the test examples (None before issue 20)."""
    gain_ci_high: float | None = None


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


JOB_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid bearer token."},
    404: {"model": ErrorOut, "description": "No such job."},
}
"""Answers of any operation on one job besides its own."""
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not JSON text (say, not UTF-8)."},
    413: {"model": ErrorOut, "description": "The body is larger than the limit."},
    415: {"model": ErrorOut, "description": "The body is not application/json."},
}
"""Answers of any operation with a JSON body, before the body reaches the route."""
JOB_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **JOB_ERRORS,
    403: {"model": ErrorOut, "description": "The token's scope does not allow this (read)."},
}
"""Answers of an operation that changes a job."""


JobId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The job's id.")]


def bounded_text(value: str, limit: int = MAX_ERROR_TEXT) -> str:
    """`value` cut to `limit` characters (marked with an ellipsis and the full length)."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value)} characters)"


class CalibrationRowOut(BaseModel):
    """Calibration of one predictor (or baseline) on one group of stored expand jobs."""

    group: dict[str, str]
    """The group's configuration values (empty: every job)."""
    predictor: str
    kind: Literal["predictor", "baseline"]
    """`baseline`: the position index (deeper, or shallower, predicts more gain)."""
    description: str
    n_jobs: int
    """Jobs with at least 3 positions where the predictor and the gain are both measured."""
    n: int
    """(job, position) points of the group."""
    spearman: float | None
    """Mean over the group's jobs of the within-job Spearman (positions) with the gain."""
    spearman_ci: list[float | None]
    """Student-t interval over the jobs (null with fewer than 3 jobs)."""
    spearman_method: str
    p_value: float | None
    """Exact permutation p-value (two-sided) of `spearman` under "no information"."""
    p_value_adjusted: float | None
    """Max-T permutation p-value over the group's predictors (null for baselines)."""
    p_value_exact: bool
    random_band: list[float | None]
    """Central 95% of `spearman` for a predictor carrying no information on these jobs."""
    pooled_spearman: float | None
    """One Spearman over every (job, position) point of the group: between networks."""
    pooled_ci: list[float | None]
    """Cluster bootstrap over jobs (null with fewer than 5 jobs)."""
    pooled_method: str
    gain_reliability: float | None
    """Split-half reliability of the realized gains over seeds (Spearman-Brown), mean over jobs."""
    correlation_ceiling: float | None
    """About the largest within-job Spearman that reliability allows (its square root)."""
    reliability_method: str


class CalibrationOut(BaseModel):
    """Rows per group and predictor; larger predictor values predict larger gains."""

    group_by: list[str]
    resamples: int
    permutations: int
    rows: list[CalibrationRowOut] = Field(default_factory=list)


class QueueStatusOut(BaseModel):
    """The queue and its workers, as counted by one read of the database."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    workers_alive: int = Field(default=0, ge=0, description="Workers seen within one lease")
    workers_dead: int = Field(
        default=0, ge=0, description="Worker rows silent for longer than a lease, not yet removed"
    )
    queued: int = Field(default=0, ge=0, description="Jobs waiting to be claimed (queue depth)")
    running: int = Field(default=0, ge=0, description="Jobs claimed and running")
    oldest_queued_seconds: float | None = Field(
        default=None, description="Age of the oldest queued job in seconds; null when none waits"
    )
    detail: str = ""


TokenId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The token's id.")]


class TokenRequest(BaseModel):
    """A token to create: a label, a scope and an optional expiry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=120, pattern=r"^[^\x00-\x1f\x7f]*$")
    scope: TokenScope = TokenScope.SUBMIT
    expires: str | None = Field(
        None,
        max_length=40,
        description="A duration (`30d`, `12h`, `90m`, `2w`), an ISO date/time, or `never`.",
    )

    @field_validator("expires")
    @classmethod
    def _valid_expiry(cls, value: str | None) -> str | None:
        if value is not None:
            parse_expiry(value)
        return value


class TokenOut(BaseModel):
    """A token's metadata (never the token itself, nor its hash)."""

    id: int
    name: str
    scope: TokenScope
    created_at: dt.datetime | None
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked: bool
    revoked_at: dt.datetime | None
    expired: bool


class CreatedToken(TokenOut):
    """A new token: its metadata plus the token, shown only this once."""

    token: str


class TokenList(BaseModel):
    """Every token, oldest first."""

    items: list[TokenOut]


DatasetRef = Annotated[
    str,
    PathParam(
        pattern=r"^([0-9]{1,10}|[0-9a-fA-F]{64})$",
        description="The data set's id or its sha256.",
    ),
]


class DatasetOut(BaseModel):
    """An uploaded data set: what a spec needs to know about it, inferred from the data."""

    id: int
    name: str
    """The uploaded file's name."""
    sha256: str
    """Content address of the stored file; a spec may name the data set by it."""
    format: Literal["npz", "image_archive"]
    size_bytes: int
    input_shape: list[int]
    """One sample's raw shape: (features,), (channels, length) or (channels, height, width)."""
    num_classes: int
    train_size: int
    val_size: int
    """Examples of the data set's own validation split (0: carved from training by
    `data.val_fraction`)."""
    test_size: int
    model_kind: Literal["mlp", "conv1d", "conv2d"]
    """The network a spec gets when it names no `model.kind`."""
    created_at: dt.datetime | None
    spec_data: dict[str, Any]
    """The `data` section that trains on it."""


class DatasetList(BaseModel):
    """Data sets, newest first, one page at a time."""

    items: list[DatasetOut]
    next_cursor: str | None = None


DATASET_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid bearer token."},
    404: {"model": ErrorOut, "description": "No such data set."},
}
"""Answers of any operation on one data set."""
