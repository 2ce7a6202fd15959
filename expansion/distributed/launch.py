"""Running one job on several devices: one spawned process per device, supervised.

`run_on_devices` is what the worker's job process and `jumpboard run` call instead of
`run_experiment`. A spec with `train.devices` N > 1 gets N rank processes (a *spawn* context:
fresh interpreters, never a re-run of the caller's command line) with the torch.distributed
environment set, so Lightning's DDP joins them instead of launching its own. Every rank runs the
whole experiment; the scan, certificate and continuation stages run on every rank identically
and only rank 0 writes files and reports (see `expansion.distributed.rank`).

Supervision: rank 0's result is the job's result; the first rank to fail (an exception, or an
exit without a result, e.g. killed) ends the run: the other ranks are terminated and
`RankFailure` names the rank. A stop request of the caller's reporter terminates every rank
and raises StopRequested. A process already started by an external launcher (torchrun, SLURM:
the multi-node path) runs its own rank directly and launches nothing.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from expansion.distributed.ports import reserved_port
from expansion.distributed.rank import RankPlan, rank_main
from expansion.progress import NullReporter, ProgressReporter, StopRequested
from expansion.ranks import external_rank, externally_launched
from expansion.specs.experiments import AnyExperiment

log = logging.getLogger(__name__)


RANK_PIDS_FILE = "ranks.json"
"""Written into the job folder while the ranks run: {"0": pid, "1": pid, ...}."""


POLL_SECONDS = 0.5
"""How often the launcher checks the caller's stop request while the ranks run."""


TERMINATE_GRACE_SECONDS = 5.0
"""How long a terminated rank may take to exit before it is killed."""


class RankFailure(RuntimeError):
    """A rank of a multi-device job failed; the message starts with `rank K:`."""

    def __init__(self, rank: int, reason: str, trace: str = "") -> None:
        super().__init__(f"rank {rank}: {reason}")
        self.rank, self.reason, self.trace = rank, reason, trace


@dataclass
class _Rank:
    """The launcher's view of one rank process."""

    rank: int
    process: BaseProcess
    conn: Connection
    done: bool = False
    result: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    """(reason, traceback) the rank reported."""
    closed: bool = False


@dataclass
class _Run:
    """Every rank of one launch."""

    ranks: list[_Rank] = field(default_factory=list)


def devices_of(spec: AnyExperiment) -> tuple[int, int]:
    """(train.devices, train.num_nodes) of a spec; (1, 1) for kinds without training."""
    train = getattr(spec, "train", None)
    if train is None:
        return 1, 1
    return int(train.devices), int(train.num_nodes)


def run_on_devices(
    spec: AnyExperiment,
    out_dir: Path,
    reporter: ProgressReporter,
    *,
    data_dir: Path | None = None,
    base_checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Run `spec` like `run_experiment`, on as many device processes as `train.devices` asks.

    Raises RankFailure when a rank fails, StopRequested when the reporter asks to stop, and
    ValueError for a multi-node spec outside an external launcher."""
    from expansion.experiments import run_experiment

    devices, nodes = devices_of(spec)
    options: dict[str, Any] = {"data_dir": data_dir, "base_checkpoint": base_checkpoint}
    if externally_launched():
        if external_rank() == 0:
            return run_experiment(spec, out_dir, reporter, **options)
        with tempfile.TemporaryDirectory(prefix="jumpboard-rank-") as scratch:
            return run_experiment(spec, Path(scratch), NullReporter(), **options)
    if nodes > 1:
        raise ValueError(
            f"train.num_nodes is {nodes}: a multi-node run is started by an external launcher "
            "(torchrun, SLURM) on every host, not by a worker (docs/deployment.md)"
        )
    if devices == 1:
        return run_experiment(spec, out_dir, reporter, **options)
    return launch_ranks(spec, Path(out_dir), reporter, devices, **options)


def launch_ranks(
    spec: AnyExperiment,
    out_dir: Path,
    reporter: ProgressReporter,
    world_size: int,
    *,
    data_dir: Path | None = None,
    base_checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Spawn `world_size` ranks of `spec`, supervise them, return rank 0's result."""
    ctx = multiprocessing.get_context("spawn")
    out_dir.mkdir(parents=True, exist_ok=True)
    with reserved_port() as port:  # no other launch on this host gets it while ours run
        return _launch_on_port(
            spec,
            out_dir,
            reporter,
            world_size,
            port,
            ctx,
            data_dir=data_dir,
            base_checkpoint=base_checkpoint,
        )


def _launch_on_port(
    spec: AnyExperiment,
    out_dir: Path,
    reporter: ProgressReporter,
    world_size: int,
    port: int,
    ctx: Any,
    *,
    data_dir: Path | None,
    base_checkpoint: Path | None,
) -> dict[str, Any]:
    """`launch_ranks` once its rendezvous port is reserved."""
    scratch = Path(tempfile.mkdtemp(prefix="jumpboard-ranks-"))
    threads = max(1, (os.cpu_count() or 1) // world_size)
    run = _Run()
    pids_file = out_dir / RANK_PIDS_FILE
    try:
        for rank in range(world_size):
            reader, writer = ctx.Pipe(duplex=False)
            plan = RankPlan(
                rank=rank,
                world_size=world_size,
                master_port=port,
                spec=spec,
                out_dir=out_dir if rank == 0 else scratch / f"rank-{rank}",
                data_dir=data_dir,
                base_checkpoint=base_checkpoint,
                threads=threads,
            )
            process = ctx.Process(
                target=rank_main, args=(plan, writer, os.getpid()), name=f"jumpboard-rank-{rank}"
            )
            process.start()
            writer.close()
            run.ranks.append(_Rank(rank, process, reader))
        pids_file.write_text(json.dumps({str(r.rank): r.process.pid for r in run.ranks}))
        log.info(
            "job on %d devices: ranks %s on port %d",
            world_size,
            [r.process.pid for r in run.ranks],
            port,
        )
        return _supervise(run, reporter)
    finally:
        _terminate(run)
        pids_file.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _receive(rank: _Rank, reporter: ProgressReporter) -> None:
    """Read every message the rank has sent so far."""
    try:
        while not rank.closed and rank.conn.poll():
            message = rank.conn.recv()
            tag = message[0]
            if tag == "progress":
                reporter.progress(*message[1:4])
            elif tag == "metric":
                reporter.metric(*message[1:5])
            elif tag == "done":
                rank.done, rank.result = True, message[1]
            elif tag == "error":
                rank.error = (message[1], message[2])
    except (EOFError, OSError):
        rank.closed = True


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name} before reporting a result"
    return f"exited with code {exitcode} before reporting a result"


def _failure(run: _Run) -> RankFailure | None:
    """The failure that ends the run, if any: a rank that died without a word is the cause
    (the others' errors are its consequences: their peer vanished), else the lowest rank that
    reported an error."""
    silent = [
        r
        for r in run.ranks
        if r.process.exitcode is not None and not r.done and r.error is None and r.closed
    ]
    if silent:
        return RankFailure(silent[0].rank, _exit_reason(silent[0].process.exitcode))
    reported = [r for r in run.ranks if r.error is not None]
    if reported:
        reason, trace = reported[0].error or ("", "")
        log.error("rank %d failed:\n%s", reported[0].rank, trace)
        return RankFailure(reported[0].rank, reason, trace)
    return None


def _supervise(run: _Run, reporter: ProgressReporter) -> dict[str, Any]:
    while True:
        if reporter.should_stop():
            raise StopRequested("stop requested")
        waiting: list[Any] = [r.conn for r in run.ranks if not r.closed]
        waiting += [r.process.sentinel for r in run.ranks if r.process.exitcode is None]
        wait(waiting, timeout=POLL_SECONDS)
        for rank in run.ranks:
            _receive(rank, reporter)
        failure = _failure(run)
        if failure is not None:
            raise failure
        if all(r.done and r.process.exitcode is not None for r in run.ranks):
            result = run.ranks[0].result
            if result is None:
                raise RankFailure(0, "finished without a result")
            return result


def _terminate(run: _Run) -> None:
    """End every rank still running (SIGTERM, then SIGKILL after a grace period)."""
    for rank in run.ranks:
        if rank.process.exitcode is None:
            rank.process.terminate()
    for rank in run.ranks:
        rank.process.join(TERMINATE_GRACE_SECONDS)
        if rank.process.exitcode is None:
            rank.process.kill()
            rank.process.join(TERMINATE_GRACE_SECONDS)
        rank.conn.close()
