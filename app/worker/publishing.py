"""A finished attempt's files into the artifact store, patiently: an object store that refuses
them is retried with backoff while the worker keeps the job's lease, so a short outage of the
store delays a job instead of failing it (the caller hands the job back when patience runs out).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app import queue
from app.artifacts import ArtifactStore, ArtifactStoreError

log = logging.getLogger(__name__)

FIRST_RETRY_DELAY_S = 0.5
"""Wait before the first retry of a refused upload; it doubles up to the heartbeat interval."""


def result_file_names(folder: Path, result: dict[str, Any]) -> list[str]:
    """The files a result names as artifacts, plus `result.json` when the job wrote one."""
    names = [str(name) for name in result.get("artifacts") or []]
    if (folder / "result.json").is_file():
        names.append("result.json")
    return names


def publish_attempt(
    store: ArtifactStore,
    sessions: sessionmaker[Session],
    claim: queue.ClaimedJob,
    folder: Path,
    result: dict[str, Any],
    *,
    patience_s: float,
    max_delay_s: float,
) -> list[dict[str, Any]] | None:
    """Publish the attempt's files and return their `artifacts` rows; None when the lease was
    lost while waiting for the store. Raises ArtifactStoreError once `patience_s` is spent."""
    names = result_file_names(folder, result)
    deadline = time.monotonic() + patience_s
    delay = min(FIRST_RETRY_DELAY_S, max_delay_s)
    while True:
        try:
            records = store.publish(claim.job_id, claim.attempt, folder, names)
            return [record.as_row() for record in records]
        except ArtifactStoreError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("job %s: %s; retrying in %.1f s", claim.job_id, exc, delay)
        time.sleep(delay)
        try:
            held = queue.heartbeat(
                sessions, claim, 1.0, "storing", message="waiting for the artifact store"
            )
        except SQLAlchemyError:
            held = True  # unknown: the lease-guarded final write decides
        if not held:
            return None
        delay = min(2 * delay, max_delay_s)
