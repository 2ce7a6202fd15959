"""How a running experiment talks to whoever runs it: progress, metrics, and a stop request.

Importable without torch: the worker implements `ProgressReporter` over the database, the CLI
over a progress bar, tests over a list.
"""

from __future__ import annotations

from typing import Protocol


class StopRequested(Exception):
    """Raised inside an experiment when its reporter asks it to stop (cancel, lost lease)."""


class ProgressReporter(Protocol):
    """Receives an experiment's progress; every method must be cheap and must not raise."""

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Overall progress in [0, 1], the current stage (`train`, `scan`, `continue`...)."""

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """One point of a time series: split `train`/`val`/`test`, name `loss`/`accuracy`..."""

    def should_stop(self) -> bool:
        """True when the experiment must stop at its next check (it raises StopRequested)."""


class NullReporter:
    """A reporter that ignores everything and never asks to stop."""

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Ignore progress."""

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Ignore metrics."""

    def should_stop(self) -> bool:
        """Never stop."""
        return False


class StagedReporter:
    """Maps a sub-task's progress in [0, 1] onto the slice [start, end] of a parent's progress."""

    def __init__(self, parent: ProgressReporter, start: float, end: float, stage: str) -> None:
        self.parent, self.start, self.end, self.stage = parent, start, end, stage

    def progress(self, fraction: float, stage: str = "", message: str = "") -> None:
        """Forward progress, rescaled into this stage's slice."""
        f = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
        self.parent.progress(f, stage or self.stage, message)

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Forward a metric unchanged."""
        self.parent.metric(step, split, name, value)

    def should_stop(self) -> bool:
        """Ask the parent."""
        return self.parent.should_stop()


def check_stop(reporter: ProgressReporter) -> None:
    """Raise StopRequested when the reporter asks to stop."""
    if reporter.should_stop():
        raise StopRequested("stop requested")
