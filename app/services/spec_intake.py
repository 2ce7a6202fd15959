"""A submitted spec becomes a typed experiment here, once, for the JSON API and the web form
alike: an uploaded data set it names resolved into the stored file, the spec's own checks, then
the compute budget (every sweep point against every limit).

What comes out is what travels on: the queue stores it, the worker runs it. Nothing downstream
parses the submission again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.db.session import begin_write
from app.services.base_job import base_job_problems, with_base_job
from app.services.datasets import UploadedDataProblem, resolve_uploaded
from app.settings import Settings
from expansion.specs.budget import budget_problems
from expansion.specs.experiments import AnyExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError

LOCAL_ONLY_DATA = ("npz", "folder")
"""Data read from a path on the machine that runs the spec: `jumpboard run` only. Over the API
a path would name a file on the service's hosts, which a client must not choose."""


def accept_spec(raw: Any, settings: Settings, session: Session | None = None) -> AnyExperiment:
    """The experiment `raw` describes, if it is valid and within the compute budget; else
    `SpecError` listing every problem, one `field: reason` line each.

    A spec naming an uploaded data set needs `session`: the data set's row is share-locked
    (PostgreSQL) until the caller commits the job, so it cannot be deleted in between. With a
    `session`, an `expand.base_job` is resolved and checked too (`app.services.base_job`).

    With a `session`, its transaction begins here as a writer (BEGIN IMMEDIATE on SQLite): the
    intake's reads and the caller's insert of the job are one transaction, so a worker's commit
    in between cannot turn the insert into SQLite's "database is locked" (a read snapshot
    cannot be upgraded to a write once another connection has written)."""
    if session is not None:
        begin_write(session)
        raw = with_base_job(session, raw)
    data = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(data, dict) and data.get("name") in LOCAL_ONLY_DATA:
        raise SpecError(
            [
                f"data.name: {data['name']} reads a path on the machine that runs the spec "
                "(jumpboard run); upload the data set (POST /api/v1/datasets, jumpboard "
                "datasets upload) and name it with data: {name: uploaded, id: ...}"
            ]
        )
    try:
        raw = resolve_uploaded(raw, session, settings)
    except UploadedDataProblem as exc:
        raise SpecError([str(exc)]) from None
    spec = parse_spec(raw)
    problems = budget_problems(spec, settings.compute_limits())
    if session is not None:
        problems += base_job_problems(session, spec, settings.artifact_dir)
    if problems:
        raise SpecError(problems)
    return spec
