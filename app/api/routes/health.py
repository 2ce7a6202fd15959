"""Liveness and readiness probes (`/healthz`, `/readyz`) for orchestrators and load balancers,
and `/status`: the queue's depth and how many workers are alive."""

from __future__ import annotations

import datetime as dt
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from app.api.schemas import HealthOut, QueueStatusOut
from app.db.enums import JobStatus
from app.db.models import Job, utcnow
from app.worker.registry import count_live_workers, stale_after

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is up and answering."""
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The database cannot be reached."}},
)
def readyz(request: Request) -> HealthOut | JSONResponse:
    """The service can reach its database (503 when it cannot)."""
    try:
        with request.app.state.session_factory() as session:
            session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("readiness check failed: %s", exc)
        body = HealthOut(status="unavailable", database="unavailable", detail=type(exc).__name__)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(status="ok", database="ok")


@router.get(
    "/status",
    response_model=QueueStatusOut,
    responses={503: {"model": QueueStatusOut, "description": "The database cannot be reached."}},
)
def queue_status(request: Request) -> QueueStatusOut | JSONResponse:
    """Live workers (seen within one lease) and the queue's depth; 503 without a database."""
    silent_for = stale_after(request.app.state.settings)
    try:
        with request.app.state.session_factory() as session:
            alive, dead = count_live_workers(session, silent_for)
            counts: dict[str, int] = {
                status: count
                for status, count in session.execute(
                    select(Job.status, func.count())
                    .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                    .group_by(Job.status)
                )
            }
            oldest: dt.datetime | None = session.scalar(
                select(func.min(Job.created_at)).where(Job.status == JobStatus.QUEUED)
            )
    except (SQLAlchemyError, OSError) as exc:
        log.warning("status check failed: %s", exc)
        body = QueueStatusOut(
            status="unavailable", database="unavailable", detail=type(exc).__name__
        )
        return JSONResponse(body.model_dump(), status_code=503)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return QueueStatusOut(
        status="ok",
        database="ok",
        workers_alive=alive,
        workers_dead=dead,
        queued=int(counts.get(JobStatus.QUEUED, 0)),
        running=int(counts.get(JobStatus.RUNNING, 0)),
        oldest_queued_seconds=None
        if oldest is None
        else max(0.0, (utcnow() - oldest).total_seconds()),
    )
