"""A `jumpboard serve` the client tests talk to: a free loopback port, the served instance, and
starting it as a user would (a child process, ready once `/readyz` answers)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A running `jumpboard serve`: its URL, the environment of a user's shell pointed at it,
    and its home folder."""

    url: str
    env: dict[str, str]
    home: Path


@contextmanager
def serving(
    args: list[str], env: dict[str, str], home: Path, port: int, cwd: Path | None = None
) -> Iterator[Served]:
    """`jumpboard serve ARGS` with `env` until the block ends; its log is `home/serve.log`."""
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {(home / 'serve.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("serve did not become ready")
        yield Served(url=url, env=env, home=home)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
