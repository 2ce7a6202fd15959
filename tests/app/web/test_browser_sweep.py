"""The sweep page in headless Chromium: test error and gap against depth with intervals over
seeds, sensitivity against scaling, the points table and the CSV link.

The sweep's points are stored through the queue's claim/complete/fail functions (the worker's
path) with results of known values, so the drawn means and intervals can be checked exactly.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from browser_pages import save_screenshot
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job
from app.queue import claim_next_job, complete_job, enqueue_job, fail_job
from app.queue.sweeps import refresh_sweep

pytestmark = pytest.mark.browser

CHART_TIMEOUT_MS = 20_000
SWEEP: dict[str, Any] = {
    "kind": "sweep",
    "name": "browser sweep",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 8},
    "train": {"epochs": 1},
    "grid": {
        "model.scaling": ["constant", "inv_depth"],
        "model.depth": [2, 8],
        "train.seed": [0, 1, 2],
    },
}


def _test_error(scaling: str, depth: int, seed: int) -> float:
    # Constant scaling gets worse with depth, 1/L does not; seeds spread by 0.01.
    return (0.1 + 0.02 * depth if scaling == "constant" else 0.12) + 0.01 * seed


def _result(spec: dict[str, Any]) -> dict[str, Any]:
    scaling, depth = spec["model"]["scaling"], spec["model"]["depth"]
    error = _test_error(scaling, depth, spec["train"]["seed"])
    arm = {
        "arm": "scratch",
        "depth": depth,
        "train_risk": 0.1,
        "train_error": 0.02,
        "test_risk": 0.1 + error,
        "test_error": error,
        "input_sensitivity": {
            "estimate": 3.0 if scaling == "constant" else 1.0,
            "standard_error": 0.1,
            "projections": 8,
            "samples": 64,
        },
        "capacity": {"branch_norm_sum": float(depth), "alpha_sum": 1.0},
    }
    return {
        "kind": "sweep_point",
        "spec": spec,
        "sweep_index": spec["sweep_index"],
        "coordinates": spec["coordinates"],
        "test_error": error,
        "arms": [arm],
        "curves": {"train/loss": [[1, 2.0], [2, 1.0]]},
    }


@pytest.fixture(scope="module")
def sweep_id(factory: sessionmaker[Session]) -> int:
    """A finished sweep of 12 points, one of which failed."""
    with factory() as session:
        sweep = enqueue_job(session, SWEEP)
        sweep_id = sweep.id
        n = len(session.scalars(select(Job.id).where(Job.parent_id == sweep_id)).all())
    assert n == 12
    for _ in range(n):
        claim = claim_next_job(factory, "browser-sweep-worker", 600.0)
        assert claim is not None and claim.spec["kind"] == "sweep_point"
        coords = claim.spec["coordinates"]
        if coords == {"model.scaling": "inv_depth", "model.depth": 8, "train.seed": 2}:
            assert fail_job(factory, claim, "FloatingPointError: non-finite loss")
        else:
            assert complete_job(factory, claim, _result(claim.spec))
    with factory() as session:
        refresh_sweep(session, sweep_id)
        finished = session.get(Job, sweep_id)
        assert finished is not None and finished.status == "succeeded"
    return sweep_id


def test_sweep_page_draws_error_against_depth_with_intervals_and_offers_the_csv(
    page: Any,
    base_url: str,
    sweep_id: int,
) -> None:
    page.goto(f"{base_url}/jobs/{sweep_id}/sweep")
    assert page.inner_text("#sweep-status").strip() == "succeeded"
    assert "11 succeeded, 1 failed" in page.inner_text("#sweep-counts")
    page.wait_for_selector('#sweep-error-chart[data-ready="true"]', timeout=CHART_TIMEOUT_MS)
    drawn = page.evaluate(
        """() => {
            const el = document.getElementById("sweep-error-chart");
            return {
                xtype: el.layout.xaxis.type,
                traces: el.data.map(t => ({name: t.name, x: t.x, y: t.y,
                    plus: t.error_y.array, minus: t.error_y.arrayminus})),
                bars: el.querySelectorAll(".errorbar").length,
            };
        }"""
    )
    assert drawn["xtype"] == "log"
    traces = {t["name"]: t for t in drawn["traces"]}
    assert set(traces) == {"constant α", "1/L"}
    constant = traces["constant α"]
    assert constant["x"] == [2, 8]
    # Mean over seeds 0, 1, 2 of 0.1 + 0.02 L + 0.01 seed.
    assert constant["y"] == pytest.approx([0.15, 0.27])
    # Three seeds with spread 0.01: the 95% t-interval half-width is t(0.975, 2) * 0.01 / sqrt 3.
    assert constant["plus"] == pytest.approx([4.303 * 0.01 / 3**0.5] * 2, rel=1e-3)
    assert constant["minus"] == pytest.approx(constant["plus"])
    # 1/L at depth 8 lost one seed: mean of two.
    assert traces["1/L"]["y"] == pytest.approx([0.13, 0.125])
    assert drawn["bars"] >= 4  # the error bars are drawn, not only specified
    page.wait_for_selector('#sweep-gap-chart[data-ready="true"]', timeout=CHART_TIMEOUT_MS)
    page.wait_for_selector('#sweep-sensitivity-chart[data-ready="true"]', timeout=CHART_TIMEOUT_MS)
    assert page.locator("#sweep-table tbody tr").count() == 12
    save_screenshot(page, "sweep-page")

    href = page.get_attribute("#sweep-csv", "href")
    assert href == f"/api/v1/jobs/{sweep_id}/sweep.csv"
    response = page.request.get(f"{base_url}{href}")
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO(response.text())))
    assert len(rows) == 12
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["scaling"] == "inv_depth" and failed[0]["depth"] == "8"
    assert {r["input_sensitivity"] for r in rows if r["status"] == "succeeded"} == {"3.0", "1.0"}


def test_the_job_page_of_a_sweep_links_to_its_sweep_page(
    page: Any,
    base_url: str,
    sweep_id: int,
) -> None:
    page.goto(f"{base_url}/jobs/{sweep_id}")
    page.click("#sweep-link")
    page.wait_for_selector("#sweep-charts")
    assert page.url.endswith(f"/jobs/{sweep_id}/sweep")


def test_a_points_job_page_draws_its_curves_and_links_back(
    page: Any,
    base_url: str,
    sweep_id: int,
    factory: sessionmaker[Session],
) -> None:
    with factory() as session:
        point_id = session.scalars(
            select(Job.id).where(Job.parent_id == sweep_id, Job.status == "succeeded")
        ).first()
    page.goto(f"{base_url}/jobs/{point_id}")
    assert page.inner_text("#job-status").strip() == "succeeded"
    page.wait_for_selector('#loss-chart[data-ready="true"]', timeout=CHART_TIMEOUT_MS)
    page.click(f'a[href="/jobs/{sweep_id}/sweep"]')
    page.wait_for_selector("#sweep-charts")
