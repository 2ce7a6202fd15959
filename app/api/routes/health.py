"""Liveness and readiness probes (`/healthz`, `/readyz`) for orchestrators and load balancers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.schemas import HealthOut

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
