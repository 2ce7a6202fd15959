"""`jumpboard submit SPEC [--server URL] [--token T] [--wait] [--priority N] [--json]`: queue a
job.

The server and token are found as `app.commands.server_discovery` describes (the local `serve`
and its local token by default). With `--wait`, a progress bar runs until the job ends, then
one summary line; the exit status is 0 only on success (README: exit codes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from app.cli import CliError


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
    parser.add_argument("--json", action="store_true", help="print the job as JSON")
    parser.add_argument(
        "--base-job",
        type=int,
        default=None,
        metavar="ID",
        help="kind expand: expand the trained network of this finished job (train, expand or "
        "grow) instead of training a base; model, data and train default to that job's",
    )
    parser.set_defaults(handler=handle)


def with_base_job(spec: dict[str, Any], base_job: int | None) -> dict[str, Any]:
    """The spec with `expand.base_job` set from `--base-job`; CliError for another kind."""
    if base_job is None:
        return spec
    if spec.get("kind") != "expand":
        raise CliError(f"--base-job applies to kind expand, not {spec.get('kind', 'train')}")
    if base_job < 1:
        raise CliError("--base-job: a job id is a positive integer")
    expand = spec.get("expand")
    return {
        **spec,
        "expand": {**(expand if isinstance(expand, dict) else {}), "base_job": base_job},
    }


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


def handle(args: argparse.Namespace) -> int:
    """Submit the spec; with --wait, follow it to the end."""
    from app.client import ClientError, JumpboardClient
    from app.commands.job_display import describe_job, final_lines, wait_for_job
    from app.commands.server_discovery import (
        EXIT_JOB_UNSUCCESSFUL,
        client_failure,
        resolve_server,
        resolve_token,
    )

    spec = with_base_job(read_spec_file(args.spec), args.base_job)
    server = resolve_server(args.server)
    token = resolve_token(args.token, server)
    if token is None:
        raise CliError(
            f"no API token for {server}: pass --token, set JUMPBOARD_TOKEN, or create one with "
            "`jumpboard token create`"
        )
    started = time.monotonic()
    try:
        with JumpboardClient(server, token) as client:
            job = client.submit(spec, priority=args.priority)
            if not args.json:
                print(f"job {job['id']} queued: {server}{job['links']['page']}", flush=True)
            if args.wait:
                job = wait_for_job(client, job, show_bar=not args.json)
    except ClientError as exc:
        raise client_failure(exc) from None
    if args.json:
        print(json.dumps(job, indent=2))
    elif args.wait:
        print(f"{describe_job(job)} (waited {time.monotonic() - started:.1f}s)")
        for line in final_lines(job):
            print(line)
    if not args.wait:
        return 0
    return 0 if job["status"] == "succeeded" else EXIT_JOB_UNSUCCESSFUL
