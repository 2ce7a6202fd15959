"""The web pages in headless Chromium, against a live server and a real finished expand job.

The job is a real (tiny) experiment: `run_experiment` on digits with a width-16 MLP, stored
through the queue's completion function, the same path the worker takes. It runs once per
test session. Screenshots go to test-artifacts/screenshots/ for inspection.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser_pages import TINY_EXPAND, save_screenshot
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CHART_TIMEOUT_MS = 20_000


def _drawn(page: Any, element_id: str) -> tuple[list[dict[str, Any]], int]:
    """Wait until plotly drew `element_id`: its traces as {name, n (points)}, and the number
    of point markers drawn in the SVG."""
    page.wait_for_selector(f'#{element_id}[data-ready="true"]', timeout=CHART_TIMEOUT_MS)
    traces, points = page.evaluate(
        """id => {
            const el = document.getElementById(id);
            const traces = el.data.map(t => ({name: t.name, n: t.x.length}));
            return [traces, el.querySelectorAll(".scatterlayer .point").length];
        }""",
        element_id,
    )
    return traces, points


def test_job_page_draws_curves_and_one_insertion_point_per_position(
    page: Any, base_url: str, finished_job: tuple[int, dict[str, Any]]
) -> None:
    job_id, result = finished_job
    page.goto(f"{base_url}/jobs/{job_id}")
    assert page.inner_text("#job-status").strip() == "succeeded"

    traces, _ = _drawn(page, "loss-chart")
    losses = {t["name"]: t["n"] for t in traces}
    expected_losses = {k: len(v) for k, v in result["curves"].items() if "loss" in k}
    assert losses == expected_losses and losses.get("train/loss", 0) > 0
    traces, _ = _drawn(page, "accuracy-chart")
    accuracies = {t["name"]: t["n"] for t in traces}
    assert accuracies == {k: len(v) for k, v in result["curves"].items() if "acc" in k}

    (certified, realized), markers = _drawn(page, "insertion-chart")
    measured = [p for p in result["positions"] if p["gain_mean"] is not None]
    scanned = {p["position"] for p in result["scan"]["positions"]}
    num_positions = TINY_EXPAND["model"]["depth"] + 1
    assert scanned == {p["position"] for p in result["positions"]} == set(range(num_positions))
    assert certified["n"] == num_positions
    assert realized["n"] == len(measured) == num_positions
    assert markers == certified["n"] + realized["n"]
    note = page.inner_text("#certificate-note")
    assert "not a forecast" in note.lower()
    rows = page.locator("#insertion-table tbody tr")
    assert rows.count() == len(result["insertions"]) == num_positions * 2
    save_screenshot(page, "job-page")


def test_results_page_shows_the_scatter(
    page: Any, base_url: str, finished_job: tuple[int, dict[str, Any]]
) -> None:
    job_id, result = finished_job
    page.goto(f"{base_url}/results")
    (scatter,), markers = _drawn(page, "results-chart")
    measured = [p for p in result["positions"] if p["gain_mean"] is not None]
    assert scatter["n"] == markers == len(measured)
    assert page.inner_text("#spearman-n") == str(len(measured))
    assert page.locator("#results-table tbody tr").count() == len(measured)
    job_links = page.locator(f'#results-table a[href="/jobs/{job_id}"]')
    assert job_links.count() == len(measured)
    assert page.get_attribute("#csv-link", "href") == "/api/v1/results?format=csv"
    verdicts = page.locator("#results-table tbody td.verdict").all_inner_texts()
    family = page.locator("#results-table tbody td.family-verdict").all_inner_texts()
    words = {"holds", "fails", "undecided"}
    assert verdicts and set(verdicts) <= words, f"verdict words, not true/false: {verdicts}"
    assert set(family) <= words
    by_position = sorted(measured, key=lambda p: p["position"])
    assert verdicts == [p["certificate"]["verdict"] for p in by_position]
    assert family == [p["certificate"]["family_verdict"] for p in by_position]
    methods = page.locator("#results-table tbody td.gain-ci-method").all_inner_texts()
    assert methods == [p["gain_ci_method"] for p in by_position]
    save_screenshot(page, "results-page")

    held = sum(p["certificate"]["family_verdict"] == "holds" for p in measured)
    page.select_option("#verdict-filter", "holds")
    page.click("#results-filter button[type=submit]")
    page.wait_for_url(re.compile(r".*verdict=holds"))
    assert page.locator("#results-table tbody tr").count() == held


def test_submit_form_shows_problems_then_creates_a_job(
    page: Any, base_url: str, token: str, factory: sessionmaker[Session]
) -> None:
    page.goto(f"{base_url}/submit")
    page.fill("#spec-input", "kind: expand\nmodel: {width: 0, colour: red}\n")
    page.fill("#token-input", token)
    page.click("#submit-button")
    problems = page.locator("#problem-list li")
    problems.first.wait_for()
    assert problems.all_inner_texts() == [
        "model.width: Input should be greater than or equal to 1",
        "model.colour: unknown key",
    ]
    save_screenshot(page, "submit-problems")

    page.fill("#spec-input", "kind: train\nname: from-the-browser\ndata: {name: digits}\n")
    page.fill("#token-input", token)
    page.click("#submit-button")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    assert page.inner_text("#job-status").strip() == "queued"
    assert page.locator("#live-indicator").is_visible()
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.name, job.kind, job.status) == ("from-the-browser", "train", "queued")
    save_screenshot(page, "submitted-job")

    page.goto(f"{base_url}/jobs")
    row = page.locator(f'#job-table tr[data-job-id="{job_id}"]')
    assert row.get_attribute("data-status") == "queued"
    save_screenshot(page, "job-list")


def test_results_page_calibration_table_and_predictor_scatters(
    page: Any, base_url: str, finished_job: tuple[int, dict[str, Any]]
) -> None:
    from expansion.specs.predictor_names import PREDICTOR_NAMES

    job_id, result = finished_job
    page.goto(f"{base_url}/results?group_by=dataset")
    rows = page.locator('#calibration-table tbody tr[data-kind="predictor"]')
    assert rows.count() == len(PREDICTOR_NAMES)  # one data set: a row per predictor
    baselines = page.locator('#calibration-table tbody tr[data-kind="baseline"]')
    assert baselines.count() == 2  # the position index, deeper and shallower
    first = rows.first.locator("td").all_inner_texts()
    assert first[0] == "dataset=digits" and first[1] == PREDICTOR_NAMES[0]
    positions = {rec["position"] for rec in result["insertions"]}
    assert first[3] == str(len(positions))
    for name in ("certificate_u", "grad_rel_w2", "probe_val_gain", "early_gain_25pct"):
        traces, markers = _drawn(page, f"predictor-{name}")
        assert traces == [{"name": f"job {job_id} · browser-digits", "n": len(positions)}]
        assert markers == len(positions)
    legend = page.eval_on_selector_all(
        "#predictor-certificate_u .legendtext", "els => els.map(e => e.textContent)"
    )
    assert legend == [f"job {job_id} · browser-digits"]
    assert page.get_attribute("#calibration-csv-link", "href") == "/api/v1/calibration?format=csv"
    page.select_option("#group-by", "norm")
    page.click("#calibration-group button[type=submit]")
    page.wait_for_url(re.compile(r".*group_by=norm.*"))
    assert page.locator("#calibration-table tbody tr").first.locator("td").first.inner_text() == (
        "norm=layer"
    )
    page.locator("#calibration").scroll_into_view_if_needed()
    save_screenshot(page, "results-calibration")
