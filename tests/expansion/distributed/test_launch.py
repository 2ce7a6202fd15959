"""The launcher's decisions that need no second process: who counts as externally launched,
and that a non-zero rank of an external launch writes nothing into the run's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from recording_reporter import RecordingReporter

from expansion.distributed.launch import run_on_devices
from expansion.ranks import externally_launched
from expansion.specs.parsing import parse_spec

LAUNCH_VARIABLES = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "SLURM_PROCID", "SLURM_NTASKS", "RANK")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"LOCAL_RANK": "0"}, True),  # torchrun, or our own ranks
        ({"TORCHELASTIC_RUN_ID": "x"}, True),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, False),  # a worker inside an allocation
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, True),  # one task of a 4-task step
    ],
)
def test_who_counts_as_externally_launched(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert externally_launched() is expected


def test_a_non_zero_rank_of_an_external_launch_writes_nothing(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("TORCHELASTIC_RUN_ID", "test")
    clean_env.setenv("RANK", "1")
    spec = {
        "kind": "train",
        "data": {"name": "digits", "max_train_samples": 100},
        "model": {"kind": "mlp", "width": 8, "depth": 1},
        "train": {"epochs": 1, "batch_size": 50, "accelerator": "cpu"},
    }
    reporter = RecordingReporter()
    result = run_on_devices(parse_spec(spec), tmp_path / "out", reporter)
    assert result["steps"] == 2
    assert not (tmp_path / "out").exists()
    assert reporter.metrics == [] and reporter.events == []
