"""The submit form's path to a new job: parse the text, check the token and the spec, enqueue.

The spec goes through the same checks as `POST /api/v1/jobs` (the pydantic spec, then the
compute budget), so the form cannot create a job that the JSON API would refuse.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.bounded_input import InputError, load_spec_mapping
from app.db.models import Job
from app.services.spec_intake import accept_spec
from app.settings import Settings
from app.tokens import TokenScope, verify_token
from expansion.specs.experiments import AnyExperiment
from expansion.specs.problems import SpecError

log = logging.getLogger(__name__)

_MAX_PROBLEM = 300


class SubmissionError(Exception):
    """The form cannot become a job: `problems` holds one line per problem."""

    def __init__(self, problems: list[str], status_code: int = 422) -> None:
        # A problem may quote the input (a key, a value): never show more than a line of it.
        problems = [p if len(p) <= _MAX_PROBLEM else p[:_MAX_PROBLEM] + "..." for p in problems]
        super().__init__("\n".join(problems))
        self.problems = problems
        self.status_code = status_code


def parse_spec_text(text: str) -> dict[str, Any]:
    """The mapping written in `text` (JSON or YAML, bounded: app.bounded_input); else
    SubmissionError."""
    try:
        return load_spec_mapping(text)
    except InputError as exc:
        raise SubmissionError([f"spec: {exc}"]) from None


def validated_spec(
    raw: dict[str, Any], settings: Settings, session: Session | None = None
) -> AnyExperiment:
    """The experiment the form describes, after the spec and compute-budget checks (and, with
    a session, the base job's)."""
    try:
        return accept_spec(raw, settings, session)
    except SpecError as exc:
        raise SubmissionError(exc.problems) from None


def submit_spec_text(session: Session, settings: Settings, text: str, token: str) -> Job:
    """Create a job from the form's spec text, authorized by `token`, and commit it.

    The token is checked first: text from a caller without a `submit` token is never parsed
    (YAML parsing costs CPU, and the form is open to anyone who can reach it)."""
    from app.queue import enqueue_job

    authorized = verify_token(session, token.strip(), TokenScope.SUBMIT) is not None
    session.commit()  # end the read transaction before writing (SQLite: no busy upgrade)
    if not authorized:
        raise SubmissionError(
            [
                "token: missing, invalid or revoked (or expired, or without the submit "
                "scope; create one: jumpboard token create --scope submit)"
            ],
            status_code=401,
        )
    spec = validated_spec(parse_spec_text(text), settings, session)
    job = enqueue_job(session, spec, max_attempts=settings.max_attempts)
    log.info("job %s (%s) submitted from the web form", job.id, job.kind)
    return job
