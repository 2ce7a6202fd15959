"""A spec's problems: `SpecError` and the one-line-per-field messages of pydantic errors."""

from __future__ import annotations

from typing import Any

from pydantic import (
    ValidationError,
)
from pydantic_core import PydanticCustomError

EXPERIMENT_KINDS = ("train", "expand", "grow", "sweep", "sweep_point")
"""The `kind` tags of the experiment union; pydantic puts the tag first in an error's location."""


class SpecError(ValueError):
    """A spec failed validation; `problems` holds one line per problem, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _field_path(loc: tuple[Any, ...]) -> str:
    # The discriminated union puts the kind tag first (e.g. 'expand'); it is not a field.
    # A bare tag is a whole-spec (model validator) error.
    parts = [str(p) for p in loc]
    if parts and parts[0] in EXPERIMENT_KINDS:
        parts = parts[1:]
    return ".".join(parts) or "spec"


CROSS_FIELD_ERROR = "cross_field"


def raise_problems(problems: list[tuple[str, str]]) -> None:
    """Raise the cross-field problems a model validator found, each with its field path
    relative to the validated model; `describe_errors` turns them into full dotted paths."""
    if problems:
        path, message = problems[0]
        raise PydanticCustomError(
            CROSS_FIELD_ERROR,
            "{path}: {message}",
            {"path": path, "message": message, "problems": [list(p) for p in problems]},
        )


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: `full.dotted.path: reason` (cross-field problems included)."""
    lines = []
    for err in exc.errors(include_url=False):
        base = _field_path(tuple(err["loc"]))
        if err["type"] == CROSS_FIELD_ERROR:
            for path, message in (err.get("ctx") or {}).get("problems", []):
                full = path if base == "spec" else f"{base}.{path}"
                lines.append(f"{full}: {message}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{base}: {msg}")
    return lines
