"""A `jumpboard serve` the client tests talk to: a free loopback port and what it serves."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A running `jumpboard serve` and the environment that points the CLI at it."""

    url: str
    env: dict[str, str]
    home: Path
