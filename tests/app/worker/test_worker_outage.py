"""A worker rides out a database outage at the edges of its life (issue 25), on a private
PostgreSQL cluster that the test really stops and starts (never the shared server):

1. `jumpboard worker` started while PostgreSQL is stopped waits (one log line per outage), and
   so does a worker whose database goes away while its job fork server is still warming up;
   once PostgreSQL is back, it registers, claims and runs a submitted job.
2. A job whose training ends while PostgreSQL is down for longer than the lease ends
   `succeeded` with one attempt: the worker kept the result (in memory and in the job's
   folder) and stored it, with its artifacts, once the database was back.

Both moments are gated on files the test creates (the fork server's warm-up, the job's end),
not on sleeps, so the order of events is fixed whatever the machine's load.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from private_postgres import PrivatePostgres, available, wait_until
from sqlalchemy import select

from app import queue
from app.db.enums import JobStatus
from app.db.migrate import upgrade
from app.db.models import Artifact, Job, Metric
from app.db.session import forget_engine, session_factory
from app.worker.pending_results import PENDING_RESULT_FILE

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.chaos,
    pytest.mark.skipif(not available(), reason="initdb/pg_ctl not installed"),
]

LEASE_S = 2.0
OUTAGE_LINE = "cannot reach the database while"
BACK_LINE = "database reachable again"

GATE_MODULE = textwrap.dedent(
    """
    # Preloaded by the job fork server: its warm-up lasts until the test opens the gate.
    import os, time
    from pathlib import Path

    gate = Path(os.environ["OUTAGE_TEST_GATES"]) / "warm"
    while not gate.exists():
        time.sleep(0.05)
    """
)

WORKER_SCRIPT = textwrap.dedent(
    """
    # `jumpboard worker` with a stand-in experiment that ends when the test opens its gate.
    import os, sys, time
    from pathlib import Path

    import app.worker.loop
    from expansion.progress import check_stop

    GATES = Path(os.environ["OUTAGE_TEST_GATES"])

    def runner(spec, out_dir, reporter, *, data_dir=None):
        reporter.metric(1, "train", "loss", 1.0)
        reporter.progress(0.5, "train", "waiting for the test")
        while not (GATES / "finish").exists():
            time.sleep(0.05)
            check_stop(reporter)
        (out_dir / "base.ckpt").write_bytes(b"weights of a finished run")
        return {
            "kind": "train", "test_risk": 0.25, "artifacts": ["base.ckpt"],
            "curves": {"train/loss": [[1, 1.0], [2, 0.5]]},
        }

    if __name__ == "__main__":
        app.worker.loop.JOB_PRELOAD = ["outage_gate"]
        app.worker.loop.run_experiment_runner = runner
        from app.cli import main
        sys.exit(main(["worker", "--poll-seconds", "0.2"]))
    """
)


class WorkerProcess:
    """`jumpboard worker` (with the stand-in experiment) in its own process group; its log
    goes to a file the test reads."""

    def __init__(self, url: str, work: Path) -> None:
        self.work = work
        self.gates = work / "gates"
        self.gates.mkdir()
        self.log = work / "worker.log"
        (work / "outage_gate.py").write_text(GATE_MODULE)
        script = work / "outage_worker.py"
        script.write_text(WORKER_SCRIPT)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")]),
            "OUTAGE_TEST_GATES": str(self.gates),
            "JUMPBOARD_DATABASE_URL": url,
            "JUMPBOARD_ARTIFACT_DIR": str(work / "artifacts"),
            "JUMPBOARD_DATA_DIR": str(work / "data"),
            "JUMPBOARD_DEVICE_LOCK_DIR": str(work / "locks"),
            "JUMPBOARD_LEASE_SECONDS": str(LEASE_S),
            "JUMPBOARD_HEARTBEAT_SECONDS": "0.2",
            "JUMPBOARD_METRICS_FLUSH_SECONDS": "0.2",
        }
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, str(script)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # the fork server and job go with it
            )

    def open_gate(self, name: str) -> None:
        """Let the fork server finish warming up (`warm`) or the job end (`finish`)."""
        (self.gates / name).touch()

    def text(self) -> str:
        """The worker's log so far."""
        return self.log.read_text(errors="replace")

    def count(self, line: str) -> int:
        """How many log lines contain `line`."""
        return sum(line in row for row in self.text().splitlines())

    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM (finish, then exit); returns the exit code (killed after a hang guard)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster, running, deleted after the test."""
    with PrivatePostgres.create() as private:
        yield private


@pytest.fixture
def database(cluster: PrivatePostgres) -> Iterator[str]:
    """A migrated database on the private cluster."""
    url = cluster.create_database(f"jb_outage_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    forget_engine(url)
    yield url
    forget_engine(url)


def _enqueue(url: str) -> int:
    with session_factory(url)() as session:
        return queue.enqueue_job(session, {"kind": "train", "model": {"kind": "mlp"}}).id


def _job(url: str, job_id: int) -> Job:
    forget_engine(url)  # connections from before a restart are dead
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_worker_started_while_postgres_is_down_waits_then_works(
    cluster: PrivatePostgres, database: str, tmp_path: Path
) -> None:
    cluster.stop()
    worker = WorkerProcess(database, tmp_path)
    try:
        wait_until(lambda: worker.count(OUTAGE_LINE) == 1, "the outage line at start-up")
        assert worker.alive(), worker.text()
        assert "checking the schema" in worker.text()

        cluster.start()  # the schema check passes; the fork server still warms up
        wait_until(lambda: worker.count(BACK_LINE) == 1, "the database is back")
        cluster.stop()  # gone again before the worker registered
        worker.open_gate("warm")
        wait_until(lambda: worker.count(OUTAGE_LINE) == 2, "the outage line at registration")
        assert "registering the worker" in worker.text()
        assert worker.alive(), worker.text()

        cluster.start()
        worker.open_gate("finish")
        job_id = _enqueue(database)
        wait_until(lambda: _job(database, job_id).status == JobStatus.SUCCEEDED, "the job")
        assert worker.alive()
    finally:
        code = worker.stop()
    log = worker.text()
    assert code == 0, log
    assert worker.count(OUTAGE_LINE) == 2, log  # one line per outage, not one per try
    assert worker.count(BACK_LINE) == 2, log
    assert "Traceback" not in log, log
    assert _job(database, job_id).attempts == 1


def test_result_finished_during_an_outage_longer_than_the_lease_is_stored_once(
    cluster: PrivatePostgres, database: str, tmp_path: Path
) -> None:
    job_id = _enqueue(database)
    worker = WorkerProcess(database, tmp_path)
    job_dir = tmp_path / "artifacts" / str(job_id)
    pending = job_dir / PENDING_RESULT_FILE
    try:
        worker.open_gate("warm")
        wait_until(lambda: _job(database, job_id).progress == 0.5, "the job's first heartbeat")
        cluster.stop()
        worker.open_gate("finish")  # training ends while the database is down
        wait_until(lambda: worker.count("keeping the result") == 1, "the lease to run out")
        assert pending.is_file()  # kept on disk as well as in memory
        cluster.start()
        wait_until(lambda: _job(database, job_id).status == JobStatus.SUCCEEDED, "the result")
    finally:
        code = worker.stop()
    log = worker.text()
    assert code == 0, log
    assert worker.count(OUTAGE_LINE) == 1, log
    assert worker.count(BACK_LINE) == 1, log
    assert not pending.exists()

    job = _job(database, job_id)
    assert job.attempts == 1
    assert job.result is not None and job.result["test_risk"] == 0.25
    assert job.warning is None
    with session_factory(database)() as session:
        artifacts = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
        assert [a.name for a in artifacts] == ["base.ckpt"]
        expected = hashlib.sha256((job_dir / "base.ckpt").read_bytes()).hexdigest()
        assert artifacts[0].sha256 == expected
        keys = session.execute(
            select(Metric.attempt, Metric.step, Metric.split, Metric.name).where(
                Metric.job_id == job_id
            )
        ).all()
    per_key = Counter(tuple(k) for k in keys)
    assert per_key and max(per_key.values()) == 1, per_key
    assert (1, 2, "train", "loss") in per_key  # the result's curve, stored once
    forget_engine(database)
