"""`jumpboard submit SPEC [--server URL] [--token T] [--wait] [--priority N]`: queue a job.

The token comes from `--token`, else `JUMPBOARD_TOKEN`, else (for the local default server)
the local token that `jumpboard serve` stored in the settings folder. With `--wait`, a progress
bar runs until the job ends, then one summary line; the exit status is 0 only on success.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from app.cli import CliError

POLL_SECONDS = 1.0


def register(subparsers: Any) -> None:
    """Add the `submit` subcommand."""
    parser = subparsers.add_parser("submit", help="submit a spec to a running server")
    parser.add_argument("spec", metavar="SPEC", type=Path, help="spec file (YAML or JSON)")
    parser.add_argument(
        "--server", default=None, help="server URL (default: JUMPBOARD_SERVER or the local one)"
    )
    parser.add_argument("--token", default=None, help="API token (default: JUMPBOARD_TOKEN)")
    parser.add_argument("--priority", type=int, default=None, help="higher runs first")
    parser.add_argument(
        "--wait", action="store_true", help="show progress until the job ends; exit 0 on success"
    )
    parser.set_defaults(handler=handle)


def _settings() -> Any:
    from app.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def resolve_server(server: str | None) -> str:
    """`server`, else `JUMPBOARD_SERVER`, else the local server at the configured port."""
    if server:
        return server
    if os.environ.get("JUMPBOARD_SERVER"):
        return os.environ["JUMPBOARD_SERVER"]
    return f"http://127.0.0.1:{_settings().port}"


def resolve_token(token: str | None, server: str | None) -> str | None:
    """`token`, else `JUMPBOARD_TOKEN`, else the local token when talking to the local default."""
    if token:
        return token
    if os.environ.get("JUMPBOARD_TOKEN"):
        return os.environ["JUMPBOARD_TOKEN"]
    if server is None and not os.environ.get("JUMPBOARD_SERVER"):
        from app.tokens import read_local_token, token_home

        return read_local_token(token_home(_settings()))
    return None


def read_spec_file(path: Path) -> dict[str, Any]:
    """The spec mapping in a YAML or JSON file; CliError naming the problem otherwise.

    Reads at most MAX_SPEC_BYTES (so `/dev/zero` or a pipe fails fast), refuses YAML aliases
    and deep nesting (app.bounded_input)."""
    from app.bounded_input import MAX_SPEC_BYTES, InputError, load_spec_mapping, read_bounded

    try:
        data = read_bounded(path, MAX_SPEC_BYTES)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise CliError(f"cannot read {path}: {exc.__class__.__name__}") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
    except InputError as exc:
        raise CliError(f"{path}: {exc}") from None
    try:
        return load_spec_mapping(data, json_only=path.suffix == ".json")
    except InputError as exc:
        raise CliError(f"{path}: {exc}") from None


def _summary_line(job: dict[str, Any], seconds: float) -> str:
    from app.commands.status import describe_job

    return f"{describe_job(job)} (waited {seconds:.1f}s)"


def wait_for_job(client: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Poll the job with a progress bar on stderr until it ends; returns the final job."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.client import TERMINAL_STATUSES

    console = Console(stderr=True)
    columns = (
        TextColumn("job {task.fields[job_id]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]} {task.fields[stage]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("job", total=1.0, job_id=job["id"], status=job["status"], stage="")
        while job["status"] not in TERMINAL_STATUSES:
            time.sleep(POLL_SECONDS)
            job = client.job(job["id"])
            bar.update(
                task,
                completed=float(job.get("progress") or 0.0),
                status=job["status"],
                stage=job.get("stage") or "",
            )
    return job


def handle(args: argparse.Namespace) -> int:
    """Submit the spec; with --wait, follow it to the end."""
    from app.client import ClientError, JumpboardClient

    spec = read_spec_file(args.spec)
    server = resolve_server(args.server)
    token = resolve_token(args.token, args.server)
    if token is None:
        raise CliError(
            "no API token: pass --token, set JUMPBOARD_TOKEN, or create one with "
            "`jumpboard token create`"
        )
    started = time.monotonic()
    try:
        with JumpboardClient(server, token) as client:
            job = client.submit(spec, priority=args.priority)
            print(f"job {job['id']} queued: {server.rstrip('/')}{job['links']['page']}", flush=True)
            if not args.wait:
                return 0
            job = wait_for_job(client, job)
    except ClientError as exc:
        raise CliError(str(exc), code=1) from None
    print(_summary_line(job, time.monotonic() - started))
    return 0 if job["status"] == "succeeded" else 1
