"""A progress reporter that keeps everything it is told, for tests to inspect."""

from __future__ import annotations

from expansion.progress import NullReporter


class RecordingReporter(NullReporter):
    """A reporter that keeps everything in lists (tests, result curves)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []
        self.metrics: list[tuple[int, str, str, float]] = []

    def progress(self, fraction: float, stage: str, message: str = "") -> None:
        """Record a progress event."""
        self.events.append((fraction, stage, message))

    def metric(self, step: int, split: str, name: str, value: float) -> None:
        """Record a metric point."""
        self.metrics.append((step, split, name, value))
