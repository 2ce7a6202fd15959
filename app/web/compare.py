"""The compare view: two or more jobs side by side (spec diff, headline numbers, curves)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Insertion, Job, Metric
from app.web.charts import CONTINUATION_SPLIT, Chart, curve_chart, curves_from_result
from app.web.job_view import (
    expand_headline,
    grow_headline,
    grow_view,
    position_rows,
    train_headline,
)

MAX_COMPARED = 8
HEADLINE_NUMBERS: tuple[tuple[str, str], ...] = (
    ("test_risk", "test risk (nats)"),
    ("test_error", "test error"),
    ("val_risk", "validation risk (nats)"),
    ("parameters", "parameters"),
)


class CompareError(ValueError):
    """The `jobs` parameter does not name 2 to MAX_COMPARED existing jobs; `incomplete` when it
    only names too few (the page then asks for more rather than refusing)."""

    def __init__(self, message: str, *, incomplete: bool = False) -> None:
        super().__init__(message)
        self.incomplete = incomplete


@dataclass
class CompareView:
    """What the compare page shows."""

    jobs: list[Job]
    headlines: list[str]
    numbers: list[tuple[str, list[Any]]]
    """(label, one value per job)."""
    spec_rows: list[tuple[str, list[str], bool]]
    """(dotted key, one shown value per job, differs across jobs)."""
    loss_chart: Chart
    accuracy_chart: Chart


def parse_job_ids(text: str) -> list[int]:
    """Job ids from `1,2,3` (order kept, duplicates dropped); CompareError naming the problem."""
    ids: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or len(part) > 18:
            raise CompareError(f"{part!r} is not a job id")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) < 2:
        raise CompareError("name at least two jobs, e.g. /compare?jobs=1,2", incomplete=True)
    if len(ids) > MAX_COMPARED:
        raise CompareError(f"compare at most {MAX_COMPARED} jobs at once")
    return ids


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as {dotted.key: leaf value}."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def spec_diff(specs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str], bool]]:
    """Every spec key with each job's value (`—` where absent), differing keys first."""
    flat = [flatten(spec) for spec in specs]
    keys = sorted({k for f in flat for k in f})
    rows = []
    for key in keys:
        shown = ["—" if key not in f else _show(f[key]) for f in flat]
        rows.append((key, shown, len(set(shown)) > 1))
    return sorted(rows, key=lambda row: not row[2])


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _headline(session: Session, job: Job) -> str:
    result = job.result or {}
    if not result:
        return f"{job.status}: no result yet"
    if job.kind == "expand":
        insertions = session.scalars(select(Insertion).where(Insertion.job_id == job.id)).all()
        return expand_headline(result, position_rows(result, insertions))[0]
    if job.kind == "grow":
        view = grow_view(job, result)
        return grow_headline(job, view)[0] if view is not None else ""
    return train_headline(job, result)[0]


def _curves(session: Session, job: Job, name: str) -> list[tuple[float, float]]:
    points = [
        (float(step), float(value))
        for step, value in session.execute(
            select(Metric.step, Metric.value)
            .where(
                Metric.job_id == job.id,
                Metric.split == "val",
                Metric.name == name,
                Metric.split != CONTINUATION_SPLIT,
            )
            .order_by(Metric.step)
        )
        if value is not None
    ]
    if points:
        return points
    stored = curves_from_result((job.result or {}).get("curves") or {})
    return [(float(s), v) for s, split, n, v in stored if split == "val" and n == name]


def build_compare_view(session: Session, job_ids: Sequence[int]) -> CompareView:
    """The compare page for these jobs; CompareError when one does not exist."""
    jobs = []
    for job_id in job_ids:
        job = session.get(Job, job_id)
        if job is None:
            raise CompareError(f"there is no job {job_id}")
        jobs.append(job)
    label = {job.id: f"job {job.id}" + (f" {job.name}" if job.name else "") for job in jobs}
    numbers = [
        (title, [(job.result or {}).get(key) for job in jobs]) for key, title in HEADLINE_NUMBERS
    ]
    return CompareView(
        jobs=jobs,
        headlines=[_headline(session, job) for job in jobs],
        numbers=numbers,
        spec_rows=spec_diff([job.spec for job in jobs]),
        loss_chart=curve_chart(
            "compare-loss-chart",
            {label[j.id]: _curves(session, j, "loss") for j in jobs},
            title="Validation loss",
            y_title="validation loss (nats)",
        ),
        accuracy_chart=curve_chart(
            "compare-accuracy-chart",
            {label[j.id]: _curves(session, j, "accuracy") for j in jobs},
            title="Validation accuracy",
            y_title="validation accuracy",
        ),
    )
