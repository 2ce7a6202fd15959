"""`jumpboard token create|list|revoke`: manage API tokens in the database directly.

    jumpboard token create [--name N] [--scope read|submit|admin] [--expires 30d] [--json]
    jumpboard token list [--json]
    jumpboard token revoke ID [--json]

`create` prints the token on the last line of its output (scripts take `| tail -n 1`), or as
the `token` field with `--json`; the database keeps only its hash, so it cannot be shown again.
A revoked token is refused (401) from the next request on.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli import CliError

SCOPES = ("read", "submit", "admin")


def register(subparsers: Any) -> None:
    """Add the `token` subcommand and its actions."""
    parser = subparsers.add_parser("token", help="manage API tokens (create, list, revoke)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--database-url", default=None, help="database URL (default: JUMPBOARD_DATABASE_URL)"
        )
        sub.add_argument("--json", action="store_true", help="print JSON instead of text")
        sub.set_defaults(handler=handle)

    create = actions.add_parser("create", help="create a token (shown only once)")
    create.add_argument("--name", default="", help="a label for the token (who or what uses it)")
    create.add_argument(
        "--scope",
        choices=SCOPES,
        default="submit",
        help="read: reads only; submit: also submit/cancel jobs (default); admin: also tokens",
    )
    create.add_argument(
        "--expires",
        default="never",
        help="a duration (30d, 12h, 90m, 2w), an ISO date/time, or never (default)",
    )
    common(create)
    listing = actions.add_parser("list", help="list every token (never the tokens themselves)")
    common(listing)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", metavar="ID", type=int, help="the token's id (see list)")
    common(revoke)


def _session_factory(database_url: str | None) -> Any:
    from app.db.session import session_factory
    from app.settings import SettingsError, load_settings

    try:
        settings = load_settings(**({"database_url": database_url} if database_url else {}))
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    return session_factory(settings.database_url)


def _database_problem(exc: Exception) -> CliError:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    return CliError(f"cannot use the token table: {first} (run `jumpboard db upgrade` first?)")


def _text_line(record: dict[str, Any]) -> str:
    state = "revoked" if record["revoked"] else "expired" if record["expired"] else "active"
    expires = record["expires_at"] or "never"
    used = record["last_used_at"] or "never"
    name = record["name"] or "-"
    return (
        f"{record['id']:>5}  {record['scope']:<6}  {state:<7}  {name:<20}  "
        f"expires {expires}  last used {used}"
    )


def handle(args: argparse.Namespace) -> int:
    """Run the chosen token action against the database."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.tokens import (
        TokenScope,
        create_token,
        list_tokens,
        parse_expiry,
        revoke_token,
        token_record,
    )

    if args.action == "create":
        if len(args.name) > 120:
            raise CliError("--name: at most 120 characters")
        try:
            expires_at = parse_expiry(args.expires)
        except ValueError as exc:
            raise CliError(f"--expires: {exc}") from None
    factory = _session_factory(args.database_url)
    try:
        with factory() as session:
            if args.action == "create":
                row, token = create_token(session, args.name, TokenScope(args.scope), expires_at)
                session.commit()
                record = token_record(row)
                if args.json:
                    print(json.dumps({**record, "token": token}))
                    return 0
                label = f" ({args.name})" if args.name else ""
                expiry = f", expires {record['expires_at']}" if record["expires_at"] else ""
                print(
                    f"created token {row.id}{label}, scope {record['scope']}{expiry}; "
                    "it is shown only once:"
                )
                print(token)
                return 0
            if args.action == "list":
                records = [token_record(r) for r in list_tokens(session)]
                if args.json:
                    print(json.dumps(records))
                elif not records:
                    print("no tokens (create one: jumpboard token create)")
                else:
                    for record in records:
                        print(_text_line(record))
                return 0
            revoked = revoke_token(session, args.token_id)
            if revoked is None:
                raise CliError(f"no token {args.token_id} (see `jumpboard token list`)", code=1)
            session.commit()
            record = token_record(revoked)
            print(json.dumps(record) if args.json else f"revoked token {revoked.id}")
            return 0
    except SQLAlchemyError as exc:
        raise _database_problem(exc) from None
