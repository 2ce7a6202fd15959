"""How well each insertion predictor ranks the realized gain, grouped by configuration."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from app.api.deps import ReadAccess, SessionDep
from app.api.schemas import CalibrationOut, CalibrationRowOut, ErrorOut
from app.web.calibration import CSV_COLUMNS, calibration_table, csv_rows
from expansion.results.calibration import (
    DEFAULT_RESAMPLES,
    GROUP_ALIASES,
    GROUP_KEYS,
    parse_group_by,
)

router = APIRouter(prefix="/calibration", tags=["calibration"])

MAX_RESAMPLES = 5000


GROUP_BY_HELP = (
    "Comma-separated configuration fields ("
    + ", ".join(GROUP_KEYS)
    + "), or one of "
    + ", ".join(GROUP_ALIASES)
    + "."
)


@router.get(
    "",
    response_model=CalibrationOut,
    dependencies=[ReadAccess],
    responses={
        200: {"content": {"text/csv": {}}, "description": "Rows, or per-insertion CSV."},
        401: {"model": ErrorOut},
        422: {"model": ErrorOut},
    },
)
def get_calibration(
    session: SessionDep,
    group_by: Annotated[str, Query(max_length=100, description=GROUP_BY_HELP)] = "dataset",
    resamples: Annotated[int, Query(ge=0, le=MAX_RESAMPLES)] = DEFAULT_RESAMPLES,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    """Spearman of each predictor with the realized gain, per group, with intervals and the
    noise ceiling; `format=csv` gives the underlying points (one row per insertion)."""
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(session))
        return Response(
            buffer.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="jumpboard-calibration.csv"'},
        )
    try:
        keys = parse_group_by(group_by)
    except ValueError as exc:
        raise HTTPException(
            status_code=422,
            detail=[{"loc": ["query", "group_by"], "msg": str(exc), "type": "value_error"}],
        ) from None
    rows = calibration_table(session, keys, resamples=resamples)
    return CalibrationOut(
        group_by=list(keys),
        resamples=resamples,
        rows=[CalibrationRowOut(**row.as_dict()) for row in rows],
    )
