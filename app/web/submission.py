"""The submit form's path to a new job: parse the text, check the token and the spec, enqueue.

The spec goes through the same checks as `POST /api/v1/jobs` (the pydantic spec, then the
compute budget), so the form cannot create a job that the JSON API would refuse.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml
from sqlalchemy.orm import Session

from app.db.models import Job
from app.services.budget import budget_problems
from app.settings import Settings
from app.tokens import verify_token
from expansion.specs import SpecError, parse_spec

log = logging.getLogger(__name__)


class SubmissionError(Exception):
    """The form cannot become a job: `problems` holds one line per problem."""

    def __init__(self, problems: list[str], status_code: int = 422) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.status_code = status_code


def parse_spec_text(text: str) -> dict[str, Any]:
    """The mapping written in `text` (JSON or YAML); SubmissionError when it is neither."""
    if not text.strip():
        raise SubmissionError(["spec: empty; paste a spec in YAML or JSON"])
    try:
        raw = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SubmissionError([f"spec: not valid JSON (line {exc.lineno}: {exc.msg})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        reason = getattr(exc, "problem", None) or "could not be parsed"
        raise SubmissionError([f"spec: not valid YAML ({where}{reason})"]) from None
    if not isinstance(raw, dict):
        raise SubmissionError([f"spec: must be a mapping of fields, not {type(raw).__name__}"])
    return raw


def validated_spec(raw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The spec as stored on the job row, after the spec and compute-budget checks."""
    try:
        spec = parse_spec(raw)
    except SpecError as exc:
        raise SubmissionError(exc.problems) from None
    problems = budget_problems(spec, settings)
    if problems:
        raise SubmissionError(problems)
    return spec.model_dump(mode="json")


def submit_spec_text(session: Session, settings: Settings, text: str, token: str) -> Job:
    """Create a job from the form's spec text, authorized by `token`, and commit it."""
    from app.queue import enqueue_job

    problems: list[str] = []
    authorized = verify_token(session, token.strip()) is not None
    session.commit()  # end the read transaction before writing (SQLite: no busy upgrade)
    if not authorized:
        problems.append("token: missing, invalid or revoked (create one: jumpboard token create)")
    try:
        spec = validated_spec(parse_spec_text(text), settings)
    except SubmissionError as exc:
        raise SubmissionError(problems + exc.problems) from None
    if problems:
        raise SubmissionError(problems, status_code=401)
    job = enqueue_job(session, spec, max_attempts=settings.max_attempts)
    log.info("job %s (%s) submitted from the web form", job.id, job.kind)
    return job
