"""Alembic migrations: upgrade, downgrade and upgrade again, and no drift from the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from app.cli import main
from app.db.migrate import current_revision, downgrade, head_revision, upgrade
from app.db.models import Base
from app.db.session import create_db_engine

TABLES = {"jobs", "metrics", "insertions", "artifacts", "workers", "api_tokens"}


def _round_trip(url: str) -> None:
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision()
    engine = create_db_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        downgrade(url)
        assert current_revision(url) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(url)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.postgres
def test_postgres_upgrade_downgrade_upgrade(empty_postgres_url: str) -> None:
    _round_trip(empty_postgres_url)


def test_cli_upgrade_and_downgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out
    assert main(["db", "downgrade", "--database-url", url]) == 0
    assert "base (empty)" in capsys.readouterr().out
    assert current_revision(url) is None


def test_cli_reports_bad_revision_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "upgrade", "nosuchrev", "--database-url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "nosuchrev" in err
    assert "Traceback" not in err
