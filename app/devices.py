"""What a worker offers its jobs (`--devices`), and exclusive ownership of GPUs on one host.

`--devices` takes one of:
- nothing (the default): one device, whatever the job finds (a GPU when there is one, else the
  CPU); the job's environment is left alone. Offers 1 device, owns nothing.
- `0,1`: these GPU indices. Offers as many devices as indices, pins jobs to them through
  `CUDA_VISIBLE_DEVICES`, and owns each of them on this host: a lock file per GPU
  (`<lock dir>/gpu-<index>.lock`, held while the worker runs) makes a second worker given the
  same GPU refuse to start.
- `cpu:N`: N CPU "devices" (one process each for a DDP job on the CPU). Offers N, hides GPUs
  from its jobs (`CUDA_VISIBLE_DEVICES` empty) and owns nothing (CPU cores are shared).

A job needs `train.devices` devices (`app.queue.job_devices`); a worker only claims jobs that
need at most what it offers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "jumpboard-devices"
"""Where a host's GPU lock files live (workers of one host must see the same folder)."""
_CPU_SLOTS = re.compile(r"cpu:(\d+)")
MAX_CPU_SLOTS = 64
"""Most CPU device slots one worker may offer (`train.devices` allows 64)."""


class DeviceBusy(RuntimeError):
    """A GPU this worker was given is already owned by another worker on this host."""


@dataclass(frozen=True)
class DeviceOffer:
    """The devices one worker offers: GPU indices, or CPU slots, or (neither) the default one."""

    gpus: tuple[int, ...] = ()
    cpu_slots: int = 0

    @property
    def count(self) -> int:
        """How many devices a job claimed by this worker may use."""
        return len(self.gpus) or self.cpu_slots or 1

    @property
    def cuda_visible_devices(self) -> str | None:
        """`CUDA_VISIBLE_DEVICES` for the worker's jobs; None = leave the environment alone."""
        if self.gpus:
            return ",".join(str(g) for g in self.gpus)
        return "" if self.cpu_slots else None

    def __str__(self) -> str:
        if self.gpus:
            return ",".join(str(g) for g in self.gpus)
        return f"cpu:{self.cpu_slots}" if self.cpu_slots else ""


def parse_devices(text: str) -> DeviceOffer:
    """The offer `text` describes (`""`, `"0,1"` or `"cpu:N"`); ValueError says what is wrong."""
    value = text.strip().replace(" ", "")
    if not value:
        return DeviceOffer()
    cpu = _CPU_SLOTS.fullmatch(value)
    if cpu:
        slots = int(cpu.group(1))
        if not 1 <= slots <= MAX_CPU_SLOTS:
            raise ValueError(f"cpu:N needs 1 <= N <= {MAX_CPU_SLOTS} (got {value!r})")
        return DeviceOffer(cpu_slots=slots)
    parts = value.split(",")
    if not all(p.isdigit() for p in parts):
        raise ValueError(
            f"must be comma-separated GPU indices like '0,1' or 'cpu:N' for N CPU processes "
            f"(got {text.strip()!r})"
        )
    gpus = tuple(int(p) for p in parts)
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"GPU indices must be distinct (got {text.strip()!r})")
    return DeviceOffer(gpus=gpus)


def devices_needed(spec: object) -> int:
    """Devices a (parsed) job spec needs: its `train.devices`, 1 for kinds without training."""
    train = getattr(spec, "train", None)
    return int(getattr(train, "devices", 1) or 1)


class DeviceLocks:
    """Exclusive ownership of an offer's GPUs on this host for as long as it is held."""

    def __init__(self, offer: DeviceOffer, lock_dir: Path = DEFAULT_LOCK_DIR) -> None:
        self.offer, self.lock_dir = offer, lock_dir
        self._files: list[IO[str]] = []

    def acquire(self, owner: str) -> None:
        """Lock every GPU of the offer for `owner`; DeviceBusy (nothing held) when one is taken."""
        if not self.offer.gpus:
            return
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            for gpu in self.offer.gpus:
                path = self.lock_dir / f"gpu-{gpu}.lock"
                handle = path.open("a+")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "another worker"
                    handle.close()
                    raise DeviceBusy(
                        f"GPU {gpu} is already owned by {holder} on this host "
                        f"(lock {path}): give each worker its own --devices"
                    ) from None
                handle.seek(0)
                handle.truncate()
                handle.write(f"worker {owner} (pid {os.getpid()})\n")
                handle.flush()
                self._files.append(handle)
        except BaseException:
            self.release()
            raise
        log.info("worker %s owns GPU(s) %s", owner, self.offer)

    def release(self) -> None:
        """Give up every GPU this holds (closing a lock file releases its lock)."""
        for handle in self._files:
            with contextlib.suppress(OSError):
                handle.close()
        self._files = []
