"""How the CLI shows jobs: a one-line summary, a detail block, and a progress bar that follows a
job until it ends. Shared by `submit`, `status` and `jobs`."""

from __future__ import annotations

import time
from typing import Any

from expansion.results.answer import answer_line

POLL_SECONDS = 1.0


def final_lines(job: dict[str, Any]) -> list[str]:
    """What follows a job's summary line: an expand job's answer, always the last line."""
    if job.get("kind") != "expand" or job.get("status") != "succeeded":
        return []
    return [answer_line(job.get("answer"))]


def describe_job(job: dict[str, Any]) -> str:
    """A one-line summary of a job: id, name, status, progress and headline numbers."""
    name = f" {job['name']}" if job.get("name") else ""
    parts = [f"job {job['id']}{name} ({job['kind']}): {job['status']}"]
    if job["status"] in ("queued", "running"):
        parts.append(f"{100 * (job.get('progress') or 0.0):.0f}%")
        if job.get("stage"):
            parts.append(f"stage {job['stage']}")
    summary = job.get("summary") or {}
    for key in ("test_risk", "test_error", "parameters"):
        if isinstance(summary.get(key), int | float):
            value = summary[key]
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    if job.get("cancel_requested") and job["status"] == "running":
        parts.append("cancel requested")
    if job.get("error"):
        parts.append(f"error: {str(job['error']).strip().splitlines()[-1][:200]}")
    if job.get("warning"):
        parts.append(f"warning: {job['warning']}")
    return ", ".join(parts)


def job_details(job: dict[str, Any], server: str) -> list[str]:
    """Lines of `jobs show`: state, timing, headline numbers and where to look further."""
    lines = [describe_job(job)]
    facts = [
        ("priority", job.get("priority")),
        ("attempts", f"{job.get('attempts')} of {job.get('max_attempts')}"),
        ("stage", job.get("stage") or None),
        ("message", job.get("message") or None),
        ("created", job.get("created_at")),
        ("started", job.get("started_at")),
        ("finished", job.get("finished_at")),
    ]
    for key, value in (job.get("summary") or {}).items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            facts.append((key, f"{value:.6g}" if isinstance(value, float) else value))
    for label, value in facts:
        if value is not None:
            lines.append(f"  {label + ':':<12}{value}")
    page = (job.get("links") or {}).get("page")
    if page:
        lines.append(f"  {'page:':<12}{server.rstrip('/')}{page}")
    if job.get("error"):
        lines.append("  error:")
        lines.extend(f"    {line}" for line in str(job["error"]).strip().splitlines()[-5:])
    return [*lines, *final_lines(job)]


def wait_for_job(
    client: Any, job: dict[str, Any], *, show_bar: bool = True, timeout: float | None = None
) -> dict[str, Any]:
    """Poll the job (progress bar on stderr) until it ends or `timeout` seconds pass; returns
    the latest job."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.client import TERMINAL_STATUSES

    deadline = None if timeout is None else time.monotonic() + timeout
    console = Console(stderr=True)
    columns = (
        TextColumn("job {task.fields[job_id]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]} {task.fields[stage]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not show_bar) as bar:
        task = bar.add_task(
            "job",
            total=1.0,
            job_id=job["id"],
            status=job["status"],
            stage=job.get("stage") or "",
        )
        bar.update(task, completed=float(job.get("progress") or 0.0))
        while job["status"] not in TERMINAL_STATUSES:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
            job = client.job(job["id"])
            bar.update(
                task,
                completed=float(job.get("progress") or 0.0),
                status=job["status"],
                stage=job.get("stage") or "",
            )
    return job
