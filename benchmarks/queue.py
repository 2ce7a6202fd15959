"""Queue benchmark: claim throughput and latency on PostgreSQL, and job start latency.

1. Claims: N queued jobs in a fresh PostgreSQL database, drained by 1, 4 and 16 (`--claimers`)
   concurrent claimers, each a process with its own connection, claiming one job per call
   exactly as a worker does (`app.queue.claim_next_job` on the worker's engine); throughput
   (claims/s) and per-claim latency p50/p99, with ratios against the single claimer; every
   job must be claimed exactly once. Before the clock starts each claimer claims
   `WARMUP_CLAIMS` extra jobs of a higher priority (not counted), so that its connection is as
   warm as a running worker's: catalog caches loaded in its server backend and the claim
   prepared by the driver (psycopg prepares after 5 runs of a statement). Each setting runs
   closed loop (`--rates 0`: every claimer claims again as soon as it has its job, the most
   the machine can do) and open loop at an offered rate (`--rates 1000`: the claimers together
   send 1,000 claims/s on a fixed schedule, latency counted from each claim's scheduled
   moment), so a latency can be read at a stated throughput.
2. Job start: claim to the first training step of a tiny real job, with the worker's forked
   child (torch/lightning imported once in the parent) against starting a fresh interpreter
   for the job (`python -c "import expansion.experiments; ..."`), ratio fresh / forked.

Usage: .venv/bin/python benchmarks/queue.py [--jobs 3000] [--claimers 1,4,16] [--rates 0,1000]
       [--runs 1] [--repeats 5]
       [--skip-claims] [--skip-start]
       [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `queue`, which torch and multiprocessing
# import: keep its folder off the import path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # siblings as benchmarks.*

import argparse
import importlib.util
import itertools
import multiprocessing
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from app import queue
from app.db.migrate import upgrade
from app.db.models import Job, utcnow
from app.db.session import forget_engine, session_factory
from app.settings import Settings
from benchmarks.queue_lifecycle import bench_lifecycle
from benchmarks.queue_wakeups import bench_wakeups
from expansion.progress import ProgressReporter, StopRequested

TINY_SPEC = {
    "kind": "train",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 16, "depth": 1},
    "train": {"epochs": 1, "accelerator": "cpu"},
}
HAS_EXPERIMENTS = importlib.util.find_spec("expansion.experiments") is not None
PRELOAD = "expansion.experiments" if HAS_EXPERIMENTS else "lightning"
WARMUP_CLAIMS = 8
"""Claims each claimer makes before the clock starts (more than psycopg's prepare threshold)."""
WARMUP_PRIORITY = 1000
"""Priority of the warm-up jobs: above every measured job's, so they are claimed first."""


# --------------------------------------------------------------------------- claims


def _admin(url: str, statement: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _claimer(url: str, index: int, claimers: int, rate: float, barrier: Any, results: Any) -> None:
    """One claimer process (forked): claims until the queue is empty, then reports its claim
    latencies, the job ids it got and when it finished.

    With `rate` > 0 the claimers together offer `rate` claims/s (open loop): claimer `index`
    sends its k-th claim at `start + (k * claimers + index) / rate`, and a claim's latency is
    counted from that scheduled moment, so a claim that starts late because the one before it
    was slow is charged the wait too (no coordinated omission)."""
    from app.db.session import dispose_engines

    dispose_engines(close=False)  # the parent's pooled sockets are not ours
    sessions = session_factory(url, pre_ping=False)
    latencies: list[float] = []
    claimed: list[int] = []
    warmup: list[int] = []
    for _ in range(WARMUP_CLAIMS):  # exactly this claimer's share of the warm-up jobs
        claim = queue.claim_next_job(sessions, f"bench{index}", 60)
        assert claim is not None, "a warm-up claim found the queue empty"
        warmup.append(claim.job_id)
    barrier.wait()
    start = time.perf_counter()
    for k in itertools.count():
        t0 = time.perf_counter()
        if rate > 0:
            t0 = start + (k * claimers + index) / rate
            if (pause := t0 - time.perf_counter()) > 0:
                time.sleep(pause)
        claim = queue.claim_next_job(sessions, f"bench{index}", 60)
        if claim is None:
            break
        latencies.append(time.perf_counter() - t0)
        claimed.append(claim.job_id)
    results.put((latencies, claimed, warmup, time.perf_counter()))


def bench_claims(admin_url: str, jobs: int, claimers: int, rate: float = 0.0) -> dict[str, float]:
    """Drain `jobs` queued jobs with `claimers` processes (as fast as they can, or offering
    `rate` claims/s together); throughput and latency figures."""
    name = f"jb_bench_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        sessions = session_factory(url)
        now = utcnow()
        rows = [
            {
                "name": "",
                "kind": "train",
                "spec": TINY_SPEC,
                "status": "queued",
                "priority": i % 3,
                "attempts": 0,
                "max_attempts": 3,
                "progress": 0.0,
                "stage": "queued",
                "message": "",
                "cancel_requested": False,
                "created_at": now,
            }
            for i in range(jobs + claimers * WARMUP_CLAIMS)
        ]
        for row in rows[jobs:]:
            row["priority"] = WARMUP_PRIORITY
        with sessions() as session:
            session.execute(insert(Job), rows)
            session.commit()
            session.execute(text("ANALYZE jobs"))
            session.commit()
        forget_engine(url)
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(claimers + 1)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_claimer, args=(url, i, claimers, rate, barrier, results))
            for i in range(claimers)
        ]
        for proc in procs:
            proc.start()
        barrier.wait()
        start = time.perf_counter()
        outcomes = [results.get(timeout=600) for _ in procs]
        elapsed = max(end for _, _, _, end in outcomes) - start
        for proc in procs:
            proc.join()
        flat = [v for latencies, _, _, _ in outcomes for v in latencies]
        ids = [job_id for _, claimed, _, _ in outcomes for job_id in claimed]
        warm = [job_id for _, _, warmup, _ in outcomes for job_id in warmup]
        assert len(ids) == len(set(ids)) == jobs, f"{len(set(ids))} distinct claims of {jobs}"
        assert not set(ids) & set(warm) and len(warm) == len(set(warm)), "a job claimed twice"
        return {
            "claimers": claimers,
            "offered": rate,
            "throughput": jobs / elapsed,
            "p50_ms": 1000 * _percentile(flat, 0.50),
            "p99_ms": 1000 * _percentile(flat, 0.99),
        }
    finally:
        forget_engine(url)
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- job start


class FirstStepReporter:
    """Writes the wall time of the first metric (first training step) and then stops the job."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = False

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Ignore progress."""

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Record the first training metric's time."""
        if not self.seen and split == "train":
            self.seen = True
            self.path.write_text(repr(time.time()))

    def should_stop(self) -> bool:
        """Stop as soon as the first step was seen (the rest is not what we measure)."""
        return self.seen


def first_step_runner(
    spec: dict[str, Any], out_dir: Path, reporter: ProgressReporter, *, data_dir: Path | None
) -> dict[str, Any]:
    """Runs the job until its first training step, noting that step's time in out_dir."""
    marker = FirstStepReporter(out_dir / "first_step")
    try:
        if HAS_EXPERIMENTS:
            from expansion.experiments import run_experiment

            run_experiment(spec, out_dir, marker, data_dir=data_dir)
        else:
            lightning_first_step(marker)
    except StopRequested:
        pass
    return {"kind": "train", "first_step": float(marker.path.read_text())}


STANDIN_SOURCE = """
def lightning_first_step(reporter):
    # Stand-in while expansion.experiments is missing: one optimizer step of a tiny MLP.
    import lightning
    import torch
    from expansion.progress import StopRequested

    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    reporter.metric(1, "train", "loss", loss.item())
    raise StopRequested("first step done")
"""
_standin: dict[str, Any] = {}
exec(STANDIN_SOURCE, _standin)
lightning_first_step = _standin["lightning_first_step"]


FRESH_CODE = """
import sys, time
from pathlib import Path
import {preload}
from expansion.progress import StopRequested

class FirstStep:
    seen = False
    def progress(self, fraction, stage, message=""):
        pass
    def metric(self, step, split, name, value):
        if not self.seen and split == "train":
            self.seen = True
            Path(sys.argv[1], "first_step").write_text(repr(time.time()))
    def should_stop(self):
        return self.seen

try:
    {call}
except StopRequested:
    pass
"""
FRESH_CALL_EXPERIMENT = (
    "expansion.experiments.run_experiment({spec!r}, Path(sys.argv[1]), FirstStep(), "
    "data_dir=Path(sys.argv[2]))"
)


def bench_start_forked(url: str, work: Path, repeats: int) -> list[float]:
    """Claim-to-first-step seconds of jobs run by the worker's forked child."""
    from app.worker.loop import Worker

    importlib.import_module(PRELOAD)
    settings = Settings(
        database_url=url,
        artifact_dir=work / "artifacts",
        data_dir=work / "data",
        lease_seconds=60,
        heartbeat_seconds=1,
    )
    worker = Worker(settings, runner=first_step_runner, poll_seconds=0.1)
    sessions = session_factory(url)
    out = []
    for _ in range(repeats):
        with sessions() as session:
            job_id = queue.enqueue_job(session, dict(TINY_SPEC)).id
        worker.run(max_jobs=1)
        with sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None and job.status == "succeeded", job and job.error
            assert job.started_at is not None and job.result is not None
            out.append(job.result["first_step"] - job.started_at.timestamp())
    return out


def bench_start_fresh(work: Path, repeats: int) -> list[float]:
    """Seconds from launching a fresh interpreter for a job to its first training step."""
    if HAS_EXPERIMENTS:
        call = FRESH_CALL_EXPERIMENT.format(spec=TINY_SPEC)
    else:
        call = f"exec({STANDIN_SOURCE!r}); lightning_first_step(FirstStep())"
    code = FRESH_CODE.format(preload=PRELOAD, call=call)
    out = []
    for i in range(repeats):
        out_dir = work / f"fresh{i}"
        out_dir.mkdir()
        t0 = time.time()
        subprocess.run([sys.executable, "-c", code, str(out_dir), str(work / "data")], check=True)
        out.append(float((out_dir / "first_step").read_text()) - t0)
    return out


# --------------------------------------------------------------------------- main


def machine() -> str:
    """One line describing this machine."""
    mem = ""
    if Path("/proc/meminfo").is_file():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores{mem}, Python {platform.python_version()}"
    )


def main() -> None:
    """Run both benchmarks and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="queued jobs per claim run")
    parser.add_argument(
        "--claimers", default="1,4,16", help="comma-separated numbers of concurrent claimers"
    )
    parser.add_argument(
        "--rates",
        default="0,1000",
        help="offered claims/s of all claimers together, comma-separated; 0 = as fast as they can "
        "(closed loop); a rate paces the claims (open loop, latency from the scheduled moment)",
    )
    parser.add_argument("--runs", type=int, default=1, help="claim runs per setting")
    parser.add_argument("--repeats", type=int, default=5, help="job starts measured each way")
    parser.add_argument("--skip-claims", action="store_true", help="only the job start part")
    parser.add_argument("--skip-start", action="store_true", help="skip the job start part")
    parser.add_argument("--skip-wakeups", action="store_true", help="skip submit-to-start")
    parser.add_argument(
        "--skip-lifecycle", action="store_true", help="skip claim-then-finish of the three queues"
    )
    parser.add_argument(
        "--lifecycle-jobs", type=int, default=3000, help="no-op jobs per claim-then-finish round"
    )
    parser.add_argument("--lifecycle-workers", type=int, default=16, help="draining processes")
    parser.add_argument("--lifecycle-rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument(
        "--idle-workers", default="1,16,64", help="idle workers of the submit-to-start part"
    )
    parser.add_argument("--submits", type=int, default=15, help="submissions per wake-up setting")
    parser.add_argument(
        "--idle-seconds", type=float, default=8.0, help="idle window measuring database work"
    )
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    claimer_counts = [int(n) for n in args.claimers.split(",") if n.strip()]
    if not claimer_counts or min(claimer_counts) < 1:
        parser.error("--claimers needs positive numbers, e.g. 1,4,16")
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not rates or min(rates) < 0:
        parser.error("--rates needs numbers >= 0, e.g. 0,1000")
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    pg_version = ""
    engine = create_engine(args.postgres_url)
    with engine.connect() as conn:
        pg_version = conn.execute(text("SHOW server_version")).scalar_one()
    engine.dispose()
    print(f"PostgreSQL {pg_version}; {args.jobs} jobs per run\n")

    if not args.skip_claims:
        print(
            f"| offered claims/s | claimers | claims/s | vs {claimer_counts[0]} at full speed "
            "| p50 (ms) | p99 (ms) |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        base = None
        for rate in rates:
            for claimers in claimer_counts:
                for _ in range(args.runs):
                    r = bench_claims(args.postgres_url, args.jobs, claimers, rate)
                    if rate == 0:
                        base = base or r["throughput"]
                    ratio = f"{r['throughput'] / base:.2f}x" if base else "n/a"
                    print(
                        f"| {rate:.0f} | {claimers} | {r['throughput']:.0f} | {ratio} "
                        f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |",
                        flush=True,
                    )
        print(f"load average {os.getloadavg()[0]:.2f} after the claims")
    if not args.skip_lifecycle:
        bench_lifecycle(
            args.postgres_url, args.lifecycle_jobs, args.lifecycle_workers, args.lifecycle_rounds
        )
        print(f"load average {os.getloadavg()[0]:.2f} after claim then finish")
    if not args.skip_wakeups:
        counts = [int(n) for n in args.idle_workers.split(",") if n.strip()]
        bench_wakeups(args.postgres_url, counts, args.submits, args.idle_seconds)
        print(f"load average {os.getloadavg()[0]:.2f} after the wake-ups")
    if not args.skip_start:
        bench_start(args.postgres_url, args.repeats)


def bench_start(postgres_url: str, repeats: int) -> None:
    """Job start, forked child against fresh interpreter; prints the table."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        name = f"jb_bench_{uuid.uuid4().hex[:10]}"
        _admin(postgres_url, f'CREATE DATABASE "{name}"')
        url = make_url(postgres_url).set(database=name).render_as_string(False)
        try:
            upgrade(url)
            fresh = bench_start_fresh(work, repeats)
            forked = bench_start_forked(url, work, repeats)
        finally:
            forget_engine(url)
            _admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    runner = "run_experiment" if HAS_EXPERIMENTS else "stand-in lightning step"
    print(f"\njob start, claim to first training step ({runner}, {repeats} runs each):\n")
    print("| start | median (s) | min (s) | max (s) | vs forked |")
    print("| --- | ---: | ---: | ---: | ---: |")
    fork_med = statistics.median(forked)
    for label, values in (("forked child (worker)", forked), ("fresh interpreter", fresh)):
        med = statistics.median(values)
        print(
            f"| {label} | {med:.3f} | {min(values):.3f} | {max(values):.3f} "
            f"| {med / fork_med:.1f}x |"
        )


if __name__ == "__main__":
    main()
