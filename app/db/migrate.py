"""Schema migrations through Alembic, driven from code (no alembic.ini needed).

The revisions live in `migrations/` at the repository root, which the wheel installs as the
package `app.migrations`; `migrations_dir` finds whichever of the two this process has.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

# Alembic announces each of its plugins at INFO as it loads them.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from alembic.util import CommandError  # noqa: E402
from sqlalchemy import Engine  # noqa: E402

from app.db.session import create_db_engine  # noqa: E402

log = logging.getLogger(__name__)

CHECKOUT_MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
"""`migrations/` of a source checkout (editable installs and the test suite)."""


__all__ = ["CommandError", "MigrationError", "downgrade", "upgrade"]


class MigrationError(RuntimeError):
    """A migration could not run; the message says why."""


def migrations_dir() -> Path:
    """The folder with Alembic's `env.py`: the installed `app.migrations` package, else the
    checkout's `migrations/`.

    Raises MigrationError when neither has an `env.py`.
    """
    candidates = []
    spec = importlib.util.find_spec("app.migrations")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) for location in spec.submodule_search_locations]
    candidates.append(CHECKOUT_MIGRATIONS_DIR)
    for folder in candidates:
        if (folder / "env.py").is_file():
            return folder
    searched = ", ".join(str(folder) for folder in candidates)
    raise MigrationError(f"migrations folder (with env.py) not found; looked in {searched}")


def alembic_config(url: str) -> Config:
    """An Alembic configuration for `url` and this project's migrations folder."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, rev: str = "head") -> None:
    """Upgrade the database at `url` to revision `rev`."""
    log.info("upgrading %s to %s", _safe(url), rev)
    command.upgrade(alembic_config(url), rev)


def downgrade(url: str, rev: str = "base") -> None:
    """Downgrade the database at `url` to revision `rev`."""
    log.info("downgrading %s to %s", _safe(url), rev)
    command.downgrade(alembic_config(url), rev)


def head_revision() -> str | None:
    """The newest revision in `migrations/`."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url_or_engine: str | Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = create_db_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
