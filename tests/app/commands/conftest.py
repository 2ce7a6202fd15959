"""Fixtures of the CLI client tests: `jumpboard serve` on a free port (one per test module)
and the environment a user's shell would have pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from local_server import Served, free_port, serving


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
    with serving([], env, home, port) as served:
        yield served


@pytest.fixture
def cli_env(served: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """This process's environment pointed at the served instance (as a user's shell would be)."""
    for key in ("JUMPBOARD_TOKEN", "JUMPBOARD_SERVER"):
        monkeypatch.delenv(key, raising=False)
    for key, value in served.env.items():
        if key.startswith("JUMPBOARD_"):
            monkeypatch.setenv(key, value)
    return served
