"""Server-rendered web pages: job list, job detail, results across jobs, submit form."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    """The landing page (placeholder until the job list lands)."""
    return HTMLResponse("<!doctype html><title>Jumpboard</title><h1>Jumpboard</h1>")
