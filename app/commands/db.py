"""`jumpboard db upgrade|downgrade [REV] [--database-url URL]`: schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli import CliError


def register(subparsers: Any) -> None:
    """Add the `db` subcommand."""
    parser = subparsers.add_parser("db", help="migrate the database schema (Alembic)")
    parser.add_argument("action", choices=("upgrade", "downgrade", "current"))
    parser.add_argument(
        "rev",
        nargs="?",
        default=None,
        help="target revision (default: head for upgrade, base for downgrade)",
    )
    parser.add_argument(
        "--database-url", default=None, help="database URL (default: JUMPBOARD_DATABASE_URL)"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the requested migration and print where the database ends up."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import migrate
    from app.settings import SettingsError, load_settings

    try:
        overrides = {"database_url": args.database_url} if args.database_url else {}
        url = load_settings(**overrides).database_url
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    try:
        if args.action == "upgrade":
            migrate.upgrade(url, args.rev or "head")
        elif args.action == "downgrade":
            migrate.downgrade(url, args.rev or "base")
        revision = migrate.current_revision(url)
    except (migrate.CommandError, migrate.MigrationError) as exc:
        raise CliError(f"{args.action} failed: {exc}") from None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(f"{args.action} failed: database error: {reason}") from None
    print(f"database at revision {revision or 'base (empty)'}")
    return 0
