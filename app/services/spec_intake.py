"""A submitted spec becomes a typed experiment here, once, for the JSON API and the web form
alike: the spec's own checks, then the compute budget (every sweep point against every limit).

What comes out is what travels on: the queue stores it, the worker runs it. Nothing downstream
parses the submission again.
"""

from __future__ import annotations

from typing import Any

from app.settings import Settings
from expansion.specs.budget import budget_problems
from expansion.specs.experiments import AnyExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError


def accept_spec(raw: Any, settings: Settings) -> AnyExperiment:
    """The experiment `raw` describes, if it is valid and within the compute budget; else
    `SpecError` listing every problem, one `field: reason` line each."""
    spec = parse_spec(raw)
    problems = budget_problems(spec, settings.compute_limits())
    if problems:
        raise SpecError(problems)
    return spec
