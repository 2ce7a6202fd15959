"""`jumpboard status ID [--server URL] [--json]`: one job's state from a running server."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli import CliError


def register(subparsers: Any) -> None:
    """Add the `status` subcommand."""
    parser = subparsers.add_parser("status", help="show a job's status from the server")
    parser.add_argument("job_id", type=int, metavar="ID", help="the job's id")
    parser.add_argument("--server", default=None, help="server URL (default: the local server)")
    parser.add_argument("--token", default=None, help="API token (when reads need one)")
    parser.add_argument("--json", action="store_true", help="print the job as JSON")
    parser.set_defaults(handler=handle)


def describe_job(job: dict[str, Any]) -> str:
    """A one-line summary of a job: id, name, status, progress and headline numbers."""
    name = f" {job['name']}" if job.get("name") else ""
    parts = [f"job {job['id']}{name} ({job['kind']}): {job['status']}"]
    if job["status"] in ("queued", "running"):
        parts.append(f"{100 * job.get('progress', 0.0):.0f}%")
        if job.get("stage"):
            parts.append(f"stage {job['stage']}")
    summary = job.get("summary") or {}
    for key in ("test_risk", "test_error", "parameters"):
        if isinstance(summary.get(key), int | float):
            value = summary[key]
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    if job.get("cancel_requested") and job["status"] == "running":
        parts.append("cancel requested")
    if job.get("error"):
        parts.append(f"error: {str(job['error']).strip().splitlines()[-1][:200]}")
    return ", ".join(parts)


def handle(args: argparse.Namespace) -> int:
    """Fetch the job and print it."""
    from app.client import ClientError, JumpboardClient
    from app.commands.submit import resolve_server, resolve_token

    server = resolve_server(args.server)
    token = resolve_token(args.token, args.server)
    try:
        with JumpboardClient(server, token) as client:
            job = client.job(args.job_id)
    except ClientError as exc:
        raise CliError(str(exc), code=1) from None
    print(json.dumps(job, indent=2) if args.json else describe_job(job))
    return 0
