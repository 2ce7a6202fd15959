"""Claim-then-finish throughput of Jumpboard's queue against procrastinate and pgqueuer on the
same workload, in one run (part of `benchmarks/queue.py`; the two others are the `bench` extra).

Each round gives each queue a fresh database holding `jobs` queued no-op jobs, then starts
`workers` processes (forked, one connection each) that drain it one job per claim: Jumpboard's
`claim_next_job` then `complete_job` (what a worker does around a job), procrastinate's worker
(`run_worker_async(concurrency=1, wait=False)`: its fetch and finish stored functions) and
pgqueuer's `QueueManager.run(batch_size=1, mode=drain)` on psycopg. The clock starts when
every process is connected and stops when the database shows every job finished (read every
20 ms from another connection). Rounds alternate the queues so that changing machine load
hits all of them alike; the table gives each queue's median jobs/s and its ratio to Jumpboard's.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from app import queue
from app.db.migrate import upgrade
from app.db.models import Job, utcnow
from app.db.session import dispose_engines, forget_engine, session_factory
from app.queue.wakeups import libpq_conninfo

SPEC = {"kind": "train", "model": {"kind": "mlp"}}
POLL_S = 0.02
"""How often the parent counts finished jobs."""


def _conninfo(url: str) -> str:
    info = libpq_conninfo(url)
    assert info is not None, "PostgreSQL only"
    return info


# --------------------------------------------------------------------------- Jumpboard


def jumpboard_prepare(url: str, jobs: int) -> None:
    """Migrate and queue `jobs` jobs."""
    upgrade(url)
    now = utcnow()
    row = {
        "name": "",
        "kind": "train",
        "spec": SPEC,
        "status": "queued",
        "priority": 0,
        "attempts": 0,
        "max_attempts": 3,
        "progress": 0.0,
        "stage": "queued",
        "message": "",
        "cancel_requested": False,
        "created_at": now,
    }
    with session_factory(url)() as session:
        session.execute(insert(Job), [dict(row) for _ in range(jobs)])
        session.commit()
        session.execute(text("ANALYZE jobs"))
        session.commit()
    forget_engine(url)


def jumpboard_drain(url: str, index: int, barrier: Any) -> None:
    """Claim and complete until the queue is empty."""
    dispose_engines(close=False)
    sessions = session_factory(url, pre_ping=False)
    barrier.wait()
    while (claim := queue.claim_next_job(sessions, f"bench{index}", 60)) is not None:
        queue.complete_job(sessions, claim, {"kind": "train", "test_risk": 0.5})


JUMPBOARD_DONE = "SELECT count(*) FROM jobs WHERE status = 'succeeded'"


# --------------------------------------------------------------------------- procrastinate


def _procrastinate_app(url: str, pool: int) -> Any:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=_conninfo(url), min_size=1, max_size=pool)
    )

    @app.task(name="noop")
    def noop() -> None:
        """Does nothing."""

    return app


def procrastinate_prepare(url: str, jobs: int) -> None:
    """Apply procrastinate's schema and defer `jobs` no-op jobs."""

    async def prepare() -> None:
        app = _procrastinate_app(url, 2)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            await app.tasks["noop"].batch_defer_async(*[{} for _ in range(jobs)])

    asyncio.run(prepare())


def procrastinate_drain(url: str, index: int, barrier: Any) -> None:
    """procrastinate's own worker, one job at a time, until the queue is empty."""

    async def drain() -> None:
        app = _procrastinate_app(url, 2)
        async with app.open_async():
            await asyncio.to_thread(barrier.wait)
            await app.run_worker_async(
                concurrency=1,
                wait=False,
                listen_notify=False,
                install_signal_handlers=False,
                name=f"bench{index}",
            )

    asyncio.run(drain())


PROCRASTINATE_DONE = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"


# --------------------------------------------------------------------------- pgqueuer


def pgqueuer_prepare(url: str, jobs: int) -> None:
    """Install pgqueuer's schema and enqueue `jobs` no-op jobs."""
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    async def prepare() -> None:
        async with await psycopg.AsyncConnection.connect(_conninfo(url), autocommit=True) as conn:
            queries = Queries(PsycopgDriver(conn))
            await queries.install()
            await queries.enqueue(["noop"] * jobs, [None] * jobs, [0] * jobs)

    asyncio.run(prepare())


def pgqueuer_drain(url: str, index: int, barrier: Any) -> None:
    """pgqueuer's queue manager, one job per dequeue, until the queue is empty."""
    import psycopg
    from pgqueuer import PsycopgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    async def drain() -> None:
        async with await psycopg.AsyncConnection.connect(_conninfo(url), autocommit=True) as conn:
            manager = QueueManager(Queries(PsycopgDriver(conn)))

            @manager.entrypoint("noop")
            async def noop(job: Any) -> None:
                """Does nothing."""

            await asyncio.to_thread(barrier.wait)
            await manager.run(
                batch_size=1,
                mode=QueueExecutionMode.drain,
                dequeue_timeout=timedelta(seconds=1),
                log_aggregation_interval=timedelta(0),
            )

    asyncio.run(drain())


PGQUEUER_DONE = "SELECT :jobs - count(*) FROM pgqueuer"
"""pgqueuer deletes a job's row when it finishes (its log keeps the outcome)."""


# --------------------------------------------------------------------------- harness

QUEUES: dict[str, tuple[Callable[[str, int], None], Callable[[str, int, Any], None], str]] = {
    "Jumpboard": (jumpboard_prepare, jumpboard_drain, JUMPBOARD_DONE),
    "procrastinate": (procrastinate_prepare, procrastinate_drain, PROCRASTINATE_DONE),
    "pgqueuer": (pgqueuer_prepare, pgqueuer_drain, PGQUEUER_DONE),
}


def _admin(admin_url: str, statement: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def one_round(admin_url: str, name: str, jobs: int, workers: int) -> float:
    """Jobs/s of queue `name` draining `jobs` jobs with `workers` processes."""
    prepare, drain, done_sql = QUEUES[name]
    database = f"jb_bench_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{database}"')
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    try:
        prepare(url, jobs)
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(workers + 1)
        procs = [ctx.Process(target=drain, args=(url, i, barrier)) for i in range(workers)]
        for proc in procs:
            proc.start()
        counter = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        with counter.connect() as conn:
            barrier.wait(120)
            start = time.perf_counter()
            while int(conn.execute(text(done_sql), {"jobs": jobs}).scalar_one()) < jobs:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError(f"{name}: every worker exited before the queue was done")
                time.sleep(POLL_S)
            elapsed = time.perf_counter() - start
        counter.dispose()
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
        return jobs / elapsed
    finally:
        forget_engine(url)
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def bench_lifecycle(admin_url: str, jobs: int, workers: int, rounds: int) -> dict[str, float]:
    """Median jobs/s per queue over `rounds` alternating rounds; prints the table."""
    figures: dict[str, list[float]] = {name: [] for name in QUEUES}
    for _ in range(rounds):
        for name in QUEUES:
            figures[name].append(one_round(admin_url, name, jobs, workers))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    base = medians["Jumpboard"]
    print(
        f"\nclaim then finish, {jobs} no-op jobs, {workers} processes, one job per claim, "
        f"{rounds} alternating rounds:\n"
    )
    print("| queue | jobs/s (median) | rounds | vs Jumpboard |")
    print("| --- | ---: | --- | ---: |")
    for name, values in figures.items():
        each = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {medians[name]:.0f} | {each} | {medians[name] / base:.2f}x |")
    return medians
