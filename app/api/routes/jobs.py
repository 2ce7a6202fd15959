"""Jobs: submit a spec, list, get, cancel, and read a job's metrics, insertions and artifacts."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response
from fastapi.responses import FileResponse
from sqlalchemy import select

from app.api.artifact_download import artifact_response
from app.api.deps import ReadAccess, SessionDep, SettingsDep, TokenDep
from app.api.job_resource import get_job_or_404, job_out, live_offer
from app.api.pagination import MAX_PAGE, decode_cursor, encode_cursor
from app.api.schemas import (
    BODY_ERRORS,
    JOB_ERRORS,
    JOB_WRITE_ERRORS,
    ArtifactList,
    ArtifactOut,
    ErrorOut,
    InsertionList,
    InsertionOut,
    JobId,
    JobList,
    JobOut,
    MetricSeries,
    MetricsOut,
    bounded_text,
)
from app.bounded_input import nesting_depth_problem
from app.db.enums import JobKind, JobStatus
from app.db.models import Artifact, Insertion, Job, Metric
from app.queue import cancel_job, enqueue_job
from app.services.spec_intake import accept_spec
from app.urls import artifact_path, job_path
from expansion.results.older_results import current_record
from expansion.specs.problems import SpecError

log = logging.getLogger(__name__)


router = APIRouter(prefix="/jobs", tags=["jobs"])


MAX_PRIORITY = 1000


def _spec_problems(problems: list[str]) -> HTTPException:
    """A 422 listing every problem with its field path (from `SpecError.problems`).

    Messages and field names are cut to MAX_ERROR_TEXT characters: a problem may quote the
    input (an unknown key, a bad value), and the answer must stay small whatever was sent."""
    detail = []
    for line in problems:
        path, sep, msg = line.partition(": ")
        if not sep:
            path, msg = "spec", line
        loc: list[str | int] = ["body"]
        loc += [
            int(p) if p.isascii() and p.isdigit() and len(p) < 10 else bounded_text(p)
            for p in path.split(".")
            if p and p != "spec"
        ]
        detail.append({"loc": loc, "msg": bounded_text(msg), "type": "value_error"})
    return HTTPException(status_code=422, detail=detail)


def _split_submission(body: Any) -> tuple[Any, int]:
    """(raw spec, priority) from either `{"spec": {...}, "priority": n}` or a bare spec."""
    if not isinstance(body, dict):
        raise _spec_problems([f"spec: must be a JSON object, not {type(body).__name__}"])
    problem = nesting_depth_problem(body)
    if problem:
        raise _spec_problems([f"spec: {problem}"])
    raw = dict(body)
    if isinstance(raw.get("spec"), dict):
        extra = sorted(set(raw) - {"spec", "priority"})
        if extra:
            raise _spec_problems([f"{key}: unknown key" for key in extra])
        spec_raw = raw["spec"]
    else:
        spec_raw = raw
    priority = raw.pop("priority", 0) if spec_raw is raw else raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise _spec_problems(["priority: must be an integer"])
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise _spec_problems([f"priority: must be between {-MAX_PRIORITY} and {MAX_PRIORITY}"])
    return spec_raw, priority


_SUBMISSION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/JobSubmission"},
                        {"$ref": "#/components/schemas/ExperimentSpec"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses={**JOB_WRITE_ERRORS, **BODY_ERRORS},
    openapi_extra=_SUBMISSION_BODY,
)
def submit_job(
    body: Annotated[Any, Body()],
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    _: TokenDep,
) -> JobOut:
    """Queue an experiment: the body is a spec, or `{"spec": ..., "priority": n}`."""
    raw, priority = _split_submission(body)
    try:
        spec = accept_spec(raw, settings, session)
    except SpecError as exc:
        raise _spec_problems(exc.problems) from None
    job = enqueue_job(
        session,
        spec,
        priority=priority,
        max_attempts=settings.max_attempts,
    )
    log.info("job %s queued (%s, %s)", job.id, job.kind, job.name or "unnamed")
    response.headers["Location"] = job_path(job.id)
    return job_out(job, live_offer(session, settings))


@router.get("", response_model=JobList, dependencies=[ReadAccess], responses=JOB_ERRORS)
def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    kind: Annotated[JobKind | None, Query(description="Only jobs of this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="From `next_cursor`.")] = None,
) -> JobList:
    """Jobs, newest first, one page at a time."""
    query = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if cursor:
        query = query.where(Job.id < decode_cursor(cursor))
    rows = list(session.scalars(query))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    offer = live_offer(session, settings)
    return JobList(items=[job_out(j, offer) for j in rows[:limit]], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, dependencies=[ReadAccess], responses=JOB_ERRORS)
def get_job(session: SessionDep, settings: SettingsDep, job_id: JobId) -> JobOut:
    """One job."""
    return job_out(get_job_or_404(session, job_id), live_offer(session, settings))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={
        **JOB_WRITE_ERRORS,
        409: {"model": ErrorOut, "description": "The job already ended."},
    },
)
def cancel(session: SessionDep, job_id: JobId, _: TokenDep) -> JobOut:
    """Cancel a job: a queued job never starts, a running one is asked to stop."""
    job = get_job_or_404(session, job_id)
    if job.is_finished:
        raise HTTPException(status_code=409, detail=f"job {job_id} already {job.status}")
    session.commit()  # end the read transaction: cancel_job starts a write transaction
    return job_out(cancel_job(session, job_id))


@router.get(
    "/{job_id}/metrics", response_model=MetricsOut, dependencies=[ReadAccess], responses=JOB_ERRORS
)
def job_metrics(
    session: SessionDep,
    job_id: JobId,
    name: Annotated[str | None, Query(max_length=64, description="Only this metric.")] = None,
    split: Annotated[str | None, Query(max_length=16, description="Only this split.")] = None,
) -> MetricsOut:
    """A job's time series, grouped by split and name, in step order."""
    get_job_or_404(session, job_id)
    query = select(Metric.split, Metric.name, Metric.step, Metric.value).where(
        Metric.job_id == job_id
    )
    if name is not None:
        query = query.where(Metric.name == name)
    if split is not None:
        query = query.where(Metric.split == split)
    grouped: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for row in session.execute(query.order_by(Metric.split, Metric.name, Metric.step, Metric.id)):
        grouped[(row.split, row.name)].append((row.step, row.value))
    series = [MetricSeries(split=s, name=n, points=p) for (s, n), p in grouped.items()]
    return MetricsOut(job_id=job_id, series=series)


@router.get(
    "/{job_id}/insertions",
    response_model=InsertionList,
    dependencies=[ReadAccess],
    responses=JOB_ERRORS,
)
def job_insertions(session: SessionDep, job_id: JobId) -> InsertionList:
    """A job's insertion records, by position then seed."""
    get_job_or_404(session, job_id)
    rows = session.scalars(
        select(Insertion)
        .where(Insertion.job_id == job_id)
        .order_by(Insertion.position, Insertion.seed)
    )
    items = [
        InsertionOut(
            job_id=r.job_id,
            position=r.position,
            seed=r.seed,
            certificate_verdict=r.certificate_verdict,
            nonzero_gradient=r.nonzero_gradient,
            gain_vs_control=r.gain_vs_control,
            record=current_record(r.record),
        )
        for r in rows
    ]
    return InsertionList(job_id=job_id, items=items)


@router.get(
    "/{job_id}/artifacts",
    response_model=ArtifactList,
    dependencies=[ReadAccess],
    responses=JOB_ERRORS,
)
def job_artifacts(session: SessionDep, job_id: JobId) -> ArtifactList:
    """The files a job registered."""
    get_job_or_404(session, job_id)
    rows = session.scalars(
        select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)
    )
    items = [
        ArtifactOut(
            name=a.name,
            size=a.size,
            sha256=a.sha256,
            url=artifact_path(job_id, a.name),
        )
        for a in rows
    ]
    return ArtifactList(job_id=job_id, items=items)


def artifact_name_problem(name: str) -> str | None:
    """Why `name` cannot be an artifact name (a plain file name), or None when it can."""
    if not name or len(name) > 255:
        return "must be 1 to 255 characters"
    if "\x00" in name:
        return "must not contain NUL"
    if "/" in name or "\\" in name:
        return "must not contain slashes or backslashes"
    if name in (".", "..") or ".." in name:
        return "must not contain '..'"
    if Path(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "must not be an absolute path"
    return None


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_class=FileResponse,
    dependencies=[ReadAccess],
    responses={
        **JOB_ERRORS,
        200: {"content": {"application/octet-stream": {}}, "description": "The file."},
        307: {"description": "Redirect to a presigned object-store URL (artifact_serve)."},
        400: {"model": ErrorOut, "description": "Not a plain file name."},
        503: {"model": ErrorOut, "description": "The artifact store is unavailable."},
    },
)
def download_artifact(
    session: SessionDep, settings: SettingsDep, job_id: JobId, name: str
) -> Response:
    """Stream one registered file of a job: from its folder (confined to it) or from the
    object store (sha256 checked as it streams), or redirect to a presigned URL."""
    problem = artifact_name_problem(name)
    if problem:
        raise HTTPException(status_code=400, detail=f"artifact name {problem}")
    get_job_or_404(session, job_id)
    row = session.scalars(
        select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name)
    ).first()
    if row is None:
        raise HTTPException(status_code=404, detail=f"job {job_id} has no artifact {name!r}")
    return artifact_response(settings, row)
