"""Results kept on disk through a database outage (issue 25), and their recovery by a worker
that starts after the one that kept them died.

A worker whose job finished while the database was unreachable past the lease writes the
result to `PENDING_RESULT_FILE` in the job's folder and stores it when the database is back
(`app.worker.loop.Worker._keep_result`). If that worker is killed first, the file is all that
is left of the work: a worker starting on the same artifact folder stores it with the same
guarded write (`app.queue.store_pending_result`), which succeeds only if no other attempt of
the job has started since, and removes the file either way once the database has answered.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app import queue

log = logging.getLogger(__name__)

PENDING_RESULT_FILE = ".pending-result.json"
"""The kept result's file name in the job's folder."""


@dataclass(frozen=True)
class KeptResult:
    """A finished attempt's result waiting for the database: enough to store it under the
    attempt's own guard."""

    claim: queue.ClaimedJob
    result: dict[str, Any]
    metrics: list[queue.MetricPoint]
    artifacts: list[dict[str, Any]] | None


def write_kept_result(path: Path, kept: KeptResult) -> None:
    """Write `kept` to `path` atomically (a partial file is never read as a result)."""
    document = {
        "job_id": kept.claim.job_id,
        "attempt": kept.claim.attempt,
        "lease_token": kept.claim.lease_token,
        "worker_id": kept.claim.worker_id,
        "result": kept.result,
        "metrics": kept.metrics,
        "artifacts": kept.artifacts,
    }
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(document, default=str))
    partial.replace(path)


def read_kept_result(path: Path) -> KeptResult:
    """The kept result in `path`; ValueError when the file is not one."""
    try:
        document = json.loads(path.read_text())
        claim = queue.ClaimedJob(
            job_id=int(document["job_id"]),
            lease_token=str(document["lease_token"]),
            worker_id=str(document["worker_id"]),
            spec={},
            attempt=int(document["attempt"]),
            max_attempts=int(document["attempt"]),
            lease_seconds=0.0,
            lease_expires_at=dt.datetime.now(dt.UTC),
        )
        metrics = [
            (int(step), str(split), str(name), float(value))
            for step, split, name, value in document.get("metrics") or []
        ]
        artifacts = document.get("artifacts")
        result = document["result"]
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a kept result ({exc})") from None
    if not isinstance(result, dict) or not (artifacts is None or isinstance(artifacts, list)):
        raise ValueError(f"{path}: not a kept result")
    return KeptResult(claim, result, metrics, artifacts)


def recover_kept_results(
    sessions: sessionmaker[Session], artifact_dir: Path
) -> list[tuple[int, queue.PendingResultOutcome]]:
    """Store every result a dead worker kept in `artifact_dir/<job>/` (stored, or discarded
    because another attempt started: the job says so), removing each file once the database
    has decided; a connection error is raised, leaving the files for the next try."""
    outcomes = []
    for path in sorted(artifact_dir.glob(f"*/{PENDING_RESULT_FILE}")):
        try:
            kept = read_kept_result(path)
        except ValueError as exc:
            log.warning("%s; left in place", exc)
            continue
        outcome = queue.store_pending_result(
            sessions,
            kept.claim,
            kept.result,
            job_dir=path.parent,
            metrics=kept.metrics,
            artifacts=kept.artifacts,
        )
        path.unlink(missing_ok=True)
        log.warning(
            "job %s: a result kept by a worker that stopped was %s",
            kept.claim.job_id,
            outcome,
        )
        outcomes.append((kept.claim.job_id, outcome))
    return outcomes
