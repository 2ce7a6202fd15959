"""The database schema as SQLAlchemy 2.0 typed models.

The `jobs` table is the queue (claimed by `app.queue`); results are stored as a JSON summary on
the job plus normalized rows for metrics, insertions and artifacts. Timestamps are timezone-aware
UTC on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.db.enums import JobStatus

JOB_STATUSES: tuple[str, ...] = tuple(JobStatus)
"""Every job status, in life order (plain strings, as stored)."""
FINISHED_STATUSES: tuple[str, ...] = tuple(s for s in JobStatus if s.is_finished)
"""The final statuses."""

JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Normalize to UTC before storing; naive values are taken to be UTC already."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """Attach UTC to what SQLite returns naive."""
        if value is None:
            return None
        stamp: dt.datetime = value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=dt.UTC)
        return stamp.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JsonType,
        dt.datetime: UtcDateTime,
    }


class Job(Base):
    """One experiment in the queue: its spec, state, lease and result summary."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_lease", "status", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE", name="fk_jobs_parent_id"), index=True
    )
    """The sweep job this job is a grid point of (app.queue.sweeps); None for other jobs."""
    devices: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    """Devices the job needs (its spec's `train.devices`); only a worker offering at least
    this many claims it."""
    warning: Mapped[str | None] = mapped_column(Text)
    """A note for the job's reader that is neither its error nor its progress: a finished
    result discarded because another attempt had started (app.queue.store_pending_result)."""

    metrics: Mapped[list[Metric]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    insertions: Mapped[list[Insertion]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def is_finished(self) -> bool:
        """True once the job reached a final status."""
        return self.status in FINISHED_STATUSES


# The claim's exact order (priority DESC, created_at, id) over only the rows it looks at: a claim
# reads the first unlocked entry instead of sorting every queued row.
Index(
    "ix_jobs_queued",
    Job.priority.desc(),
    Job.created_at,
    Job.id,
    postgresql_where=Job.status == text("'queued'"),
    sqlite_where=Job.status == text("'queued'"),
)


class Metric(Base):
    """One point of a job's time series (train/val/test loss, accuracy...)."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_job_name", "job_id", "name"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    """None when the reported value was not finite (a NaN loss)."""

    job: Mapped[Job] = relationship(back_populates="metrics")


class Insertion(Base):
    """One insertion record (docs/design.md 5): a (position, seed) of an expand job, flattened."""

    __tablename__ = "insertions"
    __table_args__ = (UniqueConstraint("job_id", "position", "seed", name="uq_insertions_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    depth_before: Mapped[int | None] = mapped_column(Integer)
    depth_after: Mapped[int | None] = mapped_column(Integer)
    nonzero_gradient: Mapped[str | None] = mapped_column(String(16))
    """The |E g|^2 = 0 test on the certificate batches: shown or not_shown (docs/science.md)."""
    certificate_source: Mapped[str | None] = mapped_column(String(16))
    """Where the certificate data came from: holdout or fresh."""
    certificate_batches: Mapped[int | None] = mapped_column(Integer)
    grad_norm_sq_unbiased_train: Mapped[float | None] = mapped_column(Float)
    """U on the training batches (optimization, not the population)."""
    grad_norm_sq_test_limit_train: Mapped[float | None] = mapped_column(Float)
    grad_norm_sq_train: Mapped[float | None] = mapped_column(Float)
    grad_norm_sq_val: Mapped[float | None] = mapped_column(Float)
    grad_norm_sq_unbiased: Mapped[float | None] = mapped_column(Float)
    grad_norm_sq_test_limit: Mapped[float | None] = mapped_column(Float)
    """The |E g|^2 test's jackknife-t limit (a test statistic, not a lower bound)."""
    certificate_risk_decrease: Mapped[float | None] = mapped_column(Float)
    """The jumpboard model's risk decrease on the certificate split (nats); NULL before 0009."""
    certificate_risk_decrease_low: Mapped[float | None] = mapped_column(Float)
    certificate_risk_decrease_high: Mapped[float | None] = mapped_column(Float)
    certificate_p_value: Mapped[float | None] = mapped_column(Float)
    """One-sided p-value of "decrease <= min_effect"."""
    certificate_verdict: Mapped[str | None] = mapped_column(String(16))
    """holds, fails or undecided against expand.min_effect."""
    confidence: Mapped[float | None] = mapped_column(Float)
    cosine_train_val: Mapped[float | None] = mapped_column(Float)
    predicted_val_risk_delta: Mapped[float | None] = mapped_column(Float)
    jumpboard_step: Mapped[float | None] = mapped_column(Float)
    jumpboard_test_risk_delta: Mapped[float | None] = mapped_column(Float)
    base_test_risk: Mapped[float | None] = mapped_column(Float)
    expanded_test_risk: Mapped[float | None] = mapped_column(Float)
    control_test_risk: Mapped[float | None] = mapped_column(Float)
    gain_vs_control: Mapped[float | None] = mapped_column(Float)
    gain_ci_low: Mapped[float | None] = mapped_column(Float)
    """This seed's interval of gain_vs_control over the test examples (NULL before 0009)."""
    gain_ci_high: Mapped[float | None] = mapped_column(Float)
    function_drift_eval: Mapped[float | None] = mapped_column(Float)
    function_drift_train: Mapped[float | None] = mapped_column(Float)
    predictors: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    """{predictor name: value or None} (expansion.specs.predictor_names); larger = larger gain."""
    record: Mapped[dict[str, Any]] = mapped_column(JsonType)

    job: Mapped[Job] = relationship(back_populates="insertions")


class Artifact(Base):
    """A file a job wrote, relative to its job folder, with its size and digest."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_artifacts_job_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))

    job: Mapped[Job] = relationship(back_populates="artifacts")


class Worker(Base):
    """A registered worker process and the job it is running."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    devices: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    current_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
    )


class ApiToken(Base):
    """An API token with its scope and expiry; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    scope: Mapped[str] = mapped_column(String(16), default="submit", server_default="admin")
    """`read`, `submit` or `admin` (app.tokens.TokenScope); tokens from before scopes existed
    keep the full rights they had (admin)."""
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    """After this moment the token is refused; None = never expires."""
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


INSERTION_COLUMNS: dict[str, tuple[str, str, int | None]] = {
    "grad_norm_sq_train": ("descent", "grad_norm_sq_train", None),
    "grad_norm_sq_val": ("descent", "grad_norm_sq_val", None),
    "grad_norm_sq_unbiased": ("descent", "grad_norm_sq_unbiased", None),
    "grad_norm_sq_test_limit": ("descent", "grad_norm_sq_test_limit", None),
    "confidence": ("descent", "confidence", None),
    "nonzero_gradient": ("descent", "nonzero_gradient", None),
    "certificate_source": ("descent", "certificate_source", None),
    "certificate_batches": ("descent", "certificate_batches", None),
    "grad_norm_sq_unbiased_train": ("descent", "grad_norm_sq_unbiased_train", None),
    "grad_norm_sq_test_limit_train": ("descent", "grad_norm_sq_test_limit_train", None),
    "cosine_train_val": ("descent", "cosine_train_val", None),
    "predicted_val_risk_delta": ("descent", "predicted_val_risk_delta", None),
    "certificate_risk_decrease": ("certificate", "risk_decrease", None),
    "certificate_risk_decrease_low": ("certificate", "risk_decrease_ci", 0),
    "certificate_risk_decrease_high": ("certificate", "risk_decrease_ci", 1),
    "certificate_p_value": ("certificate", "p_value", None),
    "certificate_verdict": ("certificate", "verdict", None),
    "jumpboard_step": ("jumpboard", "step", None),
    "jumpboard_test_risk_delta": ("jumpboard", "test_risk_delta", None),
    "base_test_risk": ("realized", "base_test_risk", None),
    "expanded_test_risk": ("realized", "expanded_test_risk", None),
    "control_test_risk": ("realized", "control_test_risk", None),
    "gain_vs_control": ("realized", "gain_vs_control", None),
    "gain_ci_low": ("realized", "gain_ci", 0),
    "gain_ci_high": ("realized", "gain_ci", 1),
}
"""Flattened insertion columns and where each lives in the nested record (section, key, and the
index into a [low, high] pair or None)."""


class Dataset(Base):
    """A researcher's uploaded data set: a checked file stored content-addressed (sha256) under
    the artifact folder, with what the spec needs to know about it."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("sha256", name="uq_datasets_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    """The uploaded file's name (a label; the content address identifies the data)."""
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    """`npz` or `image_archive` (expansion.userdata.arrays.DataFormat)."""
    file_name: Mapped[str] = mapped_column(String(255))
    """The stored file, relative to `Settings.dataset_dir`: `<sha256>.<npz|tar|zip>`."""
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    input_shape: Mapped[list[int]] = mapped_column(JsonType)
    num_classes: Mapped[int] = mapped_column(Integer)
    train_size: Mapped[int] = mapped_column(Integer)
    """Training examples, the given validation examples not included."""
    val_size: Mapped[int] = mapped_column(Integer, default=0)
    test_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
