"""Fixtures of the CLI client tests: `jumpboard serve` on a free port (one per test module)
and the environment a user's shell would have pointed at it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from local_server import Served, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`jumpboard serve` (embedded default, in-process worker) on a free loopback port."""
    home = tmp_path_factory.mktemp("jumpboard-home")
    port = free_port()
    env = {
        **os.environ,
        "JUMPBOARD_DATABASE_URL": f"sqlite:///{home / 'jumpboard.db'}",
        "JUMPBOARD_ARTIFACT_DIR": str(home / "artifacts"),
        "JUMPBOARD_DATA_DIR": str(home / "data"),
        "JUMPBOARD_PORT": str(port),
        "JUMPBOARD_HEARTBEAT_SECONDS": "1",
        "JUMPBOARD_METRICS_FLUSH_SECONDS": "0.5",
    }
    env.pop("JUMPBOARD_TOKEN", None)
    env.pop("JUMPBOARD_SERVER", None)
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
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


@pytest.fixture
def cli_env(served: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """This process's environment pointed at the served instance (as a user's shell would be)."""
    for key in ("JUMPBOARD_TOKEN", "JUMPBOARD_SERVER"):
        monkeypatch.delenv(key, raising=False)
    for key, value in served.env.items():
        if key.startswith("JUMPBOARD_"):
            monkeypatch.setenv(key, value)
    return served
