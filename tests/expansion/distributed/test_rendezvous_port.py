"""The rendezvous port of a multi-device launch is reserved on the host (issue 24): two launches
starting at the same moment, even when both are handed the same free port, rendezvous on
different ports; a port is free again once its launch ended, or its launcher died."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from expansion.distributed.ports import reserved_port

SAME_PORT = 47_123
"""What a racing `free_port` hands both launches (the collision the reservation prevents)."""

WAIT_S = 30.0
"""Hang guard of each wait on another process (not a timing assertion)."""


def _picks(*ports: int) -> Callable[[], int]:
    """A stand-in for `free_port` returning `ports` in order."""
    left = list(ports)
    return lambda: left.pop(0)


def _launch(lock_dir: Path, second_choice: int, start: Any, hold: Any, ports: Any) -> None:
    """One launch (a forked process): reserve a port when `start` opens, report it, keep it
    until `hold` is set."""
    start.wait(WAIT_S)
    with reserved_port(lock_dir, pick=_picks(SAME_PORT, second_choice)) as port:
        ports.put(port)
        hold.wait(WAIT_S)


def test_two_launches_starting_at_once_get_different_ports(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # no re-import: the test stays short
    start, hold, ports = ctx.Event(), ctx.Event(), ctx.Queue()
    launches = [
        ctx.Process(target=_launch, args=(tmp_path, choice, start, hold, ports))
        for choice in (47_201, 47_202)
    ]
    for launch in launches:
        launch.start()
    start.set()  # both reserve at the same moment, both are offered SAME_PORT first
    got = sorted(ports.get(timeout=WAIT_S) for _ in launches)
    hold.set()
    for launch in launches:
        launch.join(WAIT_S)
        assert launch.exitcode == 0
    assert got[0] != got[1] and SAME_PORT in got, got


def test_a_port_is_free_again_after_its_launch(tmp_path: Path) -> None:
    with reserved_port(tmp_path, pick=_picks(SAME_PORT)) as first:
        assert first == SAME_PORT
        with reserved_port(tmp_path, pick=_picks(SAME_PORT, 47_301)) as second:
            assert second == 47_301  # held: another port
    with reserved_port(tmp_path, pick=_picks(SAME_PORT)) as again:
        assert again == SAME_PORT


def _hold_forever(lock_dir: Path, ready: Any) -> None:
    with reserved_port(lock_dir, pick=_picks(SAME_PORT)):
        ready.set()
        signal.pause()


def test_a_killed_launcher_leaves_no_port_reserved(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(tmp_path, ready))
    holder.start()
    assert ready.wait(WAIT_S)
    with reserved_port(tmp_path, pick=_picks(SAME_PORT, 47_401)) as port:
        assert port == 47_401
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(WAIT_S)
    with reserved_port(tmp_path, pick=_picks(SAME_PORT)) as port:
        assert port == SAME_PORT


def test_giving_up_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("expansion.distributed.ports.MAX_TRIES", 2)
    with (
        reserved_port(tmp_path, pick=_picks(SAME_PORT)),
        pytest.raises(RuntimeError, match="no rendezvous port"),
        reserved_port(tmp_path, pick=_picks(SAME_PORT, SAME_PORT)),
    ):
        pass
