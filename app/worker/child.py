"""The child side of a worker: runs one job in a forked process and reports over a pipe.

The child never touches the database. It sends `("progress", fraction, stage, message)`,
`("metric", step, split, name, value)` and finally one of `("done", result)`,
`("stopped", reason)` or `("error", reason, traceback)` to the parent, and reads `("stop",)`
from it; it always leaves through `os._exit` so that no inherited finalizer (database pools,
test harness hooks) runs twice.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from expansion.progress import ProgressReporter, StopRequested

log = logging.getLogger(__name__)


def run_experiment_runner(
    spec: dict[str, Any],
    out_dir: Path,
    reporter: ProgressReporter,
    *,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """The production runner: `expansion.experiments.run_experiment`, on one process per
    device when the spec asks for several (`expansion.distributed.launch`).

    The job row holds the spec the service accepted; it is parsed here once, in the job's
    process, and travels on typed."""
    from expansion.distributed.launch import run_on_devices
    from expansion.specs.base_match import base_checkpoint
    from expansion.specs.experiments import ExpandExperiment
    from expansion.specs.parsing import parse_spec

    experiment = parse_spec(spec)
    base = None
    if isinstance(experiment, ExpandExperiment) and experiment.expand.base_job is not None:
        # Job folders are siblings under the artifact folder (Settings.job_dir).
        base = base_checkpoint(out_dir.parent / str(experiment.expand.base_job))
        if base is None:
            raise FileNotFoundError(f"base job {experiment.expand.base_job} kept no network")
    return run_on_devices(experiment, out_dir, reporter, data_dir=data_dir, base_checkpoint=base)


class PipeReporter:
    """A ProgressReporter that forwards everything to the parent and hears its stop request."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.stop_requested = False

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self.conn.send(message)
        except (OSError, ValueError):
            # The parent is gone: nobody will record this job, so stop it.
            self.stop_requested = True

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Forward progress."""
        self._send(("progress", float(fraction), str(stage), str(message)))

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Forward one metric point."""
        self._send(("metric", int(step), str(split), str(name), float(value)))

    def should_stop(self) -> bool:
        """True once the parent asked this job to stop (or went away)."""
        if not self.stop_requested:
            try:
                while self.conn.poll():
                    if self.conn.recv()[0] == "stop":
                        self.stop_requested = True
            except (EOFError, OSError):
                self.stop_requested = True
        return self.stop_requested


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryError | FloatingPointError) or "OutOfMemory" in type(exc).__name__:
        kind = "out of memory" if not isinstance(exc, FloatingPointError) else "non-finite loss"
        return f"{kind}: {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def child_main(
    conn: Connection,
    runner: Callable[..., dict[str, Any]],
    spec: dict[str, Any],
    out_dir: Path,
    data_dir: Path | None,
    devices: str | None,
) -> None:
    """Entry point of the forked child: run the job, report its outcome, exit.

    `devices` becomes the job's `CUDA_VISIBLE_DEVICES` (None: left as inherited; empty: no
    GPU)."""
    code = 0
    try:
        # The parent decides when this job stops; a terminal's Ctrl-C or a SIGTERM sent to the
        # process group must not kill the job behind the parent's back.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if devices is not None:
            # Before anything initializes CUDA in this process (the parent never does); the
            # job's rank processes inherit it.
            os.environ["CUDA_VISIBLE_DEVICES"] = devices
        reporter = PipeReporter(conn)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = runner(spec, out_dir, reporter, data_dir=data_dir)
        except StopRequested as exc:
            conn.send(("stopped", str(exc) or "stop requested"))
        except BaseException as exc:  # every failure of the job is reported, none kills us
            conn.send(("error", _describe(exc), traceback.format_exc()))
        else:
            if not isinstance(result, dict):
                conn.send(("error", f"runner returned {type(result).__name__}, not a dict", ""))
            else:
                conn.send(("done", result))
    except BaseException:  # the pipe itself failed: the parent sees a crash
        log.exception("worker child failed to report")
        code = 1
    finally:
        try:
            conn.close()
        finally:
            os._exit(code)
