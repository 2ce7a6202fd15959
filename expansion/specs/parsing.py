"""A raw mapping (YAML, JSON, a request body) into a typed experiment: `parse_spec` lists every
problem in one pass; `spec_json_schema` for the API docs.
"""

from __future__ import annotations

from typing import Any

from expansion.specs.experiments import AnyExperiment, SweepExperiment
from expansion.specs.grid import grid_problems
from expansion.specs.problems import SpecError
from expansion.specs.validation import _ADAPTER, validate_experiment


def parse_spec(raw: Any) -> AnyExperiment:
    """Validate a raw mapping into an experiment spec, or raise SpecError listing every problem.

    A sweep is validated as a whole: its base, then every grid point (expansion.specs.grid).
    """
    spec = validate_experiment(raw)
    if isinstance(spec, SweepExperiment):
        problems = grid_problems(spec)
        if problems:
            raise SpecError(problems)
    return spec


def spec_json_schema() -> dict[str, Any]:
    """JSON schema of the experiment spec union (for the API docs and editors)."""
    return _ADAPTER.json_schema()
