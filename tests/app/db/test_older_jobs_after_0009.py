"""An expand job stored before revision 0009 (issue 20) still reads, renders and serves.

The job and its insertion rows are written at revision 0008 exactly as the service stored them
then: the |E g|^2 test's three-valued `verdict` and `condition_holds`, its limits as
`grad_norm_sq_lcb*`, predictors under their older names, and a result dict with
`certified_gain`, `seeds_lcb` and no certificate in nats. After `upgrade` the columns hold
today's names and values, the pages render the job (the certificate shown as n/a, the
|E g|^2 test as shown / not shown) and the API serves its records under today's names.
`downgrade` maps the outcome back.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from result_fixtures import EXPAND_SPEC, older_expand_result

from app.api.main import create_app
from app.db.migrate import downgrade, upgrade
from app.db.session import create_db_engine, forget_engine
from app.settings import Settings

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")

JOBS = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("spec", JSON),
    sa.column("status", sa.String()),
    sa.column("priority", sa.Integer()),
    sa.column("attempts", sa.Integer()),
    sa.column("max_attempts", sa.Integer()),
    sa.column("progress", sa.Float()),
    sa.column("stage", sa.String()),
    sa.column("message", sa.Text()),
    sa.column("cancel_requested", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("result", JSON),
)
OLD_INSERTIONS = sa.table(
    "insertions",
    sa.column("job_id", sa.Integer()),
    sa.column("position", sa.Integer()),
    sa.column("seed", sa.Integer()),
    sa.column("verdict", sa.String()),
    sa.column("condition_holds", sa.Boolean()),
    sa.column("grad_norm_sq_unbiased", sa.Float()),
    sa.column("grad_norm_sq_lcb", sa.Float()),
    sa.column("grad_norm_sq_lcb_train", sa.Float()),
    sa.column("gain_vs_control", sa.Float()),
    sa.column("predictors", JSON),
    sa.column("record", JSON),
)
OLD_PREDICTORS = {"certificate_u": 3.1e-4, "certificate_lcb": 1.2e-4, "jumpboard_val_gain": 0.001}


def _store_older_job(url: str) -> int:
    """An expand job and its insertion rows as the service stored them at revision 0008."""
    result = older_expand_result()
    now = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    summary = {k: v for k, v in result.items() if k not in ("curves", "insertions")}
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                JOBS.insert().values(
                    id=1,
                    name="older",
                    kind="expand",
                    spec=EXPAND_SPEC,
                    status="succeeded",
                    priority=0,
                    attempts=1,
                    max_attempts=3,
                    progress=1.0,
                    stage="continue",
                    message="",
                    cancel_requested=False,
                    created_at=now,
                    finished_at=now,
                    result=summary,
                )
            )
            for record in result["insertions"]:
                descent = record["descent"]
                conn.execute(
                    OLD_INSERTIONS.insert().values(
                        job_id=1,
                        position=record["position"],
                        seed=record["seed"],
                        verdict=descent["verdict"],
                        condition_holds=descent["condition_holds"],
                        grad_norm_sq_unbiased=descent["grad_norm_sq_unbiased"],
                        grad_norm_sq_lcb=descent["grad_norm_sq_lcb"],
                        grad_norm_sq_lcb_train=None,
                        gain_vs_control=record["realized"]["gain_vs_control"],
                        predictors=dict(OLD_PREDICTORS),
                        record={**record, "predictors": dict(OLD_PREDICTORS)},
                    )
                )
    finally:
        engine.dispose()
    return 1


def _columns(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of a raw query; JSON that SQLite hands back as text is parsed."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(json.loads(v) if isinstance(v, str) and v.startswith("{") else v for v in row)
                for row in conn.execute(sa.text(query))
            ]
    finally:
        engine.dispose()


def _check(url: str, tmp_path: Path) -> None:
    upgrade(url, "0008")
    job_id = _store_older_job(url)
    upgrade(url)
    rows = _columns(
        url,
        "SELECT position, seed, nonzero_gradient, grad_norm_sq_test_limit, "
        "certificate_verdict, predictors FROM insertions ORDER BY position, seed",
    )
    assert [r[2] for r in rows] == ["not_shown"] * 3 + ["shown"] * 3  # holds -> shown
    assert [r[3] for r in rows] == pytest.approx([-3e-5] * 3 + [1.2e-4] * 3)
    assert all(r[4] is None for r in rows)  # no certificate in nats was measured then
    for row in rows:
        predictors = row[5]
        assert predictors == {"certificate_u": 3.1e-4, "certificate_u_test_limit": 1.2e-4}

    settings = Settings(database_url=url, artifact_dir=tmp_path / "artifacts")
    with TestClient(create_app(settings)) as client:
        page = client.get(f"/jobs/{job_id}")
        assert page.status_code == 200
        assert "no certificate in nats (an older result)" in page.text
        assert "|E g|^2 &gt; 0 shown at 1 of 5 positions" in page.text
        assert 'class="nonzero-gradient">shown' in page.text
        assert client.get("/results").status_code == 200
        items = client.get(f"/api/v1/jobs/{job_id}/insertions").json()["items"]
        assert len(items) == 6
        for item in items:
            descent = item["record"]["descent"]
            assert descent["nonzero_gradient"] == item["nonzero_gradient"]
            assert "verdict" not in descent and "grad_norm_sq_lcb" not in descent
            assert "jumpboard_val_gain" not in item["record"]["predictors"]
            assert item["certificate_verdict"] is None
        table = list(csv.DictReader(io.StringIO(client.get("/api/v1/results?format=csv").text)))
        assert {r["nonzero_gradient"] for r in table} == {"shown", "not_shown"}
        assert {r["certificate_verdict"] for r in table} == {""}

    downgrade(url, "0008")
    back = _columns(
        url, "SELECT verdict, condition_holds, grad_norm_sq_lcb, predictors FROM insertions"
    )
    assert {(r[0], bool(r[1])) for r in back} == {("holds", True), ("undecided", False)}
    assert all("certificate_lcb" in r[3] for r in back)
    forget_engine(url)


def test_older_job_reads_renders_and_serves_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'older.db'}", tmp_path)


@pytest.mark.postgres
def test_older_job_reads_renders_and_serves_postgres(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    _check(empty_postgres_url, tmp_path)
