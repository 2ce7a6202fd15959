"""The URL layout of the JSON API, in one place (the app, its links and the CLI client)."""

from __future__ import annotations

from urllib.parse import quote

API_PREFIX = "/api/v1"
"""Every JSON endpoint lives under this prefix."""


def job_path(job_id: int) -> str:
    """The API path of one job."""
    return f"{API_PREFIX}/jobs/{job_id}"


def artifact_path(job_id: int, name: str) -> str:
    """The API path that downloads one artifact of a job (the name URL-quoted)."""
    return f"{job_path(job_id)}/artifacts/{quote(name, safe='')}"


DATASETS_PATH = f"{API_PREFIX}/datasets"
"""The data set collection: uploads stream in here (multipart, field `file`)."""


def dataset_path(dataset_id: int) -> str:
    """The API path of one uploaded data set."""
    return f"{DATASETS_PATH}/{dataset_id}"
