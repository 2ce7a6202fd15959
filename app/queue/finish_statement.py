"""Ending an attempt on PostgreSQL in one round trip: one autocommitted statement that sets the
job's final status under its lease and, in the same atomic statement, drops an earlier
attempt's rows and stores this attempt's metrics (and, on success, insertion and artifact rows;
on a failure that keeps a trained base, its artifact rows).

The ORM path (`app.queue.finish`) took seven round trips per finish (BEGIN, the guarded UPDATE,
four DELETEs, COMMIT), each statement built afresh. Here the statement text is built once per
outcome kind; the rows travel as arrays and JSON documents in its parameters; it runs on a
connection of the queue's autocommit engine (`app.db.session.claim_engine`), straight on the
driver's cursor, so the statement is its own transaction: all of it happens or none, and the
exactly-once rules are those of the ORM path, whose guard it repeats (`id`, `lease_token`,
`status = 'running'`). The data-modifying parts are CTEs over one snapshot; each insert reads
the delete it must follow (`count(*)` over the delete's RETURNING), so that the delete has run
first and a unique key freed by it can be used again.
"""

from __future__ import annotations

import enum
import functools
import json
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from app.db.enums import JobStatus
from app.db.models import Insertion
from app.queue.claim import execute_autocommitted
from app.queue.lease import ClaimedJob, MetricPoint, _metric_rows


class EndKind(enum.Enum):
    """Which final values the statement sets."""

    SUCCESS = "success"
    FAILURE = "failure"
    FAILURE_KEEPING_ARTIFACTS = "failure_keeping_artifacts"
    """A failure that keeps files as artifacts (a base trained before it: KEPT_ON_FAILURE)."""
    CANCELLED = "cancelled"


_COMMON_SET = (
    "status = %(status)s, finished_at = %(now)s, heartbeat_at = %(now)s, "
    "lease_expires_at = NULL, cancel_requested = false, stage = %(stage)s, message = %(message)s"
)
_KIND_SET = {
    EndKind.SUCCESS: ", result = CAST(%(result)s AS jsonb), progress = 1.0",
    EndKind.FAILURE: ", error = %(error)s",
    EndKind.FAILURE_KEEPING_ARTIFACTS: ", error = %(error)s",
    EndKind.CANCELLED: "",
}


def _insertion_columns() -> list[str]:
    return [c.name for c in Insertion.__table__.columns if c.name != "id"]


@functools.cache
def end_attempt_sql(kind: EndKind) -> str:
    """The one statement that ends an attempt with `kind`; it returns one row (`ended`: 1 when
    the lease held and everything was written, 0 when nothing was)."""
    parts = [
        f"""ended AS (
    UPDATE jobs SET {_COMMON_SET}{_KIND_SET[kind]}
    WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'running'
    RETURNING id
)""",
        """other_attempts AS (
    DELETE FROM metrics m USING ended
    WHERE m.job_id = ended.id AND m.attempt <> %(attempt)s
)""",
        # A heartbeat whose commit was cut off may have been stored and then sent again: keep
        # the first row of each (step, split, name), as the ORM path's dedupe does.
        """repeats AS (
    DELETE FROM metrics m USING ended
    WHERE m.job_id = ended.id AND m.attempt = %(attempt)s AND m.id NOT IN (
        SELECT min(k.id) FROM metrics k
        WHERE k.job_id = %(job_id)s AND k.attempt = %(attempt)s
        GROUP BY k.step, k.split, k.name)
)""",
        """added_metrics AS (
    INSERT INTO metrics (job_id, attempt, step, split, name, value)
    SELECT DISTINCT ON (p.step, p.split, p.name)
        ended.id, %(attempt)s, p.step, p.split, p.name, p.value
    FROM ended,
        unnest(CAST(%(steps)s AS integer[]), CAST(%(splits)s AS varchar[]),
               CAST(%(names)s AS varchar[]), CAST(%(values)s AS double precision[]))
        WITH ORDINALITY AS p(step, split, name, value, n)
    WHERE NOT EXISTS (
        SELECT 1 FROM metrics e
        WHERE e.job_id = %(job_id)s AND e.attempt = %(attempt)s
          AND e.step = p.step AND e.split = p.split AND e.name = p.name)
    ORDER BY p.step, p.split, p.name, p.n
)""",
    ]
    if kind is EndKind.SUCCESS:
        columns = ", ".join(_insertion_columns())
        row_columns = ", ".join(f"r.{c}" for c in _insertion_columns())
        parts += [
            """old_insertions AS (
    DELETE FROM insertions i USING ended WHERE i.job_id = ended.id RETURNING 1
)""",
            f"""added_insertions AS (
    INSERT INTO insertions ({columns})
    SELECT {row_columns}
    FROM ended, jsonb_populate_recordset(NULL::insertions, CAST(%(insertions)s AS jsonb)) r
    WHERE (SELECT count(*) FROM old_insertions) >= 0
)""",
        ]
    if kind in (EndKind.SUCCESS, EndKind.FAILURE_KEEPING_ARTIFACTS):
        parts += [
            """old_artifacts AS (
    DELETE FROM artifacts a USING ended WHERE a.job_id = ended.id RETURNING 1
)""",
            """added_artifacts AS (
    INSERT INTO artifacts (job_id, name, path, size, sha256)
    SELECT ended.id, r.name, r.path, r.size, r.sha256
    FROM ended, jsonb_populate_recordset(NULL::artifacts, CAST(%(artifacts)s AS jsonb)) r
    WHERE (SELECT count(*) FROM old_artifacts) >= 0
)""",
        ]
    return "WITH " + ",\n".join(parts) + "\nSELECT count(*) AS ended FROM ended"


def _finite(value: Any) -> Any:
    """JSON-able without NaN/Infinity (which jsonb refuses): non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False, separators=(",", ":"))


def end_attempt_params(
    claim: ClaimedJob,
    status: JobStatus,
    values: dict[str, Any],
    metrics: Sequence[MetricPoint],
    now: Any,
    *,
    insertions: Sequence[dict[str, Any]] = (),
    artifacts: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The statement's parameters: the guard, the final `values` (stage, message, and result or
    error), the metric points as four arrays, the rows as JSON documents."""
    rows = _metric_rows(claim, metrics)
    params: dict[str, Any] = {
        "job_id": claim.job_id,
        "token": claim.lease_token,
        "attempt": claim.attempt,
        "status": str(status),
        "now": now,
        "stage": values.get("stage", ""),
        "message": values.get("message", ""),
        "steps": [r["step"] for r in rows],
        "splits": [r["split"] for r in rows],
        "names": [r["name"] for r in rows],
        "values": [r["value"] for r in rows],
    }
    if "result" in values:
        params["result"] = _json(values["result"])
        params["insertions"] = _json(list(insertions))
        params["artifacts"] = _json(list(artifacts))
    if "error" in values:
        params["artifacts"] = _json(list(artifacts))
        params["error"] = values["error"]
    return params


def end_attempt(engine: Engine, kind: EndKind, params: dict[str, Any]) -> bool:
    """Run the statement (one round trip, its own transaction); True when the lease held."""
    row = execute_autocommitted(engine, end_attempt_sql(kind), params)
    return row is not None and int(row[0]) == 1
