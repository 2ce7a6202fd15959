"""A job's live progress as server-sent events (`GET /jobs/{id}/events`), with a per-client
limit on open streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from app.api.deps import ReadAccess
from app.api.schemas import (
    JOB_ERRORS,
    ErrorOut,
    JobId,
)
from app.db.models import FINISHED_STATUSES, Job
from app.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

_SSE_SEP = "\n"
"""Plain newlines between event fields (what line-based clients and the tests split on)."""


class EventStreamLimiter:
    """Counts open live-progress streams, server-wide and per client address.

    A stream holds no database connection between polls, but each one still costs a poll
    every `sse_poll_seconds`: the counts bound that cost whatever clients do."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total, self.max_per_client = max_total, max_per_client
        self.total = 0
        self.per_client: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def acquire(self, client: str) -> Callable[[], None]:
        """Count one more stream of `client` and return its (idempotent) release.

        HTTPException 503 when the server holds its maximum, 429 when this client does."""
        with self._lock:
            if self.total >= self.max_total:
                raise HTTPException(
                    status_code=503,
                    detail=f"too many live-progress streams open ({self.max_total}); retry later",
                    headers={"Retry-After": "10"},
                )
            if self.per_client[client] >= self.max_per_client:
                raise HTTPException(
                    status_code=429,
                    detail=(
                        f"this client already has {self.max_per_client} live-progress streams "
                        "open; close one first"
                    ),
                    headers={"Retry-After": "10"},
                )
            self.total += 1
            self.per_client[client] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self.total -= 1
                self.per_client[client] -= 1
                if self.per_client[client] <= 0:
                    del self.per_client[client]

        return release


def event_stream_limiter(request: Request) -> EventStreamLimiter:
    """The app's stream limiter (created on first use from the app's settings)."""
    state = request.app.state
    limiter = getattr(state, "event_streams", None)
    if limiter is None:
        settings: Settings = state.settings
        limiter = EventStreamLimiter(
            settings.max_event_streams, settings.max_event_streams_per_client
        )
        state.event_streams = limiter
    return limiter


@router.get(
    "/{job_id}/events",
    dependencies=[ReadAccess],
    responses={
        **JOB_ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "The event stream."},
        429: {"model": ErrorOut, "description": "This client has too many streams open."},
        503: {"model": ErrorOut, "description": "The server has too many streams open."},
    },
    response_class=EventSourceResponse,
)
async def job_events(request: Request, job_id: JobId) -> EventSourceResponse:
    """Server-sent events: `status` and `progress` as they change, then `end` (bounded lifetime).

    No database session is held while the stream is open: each poll opens a short session
    of its own and closes it. Streams are bounded per client (429) and server-wide (503)."""
    state = request.app.state
    first = await run_in_threadpool(_job_snapshot, state.session_factory, job_id)
    if first is None:
        raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    client = request.client.host if request.client else "unknown"
    release = event_stream_limiter(request).acquire(client)
    return EventSourceResponse(
        _event_stream(request, job_id, first, release),
        headers={"Cache-Control": "no-cache"},
        ping=15,
        sep=_SSE_SEP,
        # Releasing here too covers a client gone before the generator ever started.
        background=BackgroundTask(release),
    )


def _job_snapshot(session_factory: Any, job_id: int) -> dict[str, Any] | None:
    with session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        return {
            "id": job.id,
            "status": job.status,
            "progress": job.progress,
            "stage": job.stage,
            "message": job.message,
            "cancel_requested": job.cancel_requested,
            "error": job.error,
        }


def _sse(event: str, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data), event=event, sep=_SSE_SEP)


async def _event_stream(
    request: Request,
    job_id: int,
    first: dict[str, Any],
    release: Callable[[], None],
) -> AsyncIterator[ServerSentEvent]:
    """Poll the job row and emit what changed until the job ends or the lifetime is over."""
    state = request.app.state
    poll, lifetime = float(state.sse_poll_seconds), float(state.sse_max_seconds)
    deadline = time.monotonic() + lifetime
    last: dict[str, Any] | None = None
    snap: dict[str, Any] | None = first
    try:
        yield ServerSentEvent(retry=2000, sep=_SSE_SEP)
        while True:
            if snap is None:
                yield _sse("end", {"id": job_id, "status": "deleted"})
                return
            if last is None or snap["status"] != last["status"]:
                yield _sse("status", snap)
            elif snap != last:
                yield _sse("progress", snap)
            last = snap
            if snap["status"] in FINISHED_STATUSES:
                yield _sse("end", snap)
                return
            if time.monotonic() >= deadline:
                # Clients reconnect (the `retry` above) and get a fresh lifetime.
                yield _sse("timeout", {"id": job_id, "after_seconds": lifetime})
                return
            await asyncio.sleep(poll)
            snap = await run_in_threadpool(_job_snapshot, state.session_factory, job_id)
    finally:
        release()
