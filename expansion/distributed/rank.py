"""One rank of a multi-device job: the target `expansion.distributed.launch` spawns per device.

A rank sets the torch.distributed environment (so Lightning sees a process created by someone
else and launches nothing), runs the same `run_experiment` as a single-device job, and reports
over its pipe to the launcher: rank 0 forwards progress, metrics and the result; every rank
reports its own failure. Only rank 0 writes into the job folder; the others write their
(identical) files into a scratch folder the launcher removes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from expansion.progress import NullReporter, ProgressReporter
from expansion.specs.experiments import AnyExperiment

log = logging.getLogger(__name__)


PARENT_CHECK_SECONDS = 1.0
"""How often a rank checks that its launcher still lives (it exits when the launcher died)."""


@dataclass(frozen=True)
class RankPlan:
    """What one rank runs and where it talks to the others."""

    rank: int
    world_size: int
    master_port: int
    spec: AnyExperiment
    """The parsed spec (pickled to the spawned rank, not parsed again)."""
    out_dir: Path
    """The job folder (rank 0) or this rank's scratch folder (the others)."""
    data_dir: Path | None
    base_checkpoint: Path | None
    threads: int
    """CPU threads this rank's torch may use (the host's cores shared among the ranks)."""


class ConnectionReporter:
    """Rank 0's ProgressReporter: forwards progress and metrics to the launcher. It never asks
    to stop: the launcher stops the ranks itself."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self.conn.send(message)
        except (OSError, ValueError):
            log.warning("rank 0: the launcher is gone; dropping a report")

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Forward progress."""
        self._send(("progress", float(fraction), str(stage), str(message)))

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Forward one metric point."""
        self._send(("metric", int(step), str(split), str(name), float(value)))

    def should_stop(self) -> bool:
        """Never: the launcher terminates the ranks when the job must stop."""
        return False


def torch_distributed_environment(plan: RankPlan) -> dict[str, str]:
    """The variables torch.distributed and Lightning read to join a one-node process group."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(plan.master_port),
        "WORLD_SIZE": str(plan.world_size),
        "RANK": str(plan.rank),
        "LOCAL_RANK": str(plan.rank),
        "NODE_RANK": "0",
    }


def _exit_when_orphaned(parent_pid: int) -> None:
    # A launcher killed outright (the worker's last resort) cannot terminate its ranks; they
    # must not keep a device busy for nobody.
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(3)


def rank_main(plan: RankPlan, conn: Connection, parent_pid: int) -> None:
    """Entry point of a spawned rank: run the experiment, report, exit."""
    # The job process ignores SIGTERM (its parent decides when it stops) and a spawned child
    # inherits that; a rank must die when its launcher terminates it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    os.environ.update(torch_distributed_environment(plan))
    code = 0
    try:
        import torch

        from expansion.experiments import run_experiment

        torch.set_num_threads(plan.threads)
        reporter: ProgressReporter = ConnectionReporter(conn) if plan.rank == 0 else NullReporter()
        result = run_experiment(
            plan.spec,
            plan.out_dir,
            reporter,
            data_dir=plan.data_dir,
            base_checkpoint=plan.base_checkpoint,
        )
        conn.send(("done", result if plan.rank == 0 else None))
    except BaseException as exc:  # every failure is reported to the launcher
        code = 1
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        except (OSError, ValueError):
            log.exception("rank %d failed and could not report it", plan.rank)
    finally:
        conn.close()
    os._exit(code)
