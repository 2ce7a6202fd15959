"""One experiment (any kind but a sweep's grid) validated with every problem listed in one pass:
field errors and cross-field checks together, each with its full dotted path.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)

from expansion.specs.experiments import (
    AnyExperiment,
    ExpandExperiment,
    ExperimentSpec,
    GrowExperiment,
    SweepExperiment,
    SweepPointExperiment,
    TrainExperiment,
    _ExperimentBase,
)
from expansion.specs.problems import (
    CROSS_FIELD_ERROR,
    EXPERIMENT_KINDS,
    SpecError,
    describe_errors,
)

# mypy reads an Annotated union of five models as a value, not a type; pydantic takes it as one
# (some mypy and pydantic versions accept it, hence unused-ignore).
_ADAPTER: TypeAdapter[AnyExperiment] = TypeAdapter(ExperimentSpec)  # type: ignore[arg-type, unused-ignore]


_KIND_CLASSES: dict[str, type[_ExperimentBase]] = {
    "train": TrainExperiment,
    "expand": ExpandExperiment,
    "grow": GrowExperiment,
    "sweep": SweepExperiment,
    "sweep_point": SweepPointExperiment,
}


def _drop_failed_fields(raw: dict[str, Any], exc: ValidationError) -> list[str]:
    """Remove from `raw` (in place) every field with a per-field error, so that validating
    again runs the cross-field checks on the rest; returns the dotted paths removed."""
    dropped = []
    for err in exc.errors(include_url=False):
        if err["type"] == CROSS_FIELD_ERROR:
            continue
        parts = [p for p in err["loc"]]
        if parts and parts[0] in ("train", "expand", "grow"):
            parts = parts[1:]
        # The field itself: a top-level key, or a key inside a section (not a list item).
        keep = 2 if len(parts) >= 2 and isinstance(raw.get(str(parts[0])), dict) else 1
        field = [str(p) for p in parts[:keep]]
        if not field or field[0] == "kind":
            continue
        container: Any = raw
        for key in field[:-1]:
            container = container.get(key) if isinstance(container, dict) else None
        if isinstance(container, dict) and field[-1] in container:
            del container[field[-1]]
            dropped.append(".".join(field))
    return dropped


def _section_level_only(exc: ValidationError) -> bool:
    return all(err["type"] == CROSS_FIELD_ERROR for err in exc.errors(include_url=False))


def _experiment_level_problems(work: dict[str, Any]) -> list[str]:
    """The cross-section checks of the spec in `work`, run even when a section failed only its
    own cross-field checks (that section is taken as written); [] when a section is unusable."""
    cls = _KIND_CLASSES.get(str(work.get("kind", "train")))
    if cls is None:
        return []
    values: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            if name in work:
                values[name] = work[name]
            continue
        if name not in work:
            if info.is_required():
                return []
            continue
        section = work[name]
        if not isinstance(section, dict):
            return []
        try:
            values[name] = annotation.model_validate(section)
        except ValidationError as exc:
            if not _section_level_only(exc):
                return []
            values[name] = annotation.model_construct(**section)
    instance = cls.model_construct(**values)
    try:
        found = instance._cross_section_problems()
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return []  # a value of the wrong shape: its own problem is already listed
    return [f"{path}: {message}" for path, message in found]


def _problems_in_one_pass(raw: dict[str, Any], first: ValidationError) -> list[str]:
    """Every problem of an invalid spec: the per-field ones, then the cross-field ones found
    by validating again without the failed fields, then the cross-section ones (a cross-field
    problem that mentions a failed field is left out: it would judge a default, not the
    user's value)."""
    problems = describe_errors(first)
    work = copy.deepcopy(raw)
    dropped = _drop_failed_fields(work, first)

    def add(lines: list[str]) -> None:
        for line in lines:
            path = line.partition(": ")[0]
            mentions = any(d in line or path.startswith(d) for d in dropped)
            if line not in problems and not mentions:
                problems.append(line)

    for _ in range(4):
        if not dropped:
            break
        try:
            _ADAPTER.validate_python(work)
            break
        except ValidationError as exc:
            add(describe_errors(exc))
            newly = _drop_failed_fields(work, exc)
            if not newly:
                break
            dropped += newly
    add(_experiment_level_problems(work))
    return problems


def validate_experiment(raw: Any) -> AnyExperiment:
    """Validate a raw mapping into an experiment spec, or raise SpecError listing every problem
    (a sweep's grid points are checked by `expansion.specs.parsing.parse_spec`)."""
    if not isinstance(raw, dict):
        raise SpecError([f"spec: must be a mapping, not {type(raw).__name__}"])
    raw = dict(raw)
    raw.setdefault("kind", "train")
    if raw["kind"] not in EXPERIMENT_KINDS:
        raise SpecError(
            [f"kind: must be one of {', '.join(EXPERIMENT_KINDS)} (got {raw['kind']!r})"]
        )
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise SpecError(_problems_in_one_pass(raw, exc)) from None
