"""Database fixtures shared by the app tests: fresh migrated SQLite and PostgreSQL databases.

Migrations run once per session: into a template SQLite file that each test copies, and into
one PostgreSQL database that is truncated before each test; every test starts from the real
migrated schema with no rows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db.migrate import upgrade
from app.db.models import Base
from app.db.session import forget_engine

if TYPE_CHECKING:
    from object_store import ObjectStore

POSTGRES_ADMIN_URL = os.environ.get(
    "JUMPBOARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
"""A PostgreSQL URL with the right to create databases (its database is only used to connect)."""


def _admin_execute(*statements: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _database_url(name: str) -> str:
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, copied by `sqlite_url`."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    forget_engine(url)
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh SQLite database migrated to head."""
    path = tmp_path / "jumpboard.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    yield url
    forget_engine(url)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a PostgreSQL database created and migrated to head for this test session."""
    name = f"jb_test_{uuid.uuid4().hex[:10]}"
    try:
        _admin_execute(f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        # scripts/test.sh starts it: an unreachable server is a broken setup, not a skip.
        pytest.fail(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}")
    url = _database_url(name)
    upgrade(url)
    forget_engine(url)
    yield url
    forget_engine(url)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """URL of a migrated PostgreSQL database with every table empty and ids restarted.

    One database serves the session and is truncated before each test: as fresh as a new
    database for every test, at a fraction of CREATE DATABASE's cost (about 1 s on slow disks).
    """
    engine = create_engine(postgres_database)
    try:
        with engine.begin() as conn:
            # Connections a previous test left behind (killed workers) must not hold locks.
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    yield postgres_database
    forget_engine(postgres_database)


@pytest.fixture
def empty_postgres_url(postgres_database: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database (no schema), dropped after the test."""
    name = f"jb_empty_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    yield url
    forget_engine(url)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database, once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (never a downloaded browser).

    One for the whole session: Playwright's sync API runs one event loop per thread, so a
    second `sync_playwright()` while this one lives would fail.
    """
    from playwright import sync_api

    if not CHROMIUM.exists():
        # scripts/test.sh installs it: a missing browser is a broken setup, not a skip.
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (scripts/test.sh does)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def object_store_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 server (a real HTTP server) for the session; yields its endpoint."""
    from object_store import moto_server

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def object_store(object_store_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """An empty bucket on the test S3 server, with its credentials in this process's
    environment."""
    from object_store import CREDENTIALS, new_bucket

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return new_bucket(object_store_endpoint)
