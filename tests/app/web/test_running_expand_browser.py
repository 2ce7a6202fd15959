"""A running expand job's page in headless Chromium: the scan's per-position table (with the
certificate) shows as soon as the scan ends, before the continuation does. A real job, run by
the real worker in this process, on the browser tests' served app."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from browser_pages import TINY_EXPAND, save_screenshot
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job
from app.queue import cancel_job, enqueue_job
from app.settings import Settings
from app.worker.loop import start_in_process_worker

pytestmark = pytest.mark.browser

WAIT_LIMIT_S = 120.0
"""Upper bound of every wait (a hang guard, not a timing assertion)."""


def job_row(factory: sessionmaker[Session], job_id: int) -> Job:
    """The job's row as stored now."""
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def test_the_scan_table_shows_before_the_continuation_ends(
    browser: Any, base_url: str, browser_settings: Settings, factory: sessionmaker[Session]
) -> None:
    spec: dict[str, Any] = copy.deepcopy(TINY_EXPAND)
    spec["name"] = "running-expand"
    # A continuation long enough to be caught running; the job is cancelled once seen.
    spec["expand"].update(continue_steps=20_000, seeds=[0])
    with factory() as session:
        job_id = enqueue_job(session, spec).id
    handle = start_in_process_worker(browser_settings, poll_seconds=0.1)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while job_row(factory, job_id).stage != "continue":
            assert time.monotonic() < deadline, "the job never reached its continuation"
            time.sleep(0.2)
        page = context.new_page()
        page.goto(f"{base_url}/jobs/{job_id}")
        table = page.locator("#position-table")
        table.wait_for(timeout=int(WAIT_LIMIT_S * 1000))
        rows = table.locator("tbody tr")
        assert rows.count() == 3  # every scanned position, with its certificate
        assert "not continued" in rows.first.inner_text()
        job = job_row(factory, job_id)
        assert job.status == "running" and job.stage == "continue"
        save_screenshot(page, "running-expand-scan-table")
    finally:
        context.close()
        with factory() as session:
            cancel_job(session, job_id)
        deadline = time.monotonic() + WAIT_LIMIT_S
        while job_row(factory, job_id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        handle.stop()
