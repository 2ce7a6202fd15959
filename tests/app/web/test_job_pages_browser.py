"""The job page (running and finished), the grow page, the compare view and the offline API
docs in headless Chromium, over result dicts in the issue-10 contract shape.

Nothing may load from outside the app: every request to another host fails the test. A
screenshot of each page goes to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_pages import SCREENSHOTS
from result_fixtures import EXPAND_SPEC, GROW_SPEC, HEADLINE_POSITION, expand_result, grow_result
from sqlalchemy.orm import Session, sessionmaker

from app.queue import claim_next_job, complete_job, enqueue_job, heartbeat

pytestmark = pytest.mark.browser

TIMEOUT_MS = 20_000


def _store(factory: sessionmaker[Session], spec: dict[str, Any], result: dict[str, Any]) -> int:
    with factory() as session:
        job_id = enqueue_job(session, spec).id
    claim = claim_next_job(factory, "browser-worker", 600.0)
    assert claim is not None and claim.job_id == job_id
    assert complete_job(factory, claim, result)
    return job_id


@pytest.fixture(scope="module")
def jobs(factory: sessionmaker[Session]) -> dict[str, int]:
    """Job ids: two finished expand jobs, a grow job, and a running expand job."""
    ids = {
        "expand": _store(factory, EXPAND_SPEC, expand_result()),
        "expand_b": _store(
            factory, {**EXPAND_SPEC, "name": "more-epochs", "train": {"epochs": 6}}, expand_result()
        ),
        "grow": _store(factory, GROW_SPEC, grow_result()),
    }
    with factory() as session:
        ids["running"] = enqueue_job(session, EXPAND_SPEC).id
    claim = claim_next_job(factory, "browser-worker", 600.0)
    assert claim is not None
    metrics = [(s, "train", "loss", 2.0 - s / 100) for s in (10, 20, 30, 40)]
    for s, loss in ((40, 0.50), (80, 0.45)):
        metrics += [(s, "continuation", "control seed 0/loss", loss)]
        metrics += [(s, "continuation", f"position {HEADLINE_POSITION} seed 0/loss", loss - 0.02)]
    assert heartbeat(factory, claim, 0.72, "continue", message="160/600 steps", metrics=metrics)
    return ids


@pytest.fixture
def page(browser: Any, base_url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page that may load nothing from another host (offline: no CDN)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            errors.append(f"external request {route.request.url}")
            route.abort()

    context.route("**/*", only_local)
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"browser errors: {errors}"


def _traces(page: Any, element_id: str) -> list[dict[str, Any]]:
    page.wait_for_selector(f'#{element_id}[data-ready="true"]', timeout=TIMEOUT_MS)
    traces: list[dict[str, Any]] = page.evaluate(
        "id => document.getElementById(id).data.map(t => ({name: t.name, n: t.x.length}))",
        element_id,
    )
    return traces


def _tick_labels(page: Any, element_id: str) -> list[str]:
    labels: list[str] = page.evaluate(
        "id => [...document.querySelectorAll(`#${id} .ytick text, #${id} .y2tick text`)]"
        ".map(t => t.textContent)",
        element_id,
    )
    return labels


def _fits(page: Any, selector: str) -> bool:
    """True when the element is no wider than the page's main column (no overflow)."""
    fits: bool = page.evaluate(
        "sel => { const el = document.querySelector(sel);"
        " return el.scrollWidth <= document.querySelector('main').clientWidth; }",
        selector,
    )
    return fits


def test_finished_job_page_answers_with_interval_curves_and_verdicts(
    page: Any, base_url: str, jobs: dict[str, int]
) -> None:
    page.goto(f"{base_url}/jobs/{jobs['expand']}")
    headline = page.inner_text("#headline-text")
    assert f"inserting at position {HEADLINE_POSITION} lowered test risk by 0.012 nats" in headline
    assert "[0.004, 0.020]" in headline and "held at 1 of 5 positions (Holm)" in headline
    arms = {t["name"]: t["n"] for t in _traces(page, "continuation-chart")}
    assert arms == {
        "control (mean of 3 seeds)": 10,
        "position 2 (mean of 3 seeds)": 10,
        f"position {HEADLINE_POSITION} (mean of 3 seeds)": 10,
    }
    assert _traces(page, "insertion-chart")
    for chart in ("insertion-chart", "loss-chart", "continuation-chart"):
        labels = _tick_labels(page, chart)
        assert labels and not any("e-" in label for label in labels), (chart, labels)
    rows = page.locator("#position-table tbody tr")
    assert rows.count() == 5
    assert "[0.004, 0.02]" in page.inner_text("#position-table")
    # certificate, jumpboard and gain intervals of 6 records
    assert page.locator("#insertion-table .ci").count() == 18
    assert "[0.0008, 0.0034]" in page.inner_text("#position-table")  # the certificate, nats
    assert page.locator("#drift-warnings li").count() == 1
    assert _fits(page, "#insertion-table") and _fits(page, "#position-table")
    assert "steps/s" in page.inner_text("#timings")


def test_running_job_page_shows_stage_progress_and_partial_curves(
    page: Any, base_url: str, jobs: dict[str, int]
) -> None:
    page.goto(f"{base_url}/jobs/{jobs['running']}")
    assert page.inner_text("#job-status").strip() == "running"
    stages = page.locator("ol.stages li")
    assert stages.all_inner_texts()[-1].strip() == "continue"
    assert page.get_attribute("ol.stages li:last-child", "data-state") == "current"
    assert page.inner_text("#progress-step") == "160/600 steps"
    assert page.inner_text("#progress-elapsed") != "n/a"
    arms = {t["name"] for t in _traces(page, "continuation-chart")}
    assert arms == {"control (mean of 1 seed)", f"position {HEADLINE_POSITION} (mean of 1 seed)"}
    assert {t["name"] for t in _traces(page, "loss-chart")} == {"train/loss"}
    assert page.locator("#live-indicator").is_visible()


def test_grow_page_shows_schedule_depth_and_each_run(
    page: Any, base_url: str, jobs: dict[str, int]
) -> None:
    page.goto(f"{base_url}/jobs/{jobs['grow']}")
    assert "Growing from 2 to 4 blocks" in page.inner_text("#headline-text")
    depth = (
        page.evaluate(
            "() => { const el = document.getElementById('depth-chart'); return el.data[0].y; }"
        )
        if _traces(page, "depth-chart")
        else []
    )
    assert depth == [2, 3, 4]
    runs = {t["name"] for t in _traces(page, "grow-curves-chart")}
    assert runs == {"grown by the schedule", "target depth from scratch", "starting depth"}
    assert page.locator("#grow-events tbody tr").count() == 2
    assert page.locator("#grow-runs tbody tr").count() == 3


def test_compare_view_puts_jobs_side_by_side(
    page: Any, base_url: str, jobs: dict[str, int]
) -> None:
    page.goto(f"{base_url}/compare?jobs={jobs['expand']},{jobs['expand_b']},{jobs['grow']}")
    assert page.locator(".compare-job").count() == 3
    assert page.locator(".compare-headline").nth(2).inner_text().startswith("Growing from 2")
    differing = page.locator("#spec-diff tr.differs td:first-child").all_inner_texts()
    assert "train.epochs" in differing and "kind" in differing
    assert "data.name" not in differing
    names = {t["name"] for t in _traces(page, "compare-loss-chart")}
    assert len(names) == 3


def test_api_docs_work_offline_and_describe_spec_fields(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=TIMEOUT_MS)
    assert page.locator(".opblock").count() >= 8
    page.goto(f"{base_url}/redoc")
    page.wait_for_selector("[data-section-id]", timeout=TIMEOUT_MS)
    schema = page.evaluate("() => fetch('/openapi.json').then(r => r.json())")
    components = schema["components"]["schemas"]
    assert (
        "Residual blocks per stage."
        in components["ModelSpec"]["properties"]["depth"]["description"]
    )
    for name in ("DataSpec", "ModelSpec", "TrainSpec", "ExpandSpec", "GrowSpec"):
        missing = [
            field
            for field, body in components[name]["properties"].items()
            if not body.get("description")
        ]
        assert not missing, (name, missing)
