"""`expand.base_job`: expanding the base network of a finished job, resolved when the job is
submitted (before any training), so that what the spec determines fails as a 422, not late.

The submitted spec takes its `model`, `data` and `train` sections from the base job where it
leaves them out; an expand base job that itself started from a base job is followed to the job
that trained the network. The base must have finished, hold its checkpoint, and match: the same
model (a grow job's grown depth) and the same data splits, so the certificate split is one the
base never trained on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db.enums import JobStatus
from app.db.models import Job
from expansion.specs.base_match import (
    BASE_CHECKPOINTS,
    base_checkpoint,
    model_mismatches,
    split_mismatches,
)
from expansion.specs.experiments import AnyExperiment, ExpandExperiment

BASE_KINDS = ("train", "expand", "grow")
"""Kinds of job whose network an expand job can start from."""
INHERITED_SECTIONS = ("model", "data", "train")
MAX_CHAIN = 32
"""Longest chain of expand jobs followed to the job that trained the base."""


def _base_job_id(raw: Any) -> int | None:
    if not isinstance(raw, dict) or raw.get("kind") != "expand":
        return None
    expand = raw.get("expand")
    value = expand.get("base_job") if isinstance(expand, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _trained_by(session: Session, job: Job) -> Job:
    """The job that trained `job`'s base: itself, or the end of a chain of expand jobs that
    started from a base job."""
    for _ in range(MAX_CHAIN):
        parent = (job.spec.get("expand") or {}).get("base_job") if job.kind == "expand" else None
        found = session.get(Job, parent) if isinstance(parent, int) else None
        if found is None:
            return job
        job = found
    return job


def _grown_model(job: Job) -> dict[str, Any]:
    """A job's model section as its network is: a grow job's at its grown depth."""
    model = dict(job.spec.get("model") or {})
    depths = ((job.result or {}).get("grow") or {}).get("final_depths")
    if job.kind == "grow" and isinstance(depths, list) and depths and len(set(depths)) == 1:
        model["depth"] = depths[0]
    return model


def with_base_job(session: Session, raw: Any) -> Any:
    """`raw` with the base job resolved: its id moved to the job that trained the network, and
    the sections the spec leaves out taken from that job. Unchanged without a base job, or
    when it does not exist (`base_job_problems` names that)."""
    job_id = _base_job_id(raw)
    job = session.get(Job, job_id) if job_id is not None else None
    if job is None:
        return raw
    trained = _trained_by(session, job)
    out = copy.deepcopy(raw)
    out["expand"]["base_job"] = trained.id
    for section in INHERITED_SECTIONS:
        if section not in out:
            source = _grown_model(trained) if section == "model" else trained.spec.get(section)
            if isinstance(source, dict):
                out[section] = copy.deepcopy(source)
    return out


def base_job_problems(session: Session, spec: AnyExperiment, artifact_dir: Path) -> list[str]:
    """`expand.base_job: reason` for each way the base job cannot serve this spec."""
    if not isinstance(spec, ExpandExperiment) or spec.expand.base_job is None:
        return []
    job_id = spec.expand.base_job
    job = session.get(Job, job_id)
    where = "expand.base_job"
    if job is None:
        return [f"{where}: no job {job_id}"]
    if job.kind not in BASE_KINDS:
        return [f"{where}: job {job_id} is a {job.kind} job; a base comes from {BASE_KINDS}"]
    if job.status != JobStatus.SUCCEEDED:
        return [f"{where}: job {job_id} is {job.status}, not succeeded: it has no trained base"]
    if base_checkpoint(artifact_dir / str(job_id)) is None:
        return [f"{where}: job {job_id} kept no network ({' or '.join(BASE_CHECKPOINTS)})"]
    differ = model_mismatches(_grown_model(job), spec.model)
    differ += split_mismatches(job.spec.get("data") or {}, spec.data)
    if differ:
        return [
            f"{where}: job {job_id}'s base does not match this spec: {'; '.join(differ)} "
            "(leave model and data out to take the base job's; the certificate split must be "
            "one the base never trained on: train it with data.certify_fraction set)"
        ]
    return []
