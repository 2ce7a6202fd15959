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
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    GROUP_ALIASES,
    GROUP_KEYS,
    parse_group_by,
)

router = APIRouter(prefix="/calibration", tags=["calibration"])

MAX_RESAMPLES = 5000
MAX_PERMUTATIONS = 20000


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
    resamples: Annotated[
        int, Query(ge=0, le=MAX_RESAMPLES, description="Cluster bootstrap resamples (jobs).")
    ] = DEFAULT_RESAMPLES,
    permutations: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_PERMUTATIONS,
            description="Joint permutations behind the max-T adjusted p-values (0: none).",
        ),
    ] = DEFAULT_PERMUTATIONS,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    """Spearman of each predictor (and of the position-index baselines) with the realized gain,
    per group: within-network mean with its interval over jobs and exact permutation p-value,
    the max-T adjusted p-value over the group's predictors, the random band, the pooled
    Spearman with its cluster-bootstrap interval, and the gain reliability with the ceiling it
    implies; `format=csv` gives the underlying points (one row per insertion)."""
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
    rows = calibration_table(session, keys, resamples=resamples, permutations=permutations)
    return CalibrationOut(
        group_by=list(keys),
        resamples=resamples,
        permutations=permutations,
        rows=[CalibrationRowOut(**row.as_dict()) for row in rows],
    )
