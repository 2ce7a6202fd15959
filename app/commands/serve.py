"""`jumpboard serve [--host H] [--port P] [--no-worker] [--database-url URL]`: run the service.

The embedded default needs nothing else: a SQLite file in the settings folder, migrations
applied at start, an in-process worker, bound to 127.0.0.1:8000. On SQLite it also keeps a local
API token in the settings folder (readable by its owner only) that `jumpboard submit` uses when
it talks to this local server without a token. Next to the token it writes `local-server.json`
(its URL, port and pid) so that the client commands find it on whatever port it listens;
the file is removed when `serve` stops.

The access log leaves out successful GET and HEAD requests (the pages and `jobs wait` poll
every few seconds); `--access-log` logs every request.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
from typing import Any

from app.cli import CliError

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser("serve", help="run the API and web pages (and a worker)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default 8000)")
    parser.add_argument("--no-worker", action="store_true", help="do not run an in-process worker")
    parser.add_argument(
        "--database-url", default=None, help="database URL (default: JUMPBOARD_DATABASE_URL)"
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (default: only changes and errors, not polling reads)",
    )
    parser.set_defaults(handler=handle)


class QuietPollingFilter(logging.Filter):
    """Drops uvicorn access-log records of successful reads (GET/HEAD answered below 400)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a successful read, True for everything else."""
        args = record.args
        # uvicorn's access record: (client, method, path, http_version, status_code)
        if isinstance(args, tuple) and len(args) == 5:
            method, status = args[1], args[4]
            if method in ("GET", "HEAD") and isinstance(status, int) and status < 400:
                return False
        return True


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare(settings: Any) -> str | None:
    """Migrate the database and, on SQLite, make sure the local token exists; returns its path."""
    from app.db.migrate import upgrade
    from app.db.session import is_sqlite, session_factory
    from app.tokens import ensure_local_token, local_token_path, token_home

    upgrade(settings.database_url)
    if not is_sqlite(settings.database_url):
        return None
    home = token_home(settings)
    with session_factory(settings.database_url)() as session:
        ensure_local_token(session, home)
        session.commit()
    return str(local_token_path(home))


def handle(args: argparse.Namespace) -> int:
    """Prepare the database, start the worker, serve until interrupted."""
    import uvicorn
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from app.api.main import create_app
    from app.db.migrate import MigrationError
    from app.settings import SettingsError, load_settings

    overrides: dict[str, Any] = {}
    for key in ("database_url", "host", "port"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    try:
        token_file = prepare(settings)
    except (CommandError, MigrationError) as exc:
        raise CliError(f"migration failed: {exc}") from None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(f"database error: {reason}") from None
    from app.commands.server_discovery import (
        remove_local_server,
        settings_home,
        write_local_server,
    )

    home = settings_home(settings)
    try:
        write_local_server(home, settings.host, settings.port)
    except OSError as exc:
        log.warning("could not write the local server file in %s: %s", home, exc)
    worker = None
    if not args.no_worker:
        from app.worker.loop import start_in_process_worker

        worker = start_in_process_worker(settings)
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"Jumpboard at http://{shown_host}:{settings.port}/ (API docs at /docs)", flush=True)
    if token_file:
        print(
            f"local API token in {token_file} (used by `jumpboard submit` and `jobs`)", flush=True
        )
    if not _is_loopback(settings.host):
        print(f"warning: listening on {settings.host}, reachable from other machines", flush=True)
    if not args.access_log:
        logging.getLogger("uvicorn.access").addFilter(QuietPollingFilter())
    # uvicorn shuts down on SIGTERM, then re-raises it to the handler found at start: this one
    # turns it into an exit that runs the cleanup below (worker stop, local server file).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
        )
    finally:
        remove_local_server(home)
        if worker is not None:
            worker.stop()
    return 0
