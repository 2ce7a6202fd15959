"""Insertion records across jobs, as JSON pages or one CSV file with stable column names."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from app.api.deps import ReadAccess, SessionDep
from app.api.pagination import MAX_PAGE, decode_cursor, encode_cursor
from app.api.schemas import MAX_ID, RESULT_FIELDS, ErrorOut, ResultList, ResultRow
from app.db.enums import JobKind
from app.db.models import Insertion, Job

router = APIRouter(prefix="/results", tags=["results"])

MAX_CSV_ROWS = 100_000
_CSV_BATCH = 500


def _row(insertion: Insertion, job: Job) -> ResultRow:
    values: dict[str, Any] = {f: getattr(insertion, f, None) for f in RESULT_FIELDS}
    values.update(job_id=job.id, job_name=job.name, kind=job.kind)
    return ResultRow(**values)


def _csv_lines(rows: Iterator[ResultRow]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for i, row in enumerate(rows, 1):
        writer.writerow(row.model_dump())
        if i % _CSV_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get(
    "",
    response_model=ResultList,
    dependencies=[ReadAccess],
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV with `format=csv`."},
        401: {"model": ErrorOut},
    },
)
def list_results(
    session: SessionDep,
    kind: Annotated[JobKind | None, Query(description="Only jobs of this kind.")] = None,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    position: Annotated[int | None, Query(ge=0, le=10_000)] = None,
    certificate_verdict: Annotated[
        Literal["holds", "fails", "undecided"] | None,
        Query(description="Only insertions whose certificate in nats has this verdict."),
    ] = None,
    nonzero_gradient: Annotated[
        Literal["shown", "not_shown"] | None,
        Query(description="Only insertions whose |E g|^2 test had this outcome."),
    ] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ResultList | StreamingResponse:
    """Insertion records of every job, newest first; `format=csv` returns all matches as CSV."""
    query = (
        select(Insertion, Job).join(Job, Insertion.job_id == Job.id).order_by(Insertion.id.desc())
    )
    if kind is not None:
        query = query.where(Job.kind == kind)
    if job_id is not None:
        query = query.where(Insertion.job_id == job_id)
    if position is not None:
        query = query.where(Insertion.position == position)
    if certificate_verdict is not None:
        query = query.where(Insertion.certificate_verdict == certificate_verdict)
    if nonzero_gradient is not None:
        query = query.where(Insertion.nonzero_gradient == nonzero_gradient)
    if cursor:
        query = query.where(Insertion.id < decode_cursor(cursor))
    if format == "csv":
        rows = [_row(i, j) for i, j in session.execute(query.limit(MAX_CSV_ROWS))]
        return StreamingResponse(
            _csv_lines(iter(rows)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="jumpboard-results.csv"'},
        )
    found = list(session.execute(query.limit(limit + 1)))
    next_cursor = encode_cursor(found[limit - 1][0].id) if len(found) > limit else None
    return ResultList(items=[_row(i, j) for i, j in found[:limit]], next_cursor=next_cursor)
