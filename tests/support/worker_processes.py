"""Stopping the worker processes a chaos test started: SIGTERM to every one still running,
then a grace period, then SIGKILL to the process group of any that did not stop."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence

STOP_GRACE_S = 30.0
"""How long a worker may take to finish its job and stop after SIGTERM."""


def stop_workers(workers: Sequence[subprocess.Popen[bytes]]) -> None:
    """Stop every worker: SIGTERM, wait, SIGKILL (the whole group: fork server, job child)."""
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
