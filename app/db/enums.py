"""Closed sets of the job table as string enums (torch-free; shared by queue, worker, models).

Members are `StrEnum`s, so they compare equal to the plain strings stored in the database and
sent over the API (`JobStatus.QUEUED == "queued"`).
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """Where a job is in its life: waiting, running, or one of three final states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        """True for the final states (succeeded, failed, cancelled)."""
        return self in FINISHED_JOB_STATUSES


FINISHED_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
"""The statuses a job never leaves."""


class JobKind(enum.StrEnum):
    """What a job runs (the spec's `kind`)."""

    TRAIN = "train"
    EXPAND = "expand"
    GROW = "grow"
    SWEEP = "sweep"
    SWEEP_POINT = "sweep_point"
