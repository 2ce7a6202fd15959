"""`jumpboard worker [--devices 0,1 | cpu:N] [--once] [--poll-seconds S] [--database-url URL]`."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from app.cli import CliError


def register(subparsers: Any) -> None:
    """Add the `worker` subcommand."""
    parser = subparsers.add_parser(
        "worker", help="claim queued jobs and run them (one forked process per job)"
    )
    parser.add_argument(
        "--devices",
        default=None,
        help="devices this worker offers and owns: GPU indices (0,1: jobs needing up to 2 "
        "devices, pinned to those GPUs, which no other worker on this host may take), or "
        "cpu:N (N CPU processes); default JUMPBOARD_WORKER_DEVICES, else one device",
    )
    parser.add_argument("--once", action="store_true", help="run at most one job, then exit")
    parser.add_argument(
        "--exit-when-idle", action="store_true", help="exit as soon as the queue is empty"
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=2.0, help="wait between claims when idle"
    )
    parser.add_argument("--database-url", default=None, help="database URL")
    parser.add_argument(
        "--on-sigterm",
        choices=("finish", "hand-back"),
        default="finish",
        help="first SIGTERM: finish the running job, or hand it back to the queue at once "
        "(containers: `docker stop` kills after a grace period, so hand back)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the worker loop in this process until stopped (SIGTERM once: finish; twice: hand
    the running job back). A database that cannot be reached is waited for, at start-up as
    later."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.migrate import current_revision, head_revision
    from app.db.retry import call_with_retry
    from app.settings import SettingsError, load_settings

    if args.poll_seconds <= 0:
        raise CliError(f"--poll-seconds must be positive (got {args.poll_seconds})")
    overrides: dict[str, object] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.devices is not None:
        overrides["worker_devices"] = args.devices
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    try:
        # A database that is down (or still starting) is waited for, with one log line.
        revision = call_with_retry(
            lambda _retried: current_revision(settings.database_url), "checking the schema"
        )
    except SQLAlchemyError as exc:  # refused, not unreachable: a wrong URL or missing rights
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(f"cannot use the database: {reason}") from None
    if revision != head_revision():
        raise CliError(
            f"database schema is at {revision or 'base (empty)'}, not {head_revision()}: "
            "run `jumpboard db upgrade` first"
        )

    from app.artifacts import ArtifactStoreError
    from app.devices import DeviceBusy
    from app.worker.loop import Worker

    missing = [m for m in ("torch", "lightning") if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError(f"cannot run jobs: {', '.join(missing)} not installed")
    try:
        worker = Worker(settings, poll_seconds=args.poll_seconds)
    except ArtifactStoreError as exc:  # the `s3` extra is missing
        raise CliError(str(exc)) from None
    worker.install_signal_handlers(hand_back_first=args.on_sigterm == "hand-back")
    try:
        worker.run(
            max_jobs=1 if args.once else None, exit_when_idle=args.exit_when_idle or args.once
        )
    except DeviceBusy as exc:
        raise CliError(f"--devices: {exc}") from None
    except ArtifactStoreError as exc:  # checked before the first claim
        raise CliError(f"JUMPBOARD_ARTIFACT_URL: {exc}") from None
    return 0
