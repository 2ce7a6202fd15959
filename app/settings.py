"""The service's one configuration object, read from `JUMPBOARD_*` environment variables.

Every process (API, worker, CLI) builds its settings through `get_settings()`; tests build
`Settings(...)` directly with explicit values.
"""

from __future__ import annotations

import enum
import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.devices import DEFAULT_LOCK_DIR, DeviceOffer, parse_devices
from expansion.specs.budget import ComputeLimits

DEFAULT_HOME = Path.home() / ".jumpboard"


def _default_database_url() -> str:
    return f"sqlite:///{DEFAULT_HOME / 'jumpboard.db'}"


class ArtifactServing(enum.StrEnum):
    """How the API hands out an artifact kept in an object store."""

    STREAM = "stream"
    """Through the API, its sha256 checked while it streams."""
    REDIRECT = "redirect"
    """A redirect to a short-lived presigned URL of the object store."""


class SettingsError(ValueError):
    """The configuration is invalid; the message names every offending setting."""


class Settings(BaseSettings):
    """Configuration of the service: database, storage, queue timing, API limits, workers."""

    model_config = SettingsConfigDict(
        env_prefix="JUMPBOARD_", extra="ignore", validate_assignment=True
    )

    database_url: str = Field(default_factory=_default_database_url)
    """SQLAlchemy URL: `sqlite:///path.db` or `postgresql+psycopg://user@host/db`."""
    artifact_dir: Path = DEFAULT_HOME / "artifacts"
    """Jobs write their files under `artifact_dir/<job_id>/` (the local artifact store)."""
    artifact_url: str | None = None
    """Where artifacts live when not in `artifact_dir`: an S3-compatible object store,
    `s3://bucket/prefix` (the `s3` extra). Jobs then write into a scratch folder, the worker
    uploads their files under `prefix/<job_id>/attempt-<n>/` and the API serves them from there;
    credentials come from the usual `AWS_*` variables (or the instance's role)."""
    artifact_endpoint: str | None = None
    """The object store's HTTP endpoint (MinIO, moto, Ceph, R2, ...); empty: AWS's own, or
    `AWS_ENDPOINT_URL` when set."""
    artifact_serve: ArtifactServing = ArtifactServing.STREAM
    """How the API serves an object-store artifact: streamed through the API with its sha256
    checked, or a redirect to a presigned URL (the client checks the sha256)."""
    artifact_upload_patience_seconds: float = Field(300.0, ge=0.0, le=86_400.0)
    """How long a worker keeps retrying (heartbeating its lease) when the object store refuses a
    finished job's files; after that the job is handed back to the queue, never failed."""
    scratch_dir: Path | None = None
    """Where jobs write their files before upload when `artifact_url` is set (default: the
    system's temporary folder); removed after each job."""
    data_dir: Path = DEFAULT_HOME / "data"
    """Data set cache (mnist1d) and local archives (cifar10)."""
    lease_seconds: float = Field(60.0, gt=0.0, le=86_400.0)
    """How long a claim stays valid without a heartbeat."""
    heartbeat_seconds: float = Field(10.0, gt=0.0, le=3_600.0)
    """How often a worker extends its lease (must be well below `lease_seconds`)."""
    max_attempts: int = Field(3, ge=1, le=100)
    """Claims of one job before it fails for good."""
    host: str = "127.0.0.1"
    """Address the API listens on."""
    port: int = Field(8000, ge=1, le=65_535)
    """Port the API listens on."""
    require_token_for_reads: bool = False
    """Require an API token for GET requests too (writes always need one)."""
    max_body_bytes: int = Field(1 << 20, ge=1_024, le=1 << 30)
    """Largest accepted request body."""
    max_parameters: int = Field(50_000_000, ge=1)
    """Largest model (parameters) a submitted spec may describe."""
    max_train_flops: float = Field(1e17, gt=0.0)
    """Compute budget of one job (estimated training FLOPs, teacher labelling included)."""
    max_data_bytes: int = Field(4 << 30, ge=1)
    """Largest data set (train + test, fp32 in memory) a submitted spec may describe."""
    max_activation_bytes: int = Field(32 << 30, ge=1)
    """Largest activation memory of one training step (batch x width x length x depth)."""
    max_event_streams: int = Field(200, ge=1, le=100_000)
    """Live-progress streams (`/jobs/{id}/events`) open at once, server-wide; more get 503."""
    max_event_streams_per_client: int = Field(16, ge=1, le=100_000)
    """Live-progress streams one client address may hold open at once; more get 429 (behind a
    reverse proxy, let uvicorn take the client from `X-Forwarded-For` or raise this)."""
    worker_devices: str = ""
    """Devices a worker offers its jobs: GPU indices it owns and pins jobs to (`0,1`), `cpu:N`
    (N CPU processes, GPUs hidden), or empty (one device, whatever the child sees); see
    `app.devices`."""
    device_lock_dir: Path = DEFAULT_LOCK_DIR
    """Folder of this host's GPU lock files: workers sharing a host must share it."""
    metrics_flush_seconds: float = Field(2.0, gt=0.0, le=600.0)
    """How often a worker writes buffered metrics and progress."""
    max_upload_bytes: int = Field(2 << 30, ge=1_024, le=1 << 40)
    """Largest uploaded data set file (`POST /api/v1/datasets`), counted while it streams in."""
    max_archive_members: int = Field(200_000, ge=1, le=100_000_000)
    """Most files an uploaded archive (image folder, `.npz`) may hold."""
    max_unpacked_bytes: int = Field(8 << 30, ge=1_024, le=1 << 44)
    """Most bytes an uploaded archive may unpack to (zip bombs are refused before unpacking)."""
    mlflow_tracking_uri: str = ""
    """Where jobs with `train.loggers: [mlflow]` log (an MLflow tracking URI); empty = a file
    store under the job's artifacts. Jobs read it from `JUMPBOARD_MLFLOW_TRACKING_URI`."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Logging level of the service processes."""

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("sqlite:", "sqlite+", "postgresql:", "postgresql+")):
            raise ValueError(
                "must be a sqlite:///... or postgresql+psycopg://... URL "
                f"(got {value.split('://')[0]!r})"
            )
        return value

    @field_validator("artifact_url")
    @classmethod
    def _object_store_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme, sep, rest = value.partition("://")
        if scheme != "s3" or not sep:
            raise ValueError(f"must be an s3://bucket/prefix URL (got scheme {scheme!r})")
        if not rest.split("/")[0]:
            raise ValueError("must name a bucket: s3://bucket/prefix")
        return value.rstrip("/")

    @field_validator("artifact_endpoint", "scratch_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("worker_devices")
    @classmethod
    def _device_list(cls, value: str) -> str:
        return str(parse_devices(value))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _heartbeat_below_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be below "
                f"lease_seconds ({self.lease_seconds}), or every lease expires"
            )
        return self

    @property
    def device_offer(self) -> DeviceOffer:
        """`worker_devices` parsed."""
        return parse_devices(self.worker_devices)

    def compute_limits(self) -> ComputeLimits:
        """The compute budget every submitted job (and every sweep point) must fit."""
        return ComputeLimits(
            max_parameters=self.max_parameters,
            max_train_flops=self.max_train_flops,
            max_data_bytes=self.max_data_bytes,
            max_activation_bytes=self.max_activation_bytes,
        )

    def job_dir(self, job_id: int) -> Path:
        """The folder a job writes its files into."""
        return self.artifact_dir / str(job_id)

    @property
    def dataset_dir(self) -> Path:
        """Where uploaded data sets are stored, content-addressed: `<sha256>.<npz|tar|zip>`."""
        return self.artifact_dir / "datasets"

    def ensure_dirs(self) -> None:
        """Create the artifact and data folders, and the SQLite file's folder."""
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = sqlite_path(self.database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?")[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus `overrides`; raises SettingsError naming each problem."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"JUMPBOARD_{field.upper()}" if field != "settings" else field
            problems.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
    settings.ensure_dirs()
    return settings


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (folders created)."""
    return load_settings()
