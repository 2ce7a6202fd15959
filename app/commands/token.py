"""`jumpboard token create [--name N] [--database-url URL]`: a new API token.

The token is printed on the last line of the output (scripts take `| tail -n 1`); the database
keeps only its hash, so it cannot be shown again.
"""

from __future__ import annotations

import argparse
from typing import Any

from app.cli import CliError


def register(subparsers: Any) -> None:
    """Add the `token` subcommand."""
    parser = subparsers.add_parser("token", help="manage API tokens")
    parser.add_argument("action", choices=("create",))
    parser.add_argument("--name", default="", help="a label for the token (who or what uses it)")
    parser.add_argument(
        "--database-url", default=None, help="database URL (default: JUMPBOARD_DATABASE_URL)"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Create a token, store its hash, print the token last."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.session import session_factory
    from app.settings import SettingsError, load_settings
    from app.tokens import create_token

    if len(args.name) > 120:
        raise CliError("--name: at most 120 characters")
    try:
        overrides = {"database_url": args.database_url} if args.database_url else {}
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    try:
        with session_factory(settings.database_url)() as session:
            row, token = create_token(session, args.name)
            session.commit()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(
            f"cannot store the token: {reason} (run `jumpboard db upgrade` first?)"
        ) from None
    label = f" ({args.name})" if args.name else ""
    print(f"created token {row.id}{label}; it is shown only once:")
    print(token)
    return 0
