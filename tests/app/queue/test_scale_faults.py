"""Sweeps at scale under faults (issue 24): a sweep of 300 tiny points run by 6 worker
processes with their artifacts in an S3-compatible object store (moto's standalone server), two
workers killed with SIGKILL mid-run and restarted, and one PostgreSQL restart (the server
stopped, connections refused for a second, then started again; a private throwaway cluster,
tests/support/private_postgres.py, since the shared server must never stop). Afterwards every
point ended exactly once, succeeded with its own result and its artifact readable with a
matching sha256, the sweep's summary has every point, and no job is stuck. The runner needs no
torch (as in test_chaos.py), so restarts stay quick; the figures it prints are in
docs/benchmarks.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from object_store import ObjectStore
from private_postgres import PrivatePostgres
from sqlalchemy import create_engine, func, select
from worker_processes import stop_workers

from app import queue
from app.artifacts import artifact_store
from app.db.enums import JobStatus
from app.db.migrate import upgrade
from app.db.models import Artifact, Job, Metric
from app.db.session import forget_engine, session_factory
from app.settings import Settings
from app.web.sweep_view import sweep_rows

pytestmark = [pytest.mark.postgres, pytest.mark.chaos, pytest.mark.slow]

SEEDS = 60
DEPTHS = [1, 2, 3, 4, 5]
POINTS = SEEDS * len(DEPTHS)
WORKERS = 6
STEPS = 3
OUTAGE_S = 1.0
"""How long the database stays down (connections refused) during the restart."""
DEADLINE_S = 240.0
"""Hang guard for the whole sweep (not a timing assertion)."""

SWEEP = {
    "kind": "sweep",
    "name": "scale and faults",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 8, "depth": 2},
    "train": {"epochs": 1, "batch_size": 64},
    "grid": {"model.depth": DEPTHS, "train.seed": list(range(SEEDS))},
}

SCALE_WORKER = textwrap.dedent(
    """
    import logging, sys, time
    import app.worker.loop
    from app.settings import Settings
    from app.worker.loop import Worker
    from expansion.progress import check_stop

    STEPS = int(sys.argv[3])

    def runner(spec, out_dir, reporter, *, data_dir=None):
        for step in range(1, STEPS + 1):
            reporter.metric(step, "train", "loss", 1.0 / step)
            time.sleep(0.03)
            check_stop(reporter)
        index = spec["sweep_index"]
        (out_dir / "point.ckpt").write_bytes(f"weights of point {index}".encode() * 50)
        depth, seed = spec["model"]["depth"], spec["train"]["seed"]
        error = 0.1 * depth + 0.001 * seed
        arm = {"arm": "scratch", "depth": depth, "train_risk": 0.2, "train_error": 0.05,
               "test_risk": 0.3, "test_error": error}
        return {"kind": "sweep_point", "spec": spec, "sweep_index": index,
                "coordinates": spec["coordinates"], "test_error": error, "arms": [arm],
                "curves": {"train/loss": [[s, 1.0 / s] for s in range(1, STEPS + 1)]},
                "artifacts": ["point.ckpt"]}

    if __name__ == "__main__":
        logging.basicConfig(level=logging.WARNING)
        # No torch: restarts after a kill stay quick. The fork server imports what this script
        # imports, so a job child re-running the script's imports finds them loaded (20 ms a
        # child instead of 0.5 to 1 s on a loaded machine).
        app.worker.loop.JOB_PRELOAD = ["app.worker.loop"]
        settings = Settings(
            database_url=sys.argv[1], artifact_dir=sys.argv[2] + "/artifacts",
            data_dir=sys.argv[2] + "/data", scratch_dir=sys.argv[2] + "/scratch",
            device_lock_dir=sys.argv[2] + "/locks",
            lease_seconds=2.0, heartbeat_seconds=0.2, metrics_flush_seconds=0.2,
            max_attempts=100,
        )
        worker = Worker(settings, runner=runner, poll_seconds=0.5, stop_grace_seconds=2)
        worker.install_signal_handlers()
        worker.run()
    """
)


def _start(script: Path, url: str, work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(script), url, str(work), str(STEPS)],
        stdout=subprocess.DEVNULL,
        stderr=(work / "workers.log").open("a"),
        env=env,
        start_new_session=True,  # SIGKILL of the group reaches worker, fork server and job
    )


def _restart(cluster: PrivatePostgres) -> None:
    """Stop the server (every connection cut, new ones refused), wait, start it again."""
    cluster.stop()
    time.sleep(OUTAGE_S)
    cluster.start()


def _finished_points(url: str, sweep_id: int) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.parent_id == sweep_id, Job.status == JobStatus.SUCCEEDED)
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.mark.timeout(400)
def test_a_300_point_sweep_survives_kills_and_a_restart_with_artifacts_in_the_object_store(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    with PrivatePostgres.create() as cluster:
        postgres_url = cluster.create_database("scale_faults")
        upgrade(postgres_url)
        forget_engine(postgres_url)
        _run_and_check(cluster, postgres_url, tmp_path, object_store)
        forget_engine(postgres_url)


def _run_and_check(
    cluster: PrivatePostgres, postgres_url: str, tmp_path: Path, object_store: ObjectStore
) -> None:
    started = time.monotonic()
    with session_factory(postgres_url)() as session:
        sweep_id = queue.enqueue_job(session, SWEEP).id
    script = tmp_path / "scale_worker.py"
    script.write_text(SCALE_WORKER)
    env = {**os.environ, **object_store.env()}
    workers = [_start(script, postgres_url, tmp_path, env) for _ in range(WORKERS)]
    # Faults at fixed points of progress: a kill, the restart, another kill.
    faults = [(POINTS // 4, "kill", 0), (POINTS // 2, "restart", -1), (2 * POINTS // 3, "kill", 1)]
    done_faults: Counter[str] = Counter()
    deadline = started + DEADLINE_S
    finished = 0
    try:
        while time.monotonic() < deadline:
            finished = _finished_points(postgres_url, sweep_id)
            if finished >= POINTS:
                break
            if faults and finished >= faults[0][0]:
                _, fault, victim = faults.pop(0)
                if fault == "kill":
                    os.killpg(workers[victim].pid, signal.SIGKILL)
                    workers[victim].wait()
                    workers[victim] = _start(script, postgres_url, tmp_path, env)
                else:
                    _restart(cluster)
                    forget_engine(postgres_url)  # this process's pooled connections died too
                done_faults[fault] += 1
            time.sleep(0.2)
        # The sweep's own status follows its last point (refreshed by the worker that ran it).
        while time.monotonic() < deadline:
            with session_factory(postgres_url)() as session:
                parent = session.get(Job, sweep_id)
                assert parent is not None
                if parent.is_finished:
                    break
            time.sleep(0.2)
    finally:
        stop_workers(workers)
    wall_s = time.monotonic() - started
    assert done_faults == {"kill": 2, "restart": 1}, (done_faults, finished)

    settings = Settings(
        database_url=postgres_url,
        artifact_dir=tmp_path / "artifacts",
        artifact_url=object_store.url,
        artifact_endpoint=object_store.endpoint,
    )
    store = artifact_store(settings)
    with session_factory(postgres_url)() as session:
        parent = session.get(Job, sweep_id)
        assert parent is not None and parent.status == JobStatus.SUCCEEDED, (
            parent and parent.message
        )
        assert parent.message.startswith(
            f"{POINTS} of {POINTS} points finished: {POINTS} succeeded"
        )
        points = session.scalars(select(Job).where(Job.parent_id == sweep_id)).all()
        assert Counter(p.status for p in points) == {JobStatus.SUCCEEDED: POINTS}
        stuck = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        )
        assert stuck == 0
        indices = sorted(p.result["sweep_index"] for p in points if p.result is not None)
        assert indices == list(range(POINTS)), "every point's own result, once"
        artifacts = session.scalars(select(Artifact)).all()
        assert Counter(a.job_id for a in artifacts) == {p.id: 1 for p in points}
        by_job = {p.id: p for p in points}
        for artifact in artifacts:
            point = by_job[artifact.job_id]
            assert artifact.path == f"{point.id}/attempt-{point.attempts}/point.ckpt"
            body = b"".join(store.read(point.id, artifact.path, artifact.sha256))
            assert body == f"weights of point {point.spec['sweep_index']}".encode() * 50
        keys = session.execute(select(Metric.job_id, Metric.attempt, Metric.step)).all()
        per_key = Counter((k.job_id, k.step) for k in keys)
        assert max(per_key.values()) == 1, "duplicate metric rows"
        assert all(k.attempt == by_job[k.job_id].attempts for k in keys)
        rows = sweep_rows(session, parent)
        assert len(rows) == POINTS and {r["sweep_index"] for r in rows} == set(range(POINTS))
        retried = sum(1 for p in points if p.attempts > 1)
    local = tmp_path / "artifacts"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))
    print(
        f"\nscale and faults: {POINTS} points, {WORKERS} workers, {done_faults['kill']} kills, "
        f"{done_faults['restart']} database restart; {retried} points ran more than once; "
        f"{len(object_store.keys())} objects; wall {wall_s:.1f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
