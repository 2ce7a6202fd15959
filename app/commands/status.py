"""`jumpboard status ID [--server URL] [--json]`: one job's state from a running server."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `status` subcommand."""
    parser = subparsers.add_parser("status", help="show a job's status from the server")
    parser.add_argument("job_id", type=int, metavar="ID", help="the job's id")
    parser.add_argument("--server", default=None, help="server URL (default: the local server)")
    parser.add_argument("--token", default=None, help="API token (when reads need one)")
    parser.add_argument("--json", action="store_true", help="print the job as JSON")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Fetch the job and print it."""
    from app.client import ClientError, JumpboardClient
    from app.commands.job_display import describe_job, final_lines
    from app.commands.server_discovery import client_failure, resolve_server, resolve_token

    server = resolve_server(args.server)
    token = resolve_token(args.token, server)
    try:
        with JumpboardClient(server, token) as client:
            job = client.job(args.job_id)
    except ClientError as exc:
        raise client_failure(exc) from None
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print("\n".join([describe_job(job), *final_lines(job)]))
    return 0
