"""Chaos: workers killed at random and the database connections cut while 50 small jobs run
(issue 13). Afterwards every job succeeded exactly once, with one result set, no duplicate
metric rows, none stuck.

The outage is simulated by terminating every backend of the test database
(`pg_terminate_backend`), which is what a PostgreSQL restart does to the clients' connections;
the shared server itself is not restarted (other test runs use it). CI runs this short version;
`JUMPBOARD_CHAOS_JOBS`, `JUMPBOARD_CHAOS_KILLS` and `JUMPBOARD_CHAOS_OUTAGES` make it longer.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from worker_processes import stop_workers

from app import queue
from app.db.enums import JobStatus
from app.db.models import Artifact, Insertion, Job, Metric
from app.db.session import session_factory

pytestmark = [pytest.mark.postgres, pytest.mark.chaos]

JOBS = int(os.environ.get("JUMPBOARD_CHAOS_JOBS", "50"))
KILLS = int(os.environ.get("JUMPBOARD_CHAOS_KILLS", "5"))
OUTAGES = int(os.environ.get("JUMPBOARD_CHAOS_OUTAGES", "3"))
WORKERS = 3
STEPS = 6
DEADLINE_S = 300.0
"""Hang guard for the whole run (not a timing assertion)."""

CHAOS_WORKER = textwrap.dedent(
    """
    import logging, sys, time
    import app.worker.loop
    from app.settings import Settings
    from app.worker.loop import Worker
    from expansion.progress import check_stop

    STEPS = int(sys.argv[3])

    def runner(spec, out_dir, reporter, *, data_dir=None):
        curve = []
        for step in range(1, STEPS + 1):
            reporter.metric(step, "train", "loss", 1.0 / step)
            reporter.progress(step / STEPS, "train", "")
            curve.append([step, 1.0 / step])
            time.sleep(0.05)
            check_stop(reporter)
        reporter.metric(STEPS, "test", "risk", 0.25)
        (out_dir / "base.ckpt").write_bytes(b"weights")
        record = {"position": 0, "seed": 0, "descent": {}, "realized": {}}
        return {
            "kind": "train", "test_risk": 0.25, "curves": {"train/loss": curve},
            "artifacts": ["base.ckpt"], "insertions": [record],
        }

    if __name__ == "__main__":
        logging.basicConfig(level=logging.WARNING)
        app.worker.loop.JOB_PRELOAD = []  # no torch: restarts after a kill stay quick
        settings = Settings(
            database_url=sys.argv[1], artifact_dir=sys.argv[2], data_dir=sys.argv[2],
            lease_seconds=2.0, heartbeat_seconds=0.2, metrics_flush_seconds=0.2,
            max_attempts=100,
        )
        worker = Worker(settings, runner=runner, poll_seconds=0.1, stop_grace_seconds=2)
        worker.install_signal_handlers()
        worker.run()
    """
)


def _start(script: Path, url: str, work: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(script), url, str(work / "artifacts"), str(STEPS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # SIGKILL of the group reaches worker, fork server and job
    )


def _cut_every_connection(url: str) -> int:
    """Terminate every other backend of the test database, as a server restart would."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def _unfinished(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_jobs_finish_exactly_once_through_kills_and_outages(
    postgres_url: str, tmp_path: Path
) -> None:
    with session_factory(postgres_url)() as session:
        ids = [
            queue.enqueue_job(session, {"kind": "train", "model": {"kind": "mlp"}}).id
            for _ in range(JOBS)
        ]
    script = tmp_path / "chaos_worker.py"
    script.write_text(CHAOS_WORKER)
    workers = [_start(script, postgres_url, tmp_path) for _ in range(WORKERS)]
    rng = random.Random(13)
    faults = ["kill"] * KILLS + ["outage"] * OUTAGES
    rng.shuffle(faults)
    done_faults: Counter[str] = Counter()
    deadline = time.monotonic() + DEADLINE_S
    try:
        while faults and time.monotonic() < deadline and _unfinished(postgres_url):
            time.sleep(rng.uniform(0.5, 2.0))
            fault = faults.pop()
            if fault == "kill":
                victim = rng.randrange(len(workers))
                os.killpg(workers[victim].pid, signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = _start(script, postgres_url, tmp_path)
            else:
                _cut_every_connection(postgres_url)
            done_faults[fault] += 1
        while _unfinished(postgres_url) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_workers(workers)
    assert done_faults["kill"] >= 1 and done_faults["outage"] >= 1, done_faults

    with session_factory(postgres_url)() as session:
        statuses = Counter(session.scalars(select(Job.status)))
        assert statuses == {JobStatus.SUCCEEDED: JOBS}, statuses
        jobs = session.scalars(select(Job)).all()
        assert all(job.result is not None and job.result["test_risk"] == 0.25 for job in jobs)
        keys = session.execute(
            select(Metric.job_id, Metric.attempt, Metric.step, Metric.split, Metric.name)
        ).all()
        per_key = Counter((k.job_id, k.step, k.split, k.name) for k in keys)
        assert max(per_key.values()) == 1, "duplicate metric rows"
        expected = {(i, s, "train", "loss") for i in ids for s in range(1, STEPS + 1)}
        expected |= {(i, STEPS, "test", "risk") for i in ids}
        assert set(per_key) == expected
        attempts = {job.id: job.attempts for job in jobs}
        assert all(k.attempt == attempts[k.job_id] for k in keys), "rows of an earlier attempt"
        for table in (Insertion, Artifact):
            counts = Counter(session.scalars(select(table.job_id)))
            assert counts == dict.fromkeys(ids, 1), table.__tablename__
