"""The rendezvous port of a multi-device launch, reserved on this host for the launch's life.

Rank 0 listens on the port (`MASTER_PORT`) that every rank connects to. Picking "a port that is
free now" is not enough when two multi-device jobs start at the same moment on one host (two
workers, each owning its GPUs): both may be handed the same free port before either rank 0
listens on it, and the second launch's ranks then fail or join the wrong group. So a launch
also locks a file named after its port in a host-wide folder (`flock`, which the kernel drops
when the process dies, so a killed launcher never leaves a port reserved) and keeps the lock
until its ranks have ended; a launch that finds the port's file locked picks another port.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

PORT_LOCK_DIR_ENV = "JUMPBOARD_PORT_LOCK_DIR"
"""Folder of the port lock files; default `<temp dir>/jumpboard-ports` (one per host)."""

MAX_TRIES = 64
"""Ports tried before giving up (each a fresh free port)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_lock_dir() -> Path:
    """Where the port lock files live (`JUMPBOARD_PORT_LOCK_DIR`, else the temp dir's)."""
    configured = os.environ.get(PORT_LOCK_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "jumpboard-ports"


@contextlib.contextmanager
def reserved_port(
    lock_dir: Path | None = None, pick: Callable[[], int] = free_port
) -> Iterator[int]:
    """A free port that no other launch on this host holds, reserved until the block ends;
    RuntimeError when `MAX_TRIES` picks all were reserved."""
    folder = lock_dir or port_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(MAX_TRIES):
        port = pick()
        handle = (folder / f"{port}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another launch holds this port
            handle.close()
            continue
        try:
            yield port
        finally:
            handle.close()  # closing the file drops the lock
        return
    raise RuntimeError(f"no rendezvous port could be reserved in {MAX_TRIES} tries ({folder})")
