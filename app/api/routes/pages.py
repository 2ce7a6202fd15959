"""Server-rendered web pages: job list, job detail, results across jobs, submit form.

The pages read the database directly (no HTTP round trip to the JSON API) and draw their
charts with the plotly.js bundle of the installed `plotly` package, served by the app itself
so that nothing loads from the internet. Jinja2 autoescapes every value.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import defer

from app.api.deps import SessionDep, SettingsDep
from app.api.job_resource import live_offer
from app.api.schemas import MAX_ID
from app.db.models import JOB_STATUSES, Job
from app.tokens import TokenScope, verify_token
from app.urls import API_PREFIX
from app.web.charts import CERTIFICATE_NOTE, scatter_chart
from app.web.compare import CompareError, build_compare_view, parse_job_ids
from app.web.job_view import build_job_view
from app.web.results import ResultFilters, collect_points, rank_correlation
from app.web.results_calibration import results_calibration
from app.web.submission import SubmissionError, submit_spec_text
from app.worker.registry import job_warning

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[2]
STATIC_DIR = APP_DIR / "static"
"""The app's own CSS and JavaScript, mounted at /static by `create_app` (`StaticAssets`)."""
JOB_LIST_LIMIT = 200
LIVE_REFRESH_SECONDS = 4


class StaticAssets(StaticFiles):
    """Starlette's StaticFiles, answered with `Cache-Control: no-cache`: browsers revalidate
    (ETag / Last-Modified, 304) on every load, so an upgraded app never runs stale CSS or JS."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        """The file (or 304) with the revalidation header."""
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


templates = Jinja2Templates(directory=str(APP_DIR / "templates"))
router = APIRouter(include_in_schema=False)


def _format_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _format_time(value: Any) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["num"] = _format_number
templates.env.filters["when"] = _format_time


@functools.cache
def _plotly_bundle() -> tuple[bytes, str]:
    import plotly
    import plotly.offline

    body = plotly.offline.get_plotlyjs().encode("utf-8")
    return body, f'"plotly-{plotly.__version__}-{hashlib.sha256(body).hexdigest()[:16]}"'


def _cached(request: Request, body: bytes, etag: str, media_type: str, max_age: int) -> Response:
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def plotly_version() -> str:
    """Version of the served plotly.js bundle (part of its URL, so upgrades bust caches)."""
    import plotly

    return str(plotly.__version__)


templates.env.globals["plotly_version"] = plotly_version
templates.env.globals["api_prefix"] = API_PREFIX


@router.get("/static/vendor/plotly.min.js")
def plotly_js(request: Request) -> Response:
    """plotly.js from the installed `plotly` package, cached for a year (versioned URL)."""
    body, etag = _plotly_bundle()
    return _cached(request, body, etag, "text/javascript", 31_536_000)


@router.get("/", response_class=HTMLResponse)
@router.get("/jobs", response_class=HTMLResponse)
def job_list(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[str, Query(max_length=16)] = "",
) -> HTMLResponse:
    """All jobs, newest first, optionally only those of one status."""
    problem = ""
    if status and status not in JOB_STATUSES:
        problem = f"unknown status {status!r}: choose one of {', '.join(JOB_STATUSES)}"
        status = ""
    query = select(Job).options(defer(Job.result), defer(Job.spec)).order_by(Job.id.desc())
    if status:
        query = query.where(Job.status == status)
    jobs = session.scalars(query.limit(JOB_LIST_LIMIT)).all()
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    live = any(job.status in ("queued", "running") for job in jobs)
    offer = live_offer(session, settings)
    return templates.TemplateResponse(
        request,
        "jobs.html",
        {
            "jobs": jobs,
            "warnings": {job.id: job_warning(job, offer) for job in jobs},
            "status": status,
            "statuses": JOB_STATUSES,
            "counts": counts,
            "problem": problem,
            "refresh": LIVE_REFRESH_SECONDS if live else 0,
            "limit": JOB_LIST_LIMIT,
        },
        status_code=400 if problem else 200,
    )


def _not_found(request: Request, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "not_found.html", {"message": message}, status_code=404
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    job_id: int, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """One job: spec, state, summary, curves, insertion chart and records, artifacts (a running
    expand job's finished stages included)."""
    job = session.get(Job, job_id)
    if job is None:
        return _not_found(request, f"There is no job {job_id}.")
    view = build_job_view(session, job, settings.job_dir(job.id))
    return templates.TemplateResponse(
        request,
        "job.html",
        {
            "view": view,
            "job": job,
            "warning": job_warning(job, live_offer(session, settings)),
            "note": CERTIFICATE_NOTE,
            "refresh": LIVE_REFRESH_SECONDS if view.live else 0,
            "cancel_error": request.query_params.get("cancel_error", "")[:300],
        },
    )


@router.get("/jobs/{job_id}/sweep", response_class=HTMLResponse)
def sweep_page(job_id: int, request: Request, session: SessionDep) -> HTMLResponse:
    """A sweep: test error and gap against depth per scaling rule, sensitivity, every point."""
    from app.web.sweep_view import build_sweep_view

    job = session.get(Job, job_id)
    if job is None or job.kind != "sweep":
        return _not_found(request, f"There is no sweep {job_id}.")
    view = build_sweep_view(session, job)
    return templates.TemplateResponse(
        request,
        "sweep.html",
        {"view": view, "job": job, "refresh": LIVE_REFRESH_SECONDS if view.live else 0},
    )


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    session: SessionDep,
    jobs: Annotated[list[str] | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """Two or more jobs side by side: answers, headline numbers, curves, spec differences.

    `jobs` is `1,2,3`, or repeated (`jobs=1&jobs=2`, the job list's checkboxes)."""
    jobs_text = ",".join(jobs or [])[:400]
    try:
        view = build_compare_view(session, parse_job_ids(jobs_text))
    except CompareError as exc:
        return templates.TemplateResponse(
            request,
            "compare.html",
            {"problem": str(exc), "jobs_text": jobs_text, "view": None},
            status_code=200 if exc.incomplete else 400,
        )
    return templates.TemplateResponse(
        request, "compare.html", {"problem": "", "jobs_text": jobs_text, "view": view}
    )


@router.post("/jobs/{job_id}/cancel")
def cancel_job_form(
    job_id: int,
    session: SessionDep,
    token: Annotated[str, Form(max_length=256)] = "",
) -> RedirectResponse:
    """The job page's cancel button: needs a token, like every change through the API."""
    from app.queue import cancel_job

    if session.get(Job, job_id) is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
    authorized = verify_token(session, token.strip(), TokenScope.SUBMIT) is not None
    session.commit()  # end the read transaction before writing (SQLite: no busy upgrade)
    if not authorized:
        return RedirectResponse(
            f"/jobs/{job_id}?cancel_error=invalid+or+missing+token", status_code=303
        )
    cancel_job(session, job_id)
    session.commit()
    log.info("job %s cancelled from the web page", job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/results", response_class=HTMLResponse)
def results_page(
    request: Request,
    session: SessionDep,
    data: Annotated[str, Query(max_length=32)] = "",
    model: Annotated[str, Query(max_length=32)] = "",
    verdict: Annotated[str, Query(max_length=16)] = "",
    job: Annotated[str, Query(max_length=12)] = "",
    group_by: Annotated[str, Query(max_length=100)] = "dataset",
) -> HTMLResponse:
    """Certificate vs realized gain across all jobs: scatter, rank correlation, table; and
    every predictor's calibration, grouped by configuration, with a scatter per predictor."""
    job_id = int(job) if job.strip().isascii() and job.strip().isdigit() else None
    if job_id is not None and job_id > MAX_ID:
        job_id = 0  # no stored job has it (ids are 1..MAX_ID): 0 matches none, and fits a query
    filters = ResultFilters(data=data, model=model, verdict=verdict, job=job_id)
    every_point = collect_points(session)
    points = [p for p in every_point if filters.accepts(p)]
    correlation = rank_correlation(points)
    return templates.TemplateResponse(
        request,
        "results.html",
        {
            "points": points,
            "total": len(every_point),
            "filters": filters,
            "job_filter": job,
            "datasets": sorted({p["data"] for p in every_point if p["data"]}),
            "models": sorted({p["model"] for p in every_point if p["model"]}),
            "correlation": correlation,
            "scatter": scatter_chart("results-chart", points),
            "note": CERTIFICATE_NOTE,
            **results_calibration(session, filters, group_by),
        },
    )


MAX_JOB_ID = 2**31 - 1


@router.get("/submit", response_class=HTMLResponse)
def submit_form(request: Request, base_job: str | None = None) -> HTMLResponse:
    """The spec submission form; `?base_job=ID` fills in an expand spec of that job's network
    (its model, data and train sections are taken from the job when the spec leaves them out)."""
    spec = ""
    job_id = int(base_job) if base_job is not None and base_job.isdigit() else 0
    if 1 <= job_id <= MAX_JOB_ID:
        spec = f"kind: expand\nname: expand job {job_id}\nexpand:\n  base_job: {job_id}\n"
    return templates.TemplateResponse(request, "submit.html", {"spec": spec, "problems": []})


@router.post("/submit", response_class=HTMLResponse)
def submit_post(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    spec: Annotated[str, Form(max_length=1 << 20)] = "",
    token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Validate the submitted spec and create the job, or show every problem next to the form."""
    try:
        job = submit_spec_text(session, settings, spec, token)
    except SubmissionError as exc:
        session.rollback()
        return templates.TemplateResponse(
            request,
            "submit.html",
            {"spec": spec, "problems": exc.problems},
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)
