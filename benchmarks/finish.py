"""Finish benchmark: the client CPU and wall time of ending a job on PostgreSQL, the one-statement
path (`app.queue.finish_statement`, the default on PostgreSQL) against the ORM path (BEGIN, the
guarded UPDATE, four DELETEs and the INSERTs, COMMIT; what SQLite still uses).

Each round creates a fresh database, queues and claims `--jobs` jobs, then finishes them one
after another through `app.queue.complete_job` (or `fail_job` with `--fail`) exactly as a worker
does, with a worker-sized payload: a result with a 20-point training curve and 5 buffered metric
points. The first `WARMUP` finishes of a round are not counted (connections opened, statements
prepared by the driver). Rounds alternate between the two paths so that a change in the
machine's load falls on both. Per finish: client CPU (`time.process_time`, this process only;
the server's work is not in it) and wall time, median and p90; ratios ORM / statement.

Usage: .venv/bin/python benchmarks/finish.py [--jobs 600] [--rounds 3] [--fail]
       [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py is named like the standard library's `queue`, which psycopg imports:
# keep this folder off the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import queue
from app.db.migrate import upgrade
from app.db.models import Job, utcnow
from app.db.session import forget_engine, session_factory
from app.queue import finish as queue_finish

WARMUP = 20
"""Finishes per round before the clock starts."""

PATHS = ("orm", "statement")

RESULT: dict[str, Any] = {
    "kind": "train",
    "test_risk": 0.25,
    "test_error": 0.1,
    "val_risk": 0.3,
    "timings": {"total_s": 1.0, "train_s": 0.9},
    "curves": {"train/loss": [[step, 1.0 / step] for step in range(1, 21)]},
}
METRICS: list[queue.MetricPoint] = [(s, "val", "loss", 0.5 / s) for s in range(1, 6)]


def _admin(url: str, statement: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def _no_postgresql_engine(session_factory: sessionmaker[Session]) -> Engine | None:
    """Stand-in for `app.queue.finish._postgresql_engine` that picks the ORM path."""
    return None


@contextlib.contextmanager
def finish_path(path: str) -> Iterator[None]:
    """Finish through `path`: "statement" (the default on PostgreSQL) or "orm" (the
    transaction of statements SQLite uses, forced here on PostgreSQL for comparison)."""
    if path == "statement":
        yield
        return
    original = queue_finish._postgresql_engine
    queue_finish._postgresql_engine = _no_postgresql_engine
    try:
        yield
    finally:
        queue_finish._postgresql_engine = original


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_round(admin_url: str, jobs: int, path: str, *, fail: bool) -> dict[str, float]:
    """Finish `jobs` claimed jobs through `path` in a fresh database; per-finish figures."""
    name = f"jb_bench_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        sessions = session_factory(url, pre_ping=False)
        now = utcnow()
        row = {"kind": "train", "spec": {"kind": "train"}, "created_at": now, "name": ""}
        with sessions() as session:
            session.execute(insert(Job), [row] * (jobs + WARMUP))
            session.commit()
        claims = []
        while (claim := queue.claim_next_job(sessions, "bench", 3600)) is not None:
            claims.append(claim)
        cpu: list[float] = []
        wall: list[float] = []
        with finish_path(path):
            for index, claim in enumerate(claims):
                c0, t0 = time.process_time(), time.perf_counter()
                if fail:
                    ok = queue.fail_job(sessions, claim, "ValueError: boom", metrics=METRICS)
                else:
                    ok = queue.complete_job(sessions, claim, RESULT, metrics=METRICS)
                c1, t1 = time.process_time(), time.perf_counter()
                assert ok, "a finish lost its lease"
                if index >= WARMUP:
                    cpu.append(c1 - c0)
                    wall.append(t1 - t0)
        return {
            "cpu_ms": statistics.median(cpu) * 1e3,
            "cpu_mean_ms": statistics.fmean(cpu) * 1e3,
            "wall_ms": statistics.median(wall) * 1e3,
            "wall_p90_ms": _percentile(wall, 0.9) * 1e3,
            "per_s": len(wall) / sum(wall),
        }
    finally:
        forget_engine(url)
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    """Run the rounds and print one line per round and the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=600, help="measured finishes per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per path (alternating)")
    parser.add_argument("--fail", action="store_true", help="measure fail_job, not complete_job")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.jobs} finishes per round")
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in PATHS}
    for index in range(args.rounds):
        for path in PATHS:
            figures = bench_round(args.postgres_url, args.jobs, path, fail=args.fail)
            runs[path].append(figures)
            print(
                f"round {index + 1} {path:9s}: client CPU {figures['cpu_ms']:.3f} ms "
                f"(mean {figures['cpu_mean_ms']:.3f}), wall {figures['wall_ms']:.3f} ms "
                f"(p90 {figures['wall_p90_ms']:.3f}), {figures['per_s']:.0f} finishes/s"
            )
    medians = {p: {k: statistics.median(r[k] for r in runs[p]) for k in runs[p][0]} for p in PATHS}
    for path in PATHS:
        m = medians[path]
        print(
            f"median {path:9s}: client CPU {m['cpu_ms']:.3f} ms, wall {m['wall_ms']:.3f} ms, "
            f"{m['per_s']:.0f} finishes/s"
        )
    orm, one = medians["orm"], medians["statement"]
    print(
        f"ORM / one statement: client CPU {orm['cpu_ms'] / one['cpu_ms']:.1f}x, "
        f"wall {orm['wall_ms'] / one['wall_ms']:.1f}x"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
