"""The job table's closed sets agree with the specs they store."""

from __future__ import annotations

from typing import get_args

from app.db.enums import JobKind
from expansion.specs.experiments import ExperimentKind
from expansion.specs.problems import EXPERIMENT_KINDS


def test_every_experiment_kind_is_a_job_kind() -> None:
    assert (
        {kind.value for kind in JobKind} == set(EXPERIMENT_KINDS) == set(get_args(ExperimentKind))
    )
