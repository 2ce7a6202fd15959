"""Submit-to-start latency of idle workers, woken by PostgreSQL's NOTIFY or polling, and the
database's work meanwhile (part of `benchmarks/queue.py`).

Each idle worker is a thread running the worker's idle loop (`app.worker.loop.Worker`): claim
(`app.queue.claim_next_job`), and when the queue is empty touch its registry row (at most once
per heartbeat interval) and wait, either
on its own listening connection (`app.queue.wakeups.Wakeups`, the fallback poll a quarter lease)
or for the poll interval. With 1, 16 and 64 such workers idle, the benchmark first measures the
database's transactions per second while nothing is submitted (`pg_stat_database`, read from
another database so the reads are not counted), then submits jobs one at a time
at random gaps (0.1 s to 0.1 s plus the poll interval) and times each from just before
`enqueue_job` to the moment a worker's claim returned it.
Connections: one listening connection per worker (notify), plus shared pools for claims (10 at
most) and registry writes (4).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import queue
from app.db.migrate import upgrade
from app.db.session import forget_engine
from app.queue.wakeups import Wakeups
from app.worker import registry

SPEC = {"kind": "train", "model": {"kind": "mlp"}}
LEASE_S = 60.0
"""The default lease; a listening worker's fallback poll is a quarter of it."""
POLL_S = 2.0
"""`jumpboard worker`'s default poll interval."""
HEARTBEAT_S = 10.0
"""The default heartbeat interval: an idle worker touches its registry row at most this often."""
SETTLE_S = POLL_S + 0.5
"""Idle time after the workers start, before anything is measured."""


@dataclass
class WakeupFigures:
    """One setting's figures."""

    mode: str
    workers: int
    median_ms: float
    p90_ms: float
    max_ms: float
    idle_xacts_per_s: float
    xacts_per_job: float


class IdleWorkers:
    """`count` threads running the worker's idle loop; `claimed` maps job id -> claim time."""

    def __init__(self, url: str, count: int, notify: bool) -> None:
        self.url = url
        self.notify = notify
        self.stop = threading.Event()
        self.claimed: dict[int, float] = {}
        self.changed = threading.Condition()
        engine = create_engine(url, pool_size=4, max_overflow=0, pool_pre_ping=False)
        self.engine = engine
        self.sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)
        self.listening = threading.Barrier(count + 1)
        self.threads = [
            threading.Thread(target=self._loop, args=(f"bench-{i}",), daemon=True)
            for i in range(count)
        ]

    def __enter__(self) -> IdleWorkers:
        for thread in self.threads:
            thread.start()
        self.listening.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        self.engine.dispose()

    def _loop(self, worker_id: str) -> None:
        wakeups = Wakeups(self.url) if self.notify else None
        registry.register_worker(self.sessions, worker_id, "bench", 0, "")
        if wakeups is not None:
            wakeups.wait(0.0, self.stop)  # open the listening connection
        self.listening.wait(60)
        # Workers started at different moments: their polls are not in step.
        self.stop.wait(random.uniform(0.0, POLL_S))
        touched_at = -float("inf")
        try:
            while not self.stop.is_set():
                claim = queue.claim_next_job(self.sessions, worker_id, LEASE_S)
                if claim is not None:
                    with self.changed:
                        self.claimed[claim.job_id] = time.perf_counter()
                        self.changed.notify_all()
                    continue
                if time.monotonic() - touched_at >= HEARTBEAT_S:  # as the worker does
                    registry.touch_worker(self.sessions, worker_id, None)
                    touched_at = time.monotonic()
                if wakeups is None:
                    self.stop.wait(POLL_S)
                else:
                    wakeups.wait(POLL_S, self.stop, listening_seconds=LEASE_S / 4)
        finally:
            if wakeups is not None:
                wakeups.close()

    def wait_for(self, job_id: int, limit_s: float = 60.0) -> float:
        """The moment a worker claimed `job_id`."""
        with self.changed:
            if not self.changed.wait_for(lambda: job_id in self.claimed, limit_s):
                raise RuntimeError(f"job {job_id} was not claimed in {limit_s} s")
            return self.claimed[job_id]


def _transactions(admin_url: str, database: str) -> int:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                        "WHERE datname = :name"
                    ),
                    {"name": database},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _stats_settle() -> None:
    # Backends report their counters to pg_stat_database about once a second when idle.
    time.sleep(1.2)


def measure(
    admin_url: str, url: str, database: str, workers: int, notify: bool, submits: int, idle_s: float
) -> WakeupFigures:
    """One setting: idle database work, then `submits` submissions one at a time."""
    rng = random.Random(workers)
    sessions = sessionmaker(bind=create_engine(url, pool_size=1), expire_on_commit=False)
    with IdleWorkers(url, workers, notify) as idle:
        time.sleep(SETTLE_S)
        _stats_settle()
        before = _transactions(admin_url, database)
        time.sleep(idle_s)
        _stats_settle()
        idle_rate = (_transactions(admin_url, database) - before) / (idle_s + 1.2)
        latencies = []
        before = _transactions(admin_url, database)
        for _ in range(submits):
            # Gaps longer than the poll interval: a submission's moment is independent of the
            # polls' phase, as a user's is.
            time.sleep(rng.uniform(0.1, 0.1 + POLL_S))
            with sessions() as session:
                t0 = time.perf_counter()
                job_id = queue.enqueue_job(session, SPEC, max_attempts=3).id
            latencies.append(idle.wait_for(job_id) - t0)
        _stats_settle()
        per_job = (_transactions(admin_url, database) - before) / submits
    sessions.kw["bind"].dispose()
    ordered = sorted(latencies)
    return WakeupFigures(
        mode="notify" if notify else f"poll {POLL_S:g} s",
        workers=workers,
        median_ms=1000 * statistics.median(latencies),
        p90_ms=1000 * ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        max_ms=1000 * ordered[-1],
        idle_xacts_per_s=idle_rate,
        xacts_per_job=per_job,
    )


def free_connections(admin_url: str) -> int:
    """Connections the server can still accept (reserved ones not counted)."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            limit = int(conn.execute(text("SHOW max_connections")).scalar_one())
            reserved = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
            used = int(conn.execute(text("SELECT count(*) FROM pg_stat_activity")).scalar_one())
            return limit - reserved - used
    finally:
        engine.dispose()


def bench_wakeups(
    admin_url: str, worker_counts: list[int], submits: int, idle_s: float
) -> list[WakeupFigures]:
    """Every worker count with NOTIFY and with polling, in one fresh database; prints a table."""
    database = f"jb_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    figures = []
    print(
        f"\nsubmit to start with idle workers ({submits} submissions each, one at a time; "
        f"polling every {POLL_S:g} s, listening workers' fallback poll {LEASE_S / 4:g} s):\n"
    )
    print(
        "| wake-up | idle workers | median (ms) | p90 (ms) | max (ms) "
        "| idle transactions/s | transactions per job |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    try:
        upgrade(url)
        for workers in worker_counts:
            for notify in (True, False):
                needed = (workers if notify else 0) + 20
                if free_connections(admin_url) < needed:
                    print(f"| skipped: {workers} workers need {needed} free connections |")
                    continue
                row = measure(admin_url, url, database, workers, notify, submits, idle_s)
                figures.append(row)
                print(
                    f"| {row.mode} | {row.workers} | {row.median_ms:.1f} | {row.p90_ms:.1f} "
                    f"| {row.max_ms:.1f} | {row.idle_xacts_per_s:.1f} | {row.xacts_per_job:.1f} |",
                    flush=True,
                )
    finally:
        forget_engine(url)
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        engine.dispose()
    return figures
