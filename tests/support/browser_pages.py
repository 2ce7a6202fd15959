"""Shared by the browser tests: a free loopback port, screenshots, the tiny expand job."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def save_screenshot(page: Any, name: str) -> None:
    """Keep a full-page screenshot under test-artifacts/screenshots (CI keeps the folder)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


TINY_EXPAND: dict[str, Any] = {
    "kind": "expand",
    "name": "browser-digits",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 16, "depth": 2},
    "train": {"epochs": 1, "batch_size": 64, "accelerator": "cpu"},
    "expand": {
        "select": "all",
        "seeds": [0, 1],
        "continue_steps": 4,
        "grad_batch_size": 64,  # the digits certificate split (287 samples) holds 4 batches
        "line_search_points": 4,
    },
}
