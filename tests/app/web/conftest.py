"""Fixtures of the browser tests: one migrated database and one served app per test module, a real
tiny expand job stored the way the worker stores it, and a page that fails on script errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from browser_pages import SCREENSHOTS, TINY_EXPAND, free_port
from sqlalchemy.orm import Session, sessionmaker

from app.api.main import create_app
from app.db.migrate import upgrade
from app.db.session import forget_engine, session_factory
from app.queue import claim_next_job, complete_job, enqueue_job
from app.settings import Settings
from app.tokens import create_token


@pytest.fixture(scope="module")
def browser_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings over a migrated SQLite database of its own, shared by the browser tests."""
    home = tmp_path_factory.mktemp("browser")
    settings = Settings(
        database_url=f"sqlite:///{home / 'jumpboard.db'}",
        artifact_dir=home / "artifacts",
        data_dir=home / "data",
    )
    settings.ensure_dirs()
    upgrade(settings.database_url)
    yield settings
    forget_engine(settings.database_url)


@pytest.fixture(scope="module")
def factory(browser_settings: Settings) -> sessionmaker[Session]:
    """Session factory of the browser tests' database."""
    return session_factory(browser_settings.database_url)


@pytest.fixture(scope="module")
def finished_job(
    browser_settings: Settings, factory: sessionmaker[Session]
) -> tuple[int, dict[str, Any]]:
    """A real tiny expand run, stored the way the worker stores it: (job id, result dict)."""
    from expansion.experiments import run_experiment

    with factory() as session:
        job_id = enqueue_job(session, TINY_EXPAND).id
    claim = claim_next_job(factory, "browser-test-worker", 600.0)
    assert claim is not None and claim.job_id == job_id
    out_dir = browser_settings.job_dir(job_id)
    result = run_experiment(claim.spec, out_dir, data_dir=browser_settings.data_dir)
    assert complete_job(factory, claim, result, job_dir=out_dir)
    return job_id, result


@pytest.fixture(scope="module")
def token(factory: sessionmaker[Session]) -> str:
    """A valid API token for the submit form."""
    with factory() as session:
        _, plain = create_token(session, "browser-test")
        session.commit()
    return plain


@pytest.fixture(scope="module")
def base_url(browser_settings: Settings) -> Iterator[str]:
    """URL of the app served by uvicorn in a background thread on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(browser_settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="browser-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; script errors and failed sub-resources (scripts, styles) fail the test.

    A page answered with a 4xx on purpose (a refused form) is not an error; a final screenshot
    is always saved.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document"
            else None
        ),
    )
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-final.png"), full_page=True)
    context.close()
    assert not errors, f"browser errors: {errors}"
