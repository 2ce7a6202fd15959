"""A private, throwaway PostgreSQL cluster for tests that stop and start the database server.

The shared server on 127.0.0.1:5432 serves every test run on the machine and must never be
stopped; a test that needs a real outage (the server gone, connections refused, then back)
creates its own cluster with `initdb` in a temporary folder, on a free port, and starts and
stops it with `pg_ctl`. As root the server runs as the `postgres` user (PostgreSQL refuses to
run as root). Durability is switched off (`fsync=off`): the cluster lives for one test.

    with PrivatePostgres.create() as cluster:
        url = cluster.create_database("jobs")   # a SQLAlchemy URL
        cluster.stop()                          # connections refused from here on
        cluster.start()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from local_server import free_port
from sqlalchemy import create_engine, text

START_LIMIT_S = 60.0
"""Longest wait for the server to accept connections (a hang guard on a loaded machine)."""

SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c shared_buffers=16MB -c max_connections=60 -c listen_addresses=127.0.0.1"
)
"""Small and fast: a throwaway cluster for one test on a shared machine."""


def _bin(name: str) -> str:
    """The PostgreSQL program `name`: on PATH, else in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in versions:
        if (folder / name).is_file():
            return str(folder / name)
    raise FileNotFoundError(f"PostgreSQL program {name} not found (install postgresql)")


def available() -> bool:
    """True when initdb and pg_ctl are installed."""
    try:
        _bin("initdb")
        _bin("pg_ctl")
    except FileNotFoundError:
        return False
    return True


class PrivatePostgres:
    """One throwaway cluster: its folder, port and server; `close()` stops it and deletes all."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.log_file = root / "server.log"

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb a new cluster in a fresh temporary folder and start it."""
        # Not under pytest's tmp_path: its parents are private to root, the server's user
        # (postgres, when the tests run as root) must reach the folder.
        root = Path(tempfile.mkdtemp(prefix="jb-private-pg-"))
        cluster = cls(root, free_port())
        try:
            cluster.data.mkdir()
            cluster._chown(root)
            cluster._chown(cluster.data)
            cluster._run(
                _bin("initdb"),
                "-D",
                str(cluster.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
            )
            cluster.start()
        except BaseException:
            cluster.close()
            raise
        return cluster

    # ------------------------------------------------------------------ server

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_file),
            "-o",
            f"-p {self.port} -k {self.root} {SERVER_OPTIONS}",
            "-w",
            "-t",
            str(int(START_LIMIT_S)),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back and disconnect every client; `immediate`: as a
        crash would); clients get refused connections until `start`."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        """True while the server runs."""
        status = subprocess.run(
            self._as_owner(_bin("pg_ctl"), "-D", str(self.data), "status"),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def close(self) -> None:
        """Stop the server if it runs and delete the cluster's folder."""
        try:
            if self.data.joinpath("postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ databases

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database (the server must run); returns its URL."""
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _as_owner(*command: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return list(command)

    @staticmethod
    def _chown(path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, user="postgres", group="postgres")

    def _run(self, *command: str) -> None:
        done = subprocess.run(self._as_owner(*command), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(command[:1])} failed ({done.returncode}): "
                f"{done.stderr.strip()}\n{log[-2000:]}"
            )


def wait_until(predicate: Callable[[], bool], what: str, limit: float = START_LIMIT_S) -> None:
    """Poll `predicate()` every 50 ms until true; AssertionError naming `what` after `limit`
    seconds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
