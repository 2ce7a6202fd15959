"""Database fixtures shared by the app tests: fresh migrated SQLite and PostgreSQL databases.

Migrations run once per session into a template (a SQLite file, a PostgreSQL template
database); each test gets a copy of it, so every test starts from the real migrated schema.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db.migrate import upgrade
from app.db.session import forget_engine

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
def postgres_template() -> Iterator[str]:
    """Name of a PostgreSQL template database migrated to head (dropped at the end)."""
    name = f"jb_template_{uuid.uuid4().hex[:10]}"
    try:
        _admin_execute(f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}")
    url = _database_url(name)
    upgrade(url)
    forget_engine(url)
    yield name
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """URL of a fresh PostgreSQL database migrated to head (created and dropped per test)."""
    name = f"jb_test_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    url = _database_url(name)
    yield url
    forget_engine(url)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_postgres_url(postgres_template: str) -> Iterator[str]:
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
    return request.getfixturevalue(f"{request.param}_url")
