"""A submitted spec becomes a typed experiment here, once, for the JSON API and the web form
alike: the spec's own checks, then the compute budget (every sweep point against every limit).

What comes out is what travels on: the queue stores it, the worker runs it. Nothing downstream
parses the submission again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.services.base_job import base_job_problems, with_base_job
from app.settings import Settings
from expansion.specs.budget import budget_problems
from expansion.specs.experiments import AnyExperiment
from expansion.specs.parsing import parse_spec
from expansion.specs.problems import SpecError


def accept_spec(raw: Any, settings: Settings, session: Session | None = None) -> AnyExperiment:
    """The experiment `raw` describes, if it is valid and within the compute budget; else
    `SpecError` listing every problem, one `field: reason` line each. With a `session`, an
    `expand.base_job` is resolved and checked (`app.services.base_job`)."""
    if session is not None:
        raw = with_base_job(session, raw)
    spec = parse_spec(raw)
    problems = budget_problems(spec, settings.compute_limits())
    if session is not None:
        problems += base_job_problems(session, spec, settings.artifact_dir)
    if problems:
        raise SpecError(problems)
    return spec
