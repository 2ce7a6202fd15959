"""Live progress streams under load: idle streams hold no database connection, and their number
is bounded per client (429) and server-wide (503), while the rest of the API keeps answering.

The app runs in a real uvicorn server on a loopback port (a streaming response needs a real
connection); every stream is a real HTTP request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import HTTPException

from app.api.main import create_app
from app.api.routes.events import EventStreamLimiter
from app.queue import enqueue_job
from app.settings import Settings
from app.tokens import TokenScope, create_token

TINY_SPEC: dict[str, Any] = {
    "kind": "train",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 8, "depth": 1},
    "train": {"epochs": 1},
}


@contextlib.contextmanager
def serve(settings: Settings, poll_seconds: float) -> Iterator[tuple[str, str, int]]:
    """(base URL, submit token, id of a queued job) of the app served on a free port."""
    app = create_app(settings)
    app.state.sse_poll_seconds = poll_seconds
    with app.state.session_factory() as session:
        _, token = create_token(session, "events", TokenScope.SUBMIT)
        job_id = enqueue_job(session, TINY_SPEC).id
        session.commit()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", token, job_id
    finally:
        server.should_exit = True
        thread.join(timeout=15)


_LINE_READERS: list[Any] = []
"""Line iterators of open streams: one dropped half-read is finalized, closing its stream."""


async def _open_stream(
    stack: contextlib.AsyncExitStack, client: httpx.AsyncClient, path: str
) -> httpx.Response:
    """Open one event stream; for a 200, wait for its first event (the stream is live)."""
    response = await stack.enter_async_context(client.stream("GET", path))
    if response.status_code == 200:
        lines = response.aiter_lines()
        _LINE_READERS.append(lines)
        async for line in lines:
            if line.startswith("event: status"):
                break
    return response


def test_hundred_idle_streams_leave_the_api_answering(db_url: str, tmp_path: Path) -> None:
    streams = 100
    settings = Settings(
        database_url=db_url,
        artifact_dir=tmp_path / "artifacts",
        max_event_streams=streams,
        max_event_streams_per_client=streams,
    )
    with serve(settings, poll_seconds=1.0) as (base, token, job_id):
        auth = {"Authorization": f"Bearer {token}"}

        async def scenario() -> None:
            limits = httpx.Limits(max_connections=streams + 20, max_keepalive_connections=0)
            # Before the fix each stream held a pooled connection in an open transaction:
            # after 15 (SQLite) or 30 (PostgreSQL) streams every request waited for the pool.
            timeout = httpx.Timeout(10.0)
            async with (
                httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client,
                contextlib.AsyncExitStack() as stack,
            ):
                path = f"/api/v1/jobs/{job_id}/events"
                opened = await asyncio.gather(
                    *(_open_stream(stack, client, path) for _ in range(streams))
                )
                assert [r.status_code for r in opened] == [200] * streams
                for _ in range(5):
                    assert (await client.get("/api/v1/jobs")).status_code == 200
                    assert (await client.get(f"/api/v1/jobs/{job_id}")).status_code == 200
                    metrics = await client.get(f"/api/v1/jobs/{job_id}/metrics")
                    assert metrics.status_code == 200
                created = await client.post("/api/v1/jobs", json=TINY_SPEC, headers=auth)
                assert created.status_code == 201, created.text
                cancelled = await client.post(
                    f"/api/v1/jobs/{created.json()['id']}/cancel", headers=auth
                )
                assert cancelled.status_code == 200
                ready = await client.get("/readyz")
                assert ready.status_code == 200
                # The server-wide bound: one stream more is refused, not queued.
                extra = await client.get(path)
                assert extra.status_code == 503
                assert extra.headers["retry-after"]

        asyncio.run(scenario())


def test_streams_are_bounded_per_client_and_need_the_read_token(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=sqlite_url,
        artifact_dir=tmp_path / "artifacts",
        max_event_streams=50,
        max_event_streams_per_client=2,
        require_token_for_reads=True,
    )
    with serve(settings, poll_seconds=1.0) as (base, token, job_id):
        auth = {"Authorization": f"Bearer {token}"}

        async def scenario() -> None:
            async with (
                httpx.AsyncClient(base_url=base, timeout=10.0) as client,
                contextlib.AsyncExitStack() as stack,
            ):
                path = f"/api/v1/jobs/{job_id}/events"
                assert (await client.get(path)).status_code == 401
                client.headers.update(auth)
                held = [await _open_stream(stack, client, path) for _ in range(2)]
                assert [r.status_code for r in held] == [200, 200]
                refused = await client.get(path)
                assert refused.status_code == 429
                assert "2 live-progress streams" in refused.json()["detail"]
                # Closing a stream gives its place back.
                await held[0].aclose()
                for _ in range(50):
                    again = await _open_stream(stack, client, path)
                    if again.status_code == 200:
                        break
                    await again.aclose()
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("a closed stream never gave its place back")

        asyncio.run(scenario())


def test_stream_limiter_counts_and_releases_once() -> None:
    limiter = EventStreamLimiter(max_total=3, max_per_client=2)
    a1, a2 = limiter.acquire("a"), limiter.acquire("a")
    with pytest.raises(HTTPException) as per_client:
        limiter.acquire("a")
    assert per_client.value.status_code == 429
    b1 = limiter.acquire("b")
    with pytest.raises(HTTPException) as total:
        limiter.acquire("c")
    assert total.value.status_code == 503
    a1()
    a1()  # a second release of the same stream changes nothing
    assert (limiter.total, dict(limiter.per_client)) == (2, {"a": 1, "b": 1})
    a2()
    b1()
    assert (limiter.total, dict(limiter.per_client)) == (0, {})
